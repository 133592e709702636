"""Input arrays of the NumPy-side instruments (neural collapse, spectra, similarity, learning curves)."""
from __future__ import annotations

from typing import Any

import numpy as np


def as_array(name: str, x: Any, ndim: int | None = None, dtype: Any = None) -> np.ndarray:
    """``x`` (array-like or tensor, detached to the CPU) as a NumPy array of ``dtype``; a wrong ``ndim`` or a NaN/inf
    among floating values is a ``ValueError`` naming ``name``."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    out = np.asarray(x, dtype=dtype)
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s); got shape {out.shape}")
    if out.dtype.kind in "fc" and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} holds NaN or inf values; measure finite values (check the run did not diverge)")
    return out

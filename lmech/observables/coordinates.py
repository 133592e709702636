"""Coordinate sizes: the mean absolute output of every layer and its change since a reference, the measurement of
the coordinate check (Yang et al. 2022, arXiv:2203.03466, App. D.1; :func:`lmech.coord_check`, the
``CoordinateSizes`` probe)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..systems.networks import Dense

COORD_LAYERS = (nn.Linear, Dense, nn.Embedding, nn.LayerNorm)


@contextmanager
def coordinate_sizes(model: nn.Module, first: dict[str, torch.Tensor]) -> Iterator[dict[str, tuple[float, float]]]:
    """Record the output ``h`` of every ``nn.Linear``, lmech ``Dense``, ``nn.Embedding`` and ``nn.LayerNorm`` module
    of ``model`` during the forward passes inside the ``with`` block (the last call of each module counts; a module
    never called, e.g. an embedding read through its ``.weight``, is absent). On exit the yielded dict holds
    ``(mean |h|, mean |h - h_0|)`` per module name, with ``h_0`` taken from ``first``, where a module's first recorded
    output is stored (so ``first`` carries the reference from one measurement to the next)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.detach()))
             for n, m in model.named_modules() if isinstance(m, COORD_LAYERS)]
    sizes: dict[str, tuple[float, float]] = {}
    try:
        yield sizes
    finally:
        for h in hooks:
            h.remove()
    for name, h in seen.items():
        h0 = first.setdefault(name, h)
        sizes[name] = (float(h.abs().mean()), float((h - h0).abs().mean()))

"""Sharpness: the top Hessian eigenvalues of a loss, by Lanczos on Hessian-vector products."""
from __future__ import annotations

import torch
from torch import nn

from ._lanczos import EigenResult, lanczos_top
from ._params import LossFn
from .hessian import HessianOperator


def sharpness(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, k: int = 1, *,
              tol: float = 1e-3, max_matvecs: int = 200, warm_start: EigenResult | torch.Tensor | None = None,
              seed: int = 0) -> EigenResult:
    """Top-``k`` eigenvalues of the Hessian of ``loss_fn(model(x), y)``, descending, with eigenvectors.

    ``S = lambda_max(H)`` is the sharpness of Cohen et al. (2021, arXiv:2103.00065): GD with step
    ``eta`` is linearly stable along the top direction iff ``S < 2 / eta``. Lanczos with full
    reorthogonalization stops when each pair's relative residual ``||H u - lambda u|| / |lambda|``
    is at most ``tol`` (which bounds the relative eigenvalue error) or after ``max_matvecs``
    Hessian-vector products; the result reports residuals, the product count and ``converged``.
    ``warm_start`` (a previous result or vectors) starts Lanczos from the previous eigenvectors,
    which makes tracking along a trajectory cheap; see :class:`SharpnessTracker`.
    """
    op = HessianOperator(model, loss_fn, x, y)
    v0 = warm_start.vectors if isinstance(warm_start, EigenResult) else warm_start
    gen = torch.Generator().manual_seed(seed)
    return lanczos_top(op.matvec, op.dim, k, v0=v0, tol=tol, max_matvecs=max_matvecs, dtype=op.dtype,
                       device=op.device, generator=gen)


class SharpnessTracker:
    """Warm-started :func:`sharpness` along a training run; counts Hessian-vector products per call.

    >>> tracker = SharpnessTracker(k=1)
    >>> for step in range(steps):
    ...     if step % 10 == 0:
    ...         s = float(tracker(model, loss_fn, x, y))
    """

    def __init__(self, k: int = 1, *, tol: float = 1e-3, max_matvecs: int = 200, seed: int = 0) -> None:
        self.k, self.tol, self.max_matvecs, self.seed = k, tol, max_matvecs, seed
        self.last: EigenResult | None = None
        self.calls = 0
        self.matvecs = 0

    def __call__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> EigenResult:
        result = sharpness(model, loss_fn, x, y, self.k, tol=self.tol, max_matvecs=self.max_matvecs,
                           warm_start=self.last, seed=self.seed)
        self.last = result
        self.calls += 1
        self.matvecs += result.matvecs
        return result

    @property
    def matvecs_per_call(self) -> float:
        return self.matvecs / max(self.calls, 1)

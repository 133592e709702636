"""Sharpness: the top Hessian eigenvalues of a loss, by Lanczos on Hessian-vector products."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ._lanczos import EigenResult, lanczos_top
from ._params import LossFn
from .hessian import HessianOperator
from .preconditioner import preconditioner_diagonal


def sharpness(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, k: int = 1, *,
              tol: float = 1e-3, max_matvecs: int = 200, warm_start: EigenResult | torch.Tensor | None = None,
              seed: int = 0, optimizer: torch.optim.Optimizer | None = None,
              params: Sequence[str] | None = None) -> EigenResult:
    """Top-``k`` eigenvalues of the Hessian of ``loss_fn(model(x), y)``, descending, with eigenvectors.

    ``S = lambda_max(H)`` is the sharpness of Cohen et al. (2021, arXiv:2103.00065): GD with step
    ``eta`` is linearly stable along the top direction iff ``S < 2 / eta``. Lanczos with full
    reorthogonalization (:func:`~lmech.observables._lanczos.lanczos_top`) stops when each pair's
    estimated relative eigenvalue error is at most ``tol``, or after ``max_matvecs`` Hessian-vector
    products. The estimate is the Kato-Temple bound ``r^2 / gap`` (``r = ||H u - lambda u||``, the gap
    to the next Ritz value less that value's residual) where it is smaller than ``r``, else ``r``; it
    bounds the error unless Lanczos has missed an eigenvalue (see the ``_lanczos`` module docstring).
    ``values`` are lower bounds of the top eigenvalues (in exact arithmetic); the result also reports
    ``residuals`` (some eigenvalue lies within each), ``errors``, the product count and ``converged``.
    ``warm_start`` starts from a previous result's eigenvectors and its guard vector
    (:attr:`EigenResult.warm_block`, ``k + 1`` products up front) or from given vectors (rows of a
    tensor; fewer than ``k + 1`` rows carry no guard and use the residual bound ``r`` as the estimate).
    Tracking along a trajectory this way is cheap; see :class:`SharpnessTracker`.

    ``optimizer`` (Adam, AdamW, RMSprop or SGD, after at least one step) gives the *preconditioned*
    sharpness ``lambda_max(P^-1 H)``, computed as the top eigenvalue of the symmetric ``P^-1/2 H P^-1/2``
    with ``P`` read from the optimizer's state (:func:`preconditioner_diagonal`); its stability threshold
    is :func:`lmech.theory.stability_threshold` (38/eta for Adam at beta1 = 0.9; Cohen et al. 2022,
    arXiv:2207.14484). Eigenvectors are then those of ``P^-1/2 H P^-1/2``. ``params`` (parameter names)
    restricts ``H`` to its diagonal block for those parameters, e.g. one layer's (:func:`layer_blocks`).
    """
    op = HessianOperator(model, loss_fn, x, y, params=params)
    matvec = op.matvec
    if optimizer is not None:
        scale = preconditioner_diagonal(optimizer, model, op.flat).rsqrt()

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return scale * op.matvec(scale * v)
    return top_eigenpairs(matvec, op, k, tol=tol, max_matvecs=max_matvecs, warm_start=warm_start, seed=seed)


def top_eigenpairs(matvec: Callable[[torch.Tensor], torch.Tensor], op: HessianOperator, k: int, *, tol: float = 1e-3,
                   max_matvecs: int = 200, warm_start: EigenResult | torch.Tensor | None = None,
                   seed: int = 0) -> EigenResult:
    """:func:`sharpness`'s Lanczos on ``matvec`` (``op``'s products, possibly preconditioned) over ``op``'s
    parameters: the same start, warm start and limits wherever the operator comes from."""
    v0 = warm_start.warm_block if isinstance(warm_start, EigenResult) else warm_start
    return lanczos_top(matvec, op.dim, k, v0=v0, tol=tol, max_matvecs=max_matvecs, dtype=op.dtype,
                       device=op.device, generator=torch.Generator().manual_seed(seed))


def layer_blocks(model: nn.Module) -> dict[str, list[str]]:
    """Trainable parameter names grouped by the module that owns them (``{"layers.0": ["layers.0.weight",
    "layers.0.bias"], ...}``): the per-layer diagonal Hessian blocks for ``sharpness(..., params=block)``."""
    blocks: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            blocks.setdefault(name.rpartition(".")[0], []).append(name)
    return blocks


class SharpnessTracker:
    """Warm-started :func:`sharpness` along a training run; counts Hessian-vector products per call.

    Each call starts from the previous call's top-``k`` Ritz vectors and guard vector, so a call
    costs at least ``k + 1`` products and usually a few more.

    >>> tracker = SharpnessTracker(k=1)
    >>> for step in range(steps):
    ...     if step % 10 == 0:
    ...         s = float(tracker(model, loss_fn, x, y))
    """

    def __init__(self, k: int = 1, *, tol: float = 1e-3, max_matvecs: int = 200, seed: int = 0,
                 params: Sequence[str] | None = None) -> None:
        self.k, self.tol, self.max_matvecs, self.seed, self.params = k, tol, max_matvecs, seed, params
        self.last: EigenResult | None = None
        self.calls = 0
        self.matvecs = 0

    def __call__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 optimizer: torch.optim.Optimizer | None = None) -> EigenResult:
        """:func:`sharpness` warm-started from the previous call (preconditioned by ``optimizer`` if given)."""
        result = sharpness(model, loss_fn, x, y, self.k, tol=self.tol, max_matvecs=self.max_matvecs,
                           warm_start=self.last, seed=self.seed, optimizer=optimizer, params=self.params)
        self.last = result
        self.calls += 1
        self.matvecs += result.matvecs
        return result

    @property
    def matvecs_per_call(self) -> float:
        return self.matvecs / max(self.calls, 1)

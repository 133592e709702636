"""Hessian-vector products of a loss with respect to a model's parameters, with a matvec counter.

Forward-over-reverse products need forward-mode AD through the loss's backward formula, which PyTorch lacks for
some standard losses (``nn.HuberLoss``: "Trying to use forward AD with huber_loss_backward"; ``nn.MSELoss`` with
mean reduction: "ZeroTensors are immutable", torch 2.x). Every forward-over-reverse path here falls back to
reverse-over-reverse, which needs only double backward, when forward AD is missing.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import grad, jvp

from ._params import FlatParams, LossFn, loss_of_params

_FORWARD_AD_MESSAGES = ("forward AD", "forward-mode", "ZeroTensors are immutable")


def _forward_ad_missing(exc: Exception) -> bool:
    """Whether ``exc`` says that forward-mode AD is not available for an operation (not a genuine error)."""
    return isinstance(exc, NotImplementedError) or any(m in str(exc) for m in _FORWARD_AD_MESSAGES)


def hvp_rows(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Rows ``H v`` of the Hessian of ``loss`` at ``theta`` for each row ``v`` of ``vectors``: reverse-over-reverse
    through one gradient graph built at ``theta`` (:class:`HessianOperator`), one backward pass per row. For 33 rows
    on 1000 examples this took 0.5-0.6x the time of ``vmap`` of forward-over-reverse ``jvp(grad L)`` in chunks of 8 on
    MLPs (3k and 79k parameters), a 1-D CNN and an MSE MLP (bench/README.md, issue 18), and needs no forward-mode
    derivative of the loss."""
    if not len(vectors):
        return vectors.new_zeros(0, theta.numel())
    op = HessianOperator.at(loss, theta)
    return torch.stack([op.matvec(v) for v in vectors])


class HessianOperator:
    """The Hessian ``H = d^2 L / d theta^2`` of ``loss_fn(model(x), y)`` as a linear operator on flat vectors.

    Products ``H v`` (Pearlmutter 1994) are computed reverse-over-reverse through a gradient graph built once and
    reused (``method="rev-rev"``, the default: cheaper per product when many products are taken at one point), or
    forward-over-reverse, ``jvp(grad(L), (theta,), (v,))`` (``"fwd-rev"``; where the loss has no forward-mode
    derivative the operator switches to ``"rev-rev"`` and says so in :attr:`method`).
    ``matvecs`` counts products. ``params`` (parameter names) restricts ``theta`` to those parameters:
    the Hessian's diagonal block for, e.g., one layer (the others held fixed).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 method: str = "rev-rev", params: Sequence[str] | None = None) -> None:
        self.flat = FlatParams(model, params)
        self._setup(loss_of_params(model, loss_fn, x, y, self.flat), self.flat.vector, method)

    @classmethod
    def at(cls, loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
           method: str = "rev-rev") -> "HessianOperator":
        """The Hessian of ``loss``, a function of flat parameters, at ``theta`` (``flat`` is then ``None``)."""
        op = cls.__new__(cls)
        op.flat = None
        op._setup(loss, theta, method)
        return op

    def _setup(self, loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor, method: str) -> None:
        if method not in ("rev-rev", "fwd-rev"):
            raise ValueError(f"method={method!r} is not supported; allowed values: 'rev-rev', 'fwd-rev'")
        self.method = method
        self.matvecs = 0
        self._loss, self._point = loss, theta
        self._theta = theta.clone().requires_grad_(True)
        self._grad: torch.Tensor | None = None
        self._value: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self._point.numel()

    @property
    def dtype(self) -> torch.dtype:
        return self._point.dtype

    @property
    def device(self) -> torch.device:
        return self._point.device

    def gradient_graph(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(theta, L(theta), grad L(theta))`` with the gradient's graph kept: built once, then shared by every
        reverse-over-reverse product and by higher derivatives taken at this point (e.g. the central flow's
        sharpness gradient)."""
        if self._grad is None:
            with torch.enable_grad():
                self._value = self._loss(self._theta)
                self._grad = torch.autograd.grad(self._value, self._theta, create_graph=True)[0]
        return self._theta, self._value, self._grad

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.matvecs += 1
        if self.method == "fwd-rev":
            try:
                return jvp(grad(self._loss), (self._point,), (v,))[1]
            except (NotImplementedError, RuntimeError) as exc:
                if not _forward_ad_missing(exc):
                    raise
                self.method = "rev-rev"
        theta, _, gradient = self.gradient_graph()
        return torch.autograd.grad(gradient, theta, v, retain_graph=True)[0]

    def dense(self) -> torch.Tensor:
        """The explicit ``P x P`` Hessian, as the products with the identity's rows (:func:`hvp_rows`); for small
        models and tests only. (``torch.func.hessian`` is not used: on ``nn.TransformerEncoderLayer`` it returned an
        asymmetric matrix 0.2 off the finite-difference Hessian, torch 2.13, while ``hvp_rows`` agreed to 1e-10.)"""
        return hvp_rows(self._loss, self._point, torch.eye(self.dim, dtype=self.dtype, device=self.device))


def hvp(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One Hessian-vector product ``H v`` for a flat vector ``v`` (forward-over-reverse, or reverse-over-reverse
    where the loss has no forward-mode derivative)."""
    return HessianOperator(model, loss_fn, x, y, method="fwd-rev").matvec(v)

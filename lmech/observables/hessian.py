"""Hessian-vector products of a loss with respect to a model's parameters, with a matvec counter."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.func import grad, jvp

from ._params import FlatParams, LossFn, loss_of_params


class HessianOperator:
    """The Hessian ``H = d^2 L / d theta^2`` of ``loss_fn(model(x), y)`` as a linear operator on flat vectors.

    Products ``H v`` (Pearlmutter 1994) are computed forward-over-reverse,
    ``jvp(grad(L), (theta,), (v,))``, or reverse-over-reverse through a gradient graph built once
    and reused (``method="rev-rev"``, cheaper per product when many products are taken at one point).
    ``matvecs`` counts products. ``params`` (parameter names) restricts ``theta`` to those parameters:
    the Hessian's diagonal block for, e.g., one layer (the others held fixed).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 method: str = "rev-rev", params: Sequence[str] | None = None) -> None:
        if method not in ("rev-rev", "fwd-rev"):
            raise ValueError(f"method={method!r} is not supported; allowed values: 'rev-rev', 'fwd-rev'")
        self.flat = FlatParams(model, params)
        self.method = method
        self.matvecs = 0
        self._loss = loss_of_params(model, loss_fn, x, y, self.flat)
        self._theta = self.flat.vector.clone().requires_grad_(method == "rev-rev")
        self._grad: torch.Tensor | None = None

    @property
    def dim(self) -> int:
        return self.flat.dim

    @property
    def dtype(self) -> torch.dtype:
        return self.flat.vector.dtype

    @property
    def device(self) -> torch.device:
        return self.flat.vector.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        self.matvecs += 1
        if self.method == "fwd-rev":
            return jvp(grad(self._loss), (self.flat.vector,), (v,))[1]
        if self._grad is None:
            with torch.enable_grad():
                self._grad = torch.autograd.grad(self._loss(self._theta), self._theta, create_graph=True)[0]
        return torch.autograd.grad(self._grad, self._theta, v, retain_graph=True)[0]

    def dense(self) -> torch.Tensor:
        """The explicit ``P x P`` Hessian (``torch.func.hessian``); for small models and tests only."""
        return torch.func.hessian(self._loss)(self.flat.vector)


def hvp(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """One Hessian-vector product ``H v`` for a flat vector ``v`` (forward-over-reverse)."""
    return HessianOperator(model, loss_fn, x, y, method="fwd-rev").matvec(v)

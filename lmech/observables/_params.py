"""Flat views of a module's trainable parameters, and the loss as a function of them (torch.func)."""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlatParams:
    """Names, shapes and a flat copy of the trainable parameters of ``model``.

    ``unflatten(theta)`` maps a flat vector back to a ``{name: tensor}`` dict of views, so that
    ``torch.func`` transforms can differentiate the loss with respect to one flat vector.
    ``names`` restricts the vector to those parameters (a diagonal block of the Hessian, e.g. one
    layer); the others stay fixed at their values in ``model``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str] | None = None) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("model has no trainable parameters (requires_grad=True); nothing to differentiate")
        if names is not None:
            if isinstance(names, str):
                names = [names]
            unknown = sorted(set(names) - {n for n, _ in named})
            if unknown or not names:
                raise ValueError(f"params={list(names)!r}: {unknown or 'empty'} not trainable parameters of the model; "
                                 f"choose from {[n for n, _ in named]}")
            named = [(n, p) for n, p in named if n in set(names)]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.vector = torch.cat([p.detach().reshape(-1) for _, p in named])

    @property
    def dim(self) -> int:
        return self.vector.numel()

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, theta.split(self.sizes), self.shapes)}


def loss_of_params(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                   flat: FlatParams) -> Callable[[torch.Tensor], torch.Tensor]:
    """``theta -> loss_fn(model(x; theta), y)`` for a flat parameter vector (buffers as in ``model``).

    Attention runs on PyTorch's math kernel (``scaled_dot_product_attention``'s fused CPU and GPU kernels have
    no second derivative, so Hessian products through ``nn.TransformerEncoderLayer`` would fail otherwise)."""
    buffers = dict(model.named_buffers())

    def loss(theta: torch.Tensor) -> torch.Tensor:
        with sdpa_kernel(SDPBackend.MATH):
            return loss_fn(functional_call(model, {**flat.unflatten(theta), **buffers}, (x,)), y)

    return loss

"""Loss, accuracy and gradient norm of any model on any data."""
from __future__ import annotations

import torch
from torch import nn

from ._params import LossFn


@torch.no_grad()
def loss(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> float:
    """``loss_fn(model(x), y)`` as a float, without building a graph."""
    return float(loss_fn(model(x), y))


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max output equals the integer label (or the arg-max of a one-hot row)."""
    if labels.ndim > 1:
        labels = labels.argmax(dim=1)
    return float((model(x).argmax(dim=1) == labels).double().mean())


def gradient_norm(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Euclidean norm ``||grad_theta L||`` over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))

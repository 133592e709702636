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
    return output_accuracy(model(x), labels)


@torch.no_grad()
def output_accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    """:func:`accuracy` of given outputs."""
    if labels.ndim > 1:
        labels = labels.argmax(dim=1)
    return float((outputs.argmax(dim=1) == labels).double().mean())


def gradient_norm(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> float:
    """Euclidean norm ``||grad_theta L||`` over all trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(model(x), y), params)
    return norm_of(grads)


def norm_of(grads: list[torch.Tensor]) -> float:
    """``sqrt(sum ||g||^2)`` over a list of tensors (:func:`gradient_norm`'s reduction)."""
    return float(torch.sqrt(sum(g.pow(2).sum() for g in grads)))

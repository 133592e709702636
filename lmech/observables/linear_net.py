"""Observables of linear networks: the end-to-end map and its singular values."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def end_to_end_map(model: nn.Module, input_dim: int) -> torch.Tensor:
    """The matrix ``W`` with ``model(x) = W x + model(0)`` for a linear (affine) ``model``.

    Read off by applying the model to the identity, so it works for any linear module.
    """
    p = next(model.parameters())
    eye = torch.eye(input_dim, dtype=p.dtype, device=p.device)
    zero = torch.zeros(1, input_dim, dtype=p.dtype, device=p.device)
    return (model(eye) - model(zero)).T


def end_to_end_singular_values(model: nn.Module, input_dim: int) -> torch.Tensor:
    """Singular values (descending) of the end-to-end map; for whitened inputs these are the mode strengths
    of Saxe et al. (2014, arXiv:1312.6120)."""
    return torch.linalg.svdvals(end_to_end_map(model, input_dim))

"""Conserved quantities of gradient flow from the symmetries of a network (Noether's theorem for training).

Kunin et al. (2021, arXiv:2012.04728); Du, Hu & Lee (2018, arXiv:1806.00900). Under gradient flow
these are constant; one GD step of size ``eta`` changes them by ``O(eta^2)``.
"""
from __future__ import annotations

import torch
from torch import nn


def linear_layers(model: nn.Module) -> list[nn.Module]:
    """Modules with a 2-D ``weight`` (``nn.Linear``, lmech's ``Dense``) in registration order: the chain
    ``W_1, ..., W_L`` of an MLP or a linear network."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor) and m.weight.ndim == 2]
    if len(layers) < 2:
        raise ValueError(f"model has {len(layers)} linear layer(s); conservation laws need a chain of at least 2")
    return layers


@torch.no_grad()
def balancedness(model: nn.Module) -> list[torch.Tensor]:
    """``D_l = W_{l+1}^T W_{l+1} - W_l W_l^T`` for consecutive layers of a linear network.

    Invariant under gradient flow on ``f = W_L ... W_1 x`` (Arora et al. 2018; Du et al. 2018), because
    ``W_l -> A W_l, W_{l+1} -> W_{l+1} A^{-1}`` leaves the function unchanged.
    """
    ws = [m.weight for m in linear_layers(model)]
    return [w2.T @ w2 - w1 @ w1.T for w1, w2 in zip(ws[:-1], ws[1:])]


@torch.no_grad()
def neuron_balance(model: nn.Module) -> list[torch.Tensor]:
    """Per hidden unit ``j``: ``Q_j = ||w_in_j||^2 + b_j^2 - ||w_out_j||^2``, one vector per hidden layer.

    Invariant under gradient flow when the activation is positively homogeneous (ReLU, leaky ReLU,
    linear): rescaling a unit's incoming weights and bias by ``c > 0`` and its outgoing weights by
    ``1/c`` leaves the function unchanged. One GD step changes ``Q_j`` by exactly
    ``eta^2 (||g_in_j||^2 - ||g_out_j||^2)``.
    """
    layers = linear_layers(model)
    out = []
    for inner, outer in zip(layers[:-1], layers[1:]):
        q = inner.weight.pow(2).sum(dim=1) - outer.weight.pow(2).sum(dim=0)
        if getattr(inner, "bias", None) is not None:
            q = q + inner.bias.pow(2)
        out.append(q)
    return out


def relative_drift(current: list[torch.Tensor], initial: list[torch.Tensor]) -> float:
    """``sqrt(sum_l ||C_l - C_l(0)||^2) / sqrt(sum_l ||C_l(0)||^2)`` over a list of conserved tensors."""
    num = sum(float((c - c0).pow(2).sum()) for c, c0 in zip(current, initial))
    den = sum(float(c0.pow(2).sum()) for c0 in initial)
    if den == 0.0:
        raise ValueError("the conserved quantities are zero at the reference point (balanced init); relative drift is undefined")
    return (num / den) ** 0.5

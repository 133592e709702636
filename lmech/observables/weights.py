"""How far the weights have moved: distance from init and relative change per parameter tensor."""
from __future__ import annotations

import torch
from torch import nn


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the trainable parameters, to compare against later."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def weight_change(model: nn.Module, init: dict[str, torch.Tensor]) -> dict[str, float]:
    """Distance from init ``||theta - theta_0||`` and, per tensor, ``||W - W_0||_F / ||W_0||_F``.

    Keys: ``"distance"``, ``"relative"`` (whole vector), and ``"relative/<name>"`` per tensor
    (``nan`` for a tensor that started at zero, such as a zero-initialized bias).
    The relative change is the laziness diagnostic: it vanishes as width^-1/2 in the NTK limit
    (Jacot et al. 2018; Lee et al. 2019, arXiv:1902.06720).
    """
    out: dict[str, float] = {}
    total_diff = total_init = 0.0
    for name, p in model.named_parameters():
        if name not in init:
            continue
        diff = float((p - init[name]).pow(2).sum())
        base = float(init[name].pow(2).sum())
        total_diff += diff
        total_init += base
        out[f"relative/{name}"] = (diff / base) ** 0.5 if base > 0 else float("nan")
    out["distance"] = total_diff ** 0.5
    out["relative"] = (total_diff / total_init) ** 0.5 if total_init > 0 else float("nan")
    return out

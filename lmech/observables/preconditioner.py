"""The diagonal preconditioner ``P`` of an adaptive optimizer, read from its state, as a flat vector.

An adaptive step is ``theta -= eta P^-1 m`` with ``m`` the (EMA or heavy-ball) gradient; its linear stability
is set by ``lambda_max(P^-1 H)`` (Cohen et al. 2022, arXiv:2207.14484), the top eigenvalue of the symmetric
``P^-1/2 H P^-1/2``. PyTorch conventions, with ``t`` the optimizer's step count:

- ``Adam``/``AdamW``: ``theta -= eta m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - beta1^t)``, so
  ``P = (1 - beta1^t) (sqrt(v / (1 - beta2^t)) + eps)`` (``v`` is ``max_exp_avg_sq`` under amsgrad);
- ``RMSprop``: ``P = sqrt(v) + eps`` (``v - g_avg^2`` when centered);
- ``SGD``: ``P = I``.
"""
from __future__ import annotations

import torch
from torch import nn

from ._params import FlatParams


def _param_names(model: nn.Module) -> dict[int, str]:
    return {id(p): n for n, p in model.named_parameters()}


def _adam_diagonal(state: dict, group: dict) -> torch.Tensor:
    beta1, beta2 = group["betas"]
    t = float(state["step"])
    v = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
    return (1 - beta1 ** t) * ((v / (1 - beta2 ** t)).sqrt() + group["eps"])


def _rmsprop_diagonal(state: dict, group: dict) -> torch.Tensor:
    v = state["square_avg"]
    if group.get("centered"):
        v = v - state["grad_avg"] ** 2
    return v.sqrt() + group["eps"]


_DIAGONALS = {torch.optim.Adam: _adam_diagonal, torch.optim.AdamW: _adam_diagonal,
              torch.optim.RMSprop: _rmsprop_diagonal}


def preconditioner_diagonal(optimizer: torch.optim.Optimizer, model: nn.Module,
                            flat: FlatParams | None = None) -> torch.Tensor:
    """The diagonal of ``P`` for the parameters of ``flat`` (default: all trainable parameters of ``model``),
    in the order of the flat parameter vector; ones for ``torch.optim.SGD``.

    Raises ``ValueError`` for an optimizer type without a known preconditioner, an optimizer that has not
    taken a step yet (its state is empty), or parameters the optimizer does not update.
    """
    flat = flat or FlatParams(model)
    if type(optimizer) is torch.optim.SGD:
        return torch.ones_like(flat.vector)
    diagonal = _DIAGONALS.get(type(optimizer))
    if diagonal is None:
        known = ", ".join(c.__name__ for c in (torch.optim.SGD, *_DIAGONALS))
        raise ValueError(f"optimizer={type(optimizer).__name__}: no known diagonal preconditioner; supported: {known}")
    names = _param_names(model)
    found: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            if id(p) in names and p in optimizer.state and optimizer.state[p]:
                found[names[id(p)]] = diagonal(optimizer.state[p], group).detach()
    missing = [n for n in flat.names if n not in found]
    if missing:
        raise ValueError(f"optimizer has no state for parameter(s) {missing}: take at least one optimizer step first, "
                         "and build the optimizer on this model's parameters")
    return torch.cat([found[n].reshape(-1).to(flat.vector) for n in flat.names])

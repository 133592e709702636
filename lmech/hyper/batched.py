"""Batched training: many models of one shape trained together, one vmapped gradient per step for all of them.

The models' parameters are stacked (``torch.func.stack_module_state``) and one ``vmap(grad)`` over the model axis
gives every model's gradient on the same batch, so a sweep over learning rates or seeds of small models pays one
set of large matrix products per step instead of many small ones. The updates reproduce ``torch.optim.SGD`` and
``torch.optim.Adam`` (PyTorch's formulas, per model learning rate), so a batched run equals the sequential one
to rounding.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from ..engine.trainer import _batches
from ..observables._params import LossFn


@dataclass
class StackedRun:
    """``loss[t, i]``: model ``i``'s full-batch training loss after ``steps[t]`` updates (NaN once it diverged)."""

    steps: np.ndarray
    loss: np.ndarray


def _per_model(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return values.view(-1, *([1] * (like.dim() - 1)))


def train_stacked(models: Sequence[nn.Module], loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                  lr: float | Sequence[float], steps: int, optimizer: str = "sgd", momentum: float = 0.0,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, batch_size: int | None = None,
                  seed: int = 0, record_every: int = 1) -> StackedRun:
    """Train ``models`` (same architecture, any init) together for ``steps`` updates on ``(x, y)``; their parameters
    are written back in place. ``lr`` is one value or one per model; ``optimizer`` is ``"sgd"`` (heavy-ball
    ``momentum`` as ``torch.optim.SGD``) or ``"adam"`` (as ``torch.optim.Adam``). Minibatches of ``batch_size``
    follow lmech's engine (the same order for a ``seed``, shared by all models; ``None`` is full batch)."""
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer={optimizer!r} is not supported; allowed values: 'sgd', 'adam'")
    if not models:
        raise ValueError("models is empty")
    shapes = {tuple((n, p.shape) for n, p in m.named_parameters()) for m in models}
    if len(shapes) > 1:
        raise ValueError("models must share one architecture (parameter names and shapes); train mixed shapes "
                         "sequentially")
    params, buffers = stack_module_state(list(models))
    params = {n: p.detach().clone() for n, p in params.items()}
    template = copy.deepcopy(models[0]).to("meta")
    rates = torch.as_tensor(np.broadcast_to(np.asarray(lr, float), (len(models),)).copy(), dtype=x.dtype)

    def loss_one(p: dict, b: dict, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(template, (p, b), (xb,)), yb)

    grads_and_losses = vmap(grad_and_value(loss_one), in_dims=(0, 0, None, None))
    full_loss = vmap(loss_one, in_dims=(0, 0, None, None))
    state = {n: [torch.zeros_like(p), torch.zeros_like(p)] for n, p in params.items()}
    next_batch = _batches(len(x), batch_size, seed)
    recorded, losses = [], []
    with torch.no_grad():
        for step in range(steps + 1):
            if step % record_every == 0 or step == steps:
                recorded.append(step)
                losses.append(full_loss(params, buffers, x, y).double().cpu().numpy())
            if step == steps:
                break
            idx = next_batch()
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            with torch.enable_grad():
                grads, _ = grads_and_losses(params, buffers, xb, yb)
            for n, p in params.items():
                g, (m, v) = grads[n], state[n]
                rate = _per_model(rates, p)
                if optimizer == "sgd":
                    if momentum:
                        m.copy_(g if step == 0 else momentum * m + g)
                        g = m
                    p -= rate * g
                else:  # torch.optim.Adam: m_hat / (sqrt(v_hat) + eps)
                    m.mul_(betas[0]).add_(g, alpha=1 - betas[0])
                    v.mul_(betas[1]).addcmul_(g, g, value=1 - betas[1])
                    denom = (v.sqrt() / (1 - betas[1] ** (step + 1)) ** 0.5).add_(eps)
                    p -= (rate / (1 - betas[0] ** (step + 1))) * m / denom
        for i, model in enumerate(models):
            for n, p in model.named_parameters():
                p.copy_(params[n][i])
    return StackedRun(np.array(recorded), np.array(losses))

"""Linear-stability thresholds on the sharpness for common optimizers (PyTorch conventions): what the sharpness
probes and the instability monitor compare with (re-exported by :mod:`lmech.theory`).

On a quadratic with curvature ``S`` the iteration is stable iff ``S`` is below the threshold:

- gradient descent ``theta -= eta g``: ``S < 2/eta`` (Cohen et al. 2021, arXiv:2103.00065);
- heavy ball ``v = beta v + g; theta -= eta v``: ``S < (2 + 2 beta)/eta``
  (from the 2x2 companion matrix; Cohen et al. 2021, App.);
- Nesterov ``v = beta v + g; theta -= eta (g + beta v)``: ``S < (2 + 2 beta) / ((1 + 2 beta) eta)``;
- Adam with frozen preconditioner ``P`` and EMA ``m = beta1 m + (1-beta1) g``: ``lambda_max(P^-1 H)
  < (2 + 2 beta1) / ((1 - beta1) eta)``, i.e. 38/eta at beta1 = 0.9 (Cohen et al. 2022, arXiv:2207.14484).
"""
from __future__ import annotations

import torch


def _check_lr(lr: float) -> None:
    if not lr > 0:
        raise ValueError(f"lr={lr} must be > 0")


def gd_threshold(lr: float) -> float:
    """``2 / eta``."""
    _check_lr(lr)
    return 2.0 / lr


def heavy_ball_threshold(lr: float, beta: float) -> float:
    """``(2 + 2 beta) / eta``."""
    _check_lr(lr)
    return (2.0 + 2.0 * beta) / lr


def adam_threshold(lr: float, beta1: float) -> float:
    """``(2 + 2 beta1) / ((1 - beta1) eta)`` for the preconditioned sharpness ``lambda_max(P^-1 H)``."""
    _check_lr(lr)
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


def stability_threshold(optimizer: torch.optim.Optimizer, group: int = 0) -> float:
    """The threshold on the (preconditioned) sharpness for ``optimizer``'s hyperparameters in param group ``group``.

    ``SGD``: :func:`gd_threshold`, or :func:`heavy_ball_threshold` with momentum (Nesterov:
    ``(2 + 2 beta) / ((1 + 2 beta) eta)``); ``Adam``/``AdamW``: :func:`adam_threshold` on ``lambda_max(P^-1 H)``;
    ``RMSprop``: ``2/eta``, or the heavy-ball threshold with momentum, on ``lambda_max(P^-1 H)``.
    Pair it with ``lmech.sharpness(..., optimizer=optimizer)``. Weight decay is ignored.
    """
    g = optimizer.param_groups[group]
    lr = float(g["lr"])
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return adam_threshold(lr, g["betas"][0])
    if isinstance(optimizer, (torch.optim.SGD, torch.optim.RMSprop)):
        beta = float(g.get("momentum", 0.0))
        if g.get("nesterov"):
            return (2.0 + 2.0 * beta) / ((1.0 + 2.0 * beta) * lr)
        return heavy_ball_threshold(lr, beta)
    raise ValueError(f"optimizer={type(optimizer).__name__}: no known stability threshold; "
                     "supported: SGD (with or without momentum), Adam, AdamW, RMSprop")

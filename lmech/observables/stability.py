"""Linear-stability thresholds on the sharpness for common optimizers (PyTorch conventions): what the sharpness
probes and the instability monitor compare with (re-exported by :mod:`lmech.theory`).

On a quadratic with curvature ``S`` the iteration is stable iff ``S`` is below the threshold:

- gradient descent ``theta -= eta g``: ``S < 2/eta`` (Cohen et al. 2021, arXiv:2103.00065);
- heavy ball ``v = beta v + g; theta -= eta v``: ``S < (2 + 2 beta)/eta``
  (from the 2x2 companion matrix; Cohen et al. 2021, App.);
- Nesterov ``v = beta v + g; theta -= eta (g + beta v)``: ``S < (2 + 2 beta) / ((1 + 2 beta) eta)``;
- Adam with frozen preconditioner ``P`` and EMA ``m = beta1 m + (1-beta1) g``: ``lambda_max(P^-1 H)
  < (2 + 2 beta1) / ((1 - beta1) eta)``, i.e. 38/eta at beta1 = 0.9 (Cohen et al. 2022, arXiv:2207.14484).

Above the GD threshold, :func:`catapult_time` forecasts when the loss has grown by a given factor.
"""
from __future__ import annotations

import math

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


def catapult_time(lr: float, sharpness: float, *, loss_fraction: float, factor: float = 10.0) -> float:
    """Steps until full-batch GD on MSE multiplies its loss by ``factor`` when ``eta lambda_0 > 2``: the top mode's
    residual grows as ``|1 - eta lambda_0|^t``, so the loss grows by ``(eta lambda_0 - 1)^2`` a step once that mode
    dominates, and ``t_F = ln(factor / p) / (2 ln(eta lambda_0 - 1))`` with ``p`` the initial share of the loss in
    that mode (``loss_fraction``; REFERENCE 2.19, derived; Lewkowycz et al. 2020, arXiv:2003.02218). The forecast of
    a catapult's (or a divergence's) loss peak from the first measurement of the sharpness."""
    _check_lr(lr)
    rate = lr * sharpness
    if not rate > 2:
        raise ValueError(f"lr * sharpness = {rate:.4g} <= 2: GD is stable along the top mode, the loss does not grow")
    if not 0 < loss_fraction <= 1:
        raise ValueError(f"loss_fraction={loss_fraction!r} must be the top mode's share of the loss, in (0, 1]")
    if not factor > loss_fraction:
        raise ValueError(f"factor={factor!r} must exceed loss_fraction={loss_fraction!r}")
    return math.log(factor / loss_fraction) / (2 * math.log(rate - 1))

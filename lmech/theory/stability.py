"""Stability of optimizers: the linear-stability thresholds (defined next to the sharpness they bound, in
:mod:`lmech.observables.stability`, re-exported here) and the catapult's loss-growth forecast."""
from __future__ import annotations

import math

from ..observables.stability import _check_lr, adam_threshold, gd_threshold, heavy_ball_threshold, stability_threshold

__all__ = ["adam_threshold", "gd_threshold", "heavy_ball_threshold", "stability_threshold", "catapult_time"]


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

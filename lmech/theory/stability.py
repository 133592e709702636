"""Linear-stability thresholds on the sharpness for common optimizers (PyTorch conventions).

On a quadratic with curvature ``S`` the iteration is stable iff ``S`` is below the threshold:

- gradient descent ``theta -= eta g``: ``S < 2/eta`` (Cohen et al. 2021, arXiv:2103.00065);
- heavy ball ``v = beta v + g; theta -= eta v``: ``S < (2 + 2 beta)/eta``
  (from the 2x2 companion matrix; Cohen et al. 2021, App.);
- Adam with frozen preconditioner ``P`` and EMA ``m = beta1 m + (1-beta1) g``: ``lambda_max(P^-1 H)
  < (2 + 2 beta1) / ((1 - beta1) eta)``, i.e. 38/eta at beta1 = 0.9 (Cohen et al. 2022, arXiv:2207.14484).
"""
from __future__ import annotations


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

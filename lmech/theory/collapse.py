"""Scaling collapse of compute-optimal loss curves (Qiu, Xiao, Wilson, Pennington & Agarwala 2025, arXiv:2507.02119).

A model of size ``p`` trained for its compute-optimal horizon ``t*(p) = c p^gamma`` has the normalized curve
``l(x) = (L(x t*) - L_hat) / (L(t*) - L_hat)``, ``x`` in ``[0, 1]``. When ``L - L_hat = p^-nu F(t / p^gamma)`` (a
separable power law ``L_0 + t^-mu + p^-nu`` has this form with ``gamma = nu / mu``), ``l`` does not depend on ``p``:
the curves collapse. The measurement: the collapse deviation ``Delta(x) = sd_{p, seed}[l] / mean[l]`` against the noise
floor ``sigma(x, p) = sd_seed[L - L_hat] / mean_seed[L - L_hat]`` of one size's curves ("supercollapse": ``Delta <
sigma``, seen under learning-rate decay).

The solvable model (``PowerLawFeatures``): gradient descent on the top ``p`` modes of a covariance ``lambda_i =
i^-spectrum`` with target power ``i^-source`` per mode has ``L = (sum_{i <= p} i^-source prod_s (1 - eta_s
lambda_i)^2 + sum_{i > p} i^-source) / 2`` (half squared error, from zero). In the continuum ``i = p u`` this is
``p^(1 - source) F(sum eta / p^spectrum)``: ``gamma = spectrum`` (Maloney, Roberts & Sully 2022, arXiv:2210.16859;
Paquette et al. 2024, arXiv:2405.15074; Bordelon, Atanasov & Pehlevan 2024, arXiv:2402.01092).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import zeta

from .linearized import eigenmode_descent_loss


def normalized_curves(loss: np.ndarray, irreducible: float = 0.0) -> np.ndarray:
    """``(L - L_hat) / (L_end - L_hat)`` along the last axis (losses at fractions ``x`` of each run's horizon, the
    last at ``x = 1``)."""
    reducible = np.asarray(loss, float) - irreducible
    return reducible / reducible[..., -1:]


@dataclass(frozen=True)
class Collapse:
    """Collapse statistics of losses ``(sizes, seeds, x)`` read at the same fractions ``x`` of each size's horizon.

    ``curves``: the normalized curves; ``deviation``: ``Delta(x)`` over every size and seed; ``noise_floor``:
    ``sigma(x, p)``, shape ``(sizes, x)``."""

    curves: np.ndarray
    deviation: np.ndarray
    noise_floor: np.ndarray


def collapse_statistics(loss: np.ndarray, irreducible: float = 0.0) -> Collapse:
    """The collapse deviation and the seed noise floor (Qiu et al. 2025, Sec. 3) of ``loss`` shaped ``(sizes, seeds,
    x)``; needs at least two seeds."""
    loss = np.asarray(loss, float)
    if loss.ndim != 3 or loss.shape[1] < 2:
        raise ValueError(f"loss must be shaped (sizes, seeds >= 2, x); got {loss.shape}")
    curves = normalized_curves(loss, irreducible)
    flat = curves.reshape(-1, curves.shape[-1])
    deviation = flat.std(axis=0, ddof=1) / flat.mean(axis=0)
    reducible = loss - irreducible
    noise_floor = reducible.std(axis=1, ddof=1) / reducible.mean(axis=1)
    return Collapse(curves, deviation, noise_floor)


def _powers(features: int, source: float) -> np.ndarray:
    return np.arange(1, features + 1) ** -float(source)


def power_law_features_loss(features: int, spectrum: float, source: float, learning_rates: np.ndarray,
                            at: np.ndarray, noise: float = 0.0) -> np.ndarray:
    """Population half squared error of gradient descent from zero on ``PowerLawFeatures(features)`` at steps
    ``at`` (``learning_rates[t - 1]`` the rate of step ``t``): mode ``i`` keeps the fraction ``prod_{s < t} (1 -
    eta_s lambda_i)^2`` of its power ``i^-source``; the unseen modes and the noise stay."""
    lam = np.arange(1, features + 1) ** -float(spectrum)
    seen = eigenmode_descent_loss(lam, _powers(features, source), learning_rates, at)
    return seen + 0.5 * (zeta(source, features + 1) + noise ** 2)


@dataclass(frozen=True)
class Horizons:
    """The compute-optimal horizons ``t*(p) = prefactor p^gamma`` fitted to the frontier ``(sizes, steps)``."""

    gamma: float
    prefactor: float
    frontier_sizes: np.ndarray
    frontier_steps: np.ndarray

    def steps(self, size: int) -> int:
        return int(round(self.prefactor * size ** self.gamma))


def compute_optimal_horizons(spectrum: float, source: float, lr: float, lr_mean: float = 1.0,
                             sizes: tuple[int, int] = (8, 2048), budgets: int = 40) -> Horizons:
    """The compute-optimal frontier of the power-law-features model: at each compute ``C = p t`` (``budgets``
    log-spaced values whose optimum falls in ``sizes``) the size minimizing the final loss, in the gradient-flow
    limit ``prod_s (1 - eta_s lambda)^2 ~ exp(-2 lambda lr lr_mean t)`` (``lr_mean`` the schedule's mean multiplier:
    1 constant, 1/2 linear or cosine decay); ``t*(p)`` fitted as a power law to the frontier."""
    lo, hi = sizes
    grid = np.unique(np.round(np.geomspace(max(2, lo // 4), hi * 4, 160)).astype(int))
    tails = zeta(source, grid + 1)
    rate = 2 * lr * lr_mean
    lam = np.arange(1, grid[-1] + 1) ** -float(spectrum)
    power = _powers(grid[-1], source)

    def best(compute: float) -> int:
        final = [power[:p] @ np.exp(-rate * compute / p * lam[:p]) + tail for p, tail in zip(grid, tails)]
        return int(grid[int(np.argmin(final))])

    # the budgets whose optimum is lo and hi: t*(p) ~ p^spectrum / rate, so C ~ p^(1 + spectrum) / rate
    budget = np.geomspace(lo ** (1 + spectrum) / rate, hi ** (1 + spectrum) / rate, budgets)
    optimal = np.array([best(c) for c in budget])
    steps = budget / optimal
    keep = (optimal >= lo) & (optimal <= hi)
    gamma, intercept = np.polyfit(np.log(optimal[keep]), np.log(steps[keep]), 1)
    return Horizons(float(gamma), float(np.exp(intercept)), optimal[keep], steps[keep])

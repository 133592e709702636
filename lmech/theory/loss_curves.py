"""Loss-curve laws: a power law in steps, and the multi-power law of learning-rate schedules.

- :func:`fit_loss_curve`: ``L(t) = E + A t^-alpha`` (or ``A t^-alpha`` without offset) through the approach-3 fit
  of :mod:`lmech.theory.scaling` (Huber on log loss from a grid of starts);
- :func:`fit_multi_power_law`: Luo et al. 2025 (arXiv:2503.12811, REFERENCE 2.14),
  ``L(t) = L0 + A (S_1(t) + S_W)^-alpha - LD(t)``, ``LD(t) = B sum_{k=1}^t (eta_{k-1} - eta_k) G(eta_k^-gamma S_k(t))``,
  ``G(x) = 1 - (C x + 1)^-beta``, ``S_k(t) = sum_{tau=k}^t eta_tau``, with ``S_W`` the warm-up's learning-rate area.
  The sum is O(T^2) over a run, so it is evaluated only at the logged steps and only over the steps where the learning
  rate changed (``eta_{k-1} != eta_k``): a constant schedule costs nothing, a step schedule a few terms per point.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from .scaling import ScalingFit, _batched_lm, _huber_terms, _ParamsAsAttributes, fit_scaling_law

MULTI_POWER_PARAMS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")
_POSITIVE = {"L0", "A", "B", "C"}  # fitted in log
_CHUNK = 4_000_000  # starts x logged points x rate changes evaluated at once (bounds the memory)


def fit_loss_curve(steps: Sequence[float], loss: Sequence[float], *, offset: bool = True, **fit_kwargs) -> ScalingFit:
    """A power law in steps, ``L(t) = E + A t^-alpha`` (``offset=False``: ``A t^-alpha``), fitted as
    :func:`fit_scaling_law` fits its ``power`` form (keywords passed on: ``huber_delta``, ``bootstrap``, ...);
    ``fit.predict(t)`` extrapolates the curve. Steps count from 1 (step 0 has no power law)."""
    steps = np.asarray(steps, float).ravel()
    if steps.size and np.nanmin(steps) < 1:
        raise ValueError("steps must count from 1 (a power law in t has no value at t = 0): drop the initial loss")
    return fit_scaling_law(steps, loss=loss, form="power" if offset else "power-no-offset", **fit_kwargs)


@dataclass(frozen=True)
class _Design:
    """One run's constants for the multi-power law at its logged steps: the total area ``S_1(t) + S_W``, the areas
    ``S_k(t)`` after each rate change ``k`` (zero where ``k > t``), ``log eta_k`` and the drops ``eta_{k-1} - eta_k``."""

    area: torch.Tensor  # (points,)
    after: torch.Tensor  # (points, changes)
    log_rate: torch.Tensor  # (changes,)
    drop: torch.Tensor  # (points, changes), zero where the change comes after the point


def _design(steps: np.ndarray, rates: np.ndarray, warmup: int) -> _Design:
    cumulative = np.concatenate([[0.0], np.cumsum(rates)])  # cumulative[t] = sum_{tau <= t} eta_tau
    previous = np.concatenate([[rates[warmup - 1] if warmup else rates[0]], rates[warmup:-1]])
    drops = previous - rates[warmup:]
    k = warmup + 1 + np.flatnonzero(drops != 0)  # 1-based steps where the rate changed after warm-up
    before = steps[:, None] >= k[None, :]
    after = np.where(before, cumulative[steps][:, None] - cumulative[k - 1][None, :], 0.0)
    as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    return _Design(as_t(cumulative[steps]), as_t(after), as_t(np.log(rates[k - 1])),
                   as_t(np.where(before, drops[k - warmup - 1][None, :], 0.0)))


def _multi_power_terms(theta: torch.Tensor, d: _Design) -> tuple[torch.Tensor, torch.Tensor]:
    """The multi-power loss of one run for every row of ``theta`` (starts, 7 internal parameters: logs of the
    positive ones) and its Jacobian (starts, points, 7), in closed form: with ``x = C eta_k^-gamma S_k``,
    ``G = 1 - (1 + x)^-beta`` and ``G' x = beta x (1 + x)^(-beta - 1)``, the derivatives in ``log C`` and ``gamma`` are
    ``-B sum drop G' x`` times ``1`` and ``-log eta_k``, in ``beta`` ``-B sum drop (1 + x)^-beta log(1 + x)``."""
    log_l0, log_a, alpha, log_b, log_c, beta, gamma = (theta[:, i, None] for i in range(7))
    log_area = torch.log(d.area)
    power = torch.exp(log_a - alpha * log_area)  # A (S_1 + S_W)^-alpha, (starts, points)
    x = torch.exp(log_c - gamma * d.log_rate)[:, None, :] * d.after  # (starts, points, changes)
    log1p = torch.log1p(x)
    rest = torch.exp(-beta[:, :, None] * log1p)  # (1 + x)^-beta
    scale = torch.exp(log_b)
    slope_x = (d.drop * beta[:, :, None] * x * rest / (1 + x))  # drop G'(x) x
    drop_g = (d.drop * (1 - rest)).sum(-1)
    loss = torch.exp(log_l0) + power - scale * drop_g
    jac = torch.stack([torch.exp(log_l0).expand_as(power), power, -power * log_area, -scale * drop_g,
                       -scale * slope_x.sum(-1), -scale * (d.drop * rest * log1p).sum(-1),
                       scale * (slope_x * d.log_rate).sum(-1)], dim=-1)
    return loss, jac


def _log_multi_power(theta: torch.Tensor, designs: Sequence[_Design]) -> tuple[torch.Tensor, torch.Tensor]:
    """Log of the multi-power loss at every logged point of every run, and its Jacobian, for every row of ``theta``."""
    parts = [_multi_power_terms(theta, d) for d in designs]
    loss = torch.cat([p[0] for p in parts], dim=1)
    return torch.log(loss), torch.cat([p[1] for p in parts], dim=1) / loss.unsqueeze(-1)


def _public(theta: Sequence[float]) -> dict[str, float]:
    return {k: float(np.exp(v) if k in _POSITIVE else v) for k, v in zip(MULTI_POWER_PARAMS, theta)}


def _internal(params: dict[str, float]) -> list[float]:
    return [float(np.log(params[k]) if k in _POSITIVE else params[k]) for k in MULTI_POWER_PARAMS]


def _curve(curve: Sequence, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate one ``(steps, loss, learning_rates[, warmup])`` run."""
    if len(curve) not in (3, 4):
        raise ValueError(f"curve {index}: give (steps, loss, learning_rates) or (steps, loss, learning_rates, warmup)")
    steps, loss, rates = (np.asarray(a, float).ravel() for a in curve[:3])
    warmup = int(curve[3]) if len(curve) == 4 else 0
    if len(steps) != len(loss):
        raise ValueError(f"curve {index}: steps and loss differ in length ({len(steps)} vs {len(loss)})")
    if not (np.all(np.isfinite(rates)) and np.all(rates > 0)):
        raise ValueError(f"curve {index}: learning_rates must be positive and finite (one per step, from step 1)")
    if not 0 <= warmup < len(rates):
        raise ValueError(f"curve {index}: warmup={warmup} must be in [0, {len(rates)}) steps")
    if not (np.all(steps == np.round(steps)) and np.all(steps >= 1) and np.all(steps <= len(rates))):
        raise ValueError(f"curve {index}: steps must be integers in [1, {len(rates)}] (learning_rates[t - 1] is the "
                         "rate of step t)")
    if not (np.all(np.isfinite(loss)) and np.all(loss > 0)):
        raise ValueError(f"curve {index}: loss must be positive and finite (the law is fitted on log loss)")
    return steps.astype(int), loss, rates, warmup


@dataclass(frozen=True)
class MultiPowerFit(_ParamsAsAttributes):
    """A fitted multi-power law: ``params`` (``L0, A, alpha, B, C, beta, gamma``; also attributes), the minimized
    Huber ``objective`` on log loss, ``residuals`` (``log L_hat - log L`` over the runs' points in order) and
    ``converged``."""

    params: dict[str, float]
    objective: float
    residuals: np.ndarray = field(repr=False)
    converged: bool
    starts: int
    iterations: int

    def predict(self, steps: Sequence[int], learning_rates: Sequence[float], warmup: int = 0) -> np.ndarray:
        """The law's loss after each of ``steps`` under the schedule ``learning_rates`` (one rate per step)."""
        return multi_power_loss(self.params, steps, learning_rates, warmup)


def multi_power_loss(params: dict[str, float], steps: Sequence[int], learning_rates: Sequence[float],
                     warmup: int = 0) -> np.ndarray:
    """Luo et al.'s multi-power law ``L(t)`` (module docstring) after each of ``steps`` (1-based) for the schedule
    ``learning_rates`` (``learning_rates[t - 1]`` is the rate of step ``t``; the first ``warmup`` steps are warm-up,
    whose area is ``S_W``)."""
    missing = [k for k in MULTI_POWER_PARAMS if k not in params]
    if missing:
        raise ValueError(f"params lacks {missing}; the multi-power law needs {list(MULTI_POWER_PARAMS)}")
    steps, _, rates, warmup = _curve((steps, np.ones(len(np.atleast_1d(steps))), learning_rates, warmup), 0)
    theta = torch.tensor(_internal(params), dtype=torch.float64)
    return np.exp(_log_multi_power(theta[None], [_design(steps, rates, warmup)])[0][0].numpy())


def fit_multi_power_law(curves: Sequence[Sequence], *, huber_delta: float = 1e-3, grid: np.ndarray | None = None,
                        max_iterations: int = 400, tol: float = 1e-7) -> MultiPowerFit:
    """Fit the multi-power law to one or more runs, each ``(steps, loss, learning_rates[, warmup])``: the logged steps
    (1-based), their losses and the whole schedule (one rate per step). Huber(``huber_delta``) on log loss as Luo et
    al. fit it, minimized by the batched Levenberg-Marquardt of :mod:`lmech.theory.scaling` from a grid of starts
    scaled to the data (``L0`` a fraction of the lowest loss, ``A`` matching the first point, ``B`` a fraction of the
    loss range per unit rate, ``C`` so that ``C x`` is 1 at the median ``x``); the best optimum is returned. A single
    schedule leaves ``B, C, beta, gamma`` weakly determined: fit on two or more (e.g. constant and cosine) and hold
    out the rest, as the authors do."""
    if not curves:
        raise ValueError("curves is empty: give at least one (steps, loss, learning_rates) run")
    runs = [_curve(c, i) for i, c in enumerate(curves)]
    designs = [_design(s, r, w) for s, _, r, w in runs]
    log_l = torch.tensor(np.log(np.concatenate([l for _, l, _, _ in runs])), dtype=torch.float64)
    starts = _multi_power_grid(runs, designs) if grid is None else np.atleast_2d(np.asarray(grid, float))
    if starts.shape[1] != len(MULTI_POWER_PARAMS):
        raise ValueError(f"grid rows must hold the internal parameters (logs of L0, A, B, C) {MULTI_POWER_PARAMS}")
    chunk = max(1, _CHUNK // (len(log_l) * max(1, max(d.after.shape[1] for d in designs))))

    def derivatives(theta: torch.Tensor, w: torch.Tensor) -> tuple:
        parts = []
        for i in range(0, len(theta), chunk):
            log_model, jac = _log_multi_power(theta[i:i + chunk], designs)
            parts.append(_huber_terms(log_model - log_l, jac, w[i:i + chunk], huber_delta))
        return tuple(torch.cat(p) for p in zip(*parts))

    weights = torch.ones(len(log_l), dtype=torch.float64)
    gtol = tol * huber_delta * len(log_l)
    theta, value, gnorm, iterations = _batched_lm(derivatives, torch.tensor(starts, dtype=torch.float64), weights,
                                                  max_iterations, gtol)
    value = torch.where(torch.isfinite(value), value, torch.full_like(value, float("inf")))
    best = int(torch.argmin(value))
    residuals = (_log_multi_power(theta[best:best + 1], designs)[0][0] - log_l).numpy()
    return MultiPowerFit(_public(theta[best].tolist()), float(value[best]), residuals, bool(gnorm[best] <= gtol),
                         len(starts), iterations)


def _multi_power_grid(runs: list, designs: list[_Design]) -> np.ndarray:
    """Starts scaled to the data (see :func:`fit_multi_power_law`): 3 offsets x 3 exponents x 2 drop scales x 2
    saturation scales, ``beta = gamma = 0.5``."""
    losses = np.concatenate([l for _, l, _, _ in runs])
    first = min(range(len(runs)), key=lambda i: runs[i][0].min())
    steps, loss, _, _ = runs[first]
    area0, loss0 = float(designs[first].area[np.argmin(steps)]), float(loss[np.argmin(steps)])
    top_rate = max(float(r.max()) for _, _, r, _ in runs)
    x = torch.cat([(torch.exp(-0.5 * d.log_rate) * d.after)[d.after > 0] for d in designs])
    x_mid = float(x.median()) if len(x) else 1.0
    spread = max(float(losses.max() - losses.min()), 1e-3 * float(losses.min()))
    rows = []
    for f, alpha, b, c in itertools.product((0.5, 0.8, 0.95), (0.3, 0.6, 1.0), (0.1, 1.0), (0.3, 3.0)):
        l0 = f * losses.min()
        a = max(loss0 - l0, 1e-3 * loss0) * area0 ** alpha
        rows.append(_internal({"L0": l0, "A": a, "alpha": alpha, "B": b * spread / top_rate, "C": c / x_mid,
                               "beta": 0.5, "gamma": 0.5}))
    return np.array(rows)

"""Monotone trends across a sweep with seeds: Spearman's rank correlation and its stratified bootstrap interval."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class Trend:
    """Spearman's ``rho`` of ``y`` against ``x`` over all runs and its ``level`` bootstrap interval ``[low, high]``."""

    rho: float
    low: float
    high: float
    level: float

    def same_sign(self, sign: int) -> bool:
        """Whether the whole interval lies strictly on the ``sign`` side of 0: a trend with that direction."""
        return self.low > 0 if sign > 0 else self.high < 0


def _spearman(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (average ranks for ties), vectorized over rows."""
    rx, ry = (rankdata(v, axis=-1) for v in (x, y))
    rx, ry = rx - rx.mean(-1, keepdims=True), ry - ry.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(-1) / np.sqrt((rx ** 2).sum(-1) * (ry ** 2).sum(-1))


def _finite(x: Any, y: Any, *more: Any) -> tuple[np.ndarray, ...]:
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    keep = np.isfinite(y)
    return (x[keep], y[keep]) + tuple(np.asarray(m, float).ravel()[keep] for m in more)


def _stratified_index(x: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """``(resamples, n)`` bootstrap indices that redraw the runs within each distinct ``x``."""
    rng = np.random.default_rng(seed)
    index = np.empty((resamples, len(x)), dtype=np.int64)
    for value in np.unique(x):  # a loop over the sweep's few distinct values, not over resamples
        members = np.flatnonzero(x == value)
        index[:, members] = rng.choice(members, size=(resamples, len(members)))
    return index


def spearman_trend(x: Any, y: Any, *, strata: Any = None, level: float = 0.95, resamples: int = 2000,
                   seed: int = 0) -> Trend:
    """Spearman's rank correlation of ``y`` against ``x`` with a percentile bootstrap interval over runs (``x, y``
    pairs) resampled within each stratum: each distinct value of ``strata``, by default of ``x`` (a sweep's design
    stays fixed; only the seeds' scatter is resampled). Runs with a non-finite ``y`` are dropped. A resample whose
    ranks are all tied has no rho and counts as 0."""
    x, y, strata = _finite(x, y, x if strata is None else strata)
    index = _stratified_index(strata, resamples, seed)
    rhos = np.nan_to_num(_spearman(x[index], y[index]))
    tail = (1 - level) / 2
    low, high = np.quantile(rhos, [tail, 1 - tail])
    return Trend(float(_spearman(x, y)), float(low), float(high), level)


def median_reversals(x: Any, y: Any, sign: int, *, level: float = 0.95, resamples: int = 2000,
                     seed: int = 0) -> list[tuple[float, float]]:
    """Adjacent sweep values ``(x_i, x_i+1)`` between which the median of ``y`` over runs moves against the predicted
    direction ``sign`` significantly: the bootstrap interval of the difference of medians lies entirely on the wrong
    side of 0. Empty for a trend monotone within its ``level`` intervals."""
    x, y = _finite(x, y)
    values = np.unique(x)
    index = _stratified_index(x, resamples, seed)
    medians = np.stack([np.median(y[index][:, x == v], axis=1) for v in values], axis=1)  # (resamples, values)
    steps = np.diff(medians, axis=1) * sign  # > 0: the predicted direction
    tail = (1 - level) / 2
    high = np.quantile(steps, 1 - tail, axis=0)
    return [(float(values[i]), float(values[i + 1])) for i in np.flatnonzero(high < 0)]

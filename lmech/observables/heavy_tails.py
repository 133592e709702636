"""Heavy-tailed spectra: the Clauset-Shalizi-Newman power-law fit and per-layer weight spectra (Martin & Mahoney).

:func:`powerlaw_fit` (Clauset, Shalizi & Newman 2009, arXiv:0706.1062): for every candidate ``x_min`` (each distinct
value but the largest) the continuous MLE ``alpha = 1 + n_t / sum ln(x / x_min)`` over the ``n_t`` tail points, its
standard error ``(alpha - 1) / sqrt(n_t)``, and the Kolmogorov-Smirnov distance ``D = max_j |1 - (x_j / x_min)^(1 -
alpha) - j / n_t|`` (tail sorted, ``j = 0 .. n_t - 1``, the empirical CDF of the ``powerlaw`` package); the
``x_min`` of least ``D`` wins. ``alpha`` is unrestricted above 1, as in Clauset et al. and WeightWatcher (the
``powerlaw`` package 2.x restricts it by default; ``parameter_ranges={"alpha": [1, None]}`` removes that). All
candidates at once from suffix sums of ``ln x`` and blocks of the tail-CDF matrix: no Python loop over ``x_min``.
The fitted tail is then compared by log-likelihood ratio with an exponential, a log-normal and a truncated power
law on the same tail (Vuong's normalized test for the non-nested ones, the chi-square test with one degree of
freedom for the nested truncated power law), as Clauset et al. Sec. 5 recommend.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import integrate, optimize, special, stats

from ._arrays import as_array

MIN_EIGENVALUES = 10  # fewer eigenvalues (above the floor) give status "too few eigenvalues"
FLOOR = 1e-5  # eigenvalues below this are dropped (numerically zero; WeightWatcher's convention)
HEAVY_TAIL_MAX_ALPHA = 6.0  # alpha above this: "not heavy-tailed" (Martin & Mahoney's under-trained band)
_BLOCK = 64  # candidate x_min values per block of the KS matrix (fastest of 32-1024 on 1000 values)


@dataclass(frozen=True)
class Comparison:
    """Log-likelihood ratio ``R`` (power law minus the alternative, summed over the tail; ``R > 0`` favours the power
    law) and its p-value (small: the sign of ``R`` is significant)."""

    R: float
    p: float


@dataclass(frozen=True)
class PowerLawFit:
    """A power-law tail ``p(x) ~ x^-alpha`` for ``x >= xmin`` and its diagnostics. ``status``: ``"heavy-tailed"``
    (``alpha <= 6``), ``"not heavy-tailed"`` (``alpha > 6``) or ``"too few eigenvalues"`` (fewer than 10 above
    ``1e-5``; the numbers are then NaN). ``comparisons`` maps ``"exponential"``, ``"lognormal"`` and
    ``"truncated_power_law"`` to a :class:`Comparison`."""

    alpha: float
    xmin: float
    sigma: float
    D: float
    n_tail: int
    n: int
    status: str
    comparisons: dict[str, Comparison] = field(default_factory=dict)


def _values(name: str, x: Any) -> np.ndarray:
    out = as_array(name, x, dtype=np.float64).ravel()
    if np.any(out < 0):
        raise ValueError(f"{name} must be non-negative (eigenvalues of W^T W, or magnitudes); got min {out.min():g}")
    return out


def _candidates(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For sorted ``x``: the index of each distinct value but the last (the candidate x_min), its tail size and
    ``alpha``."""
    log_x = np.log(x)
    starts = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])[:-1]
    suffix = np.cumsum(log_x[::-1])[::-1]  # suffix[i] = sum_{k >= i} ln x_k
    n_tail = len(x) - starts
    alpha = 1 + n_tail / (suffix[starts] - n_tail * log_x[starts])
    return starts, n_tail, alpha


def _ks_distances(x: np.ndarray, starts: np.ndarray, alpha: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """``D`` of every candidate, in blocks of rows of the (candidates x points) tail-CDF difference; a block only
    touches the columns from its first candidate on (the matrix is triangular), about ``n^2 / 2`` entries in all."""
    log_x, n = np.log(x).astype(dtype), len(x)
    out = np.empty(len(starts))
    for lo in range(0, len(starts), _BLOCK):
        first = starts[lo]
        k = np.arange(first, n)[None, :]
        i, a = starts[lo:lo + _BLOCK, None], alpha[lo:lo + _BLOCK, None].astype(dtype)
        exponent = np.minimum((1 - a) * (log_x[None, first:] - log_x[i]), 0)  # <= 0 on the tail, clipped before it
        gap = np.abs(np.expm1(exponent) + ((k - i) / (n - i)).astype(dtype))  # |fitted - empirical|
        out[lo:lo + _BLOCK] = np.max(np.where(k >= i, gap, 0), axis=1)
    return out


def _least_distance(x: np.ndarray, starts: np.ndarray, alpha: np.ndarray) -> tuple[int, float]:
    """The candidate of least ``D`` and its ``D``: every ``D`` in float32 (half the memory traffic), then the
    candidates within float32 rounding of the least one again in float64, so the choice is float64's."""
    rough = _ks_distances(x, starts, alpha, np.float32)
    near = np.flatnonzero(rough <= rough.min() + 1e-5)
    exact = _ks_distances(x, starts[near], alpha[near])
    return int(near[np.argmin(exact)]), float(exact.min())


def _power_law_loglik(tail: np.ndarray, alpha: float, xmin: float) -> np.ndarray:
    return np.log((alpha - 1) / xmin) - alpha * np.log(tail / xmin)


def _exponential_loglik(tail: np.ndarray, xmin: float) -> np.ndarray:
    rate = 1 / max(np.mean(tail) - xmin, np.finfo(float).tiny)
    return np.log(rate) - rate * (tail - xmin)


def _lognormal_loglik(tail: np.ndarray, xmin: float) -> np.ndarray:
    """Log-normal truncated to ``[xmin, inf)``, MLE of ``(mu, log sigma)`` by Nelder-Mead from the moments."""
    logs = np.log(tail)

    def loglik(theta: np.ndarray) -> np.ndarray:
        mu, sigma = theta[0], np.exp(theta[1])
        z = (logs - mu) / sigma
        return (-0.5 * z ** 2 - logs - np.log(sigma * np.sqrt(2 * np.pi))
                - special.log_ndtr(-(np.log(xmin) - mu) / sigma))

    start = np.array([logs.mean(), np.log(max(logs.std(), 1e-3))])
    best = optimize.minimize(lambda t: -np.sum(loglik(t)), start, method="Nelder-Mead",
                             options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 4000})
    return loglik(best.x)


def _truncated_power_law_loglik(tail: np.ndarray, xmin: float, alpha0: float) -> np.ndarray:
    """``p(x) = x^-alpha e^(-lam x) / Z`` on ``[xmin, inf)``, ``Z = int_xmin^inf x^-alpha e^(-lam x) dx`` by
    quadrature (in ``u = x / xmin``); MLE of ``(alpha, log(lam xmin))`` by Nelder-Mead from the power law's alpha."""
    u = tail / xmin

    def loglik(theta: np.ndarray) -> np.ndarray:
        a, rate = theta[0], np.exp(theta[1])
        norm, _ = integrate.quad(lambda v: v ** -a * np.exp(-rate * (v - 1)), 1, np.inf, limit=200)
        return -a * np.log(u) - rate * (u - 1) - np.log(norm * xmin)

    start = np.array([alpha0, np.log(1e-3 / max(u.mean(), 1.0))])
    best = optimize.minimize(lambda t: -np.sum(loglik(t)), start, method="Nelder-Mead",
                             options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 2000})
    return loglik(best.x)


def _vuong(difference: np.ndarray) -> Comparison:
    """Clauset et al. (5.4)-(5.5): ``R = sum d``, ``p = erfc(|R| / sqrt(2 n s^2))``."""
    r, spread = float(difference.sum()), float(difference.std())
    p = float(special.erfc(abs(r) / (np.sqrt(2 * len(difference)) * spread))) if spread > 0 else 1.0
    return Comparison(r, p)


def powerlaw_fit(values: Any, *, xmin: float | None = None, compare: bool = True) -> PowerLawFit:
    """Clauset-Shalizi-Newman fit of a power-law tail to ``values`` (e.g. the eigenvalues of ``W^T W``; see the
    module docstring). ``xmin`` fixes the tail's start instead of minimizing ``D``; ``compare=False`` skips the
    likelihood-ratio comparisons (the slow part: two small optimizations)."""
    x = _values("values", values)
    x = np.sort(x[x >= FLOOR])
    if len(x) < MIN_EIGENVALUES or len(np.unique(x)) < 2:
        nan = float("nan")
        return PowerLawFit(nan, nan, nan, nan, 0, len(x), "too few eigenvalues")
    starts, n_tail, alpha = _candidates(x)
    if xmin is not None:
        pick = np.flatnonzero(x[starts] >= xmin)
        if not len(pick):
            raise ValueError(f"xmin={xmin!r} leaves fewer than 2 distinct values in the tail")
        starts, n_tail, alpha = starts[pick[:1]], n_tail[pick[:1]], alpha[pick[:1]]
    best, distance = _least_distance(x, starts, alpha)
    a, lo, nt = float(alpha[best]), float(x[starts[best]]), int(n_tail[best])
    status = "heavy-tailed" if a <= HEAVY_TAIL_MAX_ALPHA else "not heavy-tailed"
    comparisons = {}
    if compare:
        tail = x[starts[best]:]
        power = _power_law_loglik(tail, a, lo)
        comparisons["exponential"] = _vuong(power - _exponential_loglik(tail, lo))
        comparisons["lognormal"] = _vuong(power - _lognormal_loglik(tail, lo))
        nested = float(np.sum(power - _truncated_power_law_loglik(tail, lo, a)))
        comparisons["truncated_power_law"] = Comparison(nested, float(stats.chi2.sf(2 * abs(nested), 1)))
    return PowerLawFit(a, lo, float((a - 1) / np.sqrt(nt)), distance, nt, len(x), status, comparisons)


@dataclass(frozen=True)
class LayerSpectrum:
    """One weight matrix's empirical spectral density: the eigenvalues of ``W^T W`` (unnormalized, as WeightWatcher),
    its power-law ``fit``, ``alpha_weighted = alpha log10 lambda_max``, ``log_alpha_norm = log10 sum lambda^alpha``,
    and the Marchenko-Pastur bulk edge ``N s^2 (1 + sqrt(M / N))^2`` of an i.i.d. matrix of the same ``N x M`` shape
    (``N >= M``) and entry variance ``s^2`` (Marchenko & Pastur 1967; Martin & Mahoney 2021, arXiv:1810.01075) with
    the number of eigenvalues above it. ``status`` is the fit's, except that a spectrum with no eigenvalue past the
    edge is ``"not heavy-tailed"`` whatever its alpha: the top of a Gaussian matrix's bulk alone can fit a power law
    with alpha < 6 (a square 256 x 256 Gaussian gives about 3.8)."""

    name: str
    shape: tuple[int, int]
    eigenvalues: np.ndarray
    fit: PowerLawFit
    alpha_weighted: float
    log_alpha_norm: float
    mp_edge: float
    n_above_edge: int
    status: str


def weight_spectrum(model: Any, *, compare: bool = False) -> list[LayerSpectrum]:
    """:class:`LayerSpectrum` of every 2-D weight (``*.weight`` parameters of a ``torch.nn.Module``), in order."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    out = []
    for name, p in model.named_parameters():
        if p.ndim != 2 or not name.endswith("weight"):
            continue
        w = p.detach().to(torch.float64).cpu().numpy()
        lam = np.linalg.svd(w, compute_uv=False) ** 2
        fit = powerlaw_fit(lam, compare=compare)
        n, m = max(w.shape), min(w.shape)
        edge = float(n * w.var() * (1 + np.sqrt(m / n)) ** 2)
        top = float(lam.max())
        weighted = fit.alpha * np.log10(top) if top > 0 else float("nan")
        norm = float(np.log10(np.sum(lam[lam >= FLOOR] ** fit.alpha))) if np.isfinite(fit.alpha) else float("nan")
        above = int(np.sum(lam > edge))
        status = "not heavy-tailed" if fit.status == "heavy-tailed" and above == 0 else fit.status
        out.append(LayerSpectrum(name, tuple(w.shape), lam, fit, float(weighted), norm, edge, above, status))
    return out

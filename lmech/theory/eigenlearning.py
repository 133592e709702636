"""Eigenlearning: the dataset-averaged learning curve of kernel ridge regression from the kernel's eigensystem.

KRR ``f(x) = K(x, X) (K(X, X) + ridge I)^-1 y`` on ``n`` iid samples (ridge added to the kernel matrix as is).
With kernel eigenvalues ``lam_i`` (multiplicity ``m_i``) and target coefficients ``v_i`` on the data
distribution, one scalar ``kappa`` fixes everything:

    n = sum_i m_i lam_i / (lam_i + kappa) + ridge / kappa            (the fixed point)
    L_i = lam_i / (lam_i + kappa)                                    (learnability of mode i)
    E0 = n / (n - sum_i m_i L_i^2)                                   (overfitting coefficient, >= 1)
    test_mse = E0 [sum_i m_i (1 - L_i)^2 v_i^2 + noise]
    train_mse = (ridge / (n kappa))^2 test_mse

(Simon, Dickens, Karkada & DeWeese 2023, arXiv:2110.03922, Eqs. 5-9; the same forms as
``find_kappa``/``eigenmode_learnabilities``/``noise_fitting_factor``/``theoretical_predictions`` in
james-simon/eigenlearning ``theory.py``, whose KRR uses neural-tangents with ``diag_reg_absolute_scale=True``,
i.e. the ridge as is.) ``noise`` is the variance of the label noise; ``test_mse`` is measured against noisy
test labels (subtract ``noise`` per output for the error against the clean target). Equivalent to
Bordelon, Canatar & Pehlevan 2020 (arXiv:2002.02561) with ``kappa_BCP = n kappa``, ``1/(1 - gamma) = E0``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from ..systems._validate import ConfigError


@dataclass(frozen=True)
class EigenlearningResult:
    """Eigenlearning predictions; arrays are shaped like ``n`` (``learnabilities`` gets a trailing mode axis).

    ``test_mse``/``train_mse`` are ``nan`` when no target was given; with a multi-output target they are summed
    over outputs.
    """

    n: np.ndarray
    kappa: np.ndarray
    learnabilities: np.ndarray
    e0: np.ndarray
    test_mse: np.ndarray
    train_mse: np.ndarray


def _as_float_array(field: str, value, ndim: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim not in ndim or not np.all(np.isfinite(arr)):
        raise ConfigError(f"{field} must be a finite array with ndim in {ndim}; got shape {arr.shape}")
    return arr


def _nonneg_scalar(field: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
            or not np.isfinite(value) or value < 0:
        raise ConfigError(f"{field}={value!r} must be a finite number >= 0")
    return float(value)


def solve_kappa(eigenvalues: np.ndarray, n: float, *, ridge: float = 0.0,
                multiplicities: np.ndarray | None = None) -> float:
    """The ``kappa > 0`` solving ``n = sum_i m_i lam_i/(lam_i + kappa) + ridge/kappa`` (one scalar ``n``).

    The right-hand side falls monotonically in ``kappa``; the root is bracketed in ``log kappa``
    (``[ridge/n, (sum m lam + ridge)/n]`` when ``ridge > 0``), found by ``brentq`` and polished by Newton steps,
    so ``sum m L + ridge/kappa`` matches ``n`` to rounding. ``n = 0`` gives ``inf``. With ``ridge = 0`` and
    ``n >= `` the number of nonzero modes the equation has no positive root: this returns the limit ``0``
    (ridgeless interpolation learns every nonzero mode; ``E0 = n/(n - rank)``, infinite at ``n = rank``).
    """
    lam = np.asarray(eigenvalues, dtype=float)
    m = np.ones_like(lam) if multiplicities is None else np.asarray(multiplicities, dtype=float)
    if n == 0:
        return float("inf")
    if ridge == 0 and n >= m[lam > 0].sum():
        return 0.0

    def excess(u: float) -> float:  # RHS - n as a function of u = log kappa; decreasing
        kappa = np.exp(u)
        return float(np.sum(m * lam / (lam + kappa)) + ridge / kappa - n)

    hi = np.log((np.sum(m * lam) + ridge) / n)
    if ridge > 0:
        lo = np.log(ridge / n)
    else:
        # RHS -> rank > n as kappa -> 0; step down from the n-th largest eigenvalue until it exceeds n
        ordered = np.sort(lam[lam > 0])[::-1]
        lo = np.log(ordered[min(int(n), len(ordered) - 1)])
        while excess(lo) <= 0:
            lo -= np.log(1e3)
            if lo < np.log(np.finfo(float).tiny):
                raise ConfigError(f"n={n} is too close to the number of nonzero eigenvalues ({len(ordered)}) for a "
                                  "ridgeless kappa in floating point; pass ridge > 0")
    if excess(hi) >= 0:
        return float(np.exp(hi))
    u = brentq(excess, lo, hi, xtol=1e-14, rtol=4 * np.finfo(float).eps, maxiter=500)
    for _ in range(3):  # Newton polish in log kappa: d(excess)/du = -sum m lam kappa/(lam+kappa)^2 - ridge/kappa
        kappa = np.exp(u)
        slope = -np.sum(m * lam * kappa / (lam + kappa) ** 2) - ridge / kappa
        if slope == 0:
            break
        u -= excess(u) / slope
    return float(np.exp(u))


def eigenlearning(eigenvalues, n, *, target_coeffs=None, noise: float = 0.0, ridge: float = 0.0,
                  multiplicities=None) -> EigenlearningResult:
    """Eigenlearning prediction for KRR with ``n`` iid samples (``n`` a number or an array of them).

    ``eigenvalues``: kernel eigenvalues ``lam_i >= 0`` on the data distribution (for a pool of ``M`` points,
    eig(K)/M: see :func:`kernel_eigensystem`). ``target_coeffs``: ``v_i`` of shape ``(modes,)``, or
    ``(modes, outputs)`` for a multi-output target (MSE summed over outputs, ``noise`` per output);
    with ``multiplicities`` each ``v_i`` is the coefficient of every one of the ``m_i`` degenerate modes
    (a power ``P`` spread over the eigenspace is ``v_i = sqrt(P/m_i)``). ``noise``: label-noise variance
    ``epsilon^2``. ``ridge``: ``delta``, added to ``K(X, X)`` as is.
    """
    lam = _as_float_array("eigenvalues", eigenvalues, (1,))
    if np.any(lam < 0):
        raise ConfigError(f"eigenvalues must be >= 0 (min {lam.min():.3g}); clip rounding negatives to 0")
    mult = np.ones_like(lam) if multiplicities is None else _as_float_array("multiplicities", multiplicities, (1,))
    if mult.shape != lam.shape or np.any(mult < 0):
        raise ConfigError(f"multiplicities must be >= 0 with the shape of eigenvalues {lam.shape}; got {mult.shape}")
    n_arr = _as_float_array("n", n, tuple(range(8)))
    if np.any(n_arr < 0):
        raise ConfigError(f"n must be >= 0; got min {n_arr.min()}")
    noise, ridge = _nonneg_scalar("noise", noise), _nonneg_scalar("ridge", ridge)
    coeffs = None
    if target_coeffs is not None:
        coeffs = _as_float_array("target_coeffs", target_coeffs, (1, 2))
        if coeffs.shape[0] != lam.shape[0]:
            raise ConfigError(f"target_coeffs has {coeffs.shape[0]} modes but eigenvalues has {lam.shape[0]}")
        coeffs = coeffs.reshape(len(lam), -1)

    flat_n = n_arr.reshape(-1)
    kappa = np.array([solve_kappa(lam, float(k), ridge=ridge, multiplicities=mult) for k in flat_n])
    lrn = np.empty((len(flat_n), len(lam)))
    e0 = np.empty(len(flat_n))
    test = np.full(len(flat_n), np.nan)
    train = np.full(len(flat_n), np.nan)
    power = None if coeffs is None else np.sum(coeffs ** 2, axis=1)  # summed over outputs
    outputs = 0 if coeffs is None else coeffs.shape[1]
    for j, (nj, kj) in enumerate(zip(flat_n, kappa)):
        if nj == 0:
            lrn[j], miss, e0[j] = 0.0, np.ones_like(lam), 1.0
        elif kj == 0:
            lrn[j], miss = (lam > 0).astype(float), (lam == 0).astype(float)
            rank = mult[lam > 0].sum()
            e0[j] = nj / (nj - rank) if nj > rank else np.inf
        else:
            lrn[j], miss = lam / (lam + kj), kj / (lam + kj)
            # n - sum m L^2 = sum m L (1 - L) + ridge/kappa: no cancellation when E0 is large
            e0[j] = nj / (np.sum(mult * lrn[j] * miss) + ridge / kj)
        if power is not None:
            test[j] = e0[j] * (np.sum(mult * miss ** 2 * power) + outputs * noise)
            train[j] = test[j] if nj == 0 else (0.0 if ridge == 0 else (ridge / (nj * kj)) ** 2 * test[j])
    shape = n_arr.shape
    return EigenlearningResult(n=n_arr, kappa=kappa.reshape(shape), learnabilities=lrn.reshape(shape + (len(lam),)),
                               e0=e0.reshape(shape), test_mse=test.reshape(shape), train_mse=train.reshape(shape))


def kernel_eigensystem(kernel, targets=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Eigenvalues and target coefficients of a kernel on a pool of ``M`` points, the pool as the distribution.

    ``lam = eig(K)/M`` in descending order (rounding negatives clipped to 0) and ``v = U^T y / sqrt(M)``, so
    that ``K = sum_i lam_i phi_i phi_i^T`` and ``y = sum_i v_i phi_i`` with eigenfunctions ``phi_i = sqrt(M) U_i``
    orthonormal under the pool average; ``sum v_i^2 = mean(y^2)``. Dropping the ``1/M`` would shift ``kappa`` by
    ``M`` (shared/REFERENCE.md 2.5). ``targets`` of shape ``(M,)`` or ``(M, outputs)``; coefficients come back in
    the same shape (``None`` without targets).
    """
    k = np.asarray(kernel, dtype=float)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or not np.all(np.isfinite(k)):
        raise ConfigError(f"kernel must be a finite square (M, M) matrix; got shape {k.shape}")
    size = k.shape[0]
    evals, evecs = np.linalg.eigh((k + k.T) / 2)
    evals, evecs = evals[::-1], evecs[:, ::-1]
    lam = np.clip(evals, 0.0, None) / size
    if targets is None:
        return lam, None
    y = np.asarray(targets, dtype=float)
    if y.shape[:1] != (size,) or y.ndim > 2:
        raise ConfigError(f"targets must have shape ({size},) or ({size}, outputs) to match the kernel; got {y.shape}")
    return lam, evecs.T @ y / np.sqrt(size)


def eigenlearning_from_kernel(kernel, targets, n, *, noise: float = 0.0, ridge: float = 0.0) -> EigenlearningResult:
    """:func:`eigenlearning` on the eigensystem of ``kernel`` over a pool (:func:`kernel_eigensystem`)."""
    lam, coeffs = kernel_eigensystem(kernel, targets)
    return eigenlearning(lam, n, target_coeffs=coeffs, noise=noise, ridge=ridge)


def circle_eigensystem(kernel_row, targets) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and target coefficients of a rotation-invariant kernel on the circle, from one row of it and the
    target on a uniform grid of ``M`` angles ``2 pi j / M`` (exact for the grid as the pool; ``O(M log M)`` by FFT
    instead of an ``M^3`` eigendecomposition).

    Degree ``k`` is the eigenvalue ``lam_k = (1/M) sum_j K(0, t_j) cos(k t_j)`` (REFERENCE 2.5's circle trap: the
    row over ``M``), once for ``k = 0`` (and ``k = M/2``) and twice (cos, sin) below; the target's power in degree
    ``k`` is ``2 |F_k|^2 / M^2`` split evenly over its two modes. Modes come back in descending eigenvalue order,
    as from :func:`kernel_eigensystem`, with coefficients ``v_i >= 0`` (the phase within a degree is irrelevant)."""
    row = np.asarray(kernel_row, dtype=float)
    y = np.asarray(targets, dtype=float)
    if row.ndim != 1 or y.shape != row.shape or len(row) < 4:
        raise ConfigError(f"kernel_row and targets must be two arrays of equal length M >= 4 on the grid; got "
                          f"{row.shape} and {y.shape}")
    size = len(row)
    degree_lam = np.fft.rfft(row).real / size
    degree_power = np.abs(np.fft.rfft(y)) ** 2 / size ** 2
    twice = np.ones(len(degree_lam), dtype=bool)
    twice[0] = False
    if size % 2 == 0:
        twice[-1] = False
    lam = np.concatenate([degree_lam[~twice], np.repeat(degree_lam[twice], 2)])
    power = np.concatenate([degree_power[~twice], np.repeat(degree_power[twice], 2)])  # 2|F|^2/M^2 split over 2 modes
    order = np.argsort(-lam, kind="stable")
    return np.clip(lam[order], 0.0, None), np.sqrt(power[order])


@dataclass(frozen=True)
class SpectralExponents:
    """Power laws of a kernel's spectrum and a target's power over a window of modes, ``lam_i ~ i^-rho`` and
    ``v_i^2 ~ i^-r`` (least squares in log-log over ``modes``; ``tail=True`` fits ``r`` from the tail
    ``sum_{j >= i} v_j^2 ~ i^-(r - 1)`` instead, steadier for noisy coefficients but biased when the target's power
    stops not far past the window), and the learning-curve exponents they predict: in samples ``min(r - 1, 2 rho)``,
    in gradient-flow time ``(r - 1) / rho``."""

    rho: float
    r: float
    modes: tuple[int, int]

    @property
    def exponent(self) -> float:
        """``min(r - 1, 2 rho)``: test error ~ ``n^-exponent`` for ridgeless kernel regression (Bordelon, Canatar &
        Pehlevan 2020, arXiv:2002.02561; Spigler, Geiger & Wyart 2020, arXiv:1905.10843; REFERENCE 2.5, 2.14)."""
        return min(self.r - 1, 2 * self.rho)

    @property
    def limited_by(self) -> str:
        """``"target"`` when ``r - 1 < 2 rho`` (the unlearned tail dominates), else ``"kernel"``."""
        return "target" if self.r - 1 < 2 * self.rho else "kernel"

    @property
    def time_exponent(self) -> float:
        """``(r - 1) / rho``: test error ~ ``t^-(r-1)/rho`` in gradient-flow time at ``n`` past the learned modes."""
        return (self.r - 1) / self.rho


def spectral_exponents(eigenvalues, target_coeffs, modes: tuple[int, int], *, tail: bool = False
                       ) -> SpectralExponents:
    """Fit ``rho`` and ``r`` (see :class:`SpectralExponents`) over modes ``modes[0] .. modes[1]`` (1-based, in
    descending eigenvalue order, as :func:`kernel_eigensystem` and :func:`circle_eigensystem` return them)."""
    lam = np.asarray(eigenvalues, dtype=float)
    v = np.asarray(target_coeffs, dtype=float)
    lo, hi = (int(m) for m in modes)
    if lam.ndim != 1 or v.shape != lam.shape:
        raise ConfigError(f"eigenvalues and target_coeffs must be 1-D of equal length; got {lam.shape}, {v.shape}")
    if not 1 <= lo < hi <= len(lam) or hi - lo < 4:
        raise ConfigError(f"modes={modes!r} must satisfy 1 <= lo < hi <= {len(lam)} with at least 4 modes between")
    i = np.arange(lo, hi + 1)
    power = (np.cumsum((v ** 2)[::-1])[::-1] if tail else v ** 2)[lo - 1:hi]
    window = lam[lo - 1:hi]
    if np.any(window <= 0) or np.any(power <= 0):
        raise ConfigError(f"modes={modes!r} include zero eigenvalues or zero target power; choose a window inside the "
                          "spectrum's support")
    rho = -np.polyfit(np.log(i), np.log(window), 1)[0]
    r = -np.polyfit(np.log(i), np.log(power), 1)[0] + (1 if tail else 0)
    return SpectralExponents(float(rho), float(r), (lo, hi))

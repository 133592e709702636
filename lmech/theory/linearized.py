"""Linearized (kernel) dynamics of GD on squared loss, and its limit: kernel ridge regression.

A network linearized at init, ``f_lin(x; theta) = f(x; theta_0) + J(x)(theta - theta_0)``, trained by full-batch
GD on ``L = 1/(2n) sum_i ||f(x_i) - y_i||^2`` (lmech's ``Task("mse")``: mean over examples, sum over the k
outputs) moves in function space by ``f <- f - (eta/n) Theta (f - Y)`` with the NTK ``Theta = J J^T``
(Jacot et al. 2018, arXiv:1806.07572; Lee et al. 2019, arXiv:1902.06720, Eqs. 9-11). neural-tangents'
``predict.gradient_descent_mse`` averages over outputs as well, ``L = 1/(2nk) ||f(X) - Y||_F^2``, i.e.
``eta/(n k)``: ``reduction="mean"``.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ..systems._validate import ConfigError, one_of, positive_float


def _length(name: str, values) -> int:
    shape = np.shape(values)
    if not shape:
        raise ConfigError(f"{name} must be an array with one row per point, not a scalar")
    return shape[0]


def _outputs(name: str, y: np.ndarray, n: int, k: int | None = None) -> tuple[np.ndarray, tuple[int, ...]]:
    """``y`` as an ``(n, k)`` float64 array, and its original shape (``(n,)`` or ``(n, k)``)."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or len(y) != n or (k is not None and (y.shape[1] if y.ndim == 2 else 1) != k):
        want = f"({n},) or ({n}, k)" if k is None else f"({n},)" if k == 1 else f"({n}, {k})"
        raise ConfigError(f"{name} has shape {y.shape}; expected {want} to match y_train")
    return y.reshape(n, -1), y.shape


def _kernel(name: str, kernel: np.ndarray, n_rows: int, n_cols: int, k: int) -> tuple[np.ndarray, bool]:
    """``(matrix, shared)``: an ``(n1, n2)`` kernel shared by the k outputs as is; ``(n1, n2, k, k)`` as ``(n1 k, n2 k)``."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.shape == (n_rows, n_cols):
        return kernel, True
    if kernel.shape == (n_rows, n_cols, k, k):
        return kernel.transpose(0, 2, 1, 3).reshape(n_rows * k, n_cols * k), False
    raise ConfigError(f"{name} has shape {kernel.shape}; expected ({n_rows}, {n_cols}) (shared by the outputs) or "
                      f"({n_rows}, {n_cols}, {k}, {k})")


def _cross_kernel(name: str, kernel: np.ndarray, m: int, n: int, k: int, shared: bool) -> np.ndarray:
    cross, cross_shared = _kernel(name, kernel, m, n, k)
    if cross_shared != shared:
        raise ConfigError(f"{name} has shape {np.shape(kernel)}; expected {(m, n) if shared else (m, n, k, k)}, "
                          "the same form as the train kernel")
    return cross


def _eigh_psd(name: str, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric PSD kernel matrix; rounding-level negative eigenvalues are set to 0."""
    scale = np.abs(kernel).max(initial=0.0)
    if np.abs(kernel - kernel.T).max(initial=0.0) > 1e-8 * scale:
        raise ConfigError(f"{name} is not symmetric; pass the train-train kernel Theta(X, X)")
    lam, vecs = np.linalg.eigh(kernel)
    if len(lam) and lam[0] < -1e-6 * max(lam[-1], 0.0):
        raise ConfigError(f"{name} is not positive semidefinite (eigenvalue {lam[0]:.3g}, largest {lam[-1]:.3g})")
    return np.maximum(lam, 0.0), vecs


def _as_columns(values: np.ndarray, shared: bool) -> np.ndarray:
    """``(n, k)`` outputs as the right-hand side of the kernel: ``(n, k)`` if shared, else ``(n k, 1)``."""
    return values if shared else values.reshape(-1, 1)


def linearized_gd(ntk_train: np.ndarray, y_train: np.ndarray, f0_train: np.ndarray, *, lr: float,
                  steps: int | np.ndarray, ntk_test_train: np.ndarray | None = None, f0_test: np.ndarray | None = None,
                  reduction: str = "sum", flow: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs of the linearized network after ``steps`` full-batch GD steps of size ``lr``, on train and test points.

    With ``s = lr/n`` (``reduction="sum"``, ``L = 1/(2n) sum_i ||f(x_i) - y_i||^2``) or ``s = lr/(n k)``
    (``reduction="mean"``, neural-tangents' ``predict.gradient_descent_mse`` normalization; Lee et al. 2019,
    arXiv:1902.06720, Eqs. 9-11):

        train: f_T(X) = Y + (I - s Theta)^T (f_0(X) - Y)
        test:  f_T(x) = f_0(x) + Theta(x, X) Theta^-1 (I - (I - s Theta)^T) (Y - f_0(X))

    exactly (discrete GD), or with ``(I - s Theta)^T -> exp(-s T Theta)`` for ``flow=True`` (gradient flow at
    time ``lr T``; ``steps`` may then be any real >= 0). Both are evaluated in Theta's eigenbasis: the gain
    ``(1 - (1 - s lam)^T)/lam`` is computed through ``log1p``/``expm1`` (no cancellation as ``lam -> 0``), is
    ``s T`` at ``lam = 0`` (its limit; so singular kernels work), and for ``1 <= s lam < 2`` uses the
    oscillating power of the negative base directly. Discrete GD must be stable, ``s lam_max < 2``
    (``lr < 2 n / lam_max``, resp. ``2 n k / lam_max``); otherwise a ConfigError names the largest stable ``lr``.

    ``ntk_train``: ``(n, n)`` (one kernel for every output, ``Theta (x) I_k``, as for an infinitely wide MLP)
    or ``(n, n, k, k)`` (a full empirical NTK); ``ntk_test_train``: ``(m, n)`` or ``(m, n, k, k)``. ``y_train``,
    ``f0_train``: ``(n,)`` or ``(n, k)``; ``f0_test``: ``(m,)`` or ``(m, k)``, required with ``ntk_test_train``.
    ``steps``: a non-negative integer, or a 1-D array of them (the outputs then get a leading time axis).
    Returns ``(f_train, f_test)``, ``f_test = None`` without test points.
    """
    one_of("reduction", reduction, ("sum", "mean"))
    positive_float("lr", lr)
    n = _length("y_train", y_train)
    y, shape = _outputs("y_train", y_train, n)
    k = y.shape[1]
    f0, _ = _outputs("f0_train", f0_train, n, k)
    times = _steps(steps, flow)
    kernel, shared = _kernel("ntk_train", ntk_train, n, n, k)
    scale = lr / (n * k if reduction == "mean" else n)
    lam, vecs = _eigh_psd("ntk_train", kernel)
    lam_max = lam[-1] if len(lam) else 0.0
    if not flow and scale * lam_max >= 2:
        raise ConfigError(f"lr={lr:g} is unstable for discrete GD on this kernel (lr lam_max/{'nk' if reduction == 'mean' else 'n'}"
                          f" = {scale * lam_max:.4g} >= 2): use lr < {2 * lr / (scale * lam_max):.6g}, or flow=True")
    t = times.reshape(-1, 1)
    learned = _learned(scale * lam, t, flow)
    coef = vecs.T @ _as_columns(f0 - y, shared)  # residual at init, in the eigenbasis: (N, c)
    f_train = _as_columns(y, shared)[None] + np.einsum("ij,tjc->tic", vecs, (1.0 - learned)[:, :, None] * coef)
    f_train = f_train.reshape((len(t),) + shape)
    f_test = None
    if ntk_test_train is not None:
        if f0_test is None:
            raise ConfigError("f0_test is required with ntk_test_train: the network's test outputs at init")
        m = _length("f0_test", f0_test)
        g0, test_shape = _outputs("f0_test", f0_test, m, k)
        cross = _cross_kernel("ntk_test_train", ntk_test_train, m, n, k, shared)
        gain = _gain(learned, lam, scale, t)
        f_test = _as_columns(g0, shared)[None] - np.einsum("ij,tjc->tic", cross @ vecs, gain[:, :, None] * coef)
        f_test = f_test.reshape((len(t),) + test_shape)
    if times.ndim == 0:
        return f_train[0], None if f_test is None else f_test[0]
    return f_train, f_test


def _learned(rate: np.ndarray, t: np.ndarray, flow: bool) -> np.ndarray:
    """``1 - exp(-rate t)`` (flow) or ``1 - (1 - rate)^t`` (discrete) for every time (rows) and mode (columns), without
    cancellation for slow modes; ``t = inf`` gives 1 for every moving mode and 0 for a mode with ``rate = 0``."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if flow:
            learned = -np.expm1(-rate * t)
        else:
            small = rate < 1
            learned = np.where(small, -np.expm1(t * np.log1p(-np.where(small, rate, 0.0))),
                               1.0 - np.power(1.0 - rate, t))
    return np.where(rate > 0, learned, 0.0)


def _gain(learned: np.ndarray, lam: np.ndarray, scale: float, t: np.ndarray) -> np.ndarray:
    """``Theta^-1 (I - decay)`` in the eigenbasis: ``learned / lam``, with its limit ``scale t`` at ``lam = 0`` (0 at
    ``t = inf``, where such a mode's test coupling vanishes anyway: ``Theta(x, X) v = 0`` for ``Theta v = 0``)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(lam > 0, learned / np.where(lam > 0, lam, 1.0), np.where(np.isfinite(t), scale * t, 0.0))


def _steps(steps, flow: bool, name: str = "steps", allow_inf: bool = False) -> np.ndarray:
    if isinstance(steps, bool) or np.asarray(steps).dtype == bool:
        raise ConfigError(f"{name}={steps!r} must be a number of steps (an integer >= 0) or a 1-D array of them")
    try:
        times = np.asarray(steps, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{name}={steps!r} must be an integer >= 0 or a 1-D array of them") from None
    bad = np.isnan(times) if allow_inf else ~np.isfinite(times)
    if times.ndim > 1 or np.any(bad) or np.any(times < 0):
        raise ConfigError(f"{name}={steps!r} must be {'an' if allow_inf else 'a finite'} integer >= 0"
                          f"{' (or inf)' if allow_inf else ''} or a 1-D array of them")
    finite = np.isfinite(times)
    if not flow and np.any(times[finite] != np.round(times[finite])):
        raise ConfigError(f"{name}={steps!r} must be whole numbers for discrete GD (flow=True takes real times)")
    return times


def kernel_regression(k_train: np.ndarray, y_train: np.ndarray, k_test_train: np.ndarray | None = None, *,
                      ridge: float = 0.0, f0_train: np.ndarray | None = None,
                      f0_test: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel (ridge) regression ``f(x) = f0(x) + K(x, X) (K(X, X) + ridge I)^-1 (Y - f0(X))`` on train and test.

    ``ridge`` is added to the kernel matrix as is, an absolute amount (neural-tangents' ``diag_reg`` is instead
    scaled by ``tr(K)/n`` unless ``diag_reg_absolute_scale=True``). With ``ridge = 0`` this is the
    ``steps -> infinity`` limit of :func:`linearized_gd` (Lee et al. 2019, arXiv:1902.06720, Eq. 16).
    Solved by Cholesky in float64; a singular ``K + ridge I`` falls back to the minimum-norm solution
    (eigendecomposition, eigenvalues below ``n eps lam_max`` dropped). Kernels are ``(n1, n2)``, shared by
    the outputs, or ``(n1, n2, k, k)``; ``y_train``/``f0_*`` are ``(n,)`` or ``(n, k)``; ``f0_*`` default to 0
    (``f0_test`` is required if ``f0_train`` is given with test points). Returns ``(fit_train, f_test)``.
    """
    positive_float("ridge", ridge, allow_zero=True)
    n = _length("y_train", y_train)
    y, shape = _outputs("y_train", y_train, n)
    k = y.shape[1]
    kernel, shared = _kernel("k_train", k_train, n, n, k)
    f0 = np.zeros_like(y) if f0_train is None else _outputs("f0_train", f0_train, n, k)[0]
    if np.abs(kernel - kernel.T).max(initial=0.0) > 1e-8 * np.abs(kernel).max(initial=0.0):
        raise ConfigError("k_train is not symmetric; pass the train-train kernel K(X, X)")
    target = _as_columns(y - f0, shared)
    regularized = kernel + ridge * np.eye(len(kernel))
    try:
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(regularized, lower=True), target)
    except np.linalg.LinAlgError:  # singular: the minimum-norm interpolant
        lam, vecs = np.linalg.eigh(regularized)
        keep = lam > len(lam) * np.finfo(float).eps * max(lam[-1], 0.0)
        coef = vecs[:, keep] @ ((vecs[:, keep].T @ target) / lam[keep, None])
    fit = (_as_columns(f0, shared) + kernel @ coef).reshape(shape)
    if k_test_train is None:
        return fit, None
    m = _length("k_test_train", k_test_train)
    if f0_test is None and f0_train is not None:
        raise ConfigError("f0_test is required with k_test_train when f0_train is given (the test outputs at init)")
    g0, test_shape = (np.zeros((m, k)), (m,) + shape[1:]) if f0_test is None else _outputs("f0_test", f0_test, m, k)
    cross = _cross_kernel("k_test_train", k_test_train, m, n, k, shared)
    return fit, (_as_columns(g0, shared) + cross @ coef).reshape(test_shape)


def eigenmode_descent_loss(eigenvalues, powers, learning_rates, at) -> np.ndarray:
    """Half squared error of gradient descent from zero in a kernel's (or covariance's) eigenbasis at steps ``at``:
    ``sum_i powers_i prod_{s < t} (1 - eta_s lambda_i)^2 / 2``, with ``learning_rates[t - 1]`` the rate of step ``t``
    (the population limit of a linear model or a lazy network; Saxe et al. 2014, Bordelon & Pehlevan 2022,
    arXiv:2202.02678). Products in log space, one cumulative sum over the steps."""
    lam = np.asarray(eigenvalues, float)
    with np.errstate(divide="ignore"):  # a mode with eta lambda = 1 is learned in one step: log 0 -> kept 0
        log_step = 2 * np.log(np.abs(1 - np.outer(np.asarray(learning_rates, float), lam)))  # (steps, modes)
    kept = np.exp(np.vstack([np.zeros(len(lam)), np.cumsum(log_step, axis=0)])[np.asarray(at, int)])
    return 0.5 * kept @ np.asarray(powers, float)

"""Linearized (kernel) dynamics of GD on squared loss, and its limit: kernel ridge regression.

A network linearized at init, f_lin(x; theta) = f(x; theta_0) + J(x)(theta - theta_0), trained by full-batch
GD on ``L = 1/(2n) sum_i ||f(x_i) - y_i||^2`` (lmech's ``Task("mse")``: mean over examples, sum over the k
outputs) moves in function space by ``f <- f - (eta/n) Theta (f - Y)`` with the NTK ``Theta = J J^T``
(Jacot et al. 2018, arXiv:1806.07572; Lee et al. 2019, arXiv:1902.06720, Eqs. 9-11). neural-tangents'
``predict.gradient_descent_mse`` uses the mean over outputs as well, i.e. ``eta/(n k)``: ``reduction="mean"``.
"""
from __future__ import annotations

import numpy as np

from ..systems._validate import ConfigError, one_of, positive_float


def _flatten(kernel: np.ndarray, n_rows: int, n_cols: int, k: int) -> np.ndarray:
    """(n1, n2) shared across outputs -> (n1 k, n2 k) block-diagonal; (n1, n2, k, k) -> (n1 k, n2 k)."""
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.shape == (n_rows, n_cols):
        return np.kron(kernel, np.eye(k))
    if kernel.shape == (n_rows, n_cols, k, k):
        return kernel.transpose(0, 2, 1, 3).reshape(n_rows * k, n_cols * k)
    raise ConfigError(f"kernel of shape {kernel.shape} does not match ({n_rows}, {n_cols}) or ({n_rows}, {n_cols}, {k}, {k})")


def _targets(name: str, y: np.ndarray, n: int) -> tuple[np.ndarray, tuple[int, ...]]:
    y = np.asarray(y, dtype=np.float64)
    if y.ndim not in (1, 2) or len(y) != n:
        raise ConfigError(f"{name} has shape {y.shape}; expected ({n},) or ({n}, k)")
    return y.reshape(n, -1), y.shape


def linearized_gd(ntk_train: np.ndarray, y_train: np.ndarray, f0_train: np.ndarray, *, lr: float,
                  steps: int | np.ndarray, ntk_test_train: np.ndarray | None = None, f0_test: np.ndarray | None = None,
                  reduction: str = "sum", flow: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs of the linearized network after ``steps`` GD steps of size ``lr`` on train and test points.

    Train: ``f_T - Y = (I - eta Theta/n)^T (f_0 - Y)`` (``flow=True``: ``exp(-eta T Theta/n)``, gradient flow at
    time ``eta T``); test: ``f_T(x) = f_0(x) + Theta(x, X) Theta^-1 (I - (I - eta Theta/n)^T)(Y - f_0(X))``, with
    ``n -> n k`` for ``reduction="mean"``. Evaluated in Theta's eigenbasis; the factor
    ``(1 - (1 - eta lam)^T)/lam`` is taken to its limit ``eta T`` for ``lam -> 0``, so singular kernels work.
    ``ntk_*`` is ``(n1, n2)`` (the same kernel for every output, as for an infinitely wide MLP) or
    ``(n1, n2, k, k)``; ``y``/``f0`` are ``(n,)`` or ``(n, k)``. ``steps`` may be an array: the outputs then
    have a leading time axis. Discrete GD must be stable: ``eta lam_max / n < 2``.
    """
    one_of("reduction", reduction, ("sum", "mean"))
    positive_float("lr", lr)
    n = len(np.asarray(y_train))
    y, shape = _targets("y_train", y_train, n)
    f0, _ = _targets("f0_train", f0_train, n)
    k = y.shape[1]
    times = np.asarray(steps, dtype=np.float64)
    if np.any(times < 0):
        raise ConfigError(f"steps={steps!r} must be >= 0")
    scale = lr / (n * k if reduction == "mean" else n)
    lam, vecs = np.linalg.eigh(_flatten(ntk_train, n, n, k))
    lam = np.clip(lam, 0.0, None)
    if not flow and scale * lam[-1] >= 2:
        raise ConfigError(f"lr={lr:g} is unstable for this kernel: discrete GD needs lr < {2 * lr / (scale * lam[-1]):.4g}")
    rate = scale * lam  # per-step contraction rate of each eigenmode
    t = times.reshape(-1, 1)
    if flow:
        learned = -np.expm1(-rate * t)  # 1 - decay, without cancellation for slow modes
    else:
        safe = np.where(rate < 1, rate, 0.0)  # log1p branch for rate < 1; rates in [1, 2) use the power directly
        learned = np.where(rate < 1, -np.expm1(t * np.log1p(-safe)), 1.0 - np.power(1.0 - rate, t))
    decay = 1.0 - learned  # (T, nk)
    residual0 = vecs.T @ (f0 - y).reshape(-1)
    f_train = y.reshape(-1) + (decay * residual0) @ vecs.T
    out_shape = times.shape + shape
    f_test = None
    if ntk_test_train is not None:
        if f0_test is None:
            raise ConfigError("f0_test is required with ntk_test_train (the test outputs at init)")
        m = len(np.asarray(f0_test))
        g0, test_shape = _targets("f0_test", f0_test, m)
        cross = _flatten(ntk_test_train, m, n, k)
        # Theta^-1 (I - decay) in the eigenbasis: (1 - decay)/lam -> scale * T as lam -> 0
        with np.errstate(divide="ignore", invalid="ignore"):
            gain = np.where(lam > 1e-12 * max(lam[-1], 1e-300), learned / np.where(lam > 0, lam, 1.0), scale * t)
        f_test = g0.reshape(-1) + (gain * (vecs.T @ -(f0 - y).reshape(-1))) @ (cross @ vecs).T
        f_test = f_test.reshape(times.shape + test_shape)
    return f_train.reshape(out_shape), f_test


def kernel_regression(k_train: np.ndarray, y_train: np.ndarray, k_test_train: np.ndarray | None = None, *,
                      ridge: float = 0.0, f0_train: np.ndarray | None = None,
                      f0_test: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Kernel (ridge) regression ``f(x) = f0(x) + K(x, X) (K(X, X) + ridge I)^-1 (Y - f0(X))`` on train and test.

    ``ridge`` is added to the kernel matrix as is (neural-tangents' ``diag_reg`` instead scales by
    ``tr(K)/n`` unless ``diag_reg_absolute_scale=True``). With ``ridge=0`` this is the ``steps -> infinity``
    limit of :func:`linearized_gd`. Kernels are ``(n1, n2)``, shared by all outputs.
    """
    positive_float("ridge", ridge, allow_zero=True)
    k_train = np.asarray(k_train, dtype=np.float64)
    n = len(k_train)
    y, shape = _targets("y_train", y_train, n)
    f0 = np.zeros_like(y) if f0_train is None else _targets("f0_train", f0_train, n)[0]
    coef = np.linalg.lstsq(k_train + ridge * np.eye(n), y - f0, rcond=None)[0] if ridge == 0 else \
        np.linalg.solve(k_train + ridge * np.eye(n), y - f0)
    fit = (f0 + k_train @ coef).reshape(shape)
    if k_test_train is None:
        return fit, None
    cross = np.asarray(k_test_train, dtype=np.float64)
    g0 = np.zeros((len(cross), y.shape[1])) if f0_test is None else _targets("f0_test", f0_test, len(cross))[0]
    return fit, (g0 + cross @ coef).reshape((len(cross),) + shape[1:])

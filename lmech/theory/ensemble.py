"""The infinite ensemble of infinitely wide networks trained by gradient descent on MSE: a Gaussian process whose
mean and covariance at every training time are closed forms of the NNGP kernel ``K`` and the NTK ``Theta``
(Lee et al. 2019, arXiv:1902.06720, Eqs. 13, 15, 16).

Conventions (those of neural-tangents' ``predict.gradient_descent_mse_ensemble``, so results move between them):

- ``t`` counts steps (real for gradient flow; ``inf`` allowed) and time is ``t * learning_rate``;
- the loss is ``1/(2 N) ||f(X) - Y||_F^2`` with ``N = n k`` (``reduction="mean"``, over examples and outputs) or
  ``N = n`` (``reduction="sum"``, lmech's ``Task("mse")``), so a mode of eigenvalue ``lam`` decays as
  ``exp(-lam t learning_rate / N)`` in gradient flow and as ``(1 - learning_rate lam / N)^t`` in discrete steps;
- ``diag_reg`` is added to the train kernel, scaled by its mean diagonal ``tr(K)/n`` unless
  ``diag_reg_absolute_scale=True``;
- kernels are shared by the ``k`` outputs (``Theta (x) I_k``), so the covariance is one ``(m, m)`` matrix per time.

With ``A_t = Theta^-1 (I - exp(-Theta t lr / N))`` the ``"ntk"`` ensemble (every layer trained; initial outputs
``f_0 ~ GP(0, K)``) has mean ``Theta_xX A_t Y`` and covariance
``K_xx' + Theta_xX A_t K A_t Theta_Xx' - Theta_xX A_t K_Xx' - K_xX A_t Theta_Xx'``. ``"nngp"`` (readout only,
``Theta -> K``) has covariance ``K_xx' - K_xX K^-1 (I - exp(-2 K t lr / N)) K_Xx'``, at ``t = inf`` the NNGP
posterior. ``"ntkgp"`` is the same with ``Theta`` as the prior kernel too: ensembles with an added randomized prior
function (He, Lakshminarayanan & Teh 2020, arXiv:2007.05864), whose ``t = inf`` limit is the NTK-GP posterior.
Everything is solved once in the train kernel's eigenbasis in float64 and evaluated at every time together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..systems._validate import ConfigError, one_of, positive_float
from .kernels import nngp_ntk
from .linearized import _eigh_psd, _gain, _learned, _length, _outputs, _steps

GETS = ("nngp", "ntk", "ntkgp")


@dataclass(frozen=True)
class EnsemblePrediction:
    """``mean``: ``(times, m)`` or ``(times, m, k)`` test outputs (no time axis for a scalar ``t``); ``cov``:
    ``(times, m, m)``, shared by the outputs (``None`` unless asked for); ``t``: the steps; ``get``: the ensemble."""

    t: np.ndarray
    mean: np.ndarray
    cov: np.ndarray | None
    get: str

    @property
    def variance(self) -> np.ndarray | None:
        """The pointwise variance ``diag(cov)``: ``(times, m)``."""
        return None if self.cov is None else np.diagonal(self.cov, axis1=-2, axis2=-1)


def _pair(name: str, kernels: Any, need: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``{"nngp": ..., "ntk": ...}`` from a mapping, an object with those attributes or an ``(nngp, ntk)`` tuple."""
    if isinstance(kernels, Mapping):
        found = dict(kernels)
    elif isinstance(kernels, tuple) and len(kernels) == 2:
        found = {"nngp": kernels[0], "ntk": kernels[1]}
    else:
        found = {g: getattr(kernels, g) for g in ("nngp", "ntk") if hasattr(kernels, g)}
    missing = [g for g in need if found.get(g) is None]
    if missing:
        raise ConfigError(f"{name} needs its {' and '.join(missing)} kernel(s); pass {{'nngp': K, 'ntk': Theta}} "
                          "or an (nngp, ntk) pair")
    return {g: np.asarray(found[g], dtype=np.float64) for g in need}


def _checked(name: str, kernel: np.ndarray, shape: tuple[int, int], symmetric: bool = False) -> np.ndarray:
    if kernel.shape != shape:
        raise ConfigError(f"{name} has shape {kernel.shape}; expected {shape} (test points x training points, one "
                          "training point per y_train row)")
    if not np.all(np.isfinite(kernel)):
        raise ConfigError(f"{name} holds NaN or inf")
    if symmetric and np.abs(kernel - kernel.T).max(initial=0.0) > 1e-8 * np.abs(kernel).max(initial=0.0):
        raise ConfigError(f"{name} is not symmetric")
    return kernel


def ensemble_predict(k_train_train: Any, y_train: Any, k_test_train: Any, k_test_test: Any = None, *, t: Any,
                     learning_rate: float = 1.0, get: str = "ntk", diag_reg: float = 0.0,
                     diag_reg_absolute_scale: bool = False, flow: bool = True,
                     reduction: str = "mean") -> EnsemblePrediction:
    """Mean (and, given ``k_test_test``, covariance) of the GD-trained infinite ensemble on test points from
    precomputed kernels (module docstring for the equations and conventions): analytic, Monte Carlo or empirical.

    Each ``k_*`` is ``{"nngp": K, "ntk": Theta}`` (or an ``(nngp, ntk)`` pair): ``(n, n)``, ``(m, n)``, ``(m, m)``.
    ``"nngp"`` needs only ``K``, ``"ntkgp"`` only ``Theta``, ``"ntk"`` both (``K`` only for the covariance).
    ``t``: steps (a number or a 1-D array; ``inf`` for the end of training); ``flow=False`` takes discrete GD steps
    (whole numbers), which must be stable: ``learning_rate lam_max / N < 2``.
    """
    one_of("get", get, GETS)
    one_of("reduction", reduction, ("mean", "sum"))
    positive_float("learning_rate", learning_rate)
    positive_float("diag_reg", diag_reg, allow_zero=True)
    times = _steps(t, flow, name="t", allow_inf=True)
    n = _length("y_train", y_train)
    y, shape = _outputs("y_train", y_train, n)
    k = y.shape[1]
    compute_cov = k_test_test is not None
    dynamics = "nngp" if get == "nngp" else "ntk"
    prior = "ntk" if get == "ntkgp" else "nngp"
    need = tuple(dict.fromkeys([dynamics] + ([prior] if compute_cov else [])))
    train = _pair("k_train_train", k_train_train, need)
    cross = _pair("k_test_train", k_test_train, need)
    m = _length("k_test_train", cross[dynamics])
    train = {g: _checked(f"k_train_train[{g!r}]", v, (n, n), symmetric=True) for g, v in train.items()}
    cross = {g: _checked(f"k_test_train[{g!r}]", v, (m, n)) for g, v in cross.items()}

    kernel = train[dynamics]
    reg = diag_reg * (1.0 if diag_reg_absolute_scale or n == 0 else np.trace(kernel) / n)
    lam, vecs = _eigh_psd(f"k_train_train[{dynamics!r}]", kernel + reg * np.eye(n))
    scale = learning_rate / (n * k if reduction == "mean" else n)
    if not flow and len(lam) and scale * lam[-1] >= 2:
        raise ConfigError(f"learning_rate={learning_rate:g} is unstable for discrete GD on this kernel (learning_rate "
                          f"lam_max / N = {scale * lam[-1]:.4g} >= 2): use learning_rate < "
                          f"{2 * learning_rate / (scale * lam[-1]):.6g}, or flow=True")
    tt = times.reshape(-1, 1)
    gain = _gain(_learned(scale * lam, tt, flow), lam, scale, tt)  # (times, n): A_t in the eigenbasis
    coupling = vecs.T @ cross[dynamics].T  # (n, m): V^T Theta_Xx
    mean = np.einsum("im,ti,ic->tmc", coupling, gain, vecs.T @ y)
    cov = None
    if compute_cov:
        test = _pair("k_test_test", k_test_test, (prior,))[prior]
        test = _checked(f"k_test_test[{prior!r}]", test, (m, m), symmetric=True)
        if get == "ntk":
            prior_eig = vecs.T @ train["nngp"] @ vecs  # K in Theta's eigenbasis
            prior_cross = vecs.T @ cross["nngp"].T  # V^T K_Xx
            cov = np.empty((len(tt), m, m))
            for i, g in enumerate(gain):
                moved = g[:, None] * coupling  # A_t Theta_Xx, in the eigenbasis
                mixed = coupling.T @ (g[:, None] * prior_cross)  # Theta_xX A_t K_Xx
                cov[i] = test + moved.T @ prior_eig @ moved - mixed - mixed.T
        else:  # the prior kernel is the dynamics kernel: exp(-2 ...) closes the square
            twice = _gain(_learned(scale * lam, 2 * tt, flow), lam, scale, 2 * tt)
            cov = test[None] - np.einsum("im,ti,il->tml", coupling, twice, coupling)
    mean = mean.reshape((len(tt), m) + shape[1:])
    if times.ndim == 0:
        return EnsemblePrediction(times, mean[0], None if cov is None else cov[0], get)
    return EnsemblePrediction(times, mean, cov, get)


def ntk_predict(x_train: Any, y_train: Any, x_test: Any, *, t: Any, learning_rate: float = 1.0, get: str = "ntk",
                diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False, compute_cov: bool = True,
                flow: bool = True, reduction: str = "mean", **architecture: Any) -> EnsemblePrediction:
    """The GD-trained infinite ensemble of the infinitely wide MLP described by ``architecture`` (the keywords of
    :func:`lmech.theory.nngp_ntk`: ``depth``, ``activation``, ``w_std``, ``b_std``, ...), on ``x_test`` after ``t``
    steps: :func:`ensemble_predict` on the analytic kernels, computed here in float64."""
    if "depth" not in architecture:
        raise ConfigError("ntk_predict needs the architecture's keywords for nngp_ntk, at least depth=...")
    x1, x2 = np.asarray(x_train, np.float64), np.asarray(x_test, np.float64)
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ConfigError(f"x_train and x_test must be (points, features) arrays with one feature count; got "
                          f"{x1.shape} and {x2.shape}")
    train = dict(zip(("nngp", "ntk"), nngp_ntk(x1, **architecture)))
    cross = dict(zip(("nngp", "ntk"), nngp_ntk(x2, x1, **architecture)))
    test = dict(zip(("nngp", "ntk"), nngp_ntk(x2, **architecture))) if compute_cov else None
    return ensemble_predict(train, y_train, cross, test, t=t, learning_rate=learning_rate, get=get,
                            diag_reg=diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale, flow=flow,
                            reduction=reduction)


def linearized_laplace_variance(ntk_train_train: Any, ntk_test_train: Any, ntk_test_test: Any, *,
                                prior_precision: float, noise_variance: float) -> np.ndarray:
    """Predictive variance of the linearized Laplace approximation (GGN, full Hessian) of a network with prior
    ``N(0, I / delta)`` on its weights and Gaussian noise ``s^2``, from its empirical NTK ``Theta = J J^T``:
    ``(1/delta) [Theta_xx - Theta_xX (Theta + delta s^2 I)^-1 Theta_Xx]`` (Woodbury; Immer, Korzepa & Bauer 2021,
    arXiv:2008.08400), the NTK-GP posterior scaled by ``1/delta``. Returns the ``(m,)`` variances (of the function,
    without the noise)."""
    positive_float("prior_precision", prior_precision)
    positive_float("noise_variance", noise_variance)
    theta = {"ntk": ntk_train_train}
    n = _length("ntk_train_train", np.asarray(ntk_train_train))
    posterior = ensemble_predict(theta, np.zeros(n), {"ntk": ntk_test_train}, {"ntk": ntk_test_test}, t=np.inf,
                                 get="ntkgp", diag_reg=prior_precision * noise_variance,
                                 diag_reg_absolute_scale=True)
    return posterior.variance / prior_precision

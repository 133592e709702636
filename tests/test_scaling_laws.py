"""The scaling-law family (issue 14 §2): kernel-scaling-exponent's spectra and measurement against second algorithms,
and the law failing under a wrong exponent."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS, PASS
from lmech.systems import CircleFourier
from lmech.theory import circle_eigensystem, kernel_eigensystem, spectral_exponents
from lmech.theory.kernels import nngp_ntk


def _circle(m):
    t = 2 * np.pi * np.arange(m) / m
    return t, np.stack([np.cos(t), np.sin(t)], 1)


def test_circle_eigensystem_equals_the_dense_eigendecomposition():
    t, x = _circle(384)
    _, k = nngp_ntk(x, depth=2, activation="relu", w_std=2 ** 0.5, b_std=0.5)
    y = CircleFourier(decay=1.2, harmonics=150, seed=2).function(t)
    lam, v = circle_eigensystem(k[0], y)
    lam_dense, v_dense = kernel_eigensystem(k, y)
    np.testing.assert_allclose(lam, lam_dense, atol=1e-13)
    # modes within a degree are degenerate: compare the target power per eigenvalue, not per eigenvector
    for value in np.unique(np.round(lam[:60], 10)):
        pick, dense = np.abs(lam - value) < 1e-9, np.abs(lam_dense - value) < 1e-9
        assert (v[pick] ** 2).sum() == pytest.approx((v_dense[dense] ** 2).sum(), abs=1e-12)


def test_spectral_exponents_of_exact_power_laws():
    i = np.arange(1, 2001)
    fit = spectral_exponents(i ** -2.5, np.sqrt(i ** -3.2), (10, 500))
    assert fit.rho == pytest.approx(2.5, abs=1e-12) and fit.r == pytest.approx(3.2, abs=1e-12)
    assert fit.exponent == pytest.approx(2.2) and fit.limited_by == "target"
    assert fit.time_exponent == pytest.approx(2.2 / 2.5)
    steep = spectral_exponents(i ** -1.0, np.sqrt(i ** -5.0), (10, 500))
    assert steep.exponent == pytest.approx(2.0) and steep.limited_by == "kernel"
    # the tail sum_{j >= i} j^-3 ~ (i - 1/2)^-2 / 2: slope -2 up to the discreteness at small i
    tail = spectral_exponents(i ** -1.0, np.sqrt(i ** -3.0), (20, 200), tail=True)
    assert tail.r == pytest.approx(3.0, abs=0.02)


def test_kernel_lookup_regression_equals_direct_kernel_evaluation():
    """The law's lookup of kernel entries in one row equals nngp_ntk evaluated on the drawn angles."""
    from lmech.laws import kernel_scaling_exponent as law

    s = law.Setting((16,), 1, 256)
    target = CircleFourier(decay=1.0, harmonics=100, n_train=1, n_test=0)
    measured = law.measured_curves(s, {1.0: target}, seed=5)[1.0][0, 0]
    rng = np.random.default_rng(5)
    t = 2 * np.pi * rng.choice(256 * law._FINE, 16, replace=False) / (256 * law._FINE)
    grid, x_grid = _circle(256)
    x = np.stack([np.cos(t), np.sin(t)], 1)
    _, k = nngp_ntk(x, **law._KERNEL)
    _, k_test = nngp_ntk(x_grid, x, **law._KERNEL)
    k[np.diag_indices(16)] += law._JITTER * k[0, 0]
    direct = np.mean((k_test @ np.linalg.solve(k, target.function(t)) - target.function(grid)) ** 2)
    assert measured == pytest.approx(direct, rel=1e-8)


def test_kernel_scaling_exponent_passes_and_fails_with_the_exponent_off_by_one(monkeypatch):
    from lmech.laws import kernel_scaling_exponent as module

    law = LAWS["kernel-scaling-exponent"]
    verdict = law.evaluate({}, "quick")
    assert verdict.status == PASS and verdict.error <= 0.1
    monkeypatch.setattr(module, "predicted_exponent", lambda e: min(e.r, 2 * e.rho))  # r instead of r - 1
    assert law.evaluate({}, "quick").status == FAIL

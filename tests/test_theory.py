import numpy as np
import pytest

from lmech.theory import adam_threshold, gd_threshold, heavy_ball_threshold, learning_time, mode_ode, saxe_mode


@pytest.mark.parametrize("s, m0", [(5.0, 1e-3), (0.5, 1e-4), (2.0, 0.3)])
def test_saxe_closed_form_matches_ode_integration(s, m0):
    t = np.linspace(0, 12 / s, 60)
    np.testing.assert_allclose(saxe_mode(t, s, m0), mode_ode(t, s, m0, depth=2), rtol=1e-6, atol=1e-9)


def test_closed_form_solves_the_logistic_equation():
    s, m0 = 3.0, 1e-2
    t = np.linspace(0.1, 3, 50)
    h = 1e-6
    dm = (saxe_mode(t + h, s, m0) - saxe_mode(t - h, s, m0)) / (2 * h)
    m = saxe_mode(t, s, m0)
    np.testing.assert_allclose(dm, 2 * m * (s - m), rtol=1e-6, atol=1e-8)
    assert saxe_mode(0.0, s, m0) == pytest.approx(m0)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_learning_time_is_where_the_trajectory_crosses_half(depth):
    s, m0 = 2.0, 1e-3
    t_half = learning_time(s, m0, depth)
    assert mode_ode(np.array([t_half]), s, m0, depth)[0] == pytest.approx(s / 2, rel=1e-6)


def test_learning_time_closed_form_and_inverse_scaling():
    s, m0 = 4.0, 1e-3
    assert learning_time(s, m0, 2) == pytest.approx(np.log((s - m0) / m0) / (2 * s), rel=1e-12)
    # depth 3, small init: t ~ m0^(-1/3) / s, so doubling s halves the time to leading order
    ratio = learning_time(1.0, 1e-6, 3) / learning_time(2.0, 1e-6, 3)
    assert ratio == pytest.approx(2.0, rel=0.02)


def _spectral_radius_gd(lr, s):
    return abs(1 - lr * s)


def _spectral_radius_heavy_ball(lr, beta, s):
    # v' = beta v + s x; x' = x - lr v'
    m = np.array([[beta, s], [-lr * beta, 1 - lr * s]])
    return max(abs(np.linalg.eigvals(m)))


def _spectral_radius_adam(lr, beta1, s):
    # frozen preconditioner folded into s = lambda(P^-1 H): m' = b m + (1-b) s x; x' = x - lr m'
    m = np.array([[beta1, (1 - beta1) * s], [-lr * beta1, 1 - lr * (1 - beta1) * s]])
    return max(abs(np.linalg.eigvals(m)))


def test_thresholds_are_where_the_linear_iteration_loses_stability():
    lr, beta = 0.05, 0.9
    for threshold, radius in [
        (gd_threshold(lr), lambda s: _spectral_radius_gd(lr, s)),
        (heavy_ball_threshold(lr, beta), lambda s: _spectral_radius_heavy_ball(lr, beta, s)),
        (adam_threshold(lr, beta), lambda s: _spectral_radius_adam(lr, beta, s)),
    ]:
        assert radius(0.99 * threshold) < 1 < radius(1.01 * threshold)
    assert adam_threshold(1.0, 0.9) == pytest.approx(38.0)
    with pytest.raises(ValueError, match="lr"):
        gd_threshold(0.0)

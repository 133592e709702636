"""Loss-curve laws (issue 14 §1): the multi-power law against a direct O(T^2) sum and its closed-form Jacobian against
forward-mode autograd; fits that give back the parameters of noise-free curves and predict a held-out schedule; the
power law in steps."""
import numpy as np
import pytest
import torch
from torch.func import jacfwd

from lmech.theory.loss_curves import (_design, _internal, _multi_power_terms, fit_loss_curve, fit_multi_power_law,
                                      multi_power_loss)

TRUTH = {"L0": 2.0, "A": 0.8, "alpha": 0.45, "B": 300.0, "C": 2.0, "beta": 0.55, "gamma": 0.6}
T, WARMUP, PEAK = 2000, 100, 3e-3


def _schedules():
    warm = np.linspace(PEAK / WARMUP, PEAK, WARMUP)
    t = np.arange(1, T - WARMUP + 1)
    cosine = 1e-4 + (PEAK - 1e-4) * 0.5 * (1 + np.cos(np.pi * t / (T - WARMUP)))
    decay = np.where(t < 0.8 * (T - WARMUP), PEAK, PEAK * np.maximum(1 - (t - 0.8 * (T - WARMUP)) / (0.2 * (T - WARMUP)), 0.01))
    return {name: np.concatenate([warm, body]) for name, body in
            (("constant", np.full(T - WARMUP, PEAK)), ("cosine", cosine), ("wsd", decay))}


def _direct(p, rates, warmup, steps):
    """The law term by term: S_k(t) summed afresh for every step after warm-up and every logged t."""
    out = []
    for s in steps:
        drop_sum = 0.0
        for k in range(warmup + 1, s + 1):
            before = rates[k - 2] if k > 1 else rates[0]
            x = rates[k - 1] ** -p["gamma"] * rates[k - 1:s].sum()
            drop_sum += (before - rates[k - 1]) * (1 - (p["C"] * x + 1) ** -p["beta"])
        out.append(p["L0"] + p["A"] * rates[:s].sum() ** -p["alpha"] - p["B"] * drop_sum)
    return np.array(out)


STEPS = np.unique(np.geomspace(WARMUP + 1, T, 40).astype(int))


@pytest.mark.parametrize("name", ["constant", "cosine", "wsd"])
def test_multi_power_law_matches_the_direct_sum(name):
    rates = _schedules()[name]
    np.testing.assert_allclose(multi_power_loss(TRUTH, STEPS, rates, WARMUP), _direct(TRUTH, rates, WARMUP, STEPS),
                               rtol=1e-12)


def test_a_constant_schedule_is_a_power_law_in_the_area():
    rates = _schedules()["constant"]
    area = np.cumsum(rates)[STEPS - 1]
    np.testing.assert_allclose(multi_power_loss(TRUTH, STEPS, rates, WARMUP),
                               TRUTH["L0"] + TRUTH["A"] * area ** -TRUTH["alpha"], rtol=1e-13)


def test_closed_form_jacobian_matches_autograd():
    design = _design(STEPS, _schedules()["wsd"], WARMUP)
    theta = torch.tensor([_internal(TRUTH)], dtype=torch.float64)
    _, jac = _multi_power_terms(theta, design)
    auto = jacfwd(lambda th: _multi_power_terms(th[None], design)[0][0])(theta[0])
    torch.testing.assert_close(jac[0], auto, rtol=1e-10, atol=1e-12)


def test_fit_on_two_schedules_gives_back_the_law_and_predicts_the_third():
    schedules = _schedules()
    curves = [(STEPS, multi_power_loss(TRUTH, STEPS, schedules[k], WARMUP), schedules[k], WARMUP)
              for k in ("constant", "cosine")]
    fit = fit_multi_power_law(curves)
    assert fit.converged and fit.objective < 1e-15
    for name, value in TRUTH.items():
        assert fit.params[name] == pytest.approx(value, rel=1e-5), name
    held_out = multi_power_loss(TRUTH, STEPS, schedules["wsd"], WARMUP)
    np.testing.assert_allclose(fit.predict(STEPS, schedules["wsd"], WARMUP), held_out, rtol=1e-8)


def test_fit_loss_curve_recovers_a_power_law_in_steps():
    rng = np.random.default_rng(3)
    steps = np.unique(np.geomspace(1, 1e4, 60).astype(int))
    loss = (0.3 + 5.0 * steps ** -0.6) * np.exp(1e-3 * rng.standard_normal(len(steps)))
    fit = fit_loss_curve(steps, loss, bootstrap=200)
    assert fit.converged
    for name, value in {"E": 0.3, "A": 5.0, "alpha": 0.6}.items():
        low, high = fit.ci[name]
        assert low <= value <= high, (name, fit.ci[name])
    assert fit_loss_curve(steps, 5.0 * steps ** -0.6, offset=False).alpha == pytest.approx(0.6, rel=1e-6)


@pytest.mark.parametrize("curve, message", [
    ((STEPS, np.ones(len(STEPS))), "give (steps, loss, learning_rates)"),
    ((STEPS, np.ones(3), np.ones(T)), "differ in length"),
    ((STEPS, np.ones(len(STEPS)), -np.ones(T)), "learning_rates must be positive"),
    ((STEPS + T, np.ones(len(STEPS)), np.ones(T)), "steps must be integers in"),
    ((STEPS, -np.ones(len(STEPS)), np.ones(T)), "loss must be positive"),
    ((STEPS, np.ones(len(STEPS)), np.ones(T), T), "warmup="),
])
def test_bad_curves_name_the_problem(curve, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_multi_power_law([curve])


def test_step_zero_is_refused():
    with pytest.raises(ValueError, match="count from 1"):
        fit_loss_curve([0, 1, 2, 3], [1.0, 0.9, 0.8, 0.7])

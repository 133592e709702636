"""The kernel-issue laws at quick scale fail (or leave their regime) on a wrong measurement; ntk-lazy-limit's numbers."""
import numpy as np
import pytest
from conftest import distorted

from lmech.laws import FAIL, LAWS, OUT_OF_REGIME


def test_nfa_fails_when_correlation_is_low_and_is_out_of_regime_when_untrained(quick_runs):
    law = LAWS["neural-feature-ansatz"]
    assert law.evaluate(distorted(quick_runs[law.id], "nfa/0/s=0.5", lambda key, v: 0.8 * v), "quick").status == FAIL
    untrained = distorted(quick_runs[law.id], "loss/test", lambda key, v: 10 * v)
    assert law.evaluate(untrained, "quick").status == OUT_OF_REGIME


def test_nfa_shape_check_passes_the_trained_nfm_and_fails_a_flat_one_on_the_right_span(quick_runs):
    """An NFM equal to the projector onto span(U) (the teacher's span, a flat spectrum) has the alignment but not the
    ansatz's AGOP^(1/2) shape: the shape check fails it, while the trained NFM passes."""
    from lmech.systems import MultiIndex

    law = LAWS["neural-feature-ansatz"]
    target = law.settings["quick"].targets[0]
    name = f"{target} rich: corr(NFM, AGOP^1/2) - corr(NFM, projector onto span U)"
    trained = {c.name: c for c in law.evaluate(quick_runs[law.id], "quick").checks}[name]
    assert trained.ok and trained.value > 0
    u = MultiIndex(d_in=20, target=target, n_train=1, n_test=0).load().info["U"]
    flat = distorted(quick_runs[law.id], "nfa/0/nfm", lambda key, nfm: np.trace(nfm) / 2 * u @ u.T)
    verdict = law.evaluate(flat, "quick")
    assert verdict.status == FAIL
    assert [c.name for c in verdict.checks if not c.ok] == [name]


def test_lazy_rich_fails_on_wrong_scaling_or_misaligned_neurons(quick_runs):
    law = LAWS["lazy-rich-multiplier"]
    # weight change ~ alpha^-0.7 instead of alpha^-1
    slow = distorted(quick_runs[law.id], "weights/relative", lambda key, v: v * key["alpha"] ** 0.3)
    assert law.evaluate(slow, "quick").status == FAIL
    # rotate every trained first-layer neuron by 20 degrees: mass leaves the 10-degree windows
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    rotated = distorted(quick_runs[law.id], "param/layers.0.weight", lambda key, w: w @ np.array([[c, s], [-s, c]]))
    verdict = law.evaluate(rotated, "quick")
    assert verdict.status == FAIL
    assert [ch.value for ch in verdict.checks if "neuron mass" in ch.name][0] < 0.2


def test_teacher_identifiability_rule_and_concentration_by_hand():
    from lmech.laws.lazy_rich import concentration, identifiable

    def unit(*degrees):
        return np.array([[np.cos(np.radians(d)), np.sin(np.radians(d))] for d in degrees])

    # signed directions within a half-plane: identifiable; (-46, 9, 146) all positive contain 0 in their cone: not
    assert identifiable(unit(0, 60, 120), np.ones(3))
    assert not identifiable(unit(-46, 9, 146), np.ones(3))
    assert identifiable(unit(-46, 9, 146), np.array([1.0, 1.0, -1.0]))  # flipping a sign moves 146 to -34
    assert not identifiable(unit(0, 20, 120), np.ones(3))  # 20 degrees apart: windows overlap
    w = unit(5, 55, 200) * np.array([[1.0], [2.0], [3.0]])
    a = np.array([1.0, 1.0, 1.0])
    # neuron 0 is 5 deg from teacher 0 (same sign), neuron 1 is 5 deg from teacher 1, neuron 2 is far from both
    assert concentration(w, a, unit(0, 60), np.ones(2)) == pytest.approx(3 / 6)
    assert concentration(w, -a, unit(0, 60), np.ones(2)) == 0.0  # sign mismatch


@pytest.mark.slow  # ten runs up to width 2048 (about 60 s of training on 2 cores): CI's second stage
def test_ntk_lazy_limit_quick_separates_the_taylor_gap_from_the_kernel_fluctuation(quick_runs):
    """Both activations follow their Taylor model at the predicted orders (tanh ~ 1/m, ReLU ~ m^-1/2 from pattern
    flips) and the Taylor model approaches the analytic-NTK one as m^-1/2; the quick verdict is an honest fail of
    REFERENCE's 5% for ReLU only (about 5.1% at width 2048: prefactor ~2.3/sqrt(m))."""
    law = LAWS["ntk-lazy-limit"]
    verdict = law.evaluate(quick_runs[law.id], "quick")
    checks = {c.name: c for c in verdict.checks}
    assert verdict.status == FAIL
    assert [c.name for c in verdict.checks if not c.ok and c.kind == "claim"] == [
        "relu: network vs its Taylor model, final test gap at width 2048"]
    assert 0.05 < checks["relu: network vs its Taylor model, final test gap at width 2048"].value < 0.06
    assert checks["tanh: network vs its Taylor model, final test gap at width 2048"].value < 0.02
    # width-independent 15% noise on the measured test outputs: no gap shrinks any more
    rng = np.random.default_rng(0)
    off = distorted(quick_runs[law.id], "output/test", lambda key, f: f + 0.15 * np.abs(f).mean() * rng.standard_normal(f.shape))
    worse = {c.name: c for c in law.evaluate(off, "quick").checks}
    for act in ("relu", "tanh"):
        assert worse[f"{act}: network vs its Taylor model, fitted exponent vs width"].value > -0.3


@pytest.mark.slow
@pytest.mark.parametrize("wrong", [{"tanh": -0.5, "relu": -0.5}, {"tanh": -1.0, "relu": -1.0}])
def test_ntk_lazy_limit_fails_with_a_wrong_order_of_the_taylor_gap(quick_runs, monkeypatch, wrong):
    """The smooth network's gap is O(1/m) and ReLU's O(m^-1/2): swapping in the other order fails that activation."""
    from lmech.laws import ntk_lazy_limit

    monkeypatch.setattr(ntk_lazy_limit, "_TAYLOR_SLOPE", wrong)
    verdict = LAWS["ntk-lazy-limit"].evaluate(quick_runs["ntk-lazy-limit"], "quick")
    bad = [c.name for c in verdict.checks if not c.ok and "fitted exponent vs width" in c.name]
    assert bad == [f"{'tanh' if wrong['tanh'] == -0.5 else 'relu'}: network vs its Taylor model, fitted exponent vs width"]


def test_nngp_monte_carlo_detects_a_wrong_kernel_scale(quick_runs):
    law = LAWS["nngp-monte-carlo"]
    verdict = law.evaluate(quick_runs[law.id], "quick")
    checks = {c.name: c for c in verdict.checks}
    ensemble = checks["relu L=2 NNGP: deviation of the mean of 1024 networks at width 512"]
    resolution = next(c for n, c in checks.items() if "NNGP: ensemble resolution" in n)
    assert verdict.status == "pass" and ensemble.value < 0.02 and resolution.value < 0.005
    scaled = distorted(quick_runs[law.id], "kernels/ntk", lambda key, k: 1.1 * k)  # a 10% bias does not average out
    verdict = law.evaluate(scaled, "quick")
    assert verdict.status == FAIL
    assert not next(c for c in verdict.checks if "NTK: deviation of the mean" in c.name).ok


@pytest.mark.parametrize("factor", [1.03, 0.97])
def test_nngp_monte_carlo_fails_on_an_analytic_nngp_uniformly_3_percent_off(quick_runs, monkeypatch, factor):
    """REFERENCE 2.3's 2% bound on the seed mean, resolved by 1024 networks, catches a kernel 3% off (with 16 networks
    and a bias bound of 2 x single/sqrt(S) it passed)."""
    from lmech.laws import nngp_monte_carlo as module

    real = module.analytic_kernels
    monkeypatch.setattr(module, "analytic_kernels", lambda system, x: (factor * real(system, x)[0], real(system, x)[1]))
    verdict = LAWS["nngp-monte-carlo"].evaluate(quick_runs["nngp-monte-carlo"], "quick")
    assert verdict.status == FAIL
    failed = [c.name for c in verdict.checks if not c.ok]
    assert failed == ["relu L=2 NNGP: deviation of the mean of 1024 networks at width 512"]


def test_eigenlearning_fails_when_the_measurement_uses_another_ridge(monkeypatch):
    from lmech.laws import eigenlearning_curves as module

    real = module.kernel_ridge_mse
    monkeypatch.setattr(module, "kernel_ridge_mse", lambda k, y, idx, ridge: real(k, y, idx, ridge * 300 + 0.3))
    assert LAWS["eigenlearning-curves"].evaluate({}, "quick").status == FAIL

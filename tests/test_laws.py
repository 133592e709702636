"""Every law at quick scale passes, and the foundation laws fail when the measurement is wrong."""
import pytest

from conftest import distorted

from lmech.laws import FAIL, LAWS, OUT_OF_REGIME, PASS


# honest quick failures, pinned with their numbers elsewhere: ntk-lazy-limit (tests/test_kernel_laws.py),
# mup-coord-check, whose transformer queries leave the muP prediction after step 2 (tests/test_mup_coord_check_law.py),
# and instability-early-warning, whose Adam alarm fires at the edge of stability (tests/test_instability_law.py)
_KNOWN_FAILS = ("ntk-lazy-limit", "mup-coord-check", "instability-early-warning")


def test_every_law_names_one_of_the_five_pillars():
    from lmech.report.pillars import PILLARS

    assert {law.id: law.pillar for law in LAWS.values() if law.pillar not in PILLARS} == {}


@pytest.mark.parametrize("law_id", [law for law in LAWS if law not in _KNOWN_FAILS])
def test_quick_law_passes(quick_runs, law_id):
    verdict = LAWS[law_id].evaluate(quick_runs[law_id], "quick")
    assert verdict.status == PASS, [c for c in verdict.checks if not c.ok]
    assert verdict.error <= verdict.tolerance
    assert verdict.panels and all(p.series for p in verdict.panels)


def test_dln_quick_accuracy(quick_runs):
    verdict = LAWS["dln-saxe-modes"].evaluate(quick_runs["dln-saxe-modes"], "quick")
    # discretization error of GD at eta * s_max = 0.01 is ~1-2% of s_max (see the law's tolerance note)
    assert verdict.error < 0.03


def test_dln_fails_on_a_distorted_measurement(quick_runs):
    runs = distorted(quick_runs["dln-saxe-modes"], "sv/", lambda key, v: 1.08 * v)
    assert LAWS["dln-saxe-modes"].evaluate(runs, "quick").status == FAIL


def test_conservation_fails_when_drift_scales_wrongly(quick_runs):
    # multiply each run's drift by its eta: the fixed-t drift then grows as eta^2 (per step eta^3)
    runs = distorted(quick_runs["conservation-laws"], "balancedness/", lambda key, v: v * key["eta"] * 1e3)
    verdict = LAWS["conservation-laws"].evaluate(runs, "quick")
    assert verdict.status == FAIL
    (linear,) = [c for c in verdict.checks if c.name.startswith("linear: per-step exponent")]
    assert linear.value == pytest.approx(3.0, abs=0.05)


def test_conservation_fails_on_an_exponent_off_by_more_than_the_references_band(quick_runs):
    """REFERENCE 2.2's slope 1 +- 0.05: a drift tilted by eta^0.07 (per-step exponent ~2.07) fails."""
    runs = distorted(quick_runs["conservation-laws"], "balancedness/", lambda key, v: v * (key["eta"] * 1e3) ** 0.07)
    verdict = LAWS["conservation-laws"].evaluate(runs, "quick")
    assert verdict.status == FAIL
    (linear,) = [c for c in verdict.checks if c.name.startswith("linear: per-step exponent")]
    assert 2.05 < linear.value < 2.1 and not linear.ok


def test_edge_of_stability_fails_off_threshold_and_is_out_of_regime_without_sharpening(quick_runs):
    eos = LAWS["edge-of-stability"]
    high = distorted(quick_runs["edge-of-stability"], "sharpness/0", lambda key, v: 1.2 * v)
    assert eos.evaluate(high, "quick").status == FAIL
    low = distorted(quick_runs["edge-of-stability"], "sharpness/0", lambda key, v: 0.5 * v)
    assert eos.evaluate(low, "quick").status == OUT_OF_REGIME

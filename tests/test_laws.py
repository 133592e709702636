"""The three foundation laws at quick scale: they pass, and their evaluation fails when the measurement is wrong."""
import copy

import pytest

from lmech.laws import FAIL, LAWS, OUT_OF_REGIME, PASS
from lmech.runner import run_experiment


@pytest.fixture(scope="module")
def quick_runs():
    return {law_id: {e.label: run_experiment(e) for e in law.experiments("quick")} for law_id, law in LAWS.items()
            if law_id in ("dln-saxe-modes", "conservation-laws", "edge-of-stability")}


def _scaled(runs, prefix, factor):
    """Copies of the runs with every metric starting with ``prefix`` multiplied by ``factor(label, step)``."""
    out = copy.deepcopy(runs)
    for label, run in out.items():
        run.records = [(s, n, v * factor(label, s) if n.startswith(prefix) else v) for s, n, v in run.records]
    return out


@pytest.mark.parametrize("law_id", ["dln-saxe-modes", "conservation-laws", "edge-of-stability"])
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
    runs = _scaled(quick_runs["dln-saxe-modes"], "sv/", lambda label, step: 1.08)
    assert LAWS["dln-saxe-modes"].evaluate(runs, "quick").status == FAIL


def test_conservation_fails_when_drift_scales_wrongly(quick_runs):
    # multiply each run's drift by its eta: the fixed-t drift then grows as eta^2 (per step eta^3)
    runs = _scaled(quick_runs["conservation-laws"], "balancedness/", lambda label, step: float(label.split("=")[1]) * 1e3)
    verdict = LAWS["conservation-laws"].evaluate(runs, "quick")
    assert verdict.status == FAIL
    (linear,) = [c for c in verdict.checks if c.name.startswith("linear: per-step exponent")]
    assert linear.value == pytest.approx(3.0, abs=0.05)


def test_edge_of_stability_fails_off_threshold_and_is_out_of_regime_without_sharpening(quick_runs):
    eos = LAWS["edge-of-stability"]
    high = _scaled(quick_runs["edge-of-stability"], "sharpness/0", lambda label, step: 1.2)
    assert eos.evaluate(high, "quick").status == FAIL
    low = _scaled(quick_runs["edge-of-stability"], "sharpness/0", lambda label, step: 0.5)
    assert eos.evaluate(low, "quick").status == OUT_OF_REGIME

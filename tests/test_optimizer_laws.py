"""Momentum/adaptive edge of stability and the catapult law: numbers at quick scale, and failure on wrong measurements."""
import copy

import numpy as np
import pytest
from conftest import distorted

from lmech.laws import FAIL, LAWS, OUT_OF_REGIME
from lmech.laws.catapult import _boundary


@pytest.mark.parametrize("law_id, metric", [("momentum-edge-of-stability", "sharpness/0"),
                                            ("adaptive-edge-of-stability", "preconditioned_sharpness/0")])
def test_optimizer_hover_fails_off_threshold_and_needs_sharpening(quick_runs, law_id, metric):
    law = LAWS[law_id]
    # the plain sharpness instead of P^-1 H, or a threshold off by the missing (1 + beta) factor, must not pass
    assert law.evaluate(distorted(quick_runs[law_id], metric, lambda key, v: 1.2 * v), "quick").status == FAIL
    assert law.evaluate(distorted(quick_runs[law_id], metric, lambda key, v: 0.5 * v), "quick").status == OUT_OF_REGIME


def test_adaptive_law_measures_the_preconditioned_not_the_plain_sharpness(quick_runs):
    # the threshold 38/eta applies to lambda_max(P^-1 H); the run never records plain sharpness, and the
    # preconditioned values sit orders of magnitude above the plain ones would (P ~ |g| is small)
    run = quick_runs["adaptive-edge-of-stability"].one(eta=0.001)
    steps, values = run.series("preconditioned_sharpness/0")
    assert steps[0] > 0  # P is undefined before Adam's first step
    assert np.median(values[len(values) // 2:]) == pytest.approx(38 / 0.001, rel=0.15)


def test_catapult_thresholds_and_failures(quick_runs, monkeypatch):
    import lmech.laws.catapult as catapult

    law = LAWS["catapult"]
    runs = quick_runs["catapult"]
    verdict = law.evaluate(runs, "quick")
    lower, upper = (c.value for c in verdict.checks[:2])
    assert lower == pytest.approx(1.0, abs=0.1) and upper == pytest.approx(2.0, abs=0.2)
    assert any(r.outcome == "diverged" for r in runs.values())  # recorded as outcomes, and the law still passes
    # a wrong threshold constant fails: divergence at 3/lambda0 or 5/lambda0 instead of 4/lambda0, catapults from
    # 2.5/lambda0 instead of 2/lambda0
    for name, value in (("_UPPER", 1.5), ("_UPPER", 2.5), ("_LOWER", 1.25)):
        with monkeypatch.context() as m:
            m.setattr(catapult, name, value)
            assert law.evaluate(runs, "quick").status == FAIL, (name, value)
    # a measured initial sharpness far (30%) from the infinite-width NTK's: not the wide regime, out of regime
    wrong_s0 = distorted(runs, "sharpness/0", lambda key, v: 1.3 * v)
    assert law.evaluate(wrong_s0, "quick").status == OUT_OF_REGIME
    # catapult runs that did not flatten (final S above 2/eta) must fail
    def unflattened(key, v):
        return v * 3 if key["c"] in (1.3, 1.6) else v
    assert law.evaluate(distorted(runs, "sharpness/0", unflattened), "quick").status == FAIL
    # phases out of order along eta (a spike in the smallest-eta run, below monotone runs): fail
    spiked = copy.deepcopy(runs)
    smallest = spiked.one(c=0.8)
    smallest.records = [(s, n, 50 * v if (n == "loss/train" and s == 5) else v) for s, n, v in smallest.records]
    assert law.evaluate(spiked, "quick").status == FAIL
    # no run diverges inside the grid (a divergence bound near 12/lambda0, as for ReLU nets): the grid spans the
    # tolerance band above 4/lambda0, so the missing threshold is a fail, not out of regime
    calm = copy.deepcopy(runs)
    donor = calm.one(c=1.95)
    for key, run in calm.items():
        if run.outcome == "diverged":
            run.outcome, run.diverged_step, run.records = "completed", None, list(donor.records)
    verdict = law.evaluate(calm, "quick")
    assert verdict.status == FAIL
    assert {c.name.split(":")[0]: c for c in verdict.checks}["upper threshold eta S0 / 2 (catapult -> diverged)"].kind == "claim"


def test_phase_boundary_is_the_geometric_midpoint():
    x = np.array([0.5, 1.0, 2.0, 4.0])
    assert _boundary(x, np.array([True, True, False, False])) == (pytest.approx(np.sqrt(2.0)), True)
    assert _boundary(x, np.array([True, False, True, False]))[1] is False
    assert np.isnan(_boundary(x, np.ones(4, bool))[0])

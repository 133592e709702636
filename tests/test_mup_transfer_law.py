"""The muP learning-rate transfer law: its helpers, and that it fails when SP runs stand in for muP ones (and back)."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS, Runs
from lmech.laws._transfer import predicted_sp_exponent
from lmech.laws.mup_transfer import final_loss
from lmech.store.result import DIVERGED, RunResult

LAW = "mup-lr-transfer"
QUICK = LAWS[LAW].settings["quick"]


def _check(verdict, prefix):
    (check,) = [c for c in verdict.checks if c.name.startswith(prefix)]
    return check


def test_sp_exponent_is_minus_one_from_the_abc_table():
    # muP's hidden-layer Adam lr factor is base_width / width (Tensor Programs V, Table 3)
    assert predicted_sp_exponent((32, 64, 128, 256, 512)) == pytest.approx(-1.0, abs=1e-12)
    assert predicted_sp_exponent((48, 96, 768)) == pytest.approx(-1.0, abs=1e-12)


def test_final_loss_averages_the_last_window_and_rejects_divergence():
    run = RunResult("r", None, [], records=[(s, "loss/train", float(v)) for s, v in
                                          [(0, 2.3), (540, 9.0), (550, 1.0), (560, 2.0), (600, 3.0)]])
    assert final_loss(run, 600) == pytest.approx(2.0)  # steps 550..600; step 540 is outside the window
    run.records.append((570, "loss/train", float("nan")))
    assert final_loss(run, 600) == np.inf
    assert final_loss(RunResult("d", None, [], outcome=DIVERGED), 600) == np.inf


def test_quick_optima_are_inside_the_grid_and_sp_falls(quick_runs):
    verdict = LAWS[LAW].evaluate(quick_runs[LAW], "quick")
    assert _check(verdict, "optima on the learning-rate grid's edge").value == 0
    assert _check(verdict, "SP slope").value < -0.5
    assert verdict.error < 1.0  # muP optima within a factor 2
    assert len(verdict.panels) == 3 and len(quick_runs[LAW]) == 2 * len(QUICK.widths) * len(QUICK.log2_lrs) * len(QUICK.seeds)
    assert len(QUICK.seeds) >= 3 and _check(verdict, "seed spread of the optimum").ok


def _relabelled(runs, source, target):
    """``runs`` with scheme ``target``'s runs replaced by scheme ``source``'s (a wrong measurement)."""
    return Runs((key, runs[{**key, "scheme": source}] if key["scheme"] == target else run) for key, run in runs.items())


def test_sp_runs_in_place_of_mup_fail_transfer(quick_runs):
    verdict = LAWS[LAW].evaluate(_relabelled(quick_runs[LAW], "sp", "mup"), "quick")
    assert verdict.status == FAIL
    spread = _check(verdict, "muP optimal-lr spread")
    assert not spread.ok and spread.value > 1.5  # SP's optimum falls by > 0.5 octave per doubling over 3 doublings


def test_mup_runs_in_place_of_sp_fail_drift(quick_runs):
    verdict = LAWS[LAW].evaluate(_relabelled(quick_runs[LAW], "mup", "sp"), "quick")
    assert verdict.status == FAIL
    assert not _check(verdict, "SP slope").ok

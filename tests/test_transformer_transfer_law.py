"""The transformer muTransfer law: its sweep, its quick optima against expectations independent of its checks, and
verdicts that fail (or leave the regime) on wrong measurements. Reuses the session's quick runs."""
import numpy as np
import pytest

from conftest import distorted

from lmech.laws import FAIL, INCONCLUSIVE, LAWS, OUT_OF_REGIME, Runs
from lmech.laws._transfer import optimal_lr
from lmech.laws.transformer_transfer import final_loss

LAW = "transformer-mup-transfer"
QUICK = LAWS[LAW].settings["quick"]


def optima(runs, scheme):
    """log2 optimal lr per width of the seed-averaged final training losses, read independently of the law."""
    lrs = 2.0 ** np.asarray(QUICK.log2_lrs, float)
    return np.array([np.log2(optimal_lr(lrs, [np.mean([final_loss(runs.one(scheme=scheme, width=w, log2_lr=k, seed=seed))
                                                       for seed in QUICK.seeds]) for k in QUICK.log2_lrs]).lr)
                     for w in QUICK.widths])


def relabeled(runs, source, target):
    """``runs`` with scheme ``target``'s runs replaced by scheme ``source``'s (a wrong measurement)."""
    return Runs((key, runs[{**key, "scheme": source}] if key["scheme"] == target else run) for key, run in runs.items())


def test_quick_sweep_is_the_stated_grid():
    experiments = LAWS[LAW].experiments("quick")
    assert len(experiments) == 2 * len(QUICK.widths) * len(QUICK.seeds) * len(QUICK.log2_lrs)
    assert len(QUICK.log2_lrs) >= 8 and np.all(np.diff(QUICK.log2_lrs) == 1) and QUICK.widths[-1] >= 4 * QUICK.widths[0]
    for exp in experiments:
        arch, rule = exp.system.architecture, exp.system.rule
        assert (arch.depth, arch.heads, arch.base_width) == (2, 2, QUICK.widths[0])
        assert rule.optimizer == "adam" and exp.system.task.loss == "cross_entropy"
        assert exp.system.data.p % arch.width and exp.system.data.p % (arch.mlp_ratio * arch.width)  # no width-like data
    assert {e.system.architecture.parameterization for e in experiments} == {"sp", "mup"}


def test_quick_optima_follow_the_lr_scaling_of_the_two_schemes(quick_runs):
    runs = quick_runs[LAW]
    mup, sp = optima(runs, "mup"), optima(runs, "sp")
    # muP trains the hidden and readout weights at lr * base/width, SP at lr: SP's optimum must fall below muP's
    # by log2(width/base) octaves more than at the base width (2 here), within 0.5 octave per doubling
    gap = (mup - sp) - (mup - sp)[0]
    assert gap[-1] == pytest.approx(np.log2(QUICK.widths[-1] / QUICK.widths[0]), abs=1.0)
    assert np.all(np.diff(sp) < 0)  # SP's optimum falls at every doubling
    # at the base width the schemes differ only by the zero-initialized queries and readout
    assert abs(mup[0] - sp[0]) < 1.0
    verdict = LAWS[LAW].evaluate(runs, "quick")
    assert verdict.error == pytest.approx(mup.max() - mup.min())
    best = [c for c in verdict.checks if c.name.startswith("worst best loss")][0]
    assert 0.1 < best.value < np.log(QUICK.p)  # trained, but still clearly above zero after the short budget


def test_sp_runs_filed_as_mup_fail(quick_runs):
    verdict = LAWS[LAW].evaluate(relabeled(quick_runs[LAW], "sp", "mup"), "quick")
    assert verdict.status == FAIL
    failed = {c.name for c in verdict.checks if not c.ok}
    assert "muP optimal-lr spread across widths, log2(max/min)" in failed
    assert verdict.error > 1.5  # SP drifts by ~2 octaves over the 4x width range


def test_mup_runs_filed_as_sp_fail_the_drift_check(quick_runs):
    verdict = LAWS[LAW].evaluate(relabeled(quick_runs[LAW], "mup", "sp"), "quick")
    assert verdict.status == FAIL
    assert [c.name for c in verdict.checks if not c.ok] == ["SP slope of log2(optimal lr) on log2(width)"]


def test_edge_optimum_is_inconclusive_and_untrained_runs_out_of_regime(quick_runs):
    runs = quick_runs[LAW]
    falling = distorted(runs, "loss/", lambda key, v: 2.0 - key["log2_lr"] / 10)
    assert LAWS[LAW].evaluate(falling, "quick").status == INCONCLUSIVE  # loss falls to the grid's top lr
    chance = distorted(runs, "loss/", lambda key, v: np.log(QUICK.p) + 0.01)
    assert LAWS[LAW].evaluate(chance, "quick").status == OUT_OF_REGIME

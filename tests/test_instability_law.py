"""instability-early-warning: event and alarm scoring against hand-made series and scikit-learn's AUROC, the quick
verdict pinned (an honest failure: the Adam alarm), and the GD-only law failing under a wrong stability threshold."""
import dataclasses
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from lmech.laws import FAIL, LAWS, PASS
from lmech.laws._alarms import Event, auroc, loss_event, score_alarms
from lmech.runner import run_experiments

LAW = "instability-early-warning"


def test_loss_events_follow_the_pre_registered_definitions():
    steps = np.arange(8)
    assert loss_event(steps, [1.0, 0.5, 0.4, 0.9, 0.3, 0.2, 0.1, 0.1]) == Event(3.0, "spike")  # 0.9 > 2 x 0.4
    assert loss_event(steps, [1.0, 0.5, 0.4, 0.7, 0.3, 0.2, 0.1, 0.1]) == Event(math.inf, "none")
    assert loss_event(steps, [1.0, 0.9, 1.5, 12.0, math.nan, 0, 0, 0]) == Event(3.0, "divergence")  # 12 > 10 L0
    assert loss_event(steps, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3], diverged_step=8) == Event(8.0, "divergence")
    assert loss_event(steps, [1.0, 0.3, 0.8, 0.7, 0.6, 0.5, 30.0, 0.3]) == Event(2.0, "divergence")  # spike first


def test_alarm_scores_count_true_alarms_within_the_horizon():
    events = [Event(10.0, "spike"), Event(math.inf, "none"), Event(100.0, "divergence")]
    alarms = [[2, 6, 10, 12], [5], [20]]  # run 0: 2 is 8 ahead (> horizon 5), 6 and 10 true, 12 after the event
    sc = score_alarms("x", events, alarms, horizon=5)
    assert sc.false_alarms == 3  # step 2 of run 0, run 1's alarm, run 2's alarm 80 steps ahead
    assert sc.precision == pytest.approx(2 / 5)
    assert list(sc.leads) == [4.0, -math.inf]
    assert sc.recall(0) == 0.5 and sc.recall(5) == 0.0 and sc.median_lead == -math.inf


def test_auroc_matches_scikit_learn():
    rng = np.random.default_rng(0)
    events = [Event(30.0, "spike"), Event(math.inf, "none"), Event(12.0, "divergence")]
    stats = [(np.arange(0, 40, 2.0), rng.standard_normal(20)) for _ in events]
    labels, values = [], []
    for e, (t, v) in zip(events, stats):
        keep = t <= e.step
        labels += list(e.step - t[keep] <= 10)
        values += list(v[keep])
    assert auroc(events, stats, horizon=10) == pytest.approx(roc_auc_score(labels, values), abs=1e-12)


def test_quick_verdict_fails_on_the_adam_alarm_with_gd_warned(quick_runs):
    """Pinned: the GD family's every event is warned ahead with no false alarm; Adam's forecast-crossing alarm fires
    on runs that stay at the edge of stability, so the pooled precision is far below the loss-spike detector's 1."""
    verdict = LAWS[LAW].evaluate(quick_runs[LAW], "quick")
    assert verdict.status == FAIL
    precision, lead = (c for c in verdict.checks if c.headline)
    assert precision.value < 0.5 and not precision.ok
    assert lead.value >= 1 and lead.ok  # the theory's median lead beats the loss spike's 0
    gd = next(c for c in verdict.checks if c.name.startswith("GD: "))
    assert "0 false alarms" in gd.name and gd.value == 1.0
    adam = next(c for c in verdict.checks if c.name.startswith("Adam: ") and "false alarms" in c.name)
    assert " 0 false alarms" not in adam.name


@pytest.fixture(scope="module")
def gd_only():
    law = LAWS[LAW]
    return law, dataclasses.replace(law.setting("quick"), gd_grid=(0.8, 1.6), gd_steps=40, adam_lrs=())


@pytest.mark.slow
def test_gd_only_law_passes_and_fails_with_a_threshold_three_times_too_low(gd_only, monkeypatch):
    law, s = gd_only
    verdict = law.judge(run_experiments(law.design(s)), s)
    assert verdict.status == PASS, [c for c in verdict.checks if not c.ok]
    from lmech.observables import instability

    true_threshold = instability.stability_threshold
    monkeypatch.setattr(instability, "stability_threshold", lambda opt: true_threshold(opt) / 3)
    wrong = law.judge(run_experiments(law.design(s)), s)
    assert wrong.status == FAIL  # the stable run at 0.8 x 2/lambda0 now reads 2.4 x its threshold: false alarms

"""grokking-weight-decay: budgets on the predicted time scale, "did not grok" as an outcome, and the law failing on a
wrong exponent."""
import pytest

from conftest import distorted
from lmech.laws import FAIL, INCONCLUSIVE, LAWS


def test_step_budgets_follow_the_predicted_time_scale():
    from lmech.laws import grokking_weight_decay as module

    s = LAWS["grokking-weight-decay"].setting("full")
    budgets = {(d, a): module._steps(s, d, a) for d, a in module._runs(s)}
    assert budgets[0.15, 1.0] == pytest.approx(2 * budgets[0.3, 1.0], abs=1)  # 1 / (eta lambda)
    assert budgets[0.6, 4.0] == pytest.approx(budgets[0.6, 1.0] * (1 + 2 * 0.6931), abs=2)  # (1 + ln alpha)
    assert len(budgets) == len(s.decays) + len(s.scales) - 1  # alpha = 1 at the swept decay is shared


def test_grokking_fails_when_t_grok_is_predicted_to_fall_as_one_over_lambda_squared(quick_runs, monkeypatch):
    from lmech.laws import grokking_weight_decay as module

    monkeypatch.setattr(module, "_KAPPA", 2.0)
    verdict = LAWS["grokking-weight-decay"].evaluate(quick_runs["grokking-weight-decay"], "quick")
    assert verdict.status == FAIL and verdict.error > 0.3


def test_a_run_that_never_reaches_95_percent_test_accuracy_is_did_not_grok(quick_runs):
    runs = distorted(quick_runs["grokking-weight-decay"], "accuracy/test",
                     lambda key, v: min(v, 0.9) if key["decay"] == 0.3 else v)
    verdict = LAWS["grokking-weight-decay"].evaluate(runs, "quick")
    assert verdict.status == INCONCLUSIVE
    assert "lambda = 0.3 (did not grok" in verdict.checks[0].name

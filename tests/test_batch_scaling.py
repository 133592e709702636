"""sgd-linear-scaling and adam-sqrt-scaling: pass at quick scale, fail on wrong measurements; their helpers by hand."""
import numpy as np
import pytest
import torch
from conftest import distorted

import lmech.laws.batch_scaling  # noqa: F401  (registration)
from lmech.engine.loop import minibatches
from lmech.laws import FAIL, LAWS, OUT_OF_REGIME, PASS
from lmech.laws.batch_scaling import crossing, matched_grid, on_examples, relative_gap, scaled_rule
from lmech.store.result import RunResult
from lmech.systems import MLP, MNIST1D, LearningRule, System, Task


@pytest.mark.parametrize("law_id", ["sgd-linear-scaling", "adam-sqrt-scaling"])
def test_quick_verdict_passes(quick_runs, law_id):
    verdict = LAWS[law_id].evaluate(quick_runs[law_id], "quick")
    assert verdict.status == PASS, [c for c in verdict.checks if not c.ok]
    assert verdict.error <= verdict.tolerance
    assert verdict.panels and all(p.series for p in verdict.panels)


@pytest.mark.parametrize("law_id", ["sgd-linear-scaling", "adam-sqrt-scaling"])
def test_fails_when_the_scaled_runs_lose_10_percent_more(quick_runs, law_id):
    law = LAWS[law_id]
    wrong = distorted(quick_runs[law_id], "loss/train", lambda key, v: v if key["k"] == 1 else 1.1 * v)  # k=1: base
    assert law.evaluate(wrong, "quick").status == FAIL


@pytest.mark.parametrize("law_id", ["sgd-linear-scaling", "adam-sqrt-scaling"])
def test_out_of_regime_when_the_base_run_does_not_train(quick_runs, law_id):
    flat = distorted(quick_runs[law_id], "loss/train", lambda key, v: 1.0)
    assert LAWS[law_id].evaluate(flat, "quick").status == OUT_OF_REGIME


def test_sgd_gap_is_first_order_in_the_step_and_breaks_down_at_a_fixed_scaled_step(quick_runs):
    checks = {c.name.split(" (")[0]: c for c in LAWS["sgd-linear-scaling"].evaluate(quick_runs["sgd-linear-scaling"],
                                                                                      "quick").checks}
    assert 0.75 <= checks["fitted exponent of the k=2 gap against eta"].value <= 1.25
    assert checks["spread max/min of k* eta over eta"].value <= 2


def test_sgd_fails_when_the_gap_is_set_by_the_batch_alone(quick_runs):
    """A gap of 1% x k at every eta (a batch-size effect): not first order in eta, and k* no longer ~ 1/eta."""
    batchy = distorted(quick_runs["sgd-linear-scaling"], "loss/train", lambda key, v: v * (1 + 0.01 * (key["k"] - 1)))
    verdict = LAWS["sgd-linear-scaling"].evaluate(batchy, "quick")
    assert verdict.status == FAIL
    failed = {c.name.split(" (")[0] for c in verdict.checks if not c.ok}
    assert {"fitted exponent of the k=2 gap against eta", "spread max/min of k* eta over eta"} <= failed


def test_adam_fails_when_the_sqrt_runs_leave_the_noise_floor(quick_runs):
    law = LAWS["adam-sqrt-scaling"]
    far = distorted(quick_runs[law.id], "param/", lambda key, a: 2.0 * a if key["rule"] == "sqrt" else a)
    verdict = law.evaluate(far, "quick")
    assert verdict.status == FAIL
    assert not any(c.ok for c in verdict.checks if c.name.startswith("sqrt") and "weight distance" in c.name)


def test_adam_fails_when_the_linear_foil_tracks_as_well_as_the_sqrt_rule(quick_runs):
    runs = quick_runs["adam-sqrt-scaling"]
    foil_as_good = [(key, runs.one(rule="sqrt", k=key["k"]) if key["rule"] == "linear" else run)
                    for key, run in runs.items()]  # same k: same batch and steps, so the sqrt run stands in
    verdict = LAWS["adam-sqrt-scaling"].evaluate(foil_as_good, "quick")
    assert verdict.status == FAIL
    assert {c.name for c in verdict.checks if not c.ok} == {"linear, k B <= B_simple(0)/2: max relative loss gap",
                                                            "linear k=8: weight distance / noise floor"}


def test_scaled_rule_reproduces_the_malladi_and_goyal_rules_by_hand():
    adam = LearningRule(lr=1e-3, steps=256, optimizer="adam", batch_size=2, betas=(0.99, 0.999), eps=1e-8)
    sqrt = scaled_rule(adam, 4, 0.5)  # eta 2e-3, B 8, T 64, 1 - beta1 = 0.04, 1 - beta2 = 0.004, eps 5e-9
    assert (sqrt.batch_size, sqrt.steps) == (8, 64)
    assert sqrt.lr == pytest.approx(2e-3) and sqrt.eps == pytest.approx(5e-9)
    assert sqrt.betas == pytest.approx((0.96, 0.996))
    linear = scaled_rule(adam, 4, 1.0)
    assert linear.lr == pytest.approx(4e-3) and linear.betas == sqrt.betas and linear.eps == sqrt.eps
    sgd = scaled_rule(LearningRule(lr=0.01, steps=100, optimizer="sgd", batch_size=5), 10, 1.0)
    assert (sgd.lr, sgd.batch_size, sgd.steps) == (pytest.approx(0.1), 50, 10)
    with pytest.raises(ValueError, match="admissible k < 100"):
        scaled_rule(adam, 128, 0.5)
    with pytest.raises(ValueError, match="divisor"):
        scaled_rule(adam, 3, 0.5)
    with pytest.raises(ValueError, match="minibatch"):
        scaled_rule(LearningRule(lr=0.1, steps=8), 2, 1.0)


def test_on_examples_interpolates_against_examples_seen():
    system = System(MLP(width=8), MNIST1D(), Task("mse"), LearningRule(lr=0.1, steps=4, optimizer="sgd", batch_size=5))
    run = RunResult("r", system, [], records=[(0, "loss/train", 4.0), (2, "loss/train", 2.0), (4, "loss/train", 1.0)])
    values = on_examples(run, "loss/train", np.array([5.0, 10.0, 15.0, 30.0]))  # examples = 5 x step: 0, 10, 20
    np.testing.assert_allclose(values[:3], [3.0, 2.0, 1.5])
    assert np.isnan(values[3])  # past the last record (a diverged run)


def test_gap_and_breakdown_helpers_by_hand():
    assert relative_gap(np.array([1.1, 1.8]), np.array([1.0, 2.0])) == pytest.approx(0.1)
    assert relative_gap(np.array([1.0, np.nan]), np.array([1.0, 2.0])) == float("inf")
    # gap 1% at k=2, 4% at k=4: log-linear in log k, 3% at log2(k) = 1 + log(3)/log(4)
    assert crossing([2, 4, 8], [0.01, 0.04, 0.2], 0.03) == pytest.approx(2 * 2 ** (np.log(3) / np.log(4)))
    assert crossing([2, 4, 8], [0.01, 0.02, 0.02], 0.03) is None
    assert crossing([2, 4, 8], [0.05, 0.1, 0.2], 0.03) == 2.0
    assert crossing([2, 4, 8], [0.01, float("inf"), 0.2], 0.03) == 2.0  # diverged at k=4
    np.testing.assert_array_equal(matched_grid(5, 5, 20), [5, 10, 15, 20])
    np.testing.assert_array_equal(matched_grid(20, 5, 60), [20, 40, 60])  # a scaled run: every one of its steps


def test_coupled_batches_are_unions_of_consecutive_base_batches():
    """The laws' coupling: with the same seed, batch t of size k B is batches k t .. k t + k - 1 of size B."""
    small, large = minibatches(40, 4, seed=3), minibatches(40, 8, seed=3)
    for _ in range(10):  # two epochs
        assert sorted(large().tolist()) == sorted(torch.cat([small(), small()]).tolist())

"""neural-collapse: the terminal phase found on the measured accuracy, and the law failing on a wrong drop factor."""
from lmech.laws import FAIL, LAWS


def test_neural_collapse_fails_when_nc1_must_fall_a_hundred_times_more(quick_runs, monkeypatch):
    from lmech.laws import neural_collapse as module

    law = LAWS["neural-collapse"]
    monkeypatch.setattr(module, "_DROP", module._DROP * 100)
    wrong = law.evaluate(quick_runs["neural-collapse"], "quick")
    assert wrong.status == FAIL and wrong.error > 1


def test_neural_collapse_is_out_of_regime_when_training_error_never_reaches_zero(quick_runs):
    from conftest import distorted
    from lmech.laws import OUT_OF_REGIME

    runs = distorted(quick_runs["neural-collapse"], "accuracy/train", lambda key, v: min(v, 0.99))
    assert LAWS["neural-collapse"].evaluate(runs, "quick").status == OUT_OF_REGIME

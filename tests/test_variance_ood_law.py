"""variance-ood-detection: the class-restricted digits split, and the law failing when the prediction ignores the
training data (the prior's variance at t = 0)."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS
from lmech.laws import variance_ood_detection as module
from lmech.systems import ConfigError, Digits

LAW = "variance-ood-detection"


def test_digits_train_classes_split():
    data = Digits(n_train=150, n_test=400, target="parity", train_classes=(3, 1, 0)).load()
    full = Digits(n_train=1000, n_test=797, target="class").load()
    rows = {tuple(x): int(c) for x, c in zip(np.concatenate([full.x_train, full.x_test]),
                                             np.concatenate([full.y_train, full.y_test]))}
    train_digits = np.array([rows[tuple(x)] for x in data.x_train])
    assert set(train_digits) <= {0, 1, 3}
    assert set(data.info["test_digits"]) == set(range(10))  # every digit, unseen ones included
    assert np.array_equal(data.info["test_digits"], [rows[tuple(x)] for x in data.x_test])
    np.testing.assert_array_equal(data.y_test[:, 0], np.where(data.info["test_digits"] % 2 == 0, 1.0, -1.0))
    assert not {tuple(x) for x in data.x_train} & {tuple(x) for x in data.x_test}
    with pytest.raises(ConfigError, match="train_classes"):
        Digits(train_classes=(3, 12))
    with pytest.raises(ConfigError, match="n_train"):
        Digits(n_train=500, n_test=10, train_classes=(0, 1)).load()


def test_variance_ood_detection_fails_on_the_prior_variance(quick_runs, monkeypatch):
    right = module.predicted_variance
    monkeypatch.setattr(module, "predicted_variance", lambda s, get="ntk", t=None: right(s, get, 0 if t is None else t))
    verdict = LAWS[LAW].evaluate(quick_runs[LAW], "quick")
    assert verdict.status == FAIL

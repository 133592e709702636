"""ntk-ensemble-variance: the prediction's conventions against lmech's own linearized GD, and the law failing with
the wrong ensemble (readout-only training) or the wrong time."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS


def test_predicted_mean_is_linearized_gd_from_a_zero_function():
    """The ensemble mean is the linearized network's outputs started from f_0 = 0 (lmech.theory.linearized_gd,
    written separately, with lmech's L = 1/(2n) sum): the law's time and loss conventions agree with the engine's."""
    from lmech.laws import ntk_ensemble_variance as module
    from lmech.laws._kernels import weight_std
    from lmech.theory import linearized_gd, nngp_ntk

    s = LAWS["ntk-ensemble-variance"].setting("quick")
    system = module._system(s, 256, 0)
    data = system.data.load()
    kw = dict(depth=1, w_std=weight_std(system))
    _, ntk = nngp_ntk(data.x_train, **kw)
    _, cross = nngp_ntk(data.x_test, data.x_train, **kw)
    _, f_test = linearized_gd(ntk, data.y_train, np.zeros_like(data.y_train), lr=s.lr, steps=s.steps,
                              ntk_test_train=cross, f0_test=np.zeros((len(data.x_test), 1)))
    np.testing.assert_allclose(module.predicted(s).mean, f_test, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("wrong", ["readout-only ensemble", "four times the time"])
def test_ntk_ensemble_variance_fails_on_the_wrong_ensemble_or_time(quick_runs, monkeypatch, wrong):
    from lmech.laws import ntk_ensemble_variance as module

    if wrong == "readout-only ensemble":
        monkeypatch.setattr(module, "_GET", "nngp")
    else:
        right = module.predicted
        monkeypatch.setattr(module, "predicted", lambda s: right(type(s)(**{**s.__dict__, "steps": 4 * s.steps})))
    verdict = LAWS["ntk-ensemble-variance"].evaluate(quick_runs["ntk-ensemble-variance"], "quick")
    assert verdict.status == FAIL

"""prior-teacher-calibration: the prior teacher's covariance against the analytic kernels (Monte Carlo), readout-only
training against closed-form random-features GD, the predicted ratio's exact identities, E[z^2] against a
simulation, and the law failing when the standard ensemble is taken as calibrated or timed wrongly."""
import dataclasses

import numpy as np
import pytest
import torch

from lmech.laws import FAIL, LAWS
from lmech.laws import prior_teacher_calibration as module
from lmech.systems import MLP, Digits, DigitsPriorTeacher, LearningRule, System, Task
from lmech.theory import nngp_ntk

LAW = "prior-teacher-calibration"


@pytest.mark.parametrize("kernel", ["nngp", "ntk"])
def test_prior_teacher_covariance_is_the_analytic_kernel(kernel):
    """Over teacher draws the targets' covariance is K (NNGP) or Theta (NTK) exactly, at any teacher width."""
    draws = 3000
    y = np.array([DigitsPriorTeacher(kernel=kernel, teacher_width=64, n_train=3, n_test=0, teacher_seed=j).load()
                  .y_train[:, 0] for j in range(draws)])
    x = DigitsPriorTeacher(n_train=3, n_test=0).load().x_train
    nngp, ntk = nngp_ntk(x, depth=1, activation="relu", w_std=np.sqrt(2), b_std=0.0)
    expected = nngp if kernel == "nngp" else ntk
    cov = y.T @ y / draws  # mean zero by construction
    se = np.sqrt((np.outer(np.diag(expected), np.diag(expected)) + expected ** 2) / draws)  # Gaussian sampling error
    assert np.max(np.abs(cov - expected) / se) < 4.5


def test_readout_only_training_is_random_features_gd():
    """train="readout" leaves the hidden layer at its init and moves the readout as GD on fixed features does."""
    from lmech.engine.trainer import initial_state, train
    from lmech.observables.probes import Outputs, Parameters
    from lmech.observables.schedule import Schedule

    steps, lr = 30, 0.5
    system = System(MLP(width=32, depth=1, bias=False, parameterization="ntk"), Digits(40, 10, target="parity"),
                    Task("mse"), LearningRule(lr=lr, steps=steps, dtype="float64", train="readout"))
    start = initial_state(system)
    w0, v = start.model.layers[0].weight.detach().clone(), start.model.layers[1].weight.detach().clone()
    run = train(system, [Parameters(Schedule(at=(steps,))), Outputs(Schedule(at=(steps,)))])
    np.testing.assert_array_equal(run.array("param/layers.0.weight"), w0.numpy())
    scale = np.sqrt(2) / np.sqrt(32)  # NTK parameterization: readout = w_std / sqrt(width) * v . features
    phi = torch.relu(start.model.layers[0](start.x_train)).detach().numpy()
    y = start.y_train.numpy()
    v = v.numpy().T
    for _ in range(steps):  # L = 1/(2n) ||scale phi v - y||^2
        v -= lr * scale * phi.T @ (scale * phi @ v - y) / len(y)
    expected = scale * torch.relu(start.model.layers[0](start.x_test)).detach().numpy() @ v
    np.testing.assert_allclose(run.array("output/test"), expected, rtol=1e-9, atol=1e-12)


def test_predicted_ratio_identities():
    """Readout-only under the NNGP prior: r = 1 at every time (teacher minus fit has the law of a prior draw minus
    its fit); the NTK-GP posterior at t = inf under the NTK prior: r = 1; the standard ensemble: r > 1."""
    s = LAWS[LAW].setting("quick")
    for t in (1, 100, np.inf):
        np.testing.assert_allclose(module.predicted_ratio(s, "nngp", "nngp", t)[1], 1.0, rtol=1e-6)
    np.testing.assert_allclose(module.predicted_ratio(s, "ntkgp", "ntk", np.inf)[1], 1.0, rtol=1e-6)
    assert module.predicted_ratio(s, "ntk", "ntk")[1].min() > 1


def test_expected_z2_against_a_simulation():
    rng = np.random.default_rng(0)
    seeds, ratio, trials = 16, 3.0, 200_000
    y = np.sqrt(ratio) * rng.standard_normal(trials)  # sigma = 1, y - mu ~ N(0, r)
    samples = rng.standard_normal((trials, seeds))
    z = (y - samples.mean(1)) / samples.std(1, ddof=1)
    assert np.mean(z ** 2) == pytest.approx(module.expected_z2(np.array(ratio), seeds), rel=0.02)


@pytest.mark.parametrize("wrong", ["half the ratio", "four times the time"])
def test_prior_teacher_calibration_fails_with_the_wrong_ratio(quick_runs, monkeypatch, wrong):
    right = module.predicted_ratio
    if wrong == "half the ratio":
        monkeypatch.setattr(module, "predicted_ratio", lambda s, get, prior, t=None: (
            right(s, get, prior, t)[0], right(s, get, prior, t)[1] / 2))
    else:
        monkeypatch.setattr(module, "predicted_ratio", lambda s, get, prior, t=None: right(
            dataclasses.replace(s, steps=4 * s.steps), get, prior, t))
    verdict = LAWS[LAW].evaluate(quick_runs[LAW], "quick")
    assert verdict.status == FAIL

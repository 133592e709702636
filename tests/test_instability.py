"""Instability early warning on a quadratic with a known top curvature, its forecasts' arithmetic, the reactive
baselines, and bad input."""
import math

import numpy as np
import pytest
import torch

from lmech import GradNormZScore, InstabilityMonitor, LossSpike, NonFinite, half_mse
from lmech.systems import ConfigError

SPECTRUM = (4.0, 1.0, 0.25)


def _quadratic(seed=0):
    """A linear model on inputs with X^T X / n = diag(SPECTRUM) exactly: the half-MSE Hessian's top eigenvalue is 4."""
    torch.manual_seed(seed)
    n, d = 30, len(SPECTRUM)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, d)))
    x = torch.tensor(np.sqrt(n) * q * np.sqrt(SPECTRUM), dtype=torch.float64)
    y = torch.tensor(np.random.default_rng(seed + 1).standard_normal((n, 1)))
    model = torch.nn.Linear(d, 1, bias=False).double()
    return model, x, y


@pytest.mark.parametrize("ratio, kind, alarm", [(0.5, "stable", False), (1.05, "edge-of-stability", False),
                                                (1.5, "catapult", True), (3.0, "divergence", True)])
def test_gd_ratio_and_kind_on_a_known_curvature(ratio, kind, alarm):
    model, x, y = _quadratic()
    lr = 2 * ratio / max(SPECTRUM)  # S / (2 / lr) = ratio
    monitor = InstabilityMonitor(torch.optim.SGD(model.parameters(), lr=lr))
    f = monitor(0, model, half_mse, x, y)
    assert f.sharpness == pytest.approx(4.0, rel=1e-6) and f.threshold == pytest.approx(2 / lr)
    assert f.ratio == pytest.approx(ratio, rel=1e-6) and f.kind == kind and f.alarm == alarm
    assert monitor.alarms == ([0] if alarm else [])


def test_heavy_ball_threshold_is_read_from_the_optimizer_and_follows_a_schedule():
    model, x, y = _quadratic()
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    monitor = InstabilityMonitor(opt)
    assert monitor(0, model, half_mse, x, y).threshold == pytest.approx(3.8 / 0.5)
    opt.param_groups[0]["lr"] = 0.25  # a scheduler's change is seen at the next call
    assert monitor(1, model, half_mse, x, y).threshold == pytest.approx(3.8 / 0.25)


def test_forecast_of_the_crossing_from_a_geometric_rise():
    model, _, _ = _quadratic()
    growth = 0.01
    for opt, alarm in ((torch.optim.Adam(model.parameters(), lr=1e-3), True),
                       (torch.optim.SGD(model.parameters(), lr=0.1), False)):  # GD: progressive sharpening, no alarm
        monitor = InstabilityMonitor(opt, horizon=100)
        for step in (0, 10, 20):
            f = monitor._forecast(step, 1.0, 1.0, 0.5 * math.exp(growth * step), 3, math.nan)
        assert f.growth == pytest.approx(growth, rel=1e-9)
        assert f.crossing_step == pytest.approx(math.log(2) / growth, rel=1e-9)  # 0.5 e^(g t) = 1
        assert f.kind == "stable" and f.alarm == alarm
    adam = InstabilityMonitor(torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999)))
    f = adam._forecast(0, 1.0, 1.0, 0.25, 3, math.nan)  # preconditioner decay: ratio x beta2^(-t/2) reaches 1
    assert 0.25 * 0.999 ** (-f.decay_crossing_step / 2) == pytest.approx(1.0, rel=1e-12)
    assert math.isnan(f.growth) and math.isnan(f.crossing_step)  # one measurement: no trend yet
    flat = adam._forecast(1, -1e-9, 1.0, -1e-9, 3, math.nan)  # no positive curvature: stable, not a divergence
    assert flat.kind == "stable" and not flat.alarm


def test_gd_forecast_of_the_spike_time_from_the_top_mode():
    """On the quadratic the top mode's share of the loss is the residual's projection on the top input direction, and
    GD's loss first doubles within a step of the forecast ``ln(2 / p) / (2 ln(eta S - 1))``."""
    model, x, y = _quadratic()
    lr = 2 * 1.5 / max(SPECTRUM)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    f = InstabilityMonitor(opt)(0, model, half_mse, x, y)
    with torch.no_grad():
        r = (model(x) - y)[:, 0]
        top_direction = x[:, 0] / x[:, 0].norm()  # the inputs' columns are orthogonal; the first has variance 4
        expected = float((r @ top_direction) ** 2 / (r @ r))
    assert f.top_fraction == pytest.approx(expected, rel=1e-5)
    assert f.event_step == pytest.approx(math.log(2 / expected) / (2 * math.log(lr * 4.0 - 1)), rel=1e-5)
    losses = []
    for _ in range(40):
        loss = half_mse(model(x), y)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    doubled = next(t for t, v in enumerate(losses) if v > 2 * losses[0])
    assert abs(doubled - f.event_step) <= 1
    adam = InstabilityMonitor(torch.optim.Adam(model.parameters(), lr=1e-3))
    assert math.isnan(adam._forecast(0, 1.0, 1.0, 1.5, 3, math.nan).event_step)  # no forecast off plain GD


def test_the_monitor_alarms_before_the_loss_spike_detector_on_a_divergent_run():
    model, x, y = _quadratic()
    opt = torch.optim.SGD(model.parameters(), lr=2 * 1.5 / max(SPECTRUM))
    monitor, spike, nan = InstabilityMonitor(opt), LossSpike(), NonFinite()
    for step in range(40):
        loss = half_mse(model(x), y)
        spike(step, loss=loss.item())
        nan(step, loss=loss.item())
        if step % 5 == 0:
            monitor(step, model, half_mse, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert monitor.alarms[0] == 0 and spike.alarms and spike.alarms[0] > 0
    assert all(f.kind in ("catapult", "divergence") for f in monitor.forecasts)


def test_adam_monitor_waits_for_the_preconditioner():
    model, x, y = _quadratic()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    monitor = InstabilityMonitor(opt)
    assert monitor(0, model, half_mse, x, y) is None
    half_mse(model(x), y).backward()
    opt.step()
    f = monitor(1, model, half_mse, x, y)
    assert f is not None and f.threshold == pytest.approx(38 / 1e-2) and f.matvecs > 0


def test_reactive_baselines():
    spike = LossSpike(factor=2.0)
    losses = [1.0, 0.8, 0.5, 0.9, 1.2, 0.4]
    assert [spike(i, loss=v) for i, v in enumerate(losses)] == [False, False, False, False, True, False]
    windowed = LossSpike(factor=2.0, window=1)  # against the previous loss only: 1.2 < 2 x 0.9
    assert [windowed(i, loss=v) for i, v in enumerate(losses)] == [False, False, False, False, False, False]
    z = GradNormZScore(z=4.0, window=20, min_history=5)
    norms = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0, 5.0, float("nan")]
    assert [z(i, grad_norm=v) for i, v in enumerate(norms)] == [False] * 6 + [True, True]
    stop = NonFinite()
    assert [stop(i, loss=v) for i, v in enumerate([1.0, float("inf"), float("nan")])] == [False, True, True]
    assert stop.alarms == [1, 2]


def test_bad_input_names_the_problem():
    model, _, _ = _quadratic()
    with pytest.raises(ConfigError, match="cannot read LBFGS.*supported: SGD"):
        InstabilityMonitor(torch.optim.LBFGS(model.parameters()))
    with pytest.raises(ConfigError, match="catapult_ratio"):
        InstabilityMonitor(torch.optim.SGD(model.parameters(), lr=0.1), catapult_ratio=1.1)
    with pytest.raises(ConfigError, match="torch.optim.Optimizer"):
        InstabilityMonitor("sgd")


def test_instability_probe_in_the_engine_is_the_sharpness_over_two_over_eta():
    import lmech
    from lmech.probes import Instability, Sharpness

    system = lmech.System(lmech.MLP(width=32, depth=1), lmech.Digits(n_train=100, n_test=0), lmech.Task("mse"),
                          lmech.LearningRule(lr=0.4, steps=60))
    every = lmech.Schedule(every=20)
    run = lmech.train(system, [Instability(every, subset=50), Sharpness(every, subset=50, tol=1e-6)])
    steps, ratio = run.series("instability/ratio")
    _, sharp = run.series("sharpness/0")
    np.testing.assert_allclose(ratio, sharp * 0.4 / 2, rtol=2e-3)
    kinds = run.series("instability/kind")[1]
    expected = [0 if r < 1 else 1 if r <= 1.15 else 2 if r <= 2 else 3 for r in ratio]
    assert list(kinds) == expected and list(steps) == [0, 20, 40, 60]


def test_catapult_time_matches_gd_on_the_quadratic():
    """GD at eta lambda_0 = 3 on the quadratic: the top mode's share p of the initial excess loss grows 4x a step
    (the modes are the coordinate axes, X^T X / n diagonal); the first step at which the excess loss reaches F times
    its start is the formula's t_F rounded up (the other modes only decay)."""
    from lmech.theory import catapult_time

    model, x, y = _quadratic()
    lr = 3 / max(SPECTRUM)
    w_star = torch.linalg.lstsq(x, y).solution[:, 0]
    optimum = half_mse(x @ w_star[:, None], y).item()
    with torch.no_grad():
        delta = model.weight[0] - w_star
    shares = torch.tensor(SPECTRUM, dtype=torch.float64) * delta ** 2
    p = float(shares[0] / shares.sum())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    excess = []
    for _ in range(30):
        loss = half_mse(model(x), y)
        excess.append(loss.item() - optimum)
        opt.zero_grad()
        loss.backward()
        opt.step()
    factor = 100.0
    first = next(t for t, e in enumerate(excess) if e >= factor * excess[0])
    assert first == math.ceil(catapult_time(lr, max(SPECTRUM), loss_fraction=p, factor=factor))
    with pytest.raises(ValueError, match="stable along the top mode"):
        catapult_time(0.1, 4.0, loss_fraction=0.5)


def test_a_run_that_has_blown_up_is_a_divergence_not_a_crash():
    model, x, y = _quadratic()
    monitor = InstabilityMonitor(torch.optim.SGD(model.parameters(), lr=0.1))
    assert monitor(0, model, half_mse, x, y).kind == "stable"
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    f = monitor(1, model, half_mse, x, y)
    assert f.kind == "divergence" and f.alarm and math.isnan(f.sharpness) and f.matvecs == 0
    with torch.no_grad():
        model.weight.zero_()  # recovered (e.g. a checkpoint reload): measured again, from a cold start
    assert monitor(2, model, half_mse, x, y).sharpness == pytest.approx(4.0, rel=1e-6)

import numpy as np
import pytest
import torch

from lmech import MLP, DeepLinear, Digits, LearningRule, Schedule, System, Task, TeacherStudent, WhitenedLinear, train
from lmech.probes import GradNorm, Loss, SingularValues
from lmech.engine.loop import minibatches, optimizer_step


def _digits_system(**rule):
    defaults = dict(lr=0.1, steps=30)
    return System(MLP(width=16, depth=1), Digits(n_train=64, n_test=32), Task("mse"),
                  LearningRule(**{**defaults, **rule}))


def test_same_seed_same_metrics():
    def probes():
        return [Loss(Schedule(every=5)), Loss(Schedule(every=10), split="test"), GradNorm(Schedule(every=10))]
    system = _digits_system(optimizer="sgd", batch_size=16)
    a, b = train(system, probes()), train(system, probes())
    assert a.records == b.records and len(a.records) > 10
    c = train(_digits_system(optimizer="sgd", batch_size=16, seed=1), probes())
    assert c.records != a.records


def test_schedules():
    assert Schedule(every=4).steps(10) == {0, 4, 8, 10}
    assert Schedule(at=(0, 3, 50)).steps(10) == {0, 3}
    log = sorted(Schedule(log_points=5).steps(1000))
    assert log[0] == 0 and log[-1] == 1000 and len(log) >= 5
    with pytest.raises(ValueError, match="exactly one"):
        Schedule(every=2, log_points=3)


def _manual_run(system, update, steps):
    """Train the system's model with a hand-written update; return the end-to-end singular values."""
    from lmech.systems.networks import build_model

    data = system.data.load()
    rule = system.rule
    model = build_model(system.architecture, data, init="normal", init_scale=1.0, seed=rule.seed, dtype=torch.float64)
    x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    params = list(model.parameters())
    state = [dict() for _ in params]
    for t in range(1, steps + 1):
        loss = 0.5 * (model(x) - y).pow(2).sum(1).mean()
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g, st in zip(params, grads, state):
                p -= update(g, st, t)
    return torch.linalg.svdvals(model.layers[1].weight @ model.layers[0].weight).detach().numpy()


def _heavy_ball(lr, beta):
    def update(g, st, t):
        st["v"] = beta * st.get("v", torch.zeros_like(g)) + g
        return lr * st["v"]
    return update


def _adam(lr, b1, b2, eps):
    def update(g, st, t):
        st["m"] = b1 * st.get("m", torch.zeros_like(g)) + (1 - b1) * g
        st["v"] = b2 * st.get("v", torch.zeros_like(g)) + (1 - b2) * g * g
        return lr * (st["m"] / (1 - b1 ** t)) / ((st["v"] / (1 - b2 ** t)).sqrt() + eps)
    return update


@pytest.mark.parametrize("optimizer, update", [
    ("gd", lambda g, st, t: 0.05 * g),
    ("momentum", _heavy_ball(0.05, 0.9)),
    ("adam", _adam(0.05, 0.9, 0.999, 1e-8)),
])
def test_optimizers_follow_their_update_equations(optimizer, update):
    system = System(DeepLinear(depth=2, width=4), WhitenedLinear(d_in=3, d_out=2, singular_values=(2.0, 1.0), n_train=8),
                    Task("mse"), LearningRule(lr=0.05, steps=4, optimizer=optimizer, momentum=0.9, dtype="float64", seed=5))
    run = train(system, [SingularValues(Schedule(every=1))])
    measured = [run.last(f"sv/{i}") for i in range(2)]
    np.testing.assert_allclose(measured, _manual_run(system, update, 4), rtol=1e-10)


def _cosine_after_warmup(t, steps=8, warmup=2):  # update t (0-based): linear warm-up, then a half cosine
    return (t + 1) / warmup if t < warmup else 0.5 * (1 + np.cos(np.pi * (t - warmup) / (steps - warmup)))


@pytest.mark.parametrize("optimizer, schedule, factor, update", [
    ("gd", "cosine", _cosine_after_warmup, lambda g, st, t: 0.05 * _cosine_after_warmup(t - 1) * g),
    ("adam", "wsd", lambda t: min(1.0, (8 - t) / 2), None),  # decay over the last 0.25 x 8 = 2 updates
])
def test_learning_rate_schedules_scale_each_update(optimizer, schedule, factor, update):
    rule = LearningRule(lr=0.05, steps=8, optimizer=optimizer, dtype="float64", seed=5, schedule=schedule,
                        warmup=2 if schedule == "cosine" else 0, decay_fraction=0.25)
    assert [rule.lr_factor(t) for t in range(8)] == pytest.approx([factor(t) for t in range(8)], abs=1e-12)
    np.testing.assert_allclose(rule.learning_rates(), [0.05 * factor(t) for t in range(8)], rtol=1e-12)
    if update is None:  # Adam: the rate's factor multiplies the bias-corrected step
        adam = _adam(0.05, 0.9, 0.999, 1e-8)
        update = lambda g, st, t: factor(t - 1) * adam(g, st, t)  # noqa: E731
    system = System(DeepLinear(depth=2, width=4), WhitenedLinear(d_in=3, d_out=2, singular_values=(2.0, 1.0), n_train=8),
                    Task("mse"), rule)
    run = train(system, [SingularValues(Schedule(every=1))])
    np.testing.assert_allclose([run.last(f"sv/{i}") for i in range(2)], _manual_run(system, update, 8), rtol=1e-10)


def test_schedule_fields_are_validated():
    with pytest.raises(Exception, match="rule.schedule"):
        LearningRule(lr=0.1, steps=10, schedule="exponential")
    with pytest.raises(Exception, match="rule.warmup"):
        LearningRule(lr=0.1, steps=10, warmup=10)
    with pytest.raises(Exception, match="rule.decay_fraction"):
        LearningRule(lr=0.1, steps=10, schedule="wsd", decay_fraction=1.5)


def test_divergence_is_an_outcome_not_a_crash():
    run = train(_digits_system(lr=1e4, steps=200), [Loss(Schedule(every=1))])
    assert run.outcome == "diverged"
    assert 0 < run.diverged_step < 200
    steps, losses = run.series("loss/train")
    assert steps.max() <= run.diverged_step and np.isfinite(losses[0])


def test_minibatches_cover_each_epoch_without_replacement():
    nxt = minibatches(10, 3, seed=0)
    epoch = torch.cat([nxt() for _ in range(3)])
    assert len(set(epoch.tolist())) == 9
    assert minibatches(10, None, 0)() is None


def test_ntk_parameterization_matches_sp_function_at_init_and_scales_gradients():
    data = TeacherStudent(d_in=2, n_train=16, n_test=0)
    sp, ntk = (System(MLP(width=64, parameterization=p), data, Task("mse"), LearningRule(lr=1e-3, steps=1, dtype="float64"))
               for p in ("sp", "ntk"))
    a, b = (train(s, [Loss(Schedule(every=1)), GradNorm(Schedule(every=1))]) for s in (sp, ntk))
    assert a.series("loss/train")[1][0] == pytest.approx(b.series("loss/train")[1][0], rel=1e-12)
    # NTK: dL/dW = (dL/dW_eff) / sqrt(fan_in), so hidden-layer gradients are sqrt(fan_in) smaller
    assert b.series("grad_norm")[1][0] < a.series("grad_norm")[1][0]


def test_weight_decay_gives_the_ridge_solution_and_adamw_decays_decoupled():
    """GD with L2 weight decay lambda on whitened linear regression (X^T X / n = I) converges to W* / (1 + lambda);
    AdamW's decoupled decay shrinks a parameter whose gradient is zero by exactly (1 - lr lambda) per step."""
    from lmech.engine.loop import build_optimizer

    system = System(DeepLinear(depth=1, width=3), WhitenedLinear(d_in=4, d_out=3, singular_values=(3.0, 2.0, 1.0)),
                    Task("mse"), LearningRule(lr=0.5, steps=300, optimizer="gd", weight_decay=0.25))
    result = train(system, [SingularValues(schedule=Schedule(every=300))])
    final = sorted((result.last(f"sv/{i}") for i in range(3)), reverse=True)
    np.testing.assert_allclose(final, np.array([3.0, 2.0, 1.0]) / 1.25, rtol=1e-6)
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer("adamw", [p], lr=0.1, weight_decay=0.5)
    p.grad = torch.zeros(3)
    opt.step()
    np.testing.assert_allclose(p.detach().numpy(), 1 - 0.1 * 0.5, rtol=1e-7)


def test_stop_when_ends_the_run_where_the_unstopped_run_first_crosses_and_measures_the_final_probes_there():
    from lmech.probes import Parameters, StopWhen
    system = _digits_system(optimizer="adam", lr=0.01, steps=200)
    full = train(system, [Loss(Schedule(every=5)), Parameters(Schedule(every=5))])
    steps, acc = full.series("accuracy/train")
    crossing = int(steps[np.argmax(acc >= 0.9)])
    assert 0 < crossing < 200  # the threshold is crossed mid-run
    stopped = train(system, [Loss(Schedule(every=5)), StopWhen(Schedule(every=5), "accuracy/train", at_least=0.9),
                             Parameters(Schedule(at=(200,)))])
    assert stopped.series("loss/train")[0][-1] == crossing and stopped.last("stopped") == 1.0
    assert stopped.outcome == "completed"
    at_stop = {n: a for s, n, a in stopped.arrays}  # the Parameters probe scheduled at the last step ran at the stop
    assert {s for s, _, _ in stopped.arrays} == {crossing}
    for name, array in at_stop.items():
        np.testing.assert_array_equal(array, full.array(name, crossing))
    below = train(system, [Loss(Schedule(every=5)), StopWhen(Schedule(every=5), "loss/train", at_most=0.0)])
    assert below.series("loss/train")[0][-1] == 200 and "stopped" not in below.names()  # never reached: full budget
    from lmech.observables.probes import probe_from_dict
    rule = StopWhen(Schedule(every=5), "loss/train", at_most=0.1)
    assert probe_from_dict(rule.to_dict()) == rule  # stored with the run like every engine probe
    with pytest.raises(ValueError, match="exactly one of at_least= and at_most="):
        StopWhen(metric="loss/train")


def test_plain_sgd_step_is_torch_sgd_bit_for_bit_and_other_optimizers_keep_their_own_step():
    """The wrapper-free plain-SGD update equals torch.optim.SGD.step exactly, follows a changed learning rate, and
    skips parameters without gradients; momentum or weight decay keep torch's own step."""
    gen = torch.Generator().manual_seed(0)
    make = lambda: [torch.nn.Parameter(torch.randn(5, 3, generator=torch.Generator().manual_seed(i))) for i in range(3)]
    ours, theirs = make(), make()
    opt_ours = torch.optim.SGD([{"params": ours[:2]}, {"params": ours[2:], "lr": 0.3}], lr=0.1)
    opt_theirs = torch.optim.SGD([{"params": theirs[:2]}, {"params": theirs[2:], "lr": 0.3}], lr=0.1)
    step = optimizer_step(opt_ours)
    assert step != opt_ours.step
    for t in range(4):
        grads = [torch.randn(5, 3, generator=gen) for _ in range(3)]
        for params in (ours, theirs):
            for i, (p, g) in enumerate(zip(params, grads)):
                p.grad = None if (t == 2 and i == 1) else g.clone()
        if t == 3:
            opt_ours.param_groups[0]["lr"] = opt_theirs.param_groups[0]["lr"] = 0.017
        step()
        opt_theirs.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b)
    momentum = torch.optim.SGD(make(), lr=0.1, momentum=0.9)
    decay = torch.optim.SGD(make(), lr=0.1, weight_decay=1e-3)
    adam = torch.optim.Adam(make(), lr=0.1)
    assert all(optimizer_step(o) == o.step for o in (momentum, decay, adam))


@pytest.mark.parametrize("optimizer, loss", [("gd", "mse"), ("momentum", "cross_entropy")])
def test_probes_reading_the_full_batch_step_pass_equal_their_own_passes(optimizer, loss):
    """Full batch: Loss (train) and GradNorm read the training step's own forward and backward. Their records, a
    curvature probe measured at the same steps and the trained parameters equal a hand-written loop in which every
    measurement makes its own passes (lmech.metrics) and the update is torch.optim's."""
    from lmech.engine.trainer import initial_state, optimizer_for
    from lmech.observables.metrics import accuracy as accuracy_of, gradient_norm, loss as loss_of
    from lmech.probes import Sharpness

    system = System(MLP(width=12, depth=2), Digits(n_train=48, n_test=16), Task(loss),
                    LearningRule(lr=0.05, steps=12, optimizer=optimizer, momentum=0.9, dtype="float64"))
    every = Schedule(every=1)
    run = train(system, [Loss(every), GradNorm(Schedule(every=2)), Sharpness(Schedule(every=3), k=1)])
    state = initial_state(system)
    model, x, y = state.model, state.x_train, state.y_train
    opt = optimizer_for(system, model.parameters())
    expected = {"loss/train": [], "accuracy/train": [], "grad_norm": []}
    for step in range(13):
        expected["loss/train"].append(loss_of(model, state.loss_fn, x, y))
        expected["accuracy/train"].append(accuracy_of(model, x, y) if state.labelled else None)
        if step % 2 == 0:
            expected["grad_norm"].append(gradient_norm(model, state.loss_fn, x, y))
        if step == 12:
            break
        opt.zero_grad()
        state.loss_fn(model(x), y).backward()
        opt.step()
    for name, values in expected.items():
        if values[0] is not None:
            np.testing.assert_allclose(run.series(name)[1], values, rtol=1e-13, atol=0)
    trained = train(system, [Sharpness(Schedule(every=3), k=1)])  # no probe reads the pass: the same curvature
    np.testing.assert_allclose(run.series("sharpness/0")[1], trained.series("sharpness/0")[1], rtol=1e-12)
    assert run.series("sharpness/0")[1][0] > 0

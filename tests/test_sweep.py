"""Batched sweeps through the engine: each model's records equal its sequential engine run, stored separately."""
from dataclasses import replace

import numpy as np
import pytest

import lmech
from lmech import MLP, MNIST1D, LearningRule, Schedule, System, Task, Transformer
from lmech.probes import Loss
from lmech.laws import Experiment
from lmech.engine.sweep import batch_key as sweep_batch_key
from lmech.runner import run_experiments
from lmech.systems import ModularArithmetic


def _experiments(arch, data, lrs, optimizer="adam", batch_size=None, steps=12, tag="", loss="cross_entropy",
                 seeds=(0,)):
    probes = [Loss(schedule=Schedule(every=4)), Loss(Schedule(at=(0, steps)), split="test")]
    return [Experiment({"tag": tag, "lr": lr, "seed": seed},
                       System(arch, data, Task(loss), LearningRule(lr=lr, steps=steps, optimizer=optimizer,
                                                                   batch_size=batch_size, seed=seed, dtype="float64")),
                       probes) for lr in lrs for seed in seeds]


def _assert_same_records(batched, alone):
    assert batched.run_id == alone.run_id and batched.outcome == alone.outcome
    assert batched.diverged_step == alone.diverged_step
    a, b = sorted(batched.records), sorted(alone.records)
    assert [(s, n) for s, n, _ in a] == [(s, n) for s, n, _ in b]
    np.testing.assert_allclose([v for *_, v in a], [v for *_, v in b], rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("arch, data, optimizer, batch_size", [
    (MLP(width=48, depth=2, parameterization="mup", base_width=24), MNIST1D(n_train=256, n_test=64), "adam", 64),
    (MLP(width=48, depth=2), MNIST1D(n_train=256, n_test=64), "momentum", 64),
    (Transformer(width=24, depth=1, heads=2, base_width=12), ModularArithmetic(p=11, n_train=80, n_test=20), "adam", None),
])
def test_batched_runs_equal_sequential_engine_runs(arch, data, optimizer, batch_size, tmp_path):
    lrs = [1e-3, 1e-2] + ([1e4] if optimizer == "momentum" else [3e-2])  # 1e4 diverges under SGD
    loss = "mse" if optimizer == "momentum" else "cross_entropy"  # MSE on labels: one-hot targets, accuracy by arg-max
    exps = _experiments(arch, data, lrs, optimizer, batch_size, loss=loss, seeds=(0, 5))  # seeds: init and batch order
    store = lmech.Store(tmp_path / "s.db")
    batched = run_experiments(exps, store)
    assert all("train_stacked x6" == r.versions["executor"] for r in batched.values())
    for exp in exps:
        _assert_same_records(batched[exp.key], lmech.train(exp.system, exp.probes))
        assert store.load_run(batched[exp.key].run_id) is not None  # each model is its own stored run
    if optimizer == "momentum":
        assert batched.one(lr=1e4, seed=0).outcome == "diverged"  # (seed 5 kills every relu in one step: finite)


@pytest.mark.parametrize("arch, data, optimizer, batch_size", [
    (MLP(width=32, depth=1, parameterization="ntk"), lmech.CircleFourier(n_train=40, n_test=30), "momentum", None),
    (MLP(width=24, depth=2, activation="tanh"), MNIST1D(n_train=128, n_test=32), "adam", 32),
    (Transformer(width=24, depth=1, heads=2, base_width=12), ModularArithmetic(p=11, n_train=80, n_test=20), "adam", 16),
])
def test_data_draws_are_batched_and_equal_sequential_runs(arch, data, optimizer, batch_size, tmp_path):
    """Experiments differing in the data seed (independent draws) train as one stacked run, each model on its own
    data; the chain path (MLP) and the vmap path (transformer), full batch and minibatches with per-model orders."""
    loss = "mse" if isinstance(data, lmech.CircleFourier) else "cross_entropy"
    exps = [Experiment({"draw": k, "seed": seed}, System(arch, replace(data, seed=k), Task(loss),
                                                       LearningRule(lr=1e-2, steps=9, optimizer=optimizer,
                                                                    batch_size=batch_size, seed=seed, dtype="float64")),
                       [Loss(schedule=Schedule(every=3)), Loss(Schedule(at=(0, 9)), split="test")])
            for k in (0, 1, 2) for seed in ((0, 4) if batch_size else (0,))]
    batched = run_experiments(exps, lmech.Store(tmp_path / "s.db"))
    assert all(r.versions["executor"] == f"train_stacked x{len(exps)}" for r in batched.values())
    for exp in exps:
        _assert_same_records(batched[exp.key], lmech.train(exp.system, exp.probes))
    first = [v for _, n, v in sorted(batched[exps[0].key].records) if n == "loss/test"]
    other = [v for _, n, v in sorted(batched[exps[-1].key].records) if n == "loss/test"]
    assert first != other  # the draws differ


@pytest.mark.parametrize("optimizer, schedule", [("adam", "cosine"), ("momentum", "wsd")])
def test_scheduled_learning_rates_batch_and_equal_sequential_runs(optimizer, schedule, tmp_path):
    exps = [Experiment({"lr": lr, "seed": seed},
                       System(MLP(width=24, depth=2), MNIST1D(n_train=128, n_test=32), Task("cross_entropy"),
                              LearningRule(lr=lr, steps=10, optimizer=optimizer, batch_size=32, seed=seed,
                                           dtype="float64", schedule=schedule, warmup=3)),
                       [Loss(schedule=Schedule(every=2)), Loss(Schedule(at=(0, 10)), split="test")])
            for lr in (1e-3, 3e-2) for seed in (0, 2)]
    batched = run_experiments(exps, lmech.Store(tmp_path / "s.db"))
    assert all(r.versions["executor"] == "train_stacked x4" for r in batched.values())
    for exp in exps:
        _assert_same_records(batched[exp.key], lmech.train(exp.system, exp.probes))


def test_mixed_shapes_and_other_probes_run_alone():
    data = MNIST1D(n_train=64, n_test=0)
    exps = (_experiments(MLP(width=16), data, [1e-3, 1e-2], steps=2)
            + _experiments(MLP(width=24), data, [1e-3], steps=2, tag="wide "))
    exps.append(Experiment({"tag": "grad", "lr": 0.0}, exps[0].system, [lmech.probes.GradNorm()]))
    runs = run_experiments(exps)
    assert runs.one(tag="grad").versions.get("executor") is None and runs[exps[2].key].versions.get("executor") is None
    assert runs[exps[0].key].versions["executor"] == "train_stacked x2"


def _assert_same_arrays(batched, alone, rtol=1e-8):
    assert [(s, n) for s, n, _ in batched.arrays] == [(s, n) for s, n, _ in alone.arrays]
    for (_, name, a), (_, _, b) in zip(batched.arrays, alone.arrays):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12 * np.abs(b).max(), err_msg=name)


def test_probes_on_stacked_models_equal_their_sequential_runs(tmp_path):
    """Runs with probes other than Loss (weights, parameters, kernels, gradient norm, sharpness, representations)
    and different output multipliers (MLP alpha, a per-model scale in the stack) train as one stack; each model's
    probes read its own parameters at their steps: records and arrays equal lmech.train's (float64), in the same
    order, and a diverging model is measured up to its divergence only. 2-D inputs: the narrow first layer's weight
    gradient takes the transposed product."""
    steps = 12
    probes = [Loss(Schedule(every=3)), lmech.probes.GradNorm(Schedule(every=4)),
              lmech.probes.WeightChange(Schedule(at=(steps,))), lmech.probes.Parameters(Schedule(at=(0, steps))),
              lmech.probes.Kernels(Schedule(at=(0, 6, steps)), points=20),
              lmech.probes.Sharpness(Schedule(at=(0, 6)), tol=1e-8),
              lmech.probes.RepresentationChange(Schedule(at=(steps,)))]
    data = lmech.TeacherStudent(d_in=2, n_train=40, n_test=10)
    exps = [Experiment({"alpha": alpha, "lr": lr}, System(
        MLP(width=20, depth=1, bias=False, alpha=alpha, parameterization="ntk"), data, Task("mse"),
        LearningRule(lr=lr, steps=steps, init="symmetric", dtype="float64")), probes)
        for alpha, lr in ((1.0, 0.5), (0.1, 5.0), (10.0, 0.01), (3.0, 1e4))]  # the last diverges
    batched = run_experiments(exps, lmech.Store(tmp_path / "s.db"))
    assert all(r.versions["executor"] == "train_stacked x4" for r in batched.values())
    for exp in exps:
        alone = lmech.train(exp.system, exp.probes)
        _assert_same_records(batched[exp.key], alone)
        assert [r[:2] for r in batched[exp.key].records] == [r[:2] for r in alone.records]  # in the same order
        _assert_same_arrays(batched[exp.key], alone)
    diverged = batched.one(alpha=3.0)
    assert diverged.outcome == "diverged" and 0 < diverged.diverged_step < steps
    assert max(s for s, _, _ in diverged.records) == diverged.diverged_step
    moved = [batched.one(alpha=a).last("weights/relative") for a in (0.1, 1.0, 10.0)]
    assert moved[0] > moved[1] > moved[2]  # the multipliers were applied per model


def test_probes_that_read_the_optimizer_keep_a_run_alone():
    data = MNIST1D(n_train=64, n_test=0)
    exps = _experiments(MLP(width=16), data, [1e-3, 1e-2], steps=2, optimizer="adam")
    preconditioned = lmech.probes.Sharpness(Schedule(at=(1,)), preconditioned=True)
    alone = [replace(e, probes=[*e.probes, preconditioned]) for e in exps]
    assert sweep_batch_key(exps[0]) == sweep_batch_key(exps[1]) is not None
    assert sweep_batch_key(alone[0]) is None and sweep_batch_key(replace(exps[0], probes=[lmech.probes.Instability()])) is None
    untrained = exps[0].system.replace(rule=replace(exps[0].system.rule, steps=0))
    assert sweep_batch_key(replace(exps[0], system=untrained)) is None  # only measures its init: nothing to stack
    runs = run_experiments(alone)
    assert all(r.versions.get("executor") is None for r in runs.values())


def test_stacking_refuses_models_that_differ_beyond_the_output_multiplier():
    import torch
    from lmech.engine.batched import train_stacked
    from lmech.systems.networks import MLPNet
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    with pytest.raises(ValueError, match="output multiplier"):  # same shapes, another activation
        train_stacked([MLPNet([3, 5, 1], "relu", False, 2.0, True), MLPNet([3, 5, 1], "tanh", False, 1.0, True)],
                      lmech.systems.task.half_mse, x, y, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="chains on 2-D inputs"):  # the vmap path has one template model
        train_stacked([MLPNet([3, 5, 1], "relu", False, a, True) for a in (1.0, 2.0)], lmech.systems.task.half_mse,
                      x.expand(2, 4, 8, 3)[0], y.expand(2, 4, 8, 1)[0], lr=0.1, steps=1)


@pytest.mark.parametrize("activation, optimizer, batch_size, draws", [
    ("relu", "adam", 16, (0,)), ("tanh", "momentum", None, (0, 1)), ("gelu", "adam", None, (0,))])
def test_residual_mlps_stack_by_hand_and_equal_sequential_runs(activation, optimizer, batch_size, draws, tmp_path):
    """Residual MLPs (LayerNorm, activation, linear per block; muP and depth-muP) train in a stack with a hand-written
    forward and backward (the LayerNorm's backward in closed form; GELU's by autograd): records equal lmech.train's
    (float64), with minibatches per seed and one data draw per model."""
    from lmech import ResidualMLP
    exps = [Experiment({"lr": lr, "seed": seed, "draw": k, "scheme": scheme}, System(
        ResidualMLP(width=16, depth=3, activation=activation, parameterization=scheme, base_width=8, base_depth=1),
        MNIST1D(n_train=48, n_test=16, seed=k), Task("cross_entropy"),
        LearningRule(lr=lr, steps=8, optimizer=optimizer, batch_size=batch_size, seed=seed, dtype="float64")),
        [Loss(Schedule(every=2)), Loss(Schedule(at=(0, 8)), split="test")])
        for scheme in ("mup", "depth-mup") for lr in (1e-3, 3e-2) for seed in (0, 3) for k in draws]
    runs = run_experiments(exps, lmech.Store(tmp_path / "s.db"))
    assert {r.versions["executor"] for r in runs.values()} == {f"train_stacked x{4 * len(draws)}"}
    for exp in exps:
        _assert_same_records(runs[exp.key], lmech.train(exp.system, exp.probes))


def test_the_residual_path_computes_the_vmap_paths_gradients():
    """The hand-written residual backward against autograd through vmap (the path it replaced), on one step."""
    import torch
    from lmech.engine import batched
    from lmech.systems.networks import ResidualMLPNet
    torch.manual_seed(0)
    models = [ResidualMLPNet(5, 7, 3, 4, "silu").double() for _ in range(3)]
    x, y = torch.randn(11, 5, dtype=torch.float64), torch.randint(0, 4, (11,))
    assert batched._residual(models[0])
    grads = {}
    for cls in (batched._ResidualNet, batched._VmapNet):
        stacked, buffers = torch.func.stack_module_state(models)
        params = {n: p.detach().clone() for n, p in stacked.items()}
        grads[cls] = {n: torch.zeros_like(p) for n, p in params.items()}
        args = (models[0], params, grads[cls]) + ((buffers,) if cls is batched._VmapNet else ()) + (
            lmech.systems.task.cross_entropy,)
        cls(*args).loss_and_grad(x, y)
    for name, g in grads[batched._VmapNet].items():
        np.testing.assert_allclose(grads[batched._ResidualNet][name], g, rtol=1e-10, atol=1e-13, err_msg=name)
    models[1].blocks[2][1] = torch.nn.ReLU()  # one block unlike the others: not this path's model
    assert not batched._residual(models[1])

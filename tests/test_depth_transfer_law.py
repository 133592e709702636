"""The depth-mup-transfer law: its systems' depth scaling, its prediction, and that it fails on a wrong measurement."""
import math

import pytest
import torch

from lmech.engine.trainer import initial_state, train
from lmech.laws import FAIL, LAWS, Runs
from lmech.laws.depth_transfer import VARIANTS, _architecture, stream_update, tail_loss
from lmech.observables.probes import Loss
from lmech.observables.schedule import Schedule
from lmech.store.result import RunResult
from lmech.systems import MNIST1D, LearningRule, System, Task

LAW = LAWS["depth-mup-transfer"]
LR = 1e-3
WIDTH = 128  # these unit tests' residual width (the law's own is in its settings)


def _system(depth, base_depth, exponent, steps=0):
    return System(_architecture(WIDTH, depth, base_depth, exponent), MNIST1D(n_train=256, n_test=0), Task("cross_entropy"),
                  LearningRule(lr=LR, steps=steps, optimizer="adam", batch_size=64))


def _groups(system):
    return {g["name"]: g["lr"] for g in initial_state(system).param_groups}


@pytest.mark.parametrize("exponent", [0.5, 1.0])
def test_depth_mup_equals_the_unscaled_network_at_the_base_depth(exponent):
    scaled, unscaled = _system(4, 4, exponent), _system(4, 4, None)
    a, b = initial_state(scaled).model.state_dict(), initial_state(unscaled).model.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _groups(scaled) == _groups(unscaled)
    # hence identical training, record for record
    probes = [Loss(Schedule(every=1))]
    runs = [train(s.replace(rule=LearningRule(lr=LR, steps=3, optimizer="adam", batch_size=64)), probes)
            for s in (scaled, unscaled)]
    assert runs[0].records == runs[1].records


@pytest.mark.parametrize("exponent", [0.5, 1.0, None])
def test_branch_init_and_learning_rates_follow_the_depth_rule(exponent):
    depth, base = 8, 2
    state = initial_state(_system(depth, base, exponent))
    lrs = {g["name"]: g["lr"] for g in state.param_groups}
    multiplier = 1.0 if exponent is None else (base / depth) ** exponent
    # Adam moves the branch output m W by m * eta_l = m * eta (L/L0)^(alpha - 1) = eta L0/L, whatever alpha
    branch_lr = LR if exponent is None else LR * base / depth
    for i in range(depth):
        weight = state.model.blocks[i][2].weight
        assert lrs[f"blocks.{i}.2.weight"] == pytest.approx(branch_lr, rel=1e-12)
        assert lrs[f"blocks.{i}.2.bias"] == pytest.approx(branch_lr, rel=1e-12)
        # He init (relu gain sqrt 2) times the branch multiplier; sampling error of the std over 128^2 draws ~0.6%
        assert float(weight.detach().std()) == pytest.approx(math.sqrt(2 / WIDTH) * multiplier, rel=0.03)
    for name in ("embed.weight", "embed.bias", "readout.weight", "readout.bias"):
        assert lrs[name] == pytest.approx(LR, rel=1e-12)  # outside the residual stack: no depth factor


def test_stream_update_is_depth_independent_under_depth_mup_and_linear_unscaled():
    for depth in (2, 4, 16, 64):
        assert stream_update(depth, 2, 0.5) == pytest.approx(1.0)
        assert stream_update(depth, 2, 1.0) == pytest.approx(1.0)
        assert stream_update(depth, 2, None) == pytest.approx(depth / 2)


def test_tail_loss_averages_the_tail_and_counts_divergence_as_infinite():
    steps = 100
    run = RunResult("r", None, [])
    run.records = [(s, "loss/train", float(s)) for s in (0, 80, 85, 90, 95, 100)]
    assert tail_loss(run, steps) == pytest.approx(90.0)
    run.records[-1] = (100, "loss/train", float("nan"))
    assert tail_loss(run, steps) == math.inf
    run.records = run.records[:3]  # diverged before the end: tail measurements missing
    assert tail_loss(run, steps) == math.inf
    assert tail_loss(RunResult("r", None, []), steps) == math.inf


def test_fails_when_the_unscaled_runs_are_relabelled_as_depth_mup(quick_runs):
    quick = quick_runs["depth-mup-transfer"]
    runs = Runs((key, quick[{**key, "variant": "unscaled"}] if key["variant"] == "1/sqrt(L)" else run)
                for key, run in quick.items())
    verdict = LAW.evaluate(runs, "quick")
    assert verdict.status == FAIL
    checks = {c.name.split(":")[0]: c for c in verdict.checks if "optimal lr drift" in c.name}
    assert not checks["1/sqrt(L)"].ok
    assert checks["1/sqrt(L)"].value == pytest.approx(checks["unscaled"].value)
    assert checks["1/sqrt(L)"].value >= 2


def test_experiments_cover_every_variant_depth_and_lr():
    for scale, s in LAW.settings.items():
        keys = [e.key for e in LAW.experiments(scale)]
        assert len(keys) == len(set(keys)) == len(VARIANTS) * len(s.depths) * len(s.lrs) * len(s.seeds)
        assert s.depths[-1] / s.depths[0] >= 8 and len(s.lrs) >= 6 and len(s.seeds) >= 3


@pytest.mark.parametrize("wrong", [(-2.0, -1.2), (-0.3, 0.0)])
def test_fails_when_the_unscaled_exponent_interval_is_wrong(quick_runs, monkeypatch, wrong):
    """The unscaled optimum's fitted exponent (about -0.57) is gated inside its predicted interval [-1, -1/2] +- 0.15;
    a wrong interval (steeper than 1/L, or flatter than 1/sqrt(L)) fails the law."""
    from lmech.laws import depth_transfer

    right = LAW.evaluate(quick_runs["depth-mup-transfer"], "quick")
    exponent = next(c for c in right.checks if c.name.startswith("unscaled: fitted exponent"))
    assert exponent.ok and -1.0 < exponent.value < -0.5
    monkeypatch.setattr(depth_transfer, "UNSCALED_EXPONENTS", wrong)
    verdict = LAW.evaluate(quick_runs["depth-mup-transfer"], "quick")
    assert verdict.status == FAIL
    assert [c.name for c in verdict.checks if not c.ok] == [exponent.name]

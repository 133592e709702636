"""The law API: typed keys and the Runs view, check kinds and the derived status, typed settings, probe registration."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from lmech.laws import LAWS, Check, Key, Law, Runs
from lmech.observables import probes as probe_module
from lmech.observables.probes import Loss, Probe, probe_types
from lmech.report.verdict import derive_status
from lmech.store.result import DIVERGED, RunResult
from lmech.sweep import sweep
from lmech.systems import MLP, Digits, LearningRule, System, Task
from lmech.engine import initial_state
from lmech.systems.task import half_mse


def _run(name: str, final: float, outcome: str = "completed", system=None) -> RunResult:
    return RunResult(name, system, [], records=[(0, "loss/train", 1.0), (5, "loss/train", final)], outcome=outcome)


def _runs() -> Runs:
    return Runs([({"scheme": s, "width": w, "seed": seed}, _run(f"{s}{w}{seed}", 1.0 / w + seed))
                 for s in ("sp", "mup") for w in (64, 128, 256) for seed in (0, 1)])


def test_key_is_an_ordered_hashable_mapping_with_a_label():
    key = Key([("width", 256), ("lr", 0.001), ("tag", "a")])
    assert key == {"lr": 0.001, "tag": "a", "width": 256} and hash(key) == hash(Key(key.items()))
    assert key.label == "width=256 lr=0.001 tag=a" and list(key) == ["width", "lr", "tag"]
    assert Key([("w", np.int64(3))])["w"] == 3 and type(Key([("w", np.int64(3))])["w"]) is int
    with pytest.raises(TypeError, match="numbers, strings or tuples"):
        Key([("model", object())])
    with pytest.raises(KeyError, match="no field 'depth'"):
        key["depth"]


def test_runs_select_sweep_group_and_tabulate():
    runs = _runs()
    assert len(runs.where(scheme="mup")) == 6 and len(runs.where(scheme="mup", width=[64, 256])) == 4
    assert runs.one(scheme="sp", width=128, seed=1).run_id == "sp1281"
    widths, ordered = runs.where(scheme="sp", seed=0).sweep("width")
    assert widths == [64, 128, 256] and [r.run_id for r in ordered] == ["sp640", "sp1280", "sp2560"]
    assert [(w, len(sub)) for w, sub in runs.where(scheme="mup").group("width")] == [(64, 2), (128, 2), (256, 2)]
    table = runs.table()
    assert len(table) == 12 and list(table.columns[:3]) == ["scheme", "width", "seed"]
    mean = table.groupby(["scheme", "width"])["loss/train"].mean()
    assert mean[("mup", 128)] == pytest.approx(1 / 128 + 0.5)
    with pytest.raises(ValueError, match="narrow with where"):
        runs.sweep("width")  # two schemes and two seeds per width
    with pytest.raises(KeyError, match="unknown key field"):
        runs.where(depth=2)
    with pytest.raises(KeyError, match="6 runs match"):
        runs.one(scheme="sp")
    with pytest.raises(ValueError, match="share the key"):
        Runs([({"a": 1}, _run("x", 1)), ({"a": 1}, _run("y", 1))])


@pytest.mark.parametrize("kinds_failing, expected", [
    ((), "pass"), (("claim",), "fail"), (("data",), "inconclusive"), (("regime",), "out-of-regime"),
    (("claim", "data"), "inconclusive"), (("claim", "data", "regime"), "out-of-regime"), (("info",), "pass"),
])
def test_status_follows_the_kinds_of_the_failed_checks(kinds_failing, expected):
    checks = [Check(f"{kind} ok", 1.0, "", True, kind=kind) for kind in ("claim", "regime", "data", "info")]
    checks += [Check(f"{kind} bad", 0.0, "", False, kind=kind) for kind in kinds_failing]
    assert derive_status(checks) == expected
    assert derive_status(checks, diverged=True) == "diverged"
    with pytest.raises(ValueError, match="Check.kind"):
        Check("x", 1.0, "", True, kind="claimed")


@dataclass(frozen=True)
class _S:
    n: int


class _OneRun(Law):
    id, title, pillar, claim, citation, regime, tolerance_note = ("test-one-run",) + ("t",) * 6
    settings = {"quick": _S(1), "full": _S(2)}

    def design(self, s):
        return []

    def judge(self, runs, s):
        run = runs.one(x=1)
        return self.verdict(runs, metric="m", error=0.0, tolerance=1.0, summary="s",
                            checks=[Check("final below 1", run.last("loss/train"), "< 1", run.last("loss/train") < 1)],
                            panels=[])


def test_a_diverged_run_is_diverged_unless_predicted_and_settings_are_recorded():
    law = _OneRun()
    assert law.evaluate({Key([("x", 1)]): _run("a", 0.5)}, "quick").status == "pass"
    verdict = law.evaluate([({"x": 1}, _run("a", 0.5, outcome=DIVERGED))], "full")
    assert verdict.status == "diverged" and verdict.summary.startswith("run(s) x=1 diverged")
    assert verdict.scale == "full" and verdict.meta["settings"] == "_S(n=2)"
    law.divergence_predicted = True
    assert law.evaluate([({"x": 1}, _run("a", 0.5, outcome=DIVERGED))], "full").status == "pass"
    with pytest.raises(ValueError, match="scale='medium'"):
        law.experiments("medium")


def test_settings_must_be_frozen_dataclasses_for_both_scales():
    @dataclass
    class Mutable:
        n: int

    with pytest.raises(TypeError, match="frozen dataclass"):
        type("Bad", (Law,), {"settings": {"quick": Mutable(1), "full": Mutable(2)}})
    with pytest.raises(TypeError, match="exactly the scales"):
        type("Bad", (Law,), {"settings": {"quick": _S(1)}})


def test_every_atlas_law_has_typed_settings_and_keyed_experiments():
    for law in LAWS.values():
        assert set(law.settings) == {"quick", "full"}, law.id
        for s in law.settings.values():
            assert type(s).__dataclass_params__.frozen, law.id


def test_probes_register_themselves_with_disjoint_metric_families():
    registry = probe_types()
    assert {"loss", "sharpness", "kernels", "noise_scale", "coords"} <= set(registry)
    families = [f for cls in registry.values() for f in cls.families]
    assert len(families) == len(set(families))

    @dataclass(frozen=True)
    class WeightNorm(Probe):  # a new observable: defining it is registering it
        name = "test_weight_norm"
        families = ("test_weight_norm",)

        def measure(self, state):
            return {"test_weight_norm/total": float(sum(p.norm() ** 2 for p in state.model.parameters()) ** 0.5)}

    try:
        assert probe_types()["test_weight_norm"] is WeightNorm
        assert probe_module.probe_from_dict(WeightNorm().to_dict()) == WeightNorm()
        with pytest.raises(TypeError, match="already registered"):
            type("Clash", (Probe,), {"name": "clash", "families": ("loss",)})
    finally:
        probe_module._REGISTRY.pop("test_weight_norm")


def test_probes_are_immutable_and_keep_per_run_state_in_the_run():
    from lmech.observables.probes import Conservation

    probe = Conservation(kind="neuron_balance")
    with pytest.raises(AttributeError):
        probe.kind = "balancedness"
    system = System(MLP(width=8), Digits(n_train=20, n_test=0), Task("mse"), LearningRule(lr=0.1, steps=1))
    state_a = initial_state(system)
    assert probe.measure(state_a)["neuron_balance/drift"] == 0.0
    with torch.no_grad():
        state_a.model.layers[0].weight.mul_(2.0)
    drift = probe.measure(state_a)["neuron_balance/drift"]
    state_b = initial_state(system)
    state_b.model.load_state_dict(state_a.model.state_dict())
    assert drift > 0.1 and probe.measure(state_b)["neuron_balance/drift"] == 0.0  # a new run: a new reference
    assert probe.measure(state_a)["neuron_balance/drift"] == pytest.approx(drift)  # the first run keeps its own


def test_python_sweep_returns_runs_keyed_by_its_axes():
    base = System(MLP(width=8), Digits(n_train=40, n_test=0), Task("mse"), LearningRule(lr=0.1, steps=6))
    runs = sweep(base, {"rule.lr": [0.05, 0.2], "architecture.width": [8, 16]}, [Loss()])
    assert len(runs) == 4 and runs.values_of("architecture.width") == [8, 16]
    run = runs.one(**{"rule.lr": 0.2, "architecture.width": 16})
    assert run.system.architecture.width == 16 and run.system.rule.lr == 0.2
    lrs, ordered = runs.where(**{"architecture.width": 8}).sweep("rule.lr")
    assert lrs == [0.05, 0.2] and ordered[1].last("loss/train") < ordered[1].series("loss/train")[1][0]

"""Tracker on an ordinary PyTorch loop: what it records equals independent measurements; store, hooks, divergence."""
from __future__ import annotations

import dataclasses
import math
import time
from typing import ClassVar

import numpy as np
import pytest
import torch

import lmech
from lmech.systems.task import half_mse


def _setup(lr=0.01, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2)).double()
    x = torch.randn(64, 5, dtype=torch.float64)
    y = torch.randn(64, 2, dtype=torch.float64)
    return model, torch.optim.Adam(model.parameters(), lr=lr), x, y


def _loop(model, opt, x, y, steps, tracker=None, on_step=None):
    for step in range(steps):
        opt.zero_grad()
        half_mse(model(x[step % 4::4]), y[step % 4::4]).backward()
        opt.step()
        if tracker is not None:
            tracker.step()
        if on_step is not None:
            on_step(step + 1)


def test_tracker_records_what_independent_calls_measure_and_stores_it(tmp_path):
    model, opt, x, y = _setup()
    expected = {}

    def reference(step):  # measured independently, outside the tracker, at the steps it should measure
        if step % 5 == 0:
            pre = float(lmech.sharpness(model, half_mse, x, y, tol=1e-9, optimizer=opt)) if step else math.nan
            expected[step] = (half_mse(model(x), y).item(), float(lmech.sharpness(model, half_mse, x, y, tol=1e-9)), pre)

    reference(0)
    tracker = lmech.Tracker(model, half_mse, x, y, optimizer=opt, every=5, store=tmp_path / "runs.db")
    _loop(model, opt, x, y, 20, tracker, reference)
    run = tracker.close()
    stored = lmech.Store(tmp_path / "runs.db").load_run(run.run_id)
    for result in (run, stored):
        steps, losses = result.series("loss/train")
        assert list(steps) == [0, 5, 10, 15, 20]
        assert losses == pytest.approx([expected[s][0] for s in steps], rel=1e-12)
        assert result.series("sharpness/0")[1] == pytest.approx([expected[s][1] for s in steps], rel=2e-3)
        pre_steps, pre = result.series("preconditioned_sharpness/0")
        assert list(pre_steps) == [5, 10, 15, 20]  # P is undefined before Adam's first step
        assert pre == pytest.approx([expected[s][2] for s in pre_steps], rel=2e-3)
    assert 0 < run.last("tracker/overhead") < math.inf


def test_autostep_hook_records_the_same_as_manual_steps():
    runs = []
    for autostep in (False, True):
        model, opt, x, y = _setup()
        tracker = lmech.Tracker(model, half_mse, x, y, optimizer=opt, every=3, probes=[], autostep=autostep)
        _loop(model, opt, x, y, 9, None if autostep else tracker)
        runs.append(tracker.close())
        opt.step()  # the hook is removed on close: no further measurement
        assert tracker.steps == 9
    assert runs[0].series("loss/train")[1] == pytest.approx(runs[1].series("loss/train")[1], rel=1e-12)


def test_interrupted_loop_keeps_every_appended_measurement(tmp_path):
    model, opt, x, y = _setup()
    tracker = lmech.Tracker(model, half_mse, x, y, optimizer=opt, every=2, probes=[], store=tmp_path / "r.db")
    with pytest.raises(KeyboardInterrupt):
        def interrupt(step):
            if step == 7:
                raise KeyboardInterrupt
        _loop(model, opt, x, y, 10, tracker, interrupt)
    store = lmech.Store(tmp_path / "r.db")
    rows = [r for r in store.iter_metrics(tracker.result.run_id) if r[2] == "loss/train"]
    assert [r[1] for r in rows] == [0, 2, 4, 6]
    assert store.load_run(tracker.result.run_id) is None  # not finished


def test_diverging_loop_is_an_outcome_not_a_crash(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1).double()
    x, y = torch.randn(32, 3, dtype=torch.float64) * 10, torch.randn(32, 1, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)  # far above 2/S
    with lmech.Tracker(model, half_mse, x, y, optimizer=opt, every=1, store=tmp_path / "d.db") as tracker:
        _loop(model, opt, x, y, 400, tracker)
    assert tracker.result.outcome == "diverged"
    assert tracker.result.diverged_step < 400
    assert lmech.Store(tmp_path / "d.db").load_run(tracker.result.run_id).outcome == "diverged"


def test_bad_tracker_input_names_the_field():
    model, opt, x, y = _setup()
    with pytest.raises(ValueError, match="every"):
        lmech.Tracker(model, half_mse, x, y, every=0)
    with pytest.raises(ValueError, match="autostep"):
        lmech.Tracker(model, half_mse, x, y, autostep=True)
    with pytest.raises(ValueError, match="same nonzero number"):
        lmech.Tracker(model, half_mse, x, y[:3])


def test_trace_density_and_noise_probes_record_what_the_functions_return():
    model, opt, x, y = _setup()
    probes = [lmech.probes.HessianTrace(matvecs=30), lmech.probes.HessianDensity(probes=3, steps=12), lmech.probes.NoiseScale(points=40)]
    for p in probes:
        assert lmech.observables.probes.probe_from_dict(p.to_dict()) == p  # serializable like every engine probe
    tracker = lmech.Tracker(model, half_mse, x, y, optimizer=opt, every=5, probes=probes)
    _loop(model, opt, x, y, 5, tracker)
    run = tracker.close()
    trace = lmech.hessian_trace(model, half_mse, x, y, matvecs=30)
    assert run.last("hessian/trace") == pytest.approx(trace.value, rel=1e-10)
    assert run.last("hessian/trace_stderr") == pytest.approx(trace.stderr, rel=1e-10)
    direct = lmech.hessian_density(model, half_mse, x, y, probes=3, steps=12, seed=5)
    nodes, weights = run.array("density/nodes", 5), run.array("density/weights", 5)
    for p in (1, 2, 3):  # the stored quadrature rules give the same moments (tr H^p / dim estimates)
        assert float(np.mean((weights * nodes ** p).sum(1))) == pytest.approx(direct.moment(p), rel=1e-8)
    noise = lmech.gradient_noise_scale(model, half_mse, x[:40], y[:40])
    assert run.last("noise_scale/b_simple") == pytest.approx(noise.b_simple, rel=1e-8)
    assert run.last("noise_scale/b_noise") == pytest.approx(noise.b_noise, rel=1e-8)


def test_ladder_gap_rounds_up_to_1_2_5_times_a_power_of_ten():
    from lmech.engine.tracker import ladder_gap
    assert [ladder_gap(v) for v in (0.0, 0.3, 1, 1.01, 3, 5, 5.5, 11, 20, 51, 999, 1001)] == \
        [1, 1, 1, 2, 5, 5, 10, 20, 20, 100, 1000, 2000]


@dataclasses.dataclass(frozen=True)
class _Sleep(lmech.probes.Probe):
    """A probe that costs ``seconds`` of wall time (the auto schedule must space it by cost / (budget * step))."""

    seconds: float = 0.025
    name: ClassVar[str] = "test_sleep"
    families: ClassVar[tuple[str, ...]] = ("test_sleep",)

    def measure(self, state):
        time.sleep(self.seconds)
        return {"test_sleep/slept": self.seconds}


class _Clock:
    """A wall clock that moves only when slept on: the schedule's timings become exact (no machine noise)."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_auto_schedule_spaces_measurements_by_their_cost_over_the_budget(monkeypatch):
    # 25 ms per measurement, 2 ms per step, budget 10%: 25 / (0.1 * 2) = 125 steps, rounded up the ladder to 200;
    # the gap ramps up tenfold per measurement (10 after step 0, then 100) before it reaches 200
    clock = _Clock()
    monkeypatch.setattr(time, "perf_counter", clock.perf_counter)
    monkeypatch.setattr(time, "sleep", clock.sleep)
    model, opt, x, y = _setup()
    tracker = lmech.Tracker(model, half_mse, x, y, optimizer=opt, probes=[_Sleep()], budget=0.1)
    assert tracker.every == "auto"
    for _ in range(1250):
        time.sleep(0.002)
        tracker.step()
    run = tracker.close()
    assert list(run.series("test_sleep/slept")[0]) == [0, 10, 100, 200, 400, 600, 800, 1000, 1200]
    # nine measurements of 25 ms against 2.5 s of loop (0.09): under the budget, the ramp's two extra ones included
    assert 0.06 < run.last("tracker/overhead") < 0.12
    with pytest.raises(ValueError, match="budget"):
        lmech.Tracker(model, half_mse, x, y, budget=1.5)

"""Executors and the check driver: dedup by run id, reuse, one stored run per finished run, retries, error outcomes."""
from __future__ import annotations

import os
import re
import signal
from dataclasses import dataclass

import numpy as np
import pytest

from lmech.engine.executor import InProcess, LocalPool, Task, make_executor, plan_tasks, run_task
from lmech.laws import LAWS, Check, Experiment, Law, Panel, Series
from lmech.observables.probes import Loss, Sharpness
from lmech.observables.schedule import Schedule
from lmech.runner import check, run_experiments
from lmech.store import Store
from lmech.systems import MLP, MNIST1D, Digits, LearningRule, ModularArithmetic, System, Task as LossTask, Transformer


def _system(lr: float, width: int = 4, steps: int = 5) -> System:
    return System(MLP(width=width), Digits(n_train=24, n_test=0), LossTask("mse"), LearningRule(lr=lr, steps=steps))


@dataclass(frozen=True)
class _Setting:
    lrs: tuple[float, ...]


class _Tiny(Law):
    """Passes when every run's loss fell: a law over a few learning rates."""

    id = "test-tiny-a"
    title = pillar = claim = citation = regime = tolerance_note = "test"
    settings = {"quick": _Setting((0.05, 0.1, 0.2)), "full": _Setting((0.05, 0.1, 0.2, 0.4))}
    probes = (Loss(Schedule(every=1)), Sharpness(Schedule(at=(0,))))  # not batchable: one task per run

    def design(self, s):
        return [Experiment({"lr": lr}, _system(lr), self.probes) for lr in s.lrs]

    def judge(self, runs, s):
        lrs, ordered = runs.sweep("lr")
        drops = [r.last("loss/train") / r.series("loss/train")[1][0] for r in ordered]
        checks = [Check(f"lr={lr:g}: final / initial loss", d, "< 1", d < 1, headline=True) for lr, d in zip(lrs, drops)]
        return self.verdict(runs, metric="max loss ratio", error=max(drops), tolerance=1.0, summary="loss falls",
                            checks=checks, panels=[Panel("p", "lr", "ratio", [Series.of("m", lrs, drops)])])


class _TinyShared(_Tiny):
    """Shares the lr=0.1 run with ``_Tiny`` (same system and probes: the same run id)."""

    id = "test-tiny-b"
    settings = {"quick": _Setting((0.1, 0.3)), "full": _Setting((0.1, 0.3))}


@pytest.fixture
def tiny_laws():
    for cls in (_Tiny, _TinyShared):
        LAWS[cls.id] = cls()
    yield [_Tiny.id, _TinyShared.id]
    for cls in (_Tiny, _TinyShared):
        del LAWS[cls.id]


def _records(runs):
    return {k.label: [(s, n, v) for s, n, v in sorted(r.records)] for k, r in runs.items()}


def test_check_trains_a_shared_run_once_and_reuses_stored_runs(tmp_path, tiny_laws):
    lines = []
    with Store(tmp_path / "s.db") as store:
        verdicts = check(tiny_laws, "quick", store, progress=lines.append)
        assert [v.status for v in verdicts] == ["pass", "pass"]
        assert len(store.runs()) == 4  # 3 + 2 experiments, one shared
        assert sum(int(n) for ln in lines for n in re.findall(r"(\d+) completed", ln)) == 4  # in one bundled task
        again = []
        check(tiny_laws, "quick", store, progress=again.append)
        assert sum("reused stored run" in ln for ln in again) == 4 and not any("completed" in ln for ln in again)
        assert len(store.verdicts()) == 2


def test_tasks_run_longest_first_and_batched_groups_stay_one_part():
    exps = [Experiment({"lr": lr}, _system(lr), [Loss()]) for lr in (0.1, 0.2, 0.3)]  # batchable: differ only in lr
    big = Experiment({"lr": 0.1, "w": 64}, _system(0.1, width=64, steps=50), [Loss(), Sharpness(Schedule(at=(0,)))])
    (task,) = plan_tasks(exps + [big])  # both units are estimated far below a second: one bundle
    assert task.parts == [[big], exps]  # the wide run first, the three lrs as one group


def test_small_units_travel_in_bundles_of_about_a_second_longest_first():
    wide = [Experiment({"w": w}, _system(0.1, width=w, steps=5000), [Loss()]) for w in (512, 256, 8)]  # 2-3 s each
    sequential = Sharpness(Schedule(at=(0,)), preconditioned=True)  # reads the optimizer: does not stack
    tiny = [Experiment({"lr": lr}, _system(lr), [Loss(), sequential]) for lr in np.linspace(0.01, 1, 400)]
    tasks = plan_tasks(tiny + wide)
    assert [t.experiments for t in tasks[:3]] == [[e] for e in wide]  # alone, the longest first
    assert sorted(e.run_id for t in tasks for e in t.experiments) == sorted(e.run_id for e in tiny + wide)
    assert all(len(part) == 1 for t in tasks for part in t.parts)  # nothing batches
    bundles = tasks[3:]
    assert all(1.0 <= t.cost < 1.1 for t in bundles[:-1]) and bundles[-1].cost < 1.1  # ~11 ms per tiny unit
    assert 3 <= len(bundles) <= 6  # 400 runs in a handful of round trips


def test_a_part_that_raises_does_not_take_the_rest_of_its_bundle_with_it():
    bad = Experiment({"w": "huge"}, _system(0.2).replace(architecture=MLP(width=10 ** 7, depth=2)), [Loss()])
    good = Experiment({"lr": 0.1}, _system(0.1), [Loss()])
    results = run_task([[bad], [good]])
    assert [r.outcome for r in results] == ["error", "completed"] and "lower architecture.width" in results[0].error


def test_planned_costs_order_groups_as_the_quick_atlas_measured():
    """Two of the quick atlas's batched groups, timed in its pool (bench/README.md, "Scheduling, and the CPU floor"): 30
    transformers of width 128 (50 Adam steps of 128 two-token rows) took 22-23 s, 27 MLPs of width 256 (300 steps
    of 256 rows) 13 s, and a single width-2048 NTK MLP (400 full-batch steps of 128 digits) 17-22 s. The earlier
    cost model (width^2 x depth per row, groups discounted by sqrt(size)) ordered the transformers 50x below the
    MLPs, so they started last and ran alone at the end."""
    data = ModularArithmetic(p=31, n_train=512, n_test=0)
    transformers = [Experiment({"lr": lr}, System(Transformer(128, base_width=16), data, LossTask("cross_entropy"),
                                                  LearningRule(lr=lr, steps=50, optimizer="adam", batch_size=128)),
                               [Loss(Schedule(at=(50,)))]) for lr in np.geomspace(1e-4, 1e-1, 30)]
    mlps = [Experiment({"lr": lr}, System(MLP(256, depth=2), MNIST1D(n_train=4000, n_test=0), LossTask("cross_entropy"),
                                          LearningRule(lr=lr, steps=300, optimizer="adam", batch_size=256)),
                    [Loss(Schedule(at=(300,)))])
            for lr in np.geomspace(1e-4, 1e-1, 27)]
    ntk = Experiment({"w": 2048}, System(MLP(2048, depth=2, parameterization="ntk"), Digits(n_train=128, n_test=128),
                                         LossTask("mse"), LearningRule(lr=1.0, steps=400)), [Loss()])
    costs = {t.experiments[0].key.get("w", len(t.experiments)): t.cost for t in plan_tasks(transformers + mlps + [ntk])}
    assert costs[30] > costs[27] and costs[2048] > costs[27]
    assert 0.3 < costs[30] / 22.5 < 3 and 0.3 < costs[27] / 13.0 < 3  # roughly in seconds


def test_local_pool_equals_in_process(tmp_path):
    exps = [Experiment({"lr": lr}, _system(lr), [Loss(), Sharpness(Schedule(at=(0, 5)))]) for lr in (0.05, 0.1, 0.2)]
    serial = run_experiments(exps, executor=InProcess())
    with Store(tmp_path / "p.db") as store:
        pooled = run_experiments(exps, store, executor=LocalPool(2))
        assert len(store.runs()) == 3
    for label, records in _records(serial).items():
        other = _records(pooled)[label]
        assert [(s, n) for s, n, _ in records] == [(s, n) for s, n, _ in other]
        np.testing.assert_allclose([v for *_, v in records], [v for *_, v in other], rtol=1e-5)


def test_a_killed_worker_is_retried_once_and_the_store_stays_intact(tmp_path):
    exps = [Experiment({"lr": lr}, _system(lr, width=32, steps=400), [Loss(Schedule(every=50))]) for lr in (0.01, 0.02)]
    pool = LocalPool(2)
    finished: list[Task] = []
    killed = []

    def done(task, results):
        finished.append(task)
        for r in results:
            store.save_run(r)

    original = pool._pool

    def pool_that_loses_a_worker():
        p = original()
        if not killed:  # the first pool loses a worker as soon as both tasks are in flight
            p.submit(os.getpid).result()  # start the workers
            pid = next(iter(p._processes))
            killed.append(pid)
            os.kill(pid, signal.SIGKILL)
        return p

    pool._pool = pool_that_loses_a_worker
    with Store(tmp_path / "k.db") as store:
        tasks = [Task([[e]]) for e in exps]
        pool.run(tasks, done)
        assert killed and len(finished) == 2
        assert all(r["outcome"] == "completed" and r["status"] == "finished" for r in store.runs())
        assert max(t.attempts for t in finished) == 2  # lost once, retried once
        for e in exps:
            assert store.load_run(e.run_id).last("loss/train") < 1.0


def test_a_run_that_raises_is_an_error_outcome_and_the_law_inconclusive(tmp_path):
    bad = _system(0.2).replace(architecture=MLP(width=10 ** 7, depth=2))  # valid, but 10^14 parameters: refused in training
    good = Experiment({"lr": 0.1}, _system(0.1), [Loss()])
    with Store(tmp_path / "e.db") as store:
        runs = run_experiments([good, Experiment({"lr": 0.2}, bad, [Loss()])], store)
        failed = runs.one(lr=0.2)
        assert failed.outcome == "error" and "lower architecture.width" in failed.error
        rows = {r["run_id"]: r for r in store.runs()}
        assert rows[failed.run_id]["status"] == "error" and "lower architecture.width" in rows[failed.run_id]["error"]
        assert store.load_run(failed.run_id) is None  # never reused: the next check retrains it
        verdict = _Tiny().evaluate(runs, "quick")
    assert verdict.status == "inconclusive" and "lower architecture.width" in verdict.summary


@pytest.mark.parametrize("args, message", [
    (("pool", 0), "positive integer"), (("bogus", 1), "not an executor"), (("inprocess", 2), "--executor pool"),
    (("pool", "two"), "positive integer or 'auto'"), (("pool", 1, "127.0.0.1:6379"), "needs --executor ray"),
])
def test_bad_executor_settings_are_one_line_errors(args, message):
    with pytest.raises(ValueError, match=message):
        make_executor(*args)


def test_default_executor_follows_the_worker_count():
    assert isinstance(make_executor(None, 1), InProcess)
    assert isinstance(make_executor(None, 2), LocalPool) and make_executor(None, 2).threads == max(os.cpu_count() // 2, 1)
    auto = make_executor(None, "auto")  # measured faster on the quick atlas: one single-threaded process per core
    assert (isinstance(auto, LocalPool) and auto.threads == 1) if os.cpu_count() > 1 else isinstance(auto, InProcess)


@pytest.mark.slow
def test_kill_9_of_the_driver_keeps_every_finished_run(tmp_path):
    """A sweep killed with SIGKILL mid-way: the runs it finished are intact in the store and a rerun reuses them."""
    import json
    import subprocess
    import sys
    import time as clock

    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps({"base": _system(0.05, width=64, steps=3000).to_dict(),  # about 1 s per run
                                "axes": {"rule.lr": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06]},
                                "probes": [{"name": "grad_norm", "schedule": {"every": 500}},
                                           {"name": "instability", "schedule": {"at": [0]}}]}))  # reads the
    # optimizer: the runs do not stack, each is stored as it finishes
    cmd = [sys.executable, "-m", "lmech", "sweep", str(grid), "--out", str(tmp_path), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "lmech.db"
    deadline = clock.time() + 240
    stored = []
    while clock.time() < deadline and len(stored) < 2 and proc.poll() is None:
        clock.sleep(0.2)
        if db.exists():
            with Store(db) as store:
                stored = [r for r in store.runs() if r["status"] == "finished"]
    proc.kill()
    proc.wait()
    assert 2 <= len(stored) < 6, "the sweep finished before it could be killed; make its runs longer"
    with Store(db) as store:
        kept = [r["run_id"] for r in store.runs() if r["status"] == "finished"]
        assert all(store.load_run(rid).series("grad_norm")[1].size == 7 for rid in kept)  # steps 0, 500, ..., 3000
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    with Store(db) as store:
        assert len([r for r in store.runs() if r["status"] == "finished"]) == 6
        assert set(kept) <= {r["run_id"] for r in store.runs()}


@pytest.mark.parametrize("executor", [InProcess(), LocalPool(workers=1)])
def test_started_runs_once_when_training_is_under_way_and_before_any_task_is_done(executor):
    # the driver judges laws without runs there, overlapping their theory with the workers' training
    events: list[str] = []
    tasks = [Task([[Experiment({"lr": lr}, _system(lr), (Loss(),))]]) for lr in (0.05, 0.1)]
    try:
        executor.run(tasks, lambda task, results: events.append(results[0].outcome),
                     started=lambda: events.append("started"))
    finally:
        getattr(executor, "close", lambda: None)()
    assert events == ["started", "completed", "completed"]

"""The Ray executor on a real local cluster: a multi-law check through it, and a worker killed mid-run (marked slow:
starting Ray takes seconds; CI runs it after the default suite)."""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from lmech.engine.executor import Ray  # noqa: E402
from lmech.laws import LAWS, Experiment  # noqa: E402
from lmech.observables.probes import Loss, Sharpness  # noqa: E402
from lmech.observables.schedule import Schedule  # noqa: E402
from lmech.runner import check, run_experiments  # noqa: E402
from lmech.store import Store  # noqa: E402
from test_executor import _system, _Tiny, _TinyShared  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _ray_task_pids() -> list[int]:
    """Processes executing a ``run_task`` right now (Ray titles a busy worker ``ray::run_task``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::run_task"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def test_multi_law_check_through_ray_matches_in_process(cluster, tmp_path):
    for cls in (_Tiny, _TinyShared):
        LAWS[cls.id] = cls()
    try:
        with Store(tmp_path / "r.db") as store:
            verdicts = check([_Tiny.id, _TinyShared.id], "quick", store, executor=Ray(workers=2))
            assert [v.status for v in verdicts] == ["pass", "pass"]
            assert len(store.runs()) == 4  # the shared run trained once
        local = check([_Tiny.id], "quick")
    finally:
        for cls in (_Tiny, _TinyShared):
            del LAWS[cls.id]
    assert verdicts[0].error == pytest.approx(local[0].error, rel=1e-5)


def test_a_killed_ray_worker_is_retried_and_the_store_is_intact(cluster, tmp_path):
    # two runs of a few seconds each; one worker is killed half a second into its task, which Ray then reruns
    exps = [Experiment({"lr": lr}, _system(lr, width=128, steps=10000), [Loss(Schedule(every=1000)),
                                                                          Sharpness(Schedule(at=(0,)))])
            for lr in (0.01, 0.02)]
    killed: list[tuple[int, float]] = []

    def kill_one_busy_worker() -> None:
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = _ray_task_pids()
            if pids:
                time.sleep(0.5)  # let it get into training
                if pids[0] in _ray_task_pids():  # still running its task: kill it mid-run
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append((pids[0], time.perf_counter()))
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_busy_worker, daemon=True)
    with Store(tmp_path / "k.db") as store:
        start = time.perf_counter()
        killer.start()
        runs = run_experiments(exps, store, executor=Ray(workers=2))
        elapsed = time.perf_counter() - start
        killer.join()
        assert killed, "no busy Ray worker was found to kill"
        assert all(r.outcome == "completed" for r in runs.values())  # the killed task was retried and finished
        # the retried run started over after the kill: the whole call outlasts the kill plus a full run
        assert elapsed >= killed[0][1] - start + min(r.wall_time for r in runs.values())
        rows = store.runs()
        assert len(rows) == 2 and all(r["status"] == "finished" for r in rows)
        for key, run in runs.items():
            back = store.load_run(run.run_id)
            assert back.records == sorted(run.records, key=lambda r: (r[1], r[0]))


def test_an_unreachable_address_is_one_line():
    with pytest.raises(ValueError, match="no Ray cluster reachable"):
        Ray(address="127.0.0.1:1")

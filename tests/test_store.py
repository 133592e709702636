import math
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pandas as pd
import pytest

from lmech import MLP, Digits, LearningRule, Schedule, System, Task, train
from lmech.laws import LAWS
from lmech.probes import Loss
from lmech.store.result import RunResult
from lmech.store import Store


def _run():
    system = System(MLP(width=8), Digits(n_train=40, n_test=20), Task("mse"), LearningRule(lr=0.1, steps=10))
    return train(system, [Loss(Schedule(every=2)), Loss(Schedule(every=5), split="test")])


def test_round_trip(tmp_path):
    result = _run()
    result.records.append((10, "odd/nan", float("nan")))
    result.records.append((10, "odd/inf", float("inf")))
    with Store(tmp_path / "s.db") as store:
        assert not store.has_run(result.run_id)
        store.save_run(result)
        assert store.has_run(result.run_id)
        back = store.load_run(result.run_id)
    assert back.system == result.system and back.probes == result.probes and back.outcome == result.outcome
    assert back.series("loss/train")[1].tolist() == result.series("loss/train")[1].tolist()
    assert math.isnan(back.last("odd/nan")) and back.last("odd/inf") == math.inf
    assert len(back.records) == len(result.records)


def test_saving_again_replaces_and_exports(tmp_path):
    result = _run()
    with Store(tmp_path / "s.db") as store:
        store.save_run(result)
        store.save_run(result)
        (row,) = store.runs()
        assert row["metrics"] == len(result.records)
        frame = store.metrics_frame()
        csv = pd.read_csv(store.export_csv(tmp_path / "m.csv"))
    assert list(frame.columns) == ["run_id", "step", "name", "value"] == list(csv.columns)
    assert len(frame) == len(csv) == len(result.records)
    train_loss = frame[frame.name == "loss/train"].sort_values("step").value.tolist()
    assert train_loss == pytest.approx(result.series("loss/train")[1].tolist())


def test_failed_transaction_leaves_nothing(tmp_path):
    result = _run()
    result.records.append((None, "bad", 1.0))  # step is NOT NULL: the insert fails inside the transaction
    with Store(tmp_path / "s.db") as store:
        with pytest.raises(sqlite3.IntegrityError):
            store.save_run(result)
        assert store.runs() == [] and store.metrics_frame().empty


def test_not_a_database_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.db"
    bad.write_text("hello, this is not sqlite" * 100)
    with pytest.raises(ValueError, match="not a usable lmech SQLite database"):
        Store(bad)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_check_keeps_finished_runs_and_rerun_reuses_them(tmp_path, sig):
    out = tmp_path / "out"
    # two laws, 48 runs (about 17 s on two workers; about 11 s of it still to go after the first two runs), so the
    # check is still training when it is interrupted
    laws = ["critical-batch-size", "sgd-linear-scaling"]
    total = len({e.run_id for law in laws for e in LAWS[law].experiments("quick")})
    cmd = [sys.executable, "-m", "lmech", "check", *laws, "--quick", "--out", str(out)]
    # Ctrl-C as in a terminal: SIGINT at its default disposition in the child, even when this test runs where it is
    # ignored (a background job of a non-interactive shell), which Python would otherwise inherit and keep
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    db = out / "lmech.db"
    deadline = time.time() + 120
    finished = 0
    while time.time() < deadline and finished < 2:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as con:
                    finished = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    assert proc.poll() is None, "the check finished before it could be interrupted"
    workers = _children(proc.pid)
    assert workers, "the check runs on a pool of worker processes"
    os.kill(proc.pid, sig)
    proc.wait(timeout=60)
    deadline = time.time() + 15  # the pool's workers end with their driver, even one killed with SIGKILL
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived their driver"
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = con.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        orphans = con.execute("SELECT COUNT(*) FROM metrics WHERE run_id NOT IN (SELECT id FROM runs)").fetchone()[0]
    if sig == signal.SIGINT:
        err = proc.stderr.read()
        assert proc.returncode == 130, f"{stored}/{total} runs stored; stderr ends: {err[-2000:]}"
        assert "every finished run is stored" in err
    assert 2 <= stored < total and orphans == 0  # interrupted mid-check
    with Store(db) as store:
        for row in store.runs():
            run = store.load_run(row["run_id"])
            assert isinstance(run, RunResult) and run.outcome in ("completed", "diverged")
            assert len(run.records) == row["metrics"]
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("reused stored run") >= stored


def test_array_records_round_trip_and_init_only_runs(tmp_path):
    import numpy as np

    from lmech.probes import Outputs, Parameters

    system = System(MLP(width=8), Digits(n_train=12, n_test=5, target="parity"), Task("mse"), LearningRule(lr=0.1, steps=0))
    result = train(system, [Outputs(Schedule(every=1)), Parameters(Schedule(every=1), names=("layers.0.weight",))])
    assert result.records == [] and {n for _, n, _ in result.arrays} == {"output/train", "output/test", "param/layers.0.weight"}
    with Store(tmp_path / "s.db") as store:
        store.save_run(result)
        back = store.load_run(result.run_id)
    for name in ("output/train", "output/test", "param/layers.0.weight"):
        np.testing.assert_array_equal(back.array(name, 0), result.array(name))
    assert back.array("output/train").shape == (12, 1) and back.array("output/test").shape == (5, 1)
    with pytest.raises(KeyError, match="output/valid"):
        back.array("output/valid")


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

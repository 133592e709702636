"""Embedded results store: SQLite in WAL mode, with a tidy long-format metrics table.

Tables: ``systems(id, config)``, ``runs(id, system_id, probes, outcome, ...)``,
``metrics(run_id, step, name, value)``, ``arrays(run_id, step, name, data)`` (``.npy`` bytes of
array-valued measurements such as kernels) and ``verdicts(law, scale, status, ..., data)``.
A finished run is written in one transaction, so an interrupted sweep loses only the run in
flight and never leaves a partial run behind. A run recorded incrementally (``append_run``, used by
the :class:`~lmech.Tracker`) keeps status ``running`` until it is finished, with every appended
measurement committed.
"""
from __future__ import annotations

import io
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .result import ERROR, RunResult
from ..systems.system import System, stable_hash

_SCHEMA = """
CREATE TABLE IF NOT EXISTS systems (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    system_id TEXT NOT NULL REFERENCES systems(id),
    probes TEXT NOT NULL,
    status TEXT NOT NULL,
    outcome TEXT NOT NULL,
    diverged_step INTEGER,
    wall_time REAL,
    versions TEXT,
    finished REAL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL
);
CREATE INDEX IF NOT EXISTS metrics_by_run ON metrics(run_id, name, step);
CREATE TABLE IF NOT EXISTS arrays (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS arrays_by_run ON arrays(run_id, name, step);
CREATE TABLE IF NOT EXISTS verdicts (
    law TEXT NOT NULL,
    scale TEXT NOT NULL,
    status TEXT NOT NULL,
    error REAL,
    tolerance REAL,
    data TEXT NOT NULL,
    created REAL,
    PRIMARY KEY (law, scale)
);
"""


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


class Store:
    """A SQLite results store at ``path`` (created with its folder if missing). Use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            if "error" not in {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}:  # stores before 0.3
                self._db.execute("ALTER TABLE runs ADD COLUMN error TEXT")
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"store {self.path} is not a usable lmech SQLite database ({exc}); pass another --out") from None

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # runs ---------------------------------------------------------------------------------------
    def has_run(self, run_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE id = ? AND status = 'finished'", (run_id,)).fetchone() is not None

    def save_run(self, result: RunResult) -> None:
        """Write the system, the run and all its metrics atomically (replacing a run with the same id)."""
        with self._db:  # one transaction: all or nothing
            self._db.execute("DELETE FROM runs WHERE id = ?", (result.run_id,))
            self._write_row(result, "error" if result.outcome == ERROR else "finished")
            self._insert(result.run_id, result.records, result.arrays)

    def append_run(self, result: RunResult, records: list[tuple[int, str, float]],
                   arrays: list[tuple[int, str, np.ndarray]] = (), *, finished: bool = False) -> None:
        """Add ``records``/``arrays`` to a run recorded incrementally (e.g. by a :class:`~lmech.Tracker`) and
        update its row from ``result`` (outcome, wall time), in one transaction; measurements already
        appended stay if the process dies later. ``has_run``/``load_run`` see the run once ``finished``."""
        with self._db:
            self._write_row(result, "finished" if finished else "running")
            self._insert(result.run_id, records, arrays)

    def _write_row(self, result: RunResult, status: str) -> None:
        config = result.config()
        system_id = stable_hash(config)
        self._db.execute("INSERT OR IGNORE INTO systems (id, config) VALUES (?, ?)",
                         (system_id, json.dumps(config, sort_keys=True)))
        self._db.execute(
            "INSERT INTO runs (id, system_id, probes, status, outcome, diverged_step, wall_time, versions, finished, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET status = excluded.status, "
            "outcome = excluded.outcome, diverged_step = excluded.diverged_step, wall_time = excluded.wall_time, "
            "finished = excluded.finished, error = excluded.error",
            (result.run_id, system_id, json.dumps(result.probes, sort_keys=True), status, result.outcome,
             result.diverged_step, result.wall_time, json.dumps(result.versions), time.time(), result.error),
        )

    def _insert(self, run_id: str, records, arrays) -> None:
        self._db.executemany("INSERT INTO metrics (run_id, step, name, value) VALUES (?, ?, ?, ?)",
                             ((run_id, s, n, _finite_or_none(v)) for s, n, v in records))
        self._db.executemany("INSERT INTO arrays (run_id, step, name, data) VALUES (?, ?, ?, ?)",
                             ((run_id, s, n, _npy_bytes(a)) for s, n, a in arrays))

    def load_run(self, run_id: str) -> RunResult | None:
        row = self._db.execute(
            "SELECT r.probes, r.outcome, r.diverged_step, r.wall_time, r.versions, s.config FROM runs r "
            "JOIN systems s ON s.id = r.system_id WHERE r.id = ? AND r.status = 'finished'", (run_id,)).fetchone()
        if row is None:
            return None
        probes, outcome, diverged_step, wall_time, versions, config = row
        records = [(s, n, float("nan") if v is None else v) for s, n, v in self._db.execute(
            "SELECT step, name, value FROM metrics WHERE run_id = ? ORDER BY name, step", (run_id,))]
        arrays = [(s, n, np.load(io.BytesIO(b), allow_pickle=False)) for s, n, b in self._db.execute(
            "SELECT step, name, data FROM arrays WHERE run_id = ? ORDER BY name, step", (run_id,))]
        config = json.loads(config)
        system, info = (System.from_dict(config), {}) if "architecture" in config else (None, config)
        return RunResult(run_id, system, json.loads(probes), records, outcome, diverged_step,
                         wall_time, json.loads(versions or "{}"), arrays, info)

    def runs(self) -> list[dict]:
        """One dict per run (finished, running or failed): id, system id, status, outcome, wall time, metric count,
        finish time and error message."""
        cur = self._db.execute(
            "SELECT r.id, r.system_id, r.status, r.outcome, r.diverged_step, r.wall_time, r.finished, "
            "(SELECT COUNT(*) FROM metrics m WHERE m.run_id = r.id), r.error FROM runs r ORDER BY r.finished")
        keys = ("run_id", "system_id", "status", "outcome", "diverged_step", "wall_time", "finished", "metrics", "error")
        return [dict(zip(keys, row)) for row in cur]

    def iter_metrics(self, run_id: str | None = None) -> Iterator[tuple[str, int, str, float]]:
        query = "SELECT run_id, step, name, value FROM metrics"
        args: tuple = ()
        if run_id is not None:
            query, args = query + " WHERE run_id = ?", (run_id,)
        for r, s, n, v in self._db.execute(query + " ORDER BY run_id, name, step", args):
            yield r, s, n, float("nan") if v is None else v

    def metrics_frame(self, run_id: str | None = None):
        """The long-format metrics as a pandas DataFrame with columns run_id, step, name, value."""
        import pandas as pd

        return pd.DataFrame(list(self.iter_metrics(run_id)), columns=["run_id", "step", "name", "value"])

    def export_csv(self, path: str | Path, run_id: str | None = None) -> Path:
        """Write the long-format metrics to CSV (header: run_id,step,name,value)."""
        import csv

        path = Path(path)
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["run_id", "step", "name", "value"])
            writer.writerows(self.iter_metrics(run_id))
        return path

    # verdicts -----------------------------------------------------------------------------------
    def save_verdict(self, verdict: dict) -> None:
        """Store ``verdict`` (replacing the law's verdict at its scale). A verdict computed under other settings than
        the one it replaces keeps the earlier settings and date in ``meta["settings_changed"]`` (and any older such
        record), so a change of a law's settings after a stored verdict stays visible (pre-registration)."""
        row = self._db.execute("SELECT data, created FROM verdicts WHERE law = ? AND scale = ?",
                               (verdict["law"], verdict["scale"])).fetchone()
        if row is not None:
            old = json.loads(row[0]).get("meta", {})
            meta = verdict.setdefault("meta", {})
            history = list(old.get("settings_changed", []))
            if old.get("settings") is not None and old.get("settings") != meta.get("settings"):
                history.append({"settings": old["settings"], "created": row[1]})
            if history:
                meta["settings_changed"] = history
        with self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO verdicts (law, scale, status, error, tolerance, data, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (verdict["law"], verdict["scale"], verdict["status"], _finite_or_none(verdict["error"]),
                 verdict["tolerance"], json.dumps(verdict, allow_nan=True), time.time()),
            )

    def verdicts(self) -> list[dict]:
        return [json.loads(d) for (d,) in self._db.execute("SELECT data FROM verdicts ORDER BY law, scale")]


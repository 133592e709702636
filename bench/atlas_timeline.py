"""Timeline of the quick atlas in one driver: when each task finished and how long it trained, when each law was
judged, and where the driver's time went (judges, figures, store); then the CPU time of the driver and the total.

The atlas is CPU-bound when (driver + workers' CPU time) / cores is close to the wall time: scheduling cannot help
there, only less arithmetic can. Writes bench/out/atlas_timeline.json.

    python bench/atlas_timeline.py [--workers 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from lmech.cli import _prerender
from lmech.engine.executor import LocalPool
from lmech.laws.base import Law
from lmech.laws.registry import LAWS
from lmech.runner import check
from lmech.store import Store

ROOT = Path(__file__).resolve().parents[1]


def _timed(owner, name: str, totals: dict[str, float], per: dict[str, float] | None = None) -> None:
    """Add the wall time of every call of ``owner.name`` to ``totals[name]`` (and to ``per[id of the instance]``)."""
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start
            if per is not None:
                per[args[0].id] = per.get(args[0].id, 0.0) + time.perf_counter() - start
    setattr(owner, name, wrapper)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    totals = {"evaluate": 0.0, "save_run": 0.0, "figures": 0.0}
    judges: dict[str, float] = {}
    _timed(Law, "evaluate", totals, judges)
    _timed(Store, "save_run", totals)
    begin = time.perf_counter()
    events: list[dict] = []

    class Pool(LocalPool):
        def run(self, tasks, done, **kwargs):
            def logged(task, results):
                events.append({"finished": time.perf_counter() - begin, "task": task.label,
                               "trained_s": sum(r.wall_time for r in results), "planned_s": task.cost})
                done(task, results)
            return super().run(tasks, logged, **kwargs)

    def figure(verdict) -> None:
        start = time.perf_counter()
        _prerender(verdict)
        totals["figures"] += time.perf_counter() - start
        events.append({"judged": time.perf_counter() - begin, "law": verdict.law, "status": verdict.status,
                       "error": verdict.error})

    pool = Pool(args.workers)
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "atlas.db") as store:
        check(list(LAWS), "quick", store, executor=pool, on_verdict=figure)
    wall = time.perf_counter() - begin
    pool.close(wait=True)  # reaped workers count in RUSAGE_CHILDREN
    me, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    tasks = [e for e in events if "task" in e]
    summary = {"wall_s": round(wall, 1), "tasks": len(tasks), "trained_s": round(sum(e["trained_s"] for e in tasks), 1),
               "driver_cpu_s": round(me.ru_utime + me.ru_stime, 1), "workers_cpu_s": round(workers.ru_utime + workers.ru_stime, 1),
               **{f"driver_{k}_s": round(v, 1) for k, v in totals.items()},
               "judges_s": {k: round(v, 2) for k, v in sorted(judges.items(), key=lambda kv: -kv[1])}}
    print(json.dumps(summary, indent=1))
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "atlas_timeline.json").write_text(json.dumps({"summary": summary, "events": events}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

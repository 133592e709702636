"""Executors side by side on this machine: InProcess vs LocalPool(2) vs Ray(2).

1. A sweep of 16 independent small MLPs (one seed each, so no two can be batched): wall time per executor.
2. Scheduling overhead: 64 zero-step tasks (build the model, no training) per executor, in ms per task.
3. With ``--atlas``: the quick atlas (``lmech check --all --quick`` into an empty store) per executor, and
   1 process x 2 threads against 2 processes x 1 thread (what ``--workers auto`` picks).

Every measurement starts from an empty store. Writes bench/out/executor.json.

    python bench/bench_executor.py [--atlas]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lmech.engine.executor import InProcess, LocalPool, Ray
from lmech.laws import Experiment
from lmech.observables.probes import Loss
from lmech.observables.schedule import Schedule
from lmech.runner import run_experiments
from lmech.systems import MLP, MNIST1D, LearningRule, System, Task

ROOT = Path(__file__).resolve().parents[1]


def _sweep(count: int, steps: int) -> list[Experiment]:
    data = MNIST1D(n_train=2000, n_test=0)
    return [Experiment({"seed": s}, System(MLP(width=128, depth=2), data, Task("cross_entropy"),
                                           LearningRule(lr=1e-3, steps=steps, optimizer="adam", batch_size=128, seed=s)),
                       [Loss(Schedule(every=max(steps // 10, 1)))]) for s in range(count)]


def _executors() -> dict:
    return {"inprocess": InProcess, "pool(2)": lambda: LocalPool(2), "ray(2)": lambda: Ray(workers=2)}


def _time(executor, experiments) -> float:
    start = time.perf_counter()
    runs = run_experiments(experiments, executor=executor)
    assert all(r.outcome == "completed" for r in runs.values())
    return time.perf_counter() - start


def _atlas(extra: list[str], env: dict) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "lmech", "check", "--all", "--quick", "--out", out, *extra],
                              capture_output=True, text=True, env={**os.environ, **env})
        elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(proc.stderr[-2000:])
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atlas", action="store_true", help="also time the quick atlas per executor (~20 min)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    result: dict = {"cpu_count": os.cpu_count(), "sweep": {}, "overhead_ms": {}, "atlas": {}}
    sweep, empty = _sweep(16, 300), _sweep(64, 0)
    for name, make in _executors().items():
        executor = make()
        _time(executor, _sweep(2, 1))  # start the workers (Ray's cluster, the pool's spawn) outside the timings
        result["sweep"][name] = round(_time(executor, sweep), 2)
        result["overhead_ms"][name] = round(1000 * _time(executor, empty) / len(empty), 1)
        print(name, result["sweep"][name], "s;", result["overhead_ms"][name], "ms/task", flush=True)
    base = result["sweep"]["inprocess"]
    result["sweep_speedup"] = {k: round(base / v, 2) for k, v in result["sweep"].items()}
    if args.atlas:
        runs = {"inprocess (1 process x 2 threads)": ([], {}),
                "pool (2 processes x 1 thread)": (["--workers", "2", "--executor", "pool"], {}),
                "ray (2 workers x 1 thread)": (["--workers", "2", "--executor", "ray"], {})}
        for name, (extra, env) in runs.items():
            result["atlas"][name] = round(_atlas(extra, env), 1)
            print(name, result["atlas"][name], "s", flush=True)
    print(json.dumps(result, indent=1))
    (ROOT / "bench" / "out").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "out" / "executor.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers shared by bench/bench_kernels.py and bench/bench_entk.py (run with the main venv's python).

* :func:`wait_quiet` samples the machine's CPU use from /proc/stat and waits until other processes leave the cores
  free (the timings share a 2-core machine with whatever else runs there).
* :func:`run_nt_worker` runs bench/_nt_worker.py under the neural-tangents venv (.venv-nt) and returns its result;
  :func:`run_worker` does the same for any anchor's worker and venv (laplace-torch: .venv-laplace).
* :func:`timed` times a callable: the first call apart, then ``repeats`` calls (best and median), recording how
  busy other processes kept the cores during each call and retrying noisy calls.

Imported by bench/_nt_worker.py too (under .venv-nt): keep module-level imports to the standard library.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NT_PYTHON = ROOT / ".venv-nt" / "bin" / "python"
NT_WORKER = ROOT / "bench" / "_nt_worker.py"
OUT = ROOT / "bench" / "out"


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(v) for v in f.readline().split()[1:]]
    idle = vals[3] + vals[4]  # idle + iowait
    return sum(vals), idle


def busy_cores(interval: float = 1.0) -> float:
    """Cores in use (all processes, this one included) averaged over ``interval`` seconds."""
    t0, i0 = _cpu_times()
    time.sleep(interval)
    t1, i1 = _cpu_times()
    return (os.cpu_count() or 1) * (1.0 - (i1 - i0) / max(t1 - t0, 1))


def wait_quiet(max_busy: float = 0.25, timeout: float | None = None, label: str = "") -> float:
    """Wait (up to ``timeout`` s, default $LMECH_BENCH_MAX_WAIT or 300) until fewer than ``max_busy`` cores are
    busy with other work; return the last reading (recorded next to each timing)."""
    if timeout is None:
        timeout = float(os.environ.get("LMECH_BENCH_MAX_WAIT", "300"))
    t_end = time.monotonic() + timeout
    busy = busy_cores()
    while busy > max_busy and time.monotonic() < t_end:
        print(f"[bench] {label}: {busy:.2f} cores busy with other work; waiting", file=sys.stderr, flush=True)
        time.sleep(5.0)
        busy = busy_cores()
    if busy > max_busy:
        print(f"[bench] {label}: still {busy:.2f} cores busy after {timeout:.0f} s; timing anyway (noted in the JSON)",
              file=sys.stderr, flush=True)
    return round(busy, 3)


def _busy_seconds() -> float:
    """CPU seconds spent busy on all cores since boot (from /proc/stat)."""
    total, idle = _cpu_times()
    return (total - idle) / os.sysconf("SC_CLK_TCK")


def timed(fn, repeats: int, max_noise: float = 0.2, max_tries: int | None = None, label: str = "",
          min_time: float = 0.5):
    """``(output of the first call, timings)``; the first call (compilation, warm-up) is reported apart.

    As in ``timeit``, a measurement runs ``number`` consecutive calls, ``number`` chosen so that it lasts at least
    ``min_time`` seconds (1 for calls longer than that), and reports the time per call. Each measurement also records
    ``others``: the cores that *other* processes kept busy during it (all cores' busy time from /proc/stat minus
    this process' CPU time, over the wall time). A measurement with ``others > max_noise`` counts as noisy;
    measurements go on (waiting for a quiet machine in between) until ``repeats`` clean ones or ``max_tries``
    (default 3 x repeats). ``best_s`` / ``median_s`` are over the clean measurements when there are any, else over
    all; ``times_s`` / ``others_cores`` list every measurement, with this process' minor page faults and system CPU time
    per call (fresh pages for large temporaries: glibc serves big allocations with mmap, so each call faults them in
    again unless MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ are raised).
    """
    max_tries = max_tries or 3 * repeats
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    fn()
    est = time.perf_counter() - t0
    number = 1 if est >= min_time else min(int(min_time / max(est, 1e-6)) + 1, 10_000)
    times, others, faults, sys_s = [], [], [], []
    while len(times) < max_tries and sum(o <= max_noise for o in others) < repeats:
        if others and others[-1] > max_noise:
            wait_quiet(timeout=60.0, label=f"{label} (retry after a noisy measurement)")
        f0 = resource.getrusage(resource.RUSAGE_SELF)
        b0, c0, t0 = _busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(number):
            fn()
        wall = time.perf_counter() - t0
        b1, c1 = _busy_seconds(), time.process_time()
        f1 = resource.getrusage(resource.RUSAGE_SELF)
        faults.append((f1.ru_minflt - f0.ru_minflt) // number)
        sys_s.append(round((f1.ru_stime - f0.ru_stime) / number, 4))
        times.append(round(wall / number, 7))
        others.append(round(max((b1 - b0) - (c1 - c0), 0.0) / max(wall, 1e-9), 3))
    clean = [t for t, o in zip(times, others) if o <= max_noise] or times
    return out, {"first_call_s": round(first, 6), "number": number, "times_s": times, "others_cores": others,
                 "n_clean": sum(o <= max_noise for o in others), "minor_faults_per_call": faults,
                 "sys_s_per_call": sys_s, "best_s": min(clean),
                 "median_s": statistics.median(clean), "spread": round(max(clean) / min(clean) - 1.0, 3)}


def run_nt_worker(job: dict, tmp: Path, nt_python: Path = NT_PYTHON) -> dict:
    """Write ``job`` to ``tmp/job.json``, run the worker in .venv-nt, return its ``result.json`` (+ wall time)."""
    return run_worker(nt_python, NT_WORKER, job, tmp, "requirements-nt.txt")


def run_worker(python: Path, worker: Path, job: dict, tmp: Path, requirements: str) -> dict:
    """Write ``job`` to ``tmp/job.json``, run ``worker`` under an anchor's own venv ``python``, return its
    ``result.json`` (+ wall time)."""
    if not Path(python).exists():
        venv = Path(python).parents[1].name
        raise FileNotFoundError(f"{python} not found; create it with: python3.11 -m venv {venv} && "
                                f"{venv}/bin/python -m pip install -r bench/{requirements}")
    job = {**job, "out_dir": str(tmp)}
    (tmp / "job.json").write_text(json.dumps(job))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    t0 = time.perf_counter()
    subprocess.run([str(python), str(worker), str(tmp / "job.json")], check=True, env=env,
                   stdout=sys.stderr)  # anchors print (e.g. NT's FLOP counts); keep stdout for the table
    result = json.loads((tmp / "result.json").read_text())
    result["worker_wall_s"] = round(time.perf_counter() - t0, 3)
    return result


def machine_facts() -> dict:
    import numpy as np
    import torch
    facts = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
             "affinity": sorted(os.sched_getaffinity(0)), "torch": torch.__version__,
             "torch_num_threads": torch.get_num_threads(), "numpy": np.__version__,
             "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}
    try:
        from threadpoolctl import threadpool_info
        facts["blas_threadpools"] = [{k: d.get(k) for k in ("internal_api", "num_threads", "version")}
                                     for d in threadpool_info()]
    except ImportError:
        pass
    return facts


def source_fingerprint(module) -> dict:
    """Which version of an lmech module was measured: its path, sha256 and the repo's HEAD (files may be uncommitted)."""
    import hashlib
    path = Path(module.__file__)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                          check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", str(path)], capture_output=True,
                           text=True, check=False)
    return {"file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:16], "git_head": head.stdout.strip(),
            "uncommitted": bool(dirty.stdout.strip())}


def rel_errors(a, b) -> dict:
    """``a`` against reference ``b``: max |a-b| / max |b| (normwise) and max |a-b| / |b| over entries with
    |b| >= 1e-3 max |b| (entrywise)."""
    import numpy as np
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = np.abs(a - b)
    scale = float(np.abs(b).max())
    mask = np.abs(b) >= 1e-3 * scale
    return {"max_abs": float(diff.max()), "max_rel_normwise": float(diff.max() / scale),
            "max_rel_entrywise": float((diff[mask] / np.abs(b[mask])).max())}

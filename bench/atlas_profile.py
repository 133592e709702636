"""Per-law wall time and peak memory of the quick atlas (issue 18, part 4).

Each law runs alone, as ``lmech check LAW --quick --workers 1`` in a fresh output folder, in a single-threaded
process (``OMP_NUM_THREADS=1``: what one of the atlas's two workers gets on 2 cores); ``--jobs`` such processes run
side by side (default 2, the atlas's two workers). Per law: the process's wall time (import, training, verdict,
report), its peak resident memory (``ru_maxrss`` of that process, from ``os.wait4``), its verdict and the runs it
trained. A run that two laws share is trained by both here (in the atlas it is trained once). Sorted by wall time,
as a markdown table; written to bench/out/atlas_profile.json.

    .venv/bin/python bench/atlas_profile.py [LAW ...] [--jobs 2]
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

from lmech.laws import LAWS
from lmech.store import Store

from _benchutil import OUT, machine_facts

LMECH = Path(sys.executable).with_name("lmech")


def start(law: str, folder: Path) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [str(LMECH), "check", law, "--quick", "--workers", "1", "--out", str(folder)]
    folder.mkdir(parents=True)
    with open(folder / "stderr.txt", "wb") as log:  # a file, not a pipe: progress output would fill a pipe and block
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log), time.perf_counter()


def verdict_of(folder: Path, law: str) -> dict:
    with Store(folder / "lmech.db") as store:
        found = [v for v in store.verdicts() if v["law"] == law]
    return {"status": found[-1]["status"], "runs": len(found[-1]["runs"])} if found else {"status": "none", "runs": 0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("laws", nargs="*", help="law ids (default: every law)")
    ap.add_argument("--jobs", type=int, default=2, help="laws profiled side by side (default 2)")
    args = ap.parse_args()
    queue = list(args.laws or LAWS)
    running: dict[int, tuple[str, Path, subprocess.Popen, float]] = {}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        while queue or running:
            while queue and len(running) < args.jobs:
                law = queue.pop(0)
                folder = Path(tmp) / law
                proc, t0 = start(law, folder)
                running[proc.pid] = (law, folder, proc, t0)
            pid, status, usage = os.wait4(-1, 0)
            if pid not in running:
                continue
            law, folder, proc, t0 = running.pop(pid)
            seconds = time.perf_counter() - t0
            code = os.waitstatus_to_exitcode(status)
            row = {"law": law, "wall_s": seconds, "peak_mib": usage.ru_maxrss / 1024, "exit": code,
                   **(verdict_of(folder, law) if code in (0, 1) else {"status": "crash", "runs": 0,
                                                                     "stderr": (folder / "stderr.txt").read_text()[-2000:]})}
            rows.append(row)
            print(json.dumps(row), flush=True)
    rows.sort(key=lambda r: -r["wall_s"])
    total = sum(r["wall_s"] for r in rows)
    OUT.mkdir(exist_ok=True)
    (OUT / "atlas_profile.json").write_text(json.dumps({"laws": rows, "jobs": args.jobs, "machine": machine_facts()},
                                                       indent=1))
    print("| law | verdict | runs | wall s (one single-threaded worker) | share | peak memory MiB |\n"
          "|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['law']}` | {r['status']} | {r['runs']} | {r['wall_s']:.1f} | {r['wall_s'] / total:.1%} | "
              f"{r['peak_mib']:.0f} |")
    print(f"| all {len(rows)} laws | | {sum(r['runs'] for r in rows)} | {total:.1f} | | |")


if __name__ == "__main__":
    main()

"""The quick ``mup-lr-transfer`` sweep (90 runs) through ``lmech.run_experiments``, batched (same-shape runs trained
together by ``train_stacked``) against ``batched=False`` (each run alone through ``lmech.train``), in one process,
no store. Issue 5's target: the quick law under 2 minutes on 2 cores. Writes bench/out/sweep.json.

    python bench/bench_sweep.py
"""
from __future__ import annotations

import json
import time

import torch

from _benchutil import OUT, machine_facts, wait_quiet
import lmech


def main() -> None:
    torch.set_num_threads(2)
    experiments = lmech.get_law("mup-lr-transfer").experiments("quick")
    times = {}
    for batched in (True, False):
        busy = wait_quiet(timeout=60.0, label="sweep")
        start = time.perf_counter()
        lmech.run_experiments(experiments, batched=batched)
        times["batched" if batched else "sequential"] = {"seconds": time.perf_counter() - start, "busy_before": busy}
    ratio = times["sequential"]["seconds"] / times["batched"]["seconds"]
    print(f"{len(experiments)} runs: batched {times['batched']['seconds']:.1f} s, sequential "
          f"{times['sequential']['seconds']:.1f} s, {ratio:.2f}x")
    OUT.mkdir(exist_ok=True)
    (OUT / "sweep.json").write_text(json.dumps({"runs": len(experiments), **times, "ratio": ratio,
                                               "machine": machine_facts()}, indent=1))


if __name__ == "__main__":
    main()

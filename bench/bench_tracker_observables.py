"""Tracker overhead per observable on the README's tracking example (issue 18, part 2).

The README loop: digits, 512 examples, MLP 64-100-10 tanh, Adam lr 1e-3, full batch, ``lmech.half_mse``, float32,
2 threads. Each variant runs ``--steps`` steps from the same init; plain and tracked loops alternate, ``--repeats``
rounds, medians. Variants: the loss on the measurement batch alone (``probes=[]``), the sharpness alone, the
preconditioned sharpness alone, and the default probes (both), each at the default schedule (``every="auto"``,
5% budget) and at ``every`` 10 and 50. The overhead is ``tracked / plain - 1``; HVPs per measurement come from the
stored ``*/matvecs`` series.

    python bench/bench_tracker_observables.py [--steps 2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import torch

import lmech
from _benchutil import OUT, machine_facts, wait_quiet
from _readme_example import data as readme_data, loop as readme_loop

VARIANTS = {
    "loss only": [],
    "sharpness": [lmech.probes.Sharpness()],
    "preconditioned sharpness": [lmech.probes.Sharpness(preconditioned=True)],
    "default probes (both)": None,
}


def measure(x, y, steps: int, probes, every: int) -> dict:
    seconds, run = readme_loop(x, y, steps, {"every": every, "probes": probes})
    measured = run.series("loss/train")[0]
    out = {"seconds": seconds, "measurements": len(measured), "first_steps": measured[:4].tolist()}
    for family in ("sharpness", "preconditioned_sharpness"):
        if f"{family}/matvecs" in run.names():
            out[f"{family}_hvps"] = float(run.series(f"{family}/matvecs")[1].mean())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    x, y = readme_data()
    wait_quiet(label="tracker observables")
    rows = []
    for every in ("auto", 10, 50):
        for name, probes in VARIANTS.items():
            plain, tracked = [], []
            for _ in range(args.repeats):
                plain.append(readme_loop(x, y, args.steps, None)[0])
                tracked.append(measure(x, y, args.steps, probes, every))
            t = statistics.median(r["seconds"] for r in tracked)
            p = statistics.median(plain)
            row = {"every": every, "observables": name, "plain_s": p, "tracked_s": t, "overhead": t / p - 1,
                   **{k: v for k, v in tracked[0].items() if k != "seconds"}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "tracker_observables.json").write_text(json.dumps({"rows": rows, "steps": args.steps,
                                                               "machine": machine_facts()}, indent=1))


if __name__ == "__main__":
    main()

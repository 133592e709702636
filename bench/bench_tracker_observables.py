"""Tracker overhead per observable on the README's tracking example (issue 18, part 2: the baseline).

The README loop: digits, 512 examples, MLP 64-100-10 tanh, Adam lr 1e-3, full batch, ``lmech.half_mse``, float32,
2 threads. Each variant runs ``--steps`` steps from the same init; plain and tracked loops alternate, ``--repeats``
rounds, medians. Variants: the loss on the measurement batch alone (``probes=[]``), the sharpness alone, the
preconditioned sharpness alone, and the default probes (both), each with ``every`` 10 and 50. The overhead is
``tracked / plain - 1``; HVPs per measurement come from the stored ``*/matvecs`` series.

    python bench/bench_tracker_observables.py [--steps 2000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import lmech
from _benchutil import OUT, machine_facts, wait_quiet

VARIANTS = {
    "loss only": [],
    "sharpness": [lmech.probes.Sharpness()],
    "preconditioned sharpness": [lmech.probes.Sharpness(preconditioned=True)],
    "default probes (both)": None,
}


def _setup():
    torch.manual_seed(0)
    data = lmech.Digits(n_train=512, n_test=0).load()
    x = torch.as_tensor(data.x_train, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.as_tensor(data.y_train), 10).float()
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.Tanh(), torch.nn.Linear(100, 10))
    return model, x, y


def loop(steps: int, probes, every: int | None) -> dict:
    model, x, y = _setup()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    tracker = None if every is None else lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=every,
                                                       probes=probes)
    for _ in range(steps):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        if tracker is not None:
            tracker.step()
    out = {"seconds": time.perf_counter() - start}
    if tracker is not None:
        run = tracker.close()
        for family in ("sharpness", "preconditioned_sharpness"):
            if f"{family}/matvecs" in run.names():
                out[f"{family}_hvps"] = float(run.series(f"{family}/matvecs")[1].mean())
        out["measurements"] = len(run.series("loss/train")[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    wait_quiet(label="tracker observables")
    rows = []
    for every in (10, 50):
        for name, probes in VARIANTS.items():
            plain, tracked = [], []
            for _ in range(args.repeats):
                plain.append(loop(args.steps, None, None)["seconds"])
                tracked.append(loop(args.steps, probes, every))
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

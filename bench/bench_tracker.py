"""Tracker overhead: a plain PyTorch training loop against the same loop with ``lmech.Tracker`` measuring the
sharpness every 10 steps, in one run.

Setup: scikit-learn digits (1797 examples, 64 features, one-hot targets), an MLP 64-300-300-10 with tanh
(112,810 parameters, PyTorch's default init), lmech's ``half_mse``, float32, SGD at lr 0.05 on minibatches of
1000 examples drawn at random each step, ``torch.set_num_threads(2)``. The tracked loop adds two lines:
``tracker = lmech.Tracker(model, half_mse, x[:1000], y[:1000], optimizer=opt, every=10, probes=[Sharpness(tol=...)])``
and ``tracker.step()``. Both loops run the same 300 steps from the same init and batch sequence; plain and tracked
runs alternate (``--repeats`` pairs) and medians are reported. The overhead is ``tracked / plain - 1``; the
tracker's own estimate (time measuring / time in the loop) is reported next to it. The sharpness is measured on
the 1000-example measurement batch at tol 1e-3 and 1e-2, and on its first 256 examples (``subset=256``) at tol
1e-3. Accuracy: the last tracked sharpness against a cold ``lmech.sharpness`` at tol 1e-7 on the same model and
examples.

    python bench/bench_tracker.py [--steps 300] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from sklearn.datasets import load_digits

import lmech
from lmech.systems.task import half_mse

from _benchutil import OUT, machine_facts, wait_quiet

BATCH, EVERY, LR, WIDTH = 1000, 10, 0.05, 300
SUBSET = 256  # a fixed measurement subset, the cheaper option


def _data():
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16
    return x, torch.nn.functional.one_hot(torch.tensor(digits.target), 10).float()


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, WIDTH), torch.nn.Tanh(), torch.nn.Linear(WIDTH, WIDTH),
                               torch.nn.Tanh(), torch.nn.Linear(WIDTH, 10))


def loop(x, y, steps: int, tol: float | None, subset: int = BATCH) -> dict:
    """One training loop; ``tol=None`` is the plain loop, else tracked with Sharpness(tol) on the first ``subset``
    examples of the measurement batch."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(1)
    start = time.perf_counter()
    tracker = None
    if tol is not None:
        tracker = lmech.Tracker(model, half_mse, x[:BATCH], y[:BATCH], optimizer=opt, every=EVERY,
                                probes=[lmech.probes.Sharpness(tol=tol, subset=subset)])
    for _ in range(steps):
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        opt.zero_grad(set_to_none=True)
        half_mse(model(x[idx]), y[idx]).backward()
        opt.step()
        if tracker is not None:
            tracker.step()
    out = {"seconds": time.perf_counter() - start}
    if tracker is not None:
        run = tracker.close()
        matvecs = run.series("sharpness/matvecs")[1]
        exact = float(lmech.sharpness(model, half_mse, x[:subset], y[:subset], tol=1e-7, max_matvecs=400))
        out.update(matvecs_per_measurement=float(matvecs.mean()), measurements=len(matvecs),
                   tracker_overhead=run.last("tracker/overhead"),
                   last_rel_error=abs(run.last("sharpness/0") - exact) / exact, sharpness=exact)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    x, y = _data()
    params = sum(p.numel() for p in _model().parameters())
    configs = {f"{n} examples, tol={t:g}": (t, n) for t, n in ((1e-3, BATCH), (1e-2, BATCH), (1e-3, SUBSET))}
    loop(x, y, 20, 1e-3)  # warm-up
    rows: dict[str, list[dict]] = {"plain": [], **{c: [] for c in configs}}
    busy = []
    for _ in range(args.repeats):
        busy.append(wait_quiet(label="tracker"))
        rows["plain"].append(loop(x, y, args.steps, None))
        for c, (t, n) in configs.items():
            rows[c].append(loop(x, y, args.steps, t, n))
    plain = statistics.median(r["seconds"] for r in rows["plain"])
    result = {"machine": machine_facts(), "parameters": params, "steps": args.steps, "batch": BATCH, "every": EVERY,
              "busy_cores_before": busy, "plain_s": plain, "runs": rows, "summary": {}}
    print(f"MLP 64-{WIDTH}-{WIDTH}-10, {params:,} parameters, batch {BATCH}, {args.steps} SGD steps, sharpness every "
          f"{EVERY} steps\n\n| loop | time (median of {args.repeats}) | overhead | tracker's own estimate | "
          "HVPs per measurement | last-value rel. error |\n|---|---|---|---|---|---|")
    print(f"| plain | {plain:.2f} s | | | | |")
    for c in configs:
        r = rows[c]
        sec = statistics.median(v["seconds"] for v in r)
        summary = {"seconds": sec, "overhead": sec / plain - 1,
                   "tracker_overhead": statistics.median(v["tracker_overhead"] for v in r),
                   "matvecs_per_measurement": statistics.median(v["matvecs_per_measurement"] for v in r),
                   "last_rel_error": max(v["last_rel_error"] for v in r)}
        result["summary"][c] = summary
        print(f"| tracked, sharpness on {c} | {sec:.2f} s | **{summary['overhead']:.0%}** | "
              f"{summary['tracker_overhead']:.0%} | {summary['matvecs_per_measurement']:.2f} | "
              f"{summary['last_rel_error']:.1e} |")
    OUT.mkdir(exist_ok=True)
    (OUT / "tracker.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

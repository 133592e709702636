"""Cost of the integrations: the README's tracked loop with its measurements sent to TensorBoard, MLflow and W&B
(offline), against the same loop tracked without loggers and the plain loop, in one run.

Setup (the README's Tracker example): scikit-learn digits (512 examples, one-hot targets), an MLP 64-100-10 with
tanh, ``half_mse``, Adam at lr 1e-3, full batch, float32, ``torch.set_num_threads(2)``; the Tracker measures the
default probes (sharpness and preconditioned sharpness) every 50 steps. Loops of 5000 steps (100 measurements)
alternate (``--repeats`` rounds of plain, tracked, tracked + loggers); medians per step are reported. Loop-to-loop noise on this 0.4 ms step
is larger than the loggers' cost, so each logger is also wrapped in a timer: the time inside its ``log`` and
``flush`` calls (the adapters' whole cost in the loop) over the plain loop's time is the overhead reported, per
logger and together. The loggers' one-time costs (W&B's first calls warm its service up, about 2 ms each for the
first 25; MLflow writes its batch at close) are inside the loop and amortized over it, as in training;
constructing and closing them is not. The adapters' overhead is
(tracked + loggers - tracked) / plain; the issue's budget is 5%. TensorBoard writes event files, MLflow a local
SQLite store, W&B an offline run, each in a temporary folder; loggers are built and closed outside the timed loop.

    .venv/bin/python bench/bench_integrations.py [--steps 5000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lmech.integrations import MLflowLogger, TensorBoardLogger, WandbLogger

from _benchutil import OUT, machine_facts, wait_quiet
from _readme_example import data as readme_data, loop as readme_loop

EVERY = 50


class Timed:
    """A logger wrapped so that the time inside its calls adds up in ``seconds``."""

    def __init__(self, logger) -> None:
        self.logger, self.seconds = logger, 0.0

    def log(self, metrics, step) -> None:
        start = time.perf_counter()
        self.logger.log(metrics, step)
        self.seconds += time.perf_counter() - start

    def flush(self) -> None:
        start = time.perf_counter()
        self.logger.flush()
        self.seconds += time.perf_counter() - start


def loop(x, y, steps: int, loggers: list | None) -> float:
    tracker = None if loggers is None else {"every": EVERY, "loggers": loggers}
    return readme_loop(x, y, steps, tracker)[0] / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.environ["WANDB_SILENT"] = "true"
    x, y = readme_data()
    times: dict[str, list[float]] = {"plain": [], "tracked": [], "tracked + 3 loggers": []}
    inside: dict[str, list[float]] = {"TensorBoard": [], "MLflow": [], "W&B": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            wait_quiet(label=f"round {r}")
            times["plain"].append(loop(x, y, args.steps, None))
            times["tracked"].append(loop(x, y, args.steps, []))
            loggers = [Timed(TensorBoardLogger(Path(tmp) / f"tb{r}")), Timed(MLflowLogger(f"sqlite:///{tmp}/mlflow.db")),
                       Timed(WandbLogger(dir=tmp))]
            times["tracked + 3 loggers"].append(loop(x, y, args.steps, loggers))
            for name, logger in zip(inside, loggers):
                inside[name].append(logger.seconds / (times["plain"][-1] * args.steps))
                logger.logger.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    per_logger = {k: statistics.median(v) for k, v in inside.items()}
    overhead = statistics.median([sum(v) for v in zip(*inside.values())])
    out = {"machine": machine_facts(), "steps": args.steps, "every": EVERY, "times_per_step_s": times,
           "median_per_step_s": med, "time_inside_loggers_over_plain": inside, "adapters_overhead": overhead}
    OUT.mkdir(exist_ok=True)
    (OUT / "integrations.json").write_text(json.dumps(out, indent=1))
    print("| loop | ms per step (median) | vs plain |")
    print("|---|---|---|")
    for k, v in med.items():
        print(f"| {k} | {1e3 * v:.3f} | {v / med['plain'] - 1:+.1%} |")
    print("\n| logger | time inside its calls / plain loop (median) |\n|---|---|")
    for k, v in per_logger.items():
        print(f"| {k} | {v:.2%} |")
    print(f"| all three | {overhead:.2%} |")


if __name__ == "__main__":
    main()

"""Batched sweep: 64 MLPs (40-128-128-10, relu, mnist1d) trained together by ``lmech.hyper.train_stacked`` against
the same 64 trained one after another with ``torch.optim.SGD``, in one run.

Each model has its own init (seed) and learning rate (a log grid 1e-3..1, the shape of a learning-rate sweep); SGD
on minibatches of 128 from 4000 mnist1d examples, the batch order shared (lmech's engine order), 300 steps, half-MSE,
float32, 2 threads. Both produce the same final parameters (checked to 1e-3 relative for lr <= 0.1; at larger lr float32 rounding
differences grow chaotically; tests/test_batched.py checks equality in float64); the batched side records the
full-batch loss once at the end only, like the sequential side. Writes bench/out/batched.json.

    python bench/bench_batched.py [--models 64] [--steps 300]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from torch import nn

from _benchutil import OUT, machine_facts, wait_quiet
from lmech.engine.trainer import _batches
from lmech.hyper import train_stacked
from lmech.systems import MNIST1D
from lmech.systems.task import half_mse

WIDTH, BATCH = 128, 128


def _models(count: int) -> list[nn.Module]:
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        out.append(nn.Sequential(nn.Linear(40, WIDTH), nn.ReLU(), nn.Linear(WIDTH, WIDTH), nn.ReLU(),
                                 nn.Linear(WIDTH, 10)))
    return out


def sequential(models, x, y, lrs, steps) -> float:
    start = time.perf_counter()
    for model, lr in zip(models, lrs):
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        next_batch = _batches(len(x), BATCH, 0)
        for _ in range(steps):
            idx = next_batch()
            opt.zero_grad(set_to_none=True)
            half_mse(model(x[idx]), y[idx]).backward()
            opt.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=64)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    data = MNIST1D(n_train=4000, n_test=0).load()
    x = torch.as_tensor(data.x_train, dtype=torch.float32)
    y = torch.nn.functional.one_hot(torch.as_tensor(data.y_train), 10).float()
    lrs = np.geomspace(1e-3, 1.0, args.models).tolist()
    busy = wait_quiet(timeout=60.0, label="batched")
    seq_models, bat_models = _models(args.models), _models(args.models)
    t_seq = sequential(seq_models, x, y, lrs, args.steps)
    start = time.perf_counter()
    train_stacked(bat_models, half_mse, x, y, lr=lrs, steps=args.steps, batch_size=BATCH, record_every=args.steps)
    t_bat = time.perf_counter() - start
    worst = 0.0  # float32 rounding differs (one batched product vs 64); at large lr training amplifies it chaotically
    with torch.no_grad():
        for a, b, lr in zip(seq_models, bat_models, lrs):
            if lr <= 0.1:
                for p, q in zip(a.parameters(), b.parameters()):
                    worst = max(worst, float((p - q).norm() / p.norm().clamp_min(1e-12)))
    assert worst < 1e-3, worst
    ratio = t_seq / t_bat
    print(f"{args.models} MLPs 40-{WIDTH}-{WIDTH}-10, {args.steps} SGD steps at batch {BATCH}: sequential "
          f"{t_seq:.2f} s, batched {t_bat:.2f} s, throughput {ratio:.1f}x (max parameter difference {worst:.1e})")
    OUT.mkdir(exist_ok=True)
    (OUT / "batched.json").write_text(json.dumps({"models": args.models, "steps": args.steps, "sequential_s": t_seq,
                                                 "batched_s": t_bat, "ratio": ratio, "max_rel_param_diff": worst,
                                                 "busy_before": busy, "machine": machine_facts()}, indent=1))


if __name__ == "__main__":
    main()

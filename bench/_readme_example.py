"""The README's tracking example as a benchmark workload (bench_integrations.py, bench_tracker_observables.py).

Digits, 512 examples, MLP 64-100-10 tanh, Adam lr 1e-3, full batch, ``lmech.half_mse``, float32."""
from __future__ import annotations

import time

import torch

import lmech


def data() -> tuple[torch.Tensor, torch.Tensor]:
    digits = lmech.Digits(n_train=512, n_test=0).load()
    x = torch.as_tensor(digits.x_train, dtype=torch.float32)
    return x, torch.nn.functional.one_hot(torch.as_tensor(digits.y_train), 10).float()


def loop(x: torch.Tensor, y: torch.Tensor, steps: int, tracker: dict | None) -> tuple[float, lmech.RunResult | None]:
    """``steps`` steps of the example from the same init; ``tracker``: the ``lmech.Tracker`` keyword arguments (None:
    the plain loop). Returns the wall time and the tracker's closed run."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 100), torch.nn.Tanh(), torch.nn.Linear(100, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    tracked = None if tracker is None else lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, **tracker)
    for _ in range(steps):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        if tracked is not None:
            tracked.step()
    run = None if tracked is None else tracked.close()
    return time.perf_counter() - start, run

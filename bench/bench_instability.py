"""Cost of the instability monitor against the training step it watches, one run.

Setup: a 40-256-256-10 ReLU MLP on MNIST-1D, cross-entropy, float32, batch 512; the monitor measures on a fixed
batch of 512 (the sharpness warm-started from its previous call, as in training, where it is called every k steps).
Times: one SGD step (forward, backward, update) and one warm monitor call, for SGD (the plain sharpness) and Adam
(the preconditioned sharpness), after 200 training steps; the monitor's Hessian-vector products per call are
recorded. The overhead of calling it every k steps is (monitor call) / (k x step).

Writes bench/out/instability.json and prints a markdown table.

    .venv/bin/python bench/bench_instability.py [--repeats 7]
"""
from __future__ import annotations

import argparse
import json
import sys

import _benchutil as bu
import torch

import lmech


def setup(optimizer: str):
    torch.manual_seed(0)
    data = lmech.MNIST1D(n_train=4000, n_test=0).load()
    x, y = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
    model = torch.nn.Sequential(torch.nn.Linear(40, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(),
                                torch.nn.Linear(256, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05) if optimizer == "sgd" else \
        torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.functional.cross_entropy
    batches = torch.randperm(len(x)).split(512)

    def step(i=[0]):  # noqa: B006  (a counter that persists between calls)
        b = batches[i[0] % (len(batches) - 1)]
        i[0] += 1
        opt.zero_grad()
        loss = loss_fn(model(x[b]), y[b])
        loss.backward()
        opt.step()
        return loss

    for _ in range(200):
        step()
    return model, opt, loss_fn, x[:512], y[:512], step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = {"torch": torch.__version__}
    rows = []
    for name in ("sgd", "adam"):
        model, opt, loss_fn, xf, yf, step = setup(name)
        monitor = lmech.InstabilityMonitor(opt)
        monitor(0, model, loss_fn, xf, yf)  # the cold first call
        bu.wait_quiet(label=name)
        _, t_step = bu.timed(step, args.repeats, label=f"{name} step")
        calls = iter(range(1, 10 ** 6))
        _, t_monitor = bu.timed(lambda: (step(), monitor(next(calls), model, loss_fn, xf, yf)), args.repeats,
                                label=f"{name} step + monitor")
        monitor_s = t_monitor["median_s"] - t_step["median_s"]
        hvps = [f.matvecs for f in monitor.forecasts[1:]]
        out[name] = {"step": t_step, "step_plus_monitor": t_monitor, "monitor_s": monitor_s,
                     "matvecs_per_call": sum(hvps) / len(hvps), "ratio": monitor.forecasts[-1].ratio}
        rows.append((name, t_step["median_s"], monitor_s, sum(hvps) / len(hvps)))
    bu.OUT.mkdir(exist_ok=True)
    (bu.OUT / "instability.json").write_text(json.dumps(out, indent=1))
    print("| optimizer | step ms | monitor call ms | HVPs per call | overhead every 10 steps | every 100 |")
    print("|---|---|---|---|---|---|")
    for name, s, m, h in rows:
        print(f"| {name} | {1e3 * s:.2f} | {1e3 * m:.1f} | {h:.1f} | {m / (10 * s):.0%} | {m / (100 * s):.1%} |")


if __name__ == "__main__":
    sys.exit(main())

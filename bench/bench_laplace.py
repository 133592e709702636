"""Linearized Laplace predictive variance: lmech against laplace-torch, one run.

Setup: a 64-h-1 ReLU MLP (PyTorch default init, float64) trained by full-batch GD (lr 0.1, 500 steps, half-MSE) on
200 scikit-learn digits of classes 0-4 with +-1 parity targets; test on 300 digits of every class (the
variance-ood-detection setting). The linearized Laplace (GGN, all weights, full covariance) with prior precision
``delta`` and noise ``s`` predicts ``Var f(x) = J(x) (J^T J / s^2 + delta I)^-1 J(x)^T``.

* lmech: ``empirical_ntk`` on the training and test inputs (``Theta = J J^T``; train-train, test-train, test-test)
  and ``lmech.theory.linearized_laplace_variance``, the Woodbury form
  ``(1/delta) [Theta_** - Theta_*X (Theta + delta s^2 I)^-1 Theta_X*]``: one n x n solve;
* laplace-torch 0.3 (its own venv, .venv-laplace; bench/_laplace_worker.py): ``Laplace(model, "regression",
  subset_of_weights="all", hessian_structure="full")``, ``fit``, ``la(x_test, pred_type="glm")``: the P x P
  posterior precision (P parameters) and its inverse.

Both timed end to end from the trained model (kernels or Hessian included) on 2 threads; the variances are compared
entrywise. Writes bench/out/laplace.json and prints a markdown table.

    .venv/bin/python bench/bench_laplace.py [--widths 32 64 128] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import _benchutil as bu
import numpy as np
import torch

import lmech
from lmech.theory import linearized_laplace_variance

LAPLACE_PYTHON = bu.ROOT / ".venv-laplace" / "bin" / "python"
LAPLACE_WORKER = bu.ROOT / "bench" / "_laplace_worker.py"
PRIOR_PRECISION, SIGMA_NOISE = 1.0, 0.1


def trained_model(width: int, data) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        lmech.half_mse(model(data["x_train"]), data["y_train"]).backward()
        opt.step()
    return model


def lmech_variance(model: torch.nn.Module, data) -> np.ndarray:
    x, xt = data["x_train"], data["x_test"]
    train = lmech.empirical_ntk(model, x).numpy()
    cross = lmech.empirical_ntk(model, xt, x).numpy()
    test = lmech.empirical_ntk(model, xt).numpy()
    return linearized_laplace_variance(train, cross, test, prior_precision=PRIOR_PRECISION,
                                       noise_variance=SIGMA_NOISE ** 2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    ds = lmech.Digits(n_train=200, n_test=300, target="parity", train_classes=(0, 1, 2, 3, 4)).load()
    data = {k: torch.tensor(getattr(ds, k), dtype=torch.float64) for k in ("x_train", "y_train", "x_test", "y_test")}
    rows = []
    for width in args.widths:
        model = trained_model(width, data)
        params = sum(p.numel() for p in model.parameters())
        bu.wait_quiet(label=f"lmech width {width}")
        ours, t_ours = bu.timed(lambda: lmech_variance(model, data), args.repeats, label=f"lmech width {width}")
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            torch.save({"state_dict": model.state_dict(), "widths": (64, width), **data}, tmp / "inputs.pt")
            bu.wait_quiet(label=f"laplace-torch width {width}")
            result = bu.run_worker(LAPLACE_PYTHON, LAPLACE_WORKER,
                                   {"repeats": args.repeats, "threads": 2, "prior_precision": PRIOR_PRECISION,
                                    "sigma_noise": SIGMA_NOISE}, tmp, "requirements-laplace.txt")
            theirs = np.load(tmp / "variance.npy")
        rows.append({"width": width, "parameters": params, "lmech": t_ours, "laplace_torch": result["timing"],
                     "laplace_torch_version": result["laplace_torch"],
                     "agreement": bu.rel_errors(ours, theirs)})
    out = {"machine": bu.machine_facts(), "prior_precision": PRIOR_PRECISION, "sigma_noise": SIGMA_NOISE,
           "rows": rows}
    bu.OUT.mkdir(exist_ok=True)
    (bu.OUT / "laplace.json").write_text(json.dumps(out, indent=1))
    print("| width | parameters | lmech s (median) | laplace-torch s (median) | laplace-torch / lmech | "
          "max rel. diff of variances |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        a, b = r["lmech"]["median_s"], r["laplace_torch"]["median_s"]
        print(f"| {r['width']} | {r['parameters']} | {a:.4f} | {b:.3f} | {b / a:.0f}x | "
              f"{r['agreement']['max_rel_entrywise']:.1e} |", file=sys.stdout)


if __name__ == "__main__":
    main()

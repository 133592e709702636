"""GD-ensemble prediction benchmark: ``lmech.theory.ntk_predict`` against neural-tangents'
``predict.gradient_descent_mse_ensemble`` and against a naive solve per time point, one run.

Setup: n = 2000 training and m = 1000 test inputs (scikit-learn digits / 16, resampled with replacement plus
Gaussian noise of std 0.1, seed 0; ``bench_kernels.make_inputs``), a scalar +-1 target (the sign of sin(3 sum of the first 8 features)),
float64 everywhere; the depth-2 ReLU MLP in NTK parameterization (W_std = sqrt 2, b_std = 0.1); the "ntk"
ensemble's mean and full m x m covariance at t = 10, 100, 1000 steps and t = inf, learning rate 1, gradient flow.
Each call computes everything from the inputs: the analytic kernels (train-train, test-train, test-test), the train
NTK's eigendecomposition and the four times. neural-tangents 0.6.5 runs in its own venv (.venv-nt) through
bench/_nt_worker.py (a fresh ``gradient_descent_mse_ensemble`` per call, so its caches do not carry over); the naive
baseline, in this process, forms ``A_t = Theta^-1 (I - expm(-Theta t lr / n))`` with ``scipy.linalg.expm`` and a
solve at every time point, then the mean and covariance of Lee et al.'s Eqs. 15-16 by dense products. The three
results are compared in the same run.

Writes bench/out/ensemble.json and prints a markdown table.

    .venv/bin/python bench/bench_ensemble.py [--n 2000] [--m 1000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import _benchutil as bu
import numpy as np
import scipy.linalg
from bench_kernels import make_inputs

from lmech.theory import nngp_ntk, ntk_predict

CASE = {"activation": "relu", "depth": 2, "w_std": math.sqrt(2.0), "b_std": 0.1}
TIMES = [10.0, 100.0, 1000.0, math.inf]


def naive(x_train, y, x_test, t, lr):
    """Per time point: expm, a solve, then Lee et al.'s mean and covariance by dense products."""
    args = {k: CASE[k] for k in ("depth", "activation", "w_std", "b_std")}
    k_dd, th_dd = nngp_ntk(x_train, **args)
    k_td, th_td = nngp_ntk(x_test, x_train, **args)
    k_tt, _ = nngp_ntk(x_test, **args)
    n = len(y)
    means, covs = [], []
    for ti in t:
        decay = np.zeros((n, n)) if math.isinf(ti) else scipy.linalg.expm(-th_dd * ti * lr / n)
        a = np.linalg.solve(th_dd, np.eye(n) - decay)
        at = th_td @ a
        means.append(at @ y)
        cross = at @ k_td.T
        covs.append(k_tt + at @ k_dd @ at.T - cross - cross.T)
    return np.array(means), np.array(covs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--m", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x = make_inputs(args.n + args.m)
    y = np.sign(np.sin(3 * x[:, :8].sum(1)))[:, None]  # +-1, a fixed function of the inputs
    x_train, x_test, y_train = x[:args.n], x[args.n:], y[:args.n]
    arch = {k: CASE[k] for k in ("depth", "activation", "w_std", "b_std")}
    out = {"n": args.n, "m": args.m, "t": TIMES, "case": CASE, "facts": {"numpy": np.__version__}}

    bu.wait_quiet(label="lmech")
    pred, out["lmech"] = bu.timed(lambda: ntk_predict(x_train, y_train, x_test, t=TIMES, **arch), args.repeats,
                                  label="lmech ntk_predict")
    bu.wait_quiet(label="naive")
    (n_mean, n_cov), out["naive"] = bu.timed(lambda: naive(x_train, y_train, x_test, TIMES, 1.0), 1,
                                             label="naive per-time solve", min_time=0.0)
    scale = np.abs(pred.cov).max()
    out["naive_agreement"] = {"mean_max_abs": float(np.abs(pred.mean - n_mean).max()),
                              "cov_max_abs_rel": float(np.abs(pred.cov - n_cov).max() / scale)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, arr in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test)):
            np.save(tmp / f"{name}.npy", arr)
        job = {"mode": "ensemble", "case": CASE, "t": TIMES, "learning_rate": 1.0, "repeats": args.repeats,
               **{k: str(tmp / f"{k}.npy") for k in ("x_train", "y_train", "x_test")}}
        bu.wait_quiet(label="neural-tangents")
        nt = bu.run_nt_worker(job, tmp)
        nt_mean, nt_cov = np.load(nt["mean"]), np.load(nt["cov"])
    out["neural_tangents"] = {k: v for k, v in nt.items() if k not in ("mean", "cov")}
    out["nt_agreement"] = {"mean_max_abs": float(np.abs(pred.mean - nt_mean.reshape(pred.mean.shape)).max()),
                           "cov_max_abs_rel": float(np.abs(pred.cov - nt_cov.reshape(pred.cov.shape)).max() / scale)}
    bu.OUT.mkdir(exist_ok=True)
    (bu.OUT / "ensemble.json").write_text(json.dumps(out, indent=1))
    lm, nv, ntt = out["lmech"]["median_s"], out["naive"]["median_s"], out["neural_tangents"]["median_s"]
    print(f"| tool | median s | lmech speed-up | max |mean diff| | max |cov diff| / max |cov| |")
    print("|---|---|---|---|---|")
    print(f"| lmech `ntk_predict` | {lm:.2f} | 1 | | |")
    print(f"| neural-tangents 0.6.5 (first call {out['neural_tangents']['first_call_s']:.1f} s) | {ntt:.2f} | "
          f"{ntt / lm:.1f}x | {out['nt_agreement']['mean_max_abs']:.1e} | {out['nt_agreement']['cov_max_abs_rel']:.1e} |")
    print(f"| naive expm + solve per time | {nv:.2f} | {nv / lm:.1f}x | {out['naive_agreement']['mean_max_abs']:.1e} | "
          f"{out['naive_agreement']['cov_max_abs_rel']:.1e} |")


if __name__ == "__main__":
    sys.exit(main())

"""Sharpness benchmark: lmech (Lanczos, warm-started tracker) against PyHessian 0.1 (power iteration), in one run.

Setup: scikit-learn digits (1000 training examples, 64 features), an MLP 64-256-256-10 with ReLU
(85,002 parameters, lmech's default init at scale 0.5), half-MSE on one-hot targets
(``0.5 * sum over outputs, mean over examples``), float32, full-batch GD, ``torch.set_num_threads(2)``.
References are the top eigenvalues of the same Hessian in float64 from scipy's ``eigsh`` (ARPACK)
on lmech's ``HessianOperator``, independent of lmech's Lanczos.

(a) COLD, on the model after 200 GD steps at lr 0.05: wall time and Hessian-vector products (HVPs) for
    each tool to reach 1e-3 relative accuracy of the top eigenvalue. For each tool the tolerance is
    scanned from loose to tight and the loosest at which every repeat (different random start) is
    within 1e-3 of the reference is used; timings are medians over the repeats and include building
    the gradient graph.
(b) WARM TRACKING, along full-batch GD at lr 0.15 (2/lr = 13.3; the run reaches the edge of stability
    within a few tens of steps), the sharpness every 10 steps: HVPs per measurement of ``SharpnessTracker``
    at its default tolerance, of lmech's previous scheme (warm start from the last eigenvector only,
    residual stopping rule) and of PyHessian started cold at each measurement with the tolerance from
    (a); accuracy against the float64 reference every 100 steps.

Writes bench/out/sharpness.json and prints a markdown table.

    python bench/bench_sharpness.py [--steps 1500] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse.linalg as sla
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.functional import one_hot

from lmech.observables import HessianOperator, SharpnessTracker, sharpness
from lmech.systems import MLP, Digits
from lmech.systems.networks import build_model
from lmech.systems.task import half_mse

ROOT = Path(__file__).resolve().parents[1]
ACCURACY = 1e-3  # target relative accuracy of the top eigenvalue
WIDTH, DEPTH, INIT_SCALE = 256, 2, 0.5
COLD_LR, COLD_STEPS = 0.05, 200
WARM_LR, EVERY, CHECK_EVERY = 0.15, 10, 100
LMECH_TOLS = (1e-3, 1e-4, 1e-5, 1e-6)
PYHESSIAN_TOLS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
PYHESSIAN_MAX_ITER = 10_000  # large, so that PyHessian's own tolerance decides when it stops

warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")


# ----------------------------------------------------------------------------------------------- setup
def problem() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    data = Digits(n_train=1000, n_test=0).load()
    x = torch.tensor(data.x_train, dtype=torch.float32)
    y = one_hot(torch.tensor(data.y_train), data.n_classes).to(torch.float32)
    model = build_model(MLP(width=WIDTH, depth=DEPTH, activation="relu"), data, init="default",
                        init_scale=INIT_SCALE, seed=0, dtype=torch.float32)
    return model, x, y


def gd_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float) -> float:
    model.zero_grad(set_to_none=True)
    loss = half_mse(model(x), y)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    model.zero_grad(set_to_none=True)
    return float(loss.detach())


def reference(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, k: int, loss=half_mse) -> np.ndarray:
    """Top-k Hessian eigenvalues in float64 from ARPACK (scipy eigsh) on lmech's HVP, descending (integer targets
    ``y``, class labels, are kept as they are)."""
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(model64, loss, x.double(), y if not y.is_floating_point() else y.double())
    lin = sla.LinearOperator((op.dim, op.dim), matvec=lambda v: op.matvec(torch.from_numpy(np.ravel(v))).numpy(),
                             dtype=np.float64)
    v0 = np.random.default_rng(0).standard_normal(op.dim)
    vals = sla.eigsh(lin, k=k, which="LA", tol=1e-10, v0=v0, return_eigenvectors=False)
    return np.sort(vals)[::-1]


# ------------------------------------------------------------------------------------------ the tools
class _Counted:
    """Counts PyHessian's Hessian-vector products by wrapping ``pyhessian.hessian.hessian_vector_product``."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401  (pyhessian==0.1, installed by `make bench` from .[bench])

        self.module = sys.modules["pyhessian.hessian"]
        self.inner = self.module.hessian_vector_product
        self.count = 0

        def counted(*args, **kwargs):
            self.count += 1
            return self.inner(*args, **kwargs)

        self.module.hessian_vector_product = counted


def run_pyhessian(counter: _Counted, model, x, y, tol: float, seed: int, loss=half_mse) -> tuple[float, int, float]:
    """PyHessian's top eigenvalue (power iteration, random start from torch's global RNG). Attention runs on PyTorch's
    math kernel: the fused kernel has no second derivative (lmech switches to the math kernel itself)."""
    torch.manual_seed(seed)
    counter.count = 0
    start = time.perf_counter()
    with sdpa_kernel(SDPBackend.MATH):
        h = counter.module.hessian(model, loss, data=(x, y), cuda=False)
        values, _ = h.eigenvalues(maxIter=PYHESSIAN_MAX_ITER, tol=tol, top_n=1)
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients in .grad
    model.train()  # PyHessian puts the model in eval mode
    return float(values[0]), counter.count, seconds


def run_lmech(model, x, y, tol: float, seed: int, loss=half_mse) -> tuple[float, int, float]:
    start = time.perf_counter()
    res = sharpness(model, loss, x, y, k=1, tol=tol, seed=seed)
    return float(res.values[0]), res.matvecs, time.perf_counter() - start


# ------------------------------------------------------------------------------------------------ cold
def scan(run, tols, s_ref: float, repeats: int) -> tuple[dict, list[dict]]:
    """Loosest tolerance at which all repeats are within ACCURACY of the reference; medians there."""
    run(tols[0], 10_000)  # warm-up, untimed
    rows = []
    for tol in tols:
        trials = [run(tol, seed) for seed in range(repeats)]
        errors = [abs(v - s_ref) / s_ref for v, _, _ in trials]
        row = {"tol": tol, "hvps": [n for _, n, _ in trials], "seconds": [round(t, 4) for _, _, t in trials],
               "rel_errors": [float(f"{e:.3g}") for e in errors], "all_within": bool(max(errors) <= ACCURACY),
               "median_hvps": statistics.median(n for _, n, _ in trials),
               "median_seconds": statistics.median(t for _, _, t in trials), "max_rel_error": max(errors)}
        rows.append(row)
        if row["all_within"]:
            return row, rows
    return rows[-1], rows


def cold(counter: _Counted, repeats: int) -> dict:
    model, x, y = problem()
    for _ in range(COLD_STEPS):
        gd_step(model, x, y, COLD_LR)
    top = reference(model, x, y, k=4)
    check = sharpness(copy.deepcopy(model).double(), half_mse, x.double(), y.double(), k=4, tol=1e-10)
    s_ref = float(top[0])
    lm, lm_rows = scan(lambda tol, seed: run_lmech(model, x, y, tol, seed), LMECH_TOLS, s_ref, repeats)
    ph, ph_rows = scan(lambda tol, seed: run_pyhessian(counter, model, x, y, tol, seed), PYHESSIAN_TOLS, s_ref, repeats)
    return {
        "model_after": f"{COLD_STEPS} GD steps at lr {COLD_LR}", "reference_top4": top.tolist(),
        "reference_check_lmech_float64_tol1e-10": check.values.tolist(),
        "lmech": lm, "pyhessian": ph, "lmech_scan": lm_rows, "pyhessian_scan": ph_rows,
        "time_ratio": ph["median_seconds"] / lm["median_seconds"], "hvp_ratio": ph["median_hvps"] / lm["median_hvps"],
    }


# ------------------------------------------------------------------------------------------------ warm
def warm(counter: _Counted, steps: int, pyhessian_tol: float) -> dict:
    model, x, y = problem()
    tracker = SharpnessTracker()  # default tolerance
    previous = None  # lmech's previous scheme: warm start from the last eigenvector only (no guard)
    series, checks = [], []
    for step in range(steps + 1):
        if step % EVERY == 0:
            row = {"step": step}
            start = time.perf_counter()
            res = tracker(model, half_mse, x, y)
            row.update(lmech_s=time.perf_counter() - start, lmech=float(res.values[0]), lmech_hvps=res.matvecs,
                       lmech_est=res.relative_error)
            start = time.perf_counter()
            base = sharpness(model, half_mse, x, y, k=1, warm_start=None if previous is None else previous.vectors)
            previous = base
            row.update(prev_s=time.perf_counter() - start, prev=float(base.values[0]), prev_hvps=base.matvecs)
            value, hvps, seconds = run_pyhessian(counter, model, x, y, pyhessian_tol, seed=step)
            row.update(pyhessian_s=seconds, pyhessian=value, pyhessian_hvps=hvps)
            if step % CHECK_EVERY == 0:
                top = reference(model, x, y, k=2)
                row.update(reference=float(top[0]), reference_2=float(top[1]))
                row.update({f"{t}_rel_error": abs(row[t] - top[0]) / top[0] for t in ("lmech", "prev", "pyhessian")})
                checks.append(row)
            series.append(row)
        if step < steps:
            row_loss = gd_step(model, x, y, WARM_LR)
            if step % EVERY == 0:
                series[-1]["loss"] = row_loss
    calls = series[1:]  # every measurement after the first (cold) one

    def mean(key: str, rows=calls) -> float:
        return float(np.mean([r[key] for r in rows]))

    threshold = 2.0 / WARM_LR
    eos = [r["step"] for r in series if r["lmech"] >= 0.95 * threshold]
    return {
        "lr": WARM_LR, "steps": steps, "every": EVERY, "measurements": len(series), "threshold_2_over_lr": threshold,
        "first_step_at_95pct_of_2_over_lr": eos[0] if eos else None,
        "fraction_of_measurements_at_eos": len(eos) / len(series),
        "lmech_hvps_per_measurement": mean("lmech_hvps", series), "lmech_hvps_per_warm_measurement": mean("lmech_hvps"),
        "lmech_first_measurement_hvps": series[0]["lmech_hvps"], "lmech_s_per_measurement": mean("lmech_s", series),
        "lmech_max_rel_error_at_checks": max(r["lmech_rel_error"] for r in checks),
        "lmech_max_estimated_rel_error": max(r["lmech_est"] for r in series),
        "previous_scheme_hvps_per_measurement": mean("prev_hvps", series),
        "previous_scheme_max_rel_error_at_checks": max(r["prev_rel_error"] for r in checks),
        "pyhessian_tol": pyhessian_tol, "pyhessian_hvps_per_measurement": mean("pyhessian_hvps", series),
        "pyhessian_s_per_measurement": mean("pyhessian_s", series),
        "pyhessian_max_rel_error_at_checks": max(r["pyhessian_rel_error"] for r in checks),
        "pyhessian_checks_beyond_accuracy": sum(r["pyhessian_rel_error"] > ACCURACY for r in checks),
        "hvp_ratio_pyhessian_over_lmech": mean("pyhessian_hvps", series) / mean("lmech_hvps", series),
        "time_ratio_pyhessian_over_lmech": mean("pyhessian_s", series) / mean("lmech_s", series),
        "checks": [{k: r[k] for k in ("step", "reference", "reference_2", "lmech", "lmech_rel_error", "lmech_est",
                                      "lmech_hvps", "prev_rel_error", "pyhessian", "pyhessian_rel_error", "pyhessian_hvps")}
                   for r in checks],
        "series": [{k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()} for r in series],
    }


# ---------------------------------------------------------------------------------------------- report
def table(result: dict) -> str:
    c, w = result["cold"], result["warm"]
    lm, ph = c["lmech"], c["pyhessian"]
    lines = [
        (f"Top Hessian eigenvalue, {result['setup']['parameters']:,} parameters, {result['setup']['examples']} examples, "
         f"float32, {result['machine']['torch_threads']} threads. Reference (float64 eigsh): cold S = "
         f"{c['reference_top4'][0]:.6f} (next {c['reference_top4'][1]:.4f}, {c['reference_top4'][2]:.4f})."),
        "",
        "| measurement | lmech | PyHessian 0.1 | PyHessian / lmech |",
        "|---|---|---|---|",
        f"| cold: tolerance needed for 1e-3 accuracy (all {len(lm['hvps'])} starts) | tol={lm['tol']:g} | tol={ph['tol']:g} | |",
        f"| cold: wall time, median | {lm['median_seconds']:.3f} s | {ph['median_seconds']:.3f} s | {c['time_ratio']:.1f}x |",
        f"| cold: HVPs, median | {lm['median_hvps']:g} | {ph['median_hvps']:g} | {c['hvp_ratio']:.1f}x |",
        f"| cold: max relative error | {lm['max_rel_error']:.1e} | {ph['max_rel_error']:.1e} | |",
        (f"| warm: HVPs per measurement ({w['measurements']} measurements) | {w['lmech_hvps_per_measurement']:.2f} | "
         f"{w['pyhessian_hvps_per_measurement']:.1f} (cold each time, tol={w['pyhessian_tol']:g}) | "
         f"{w['hvp_ratio_pyhessian_over_lmech']:.1f}x |"),
        (f"| warm: wall time per measurement | {w['lmech_s_per_measurement']:.3f} s | "
         f"{w['pyhessian_s_per_measurement']:.3f} s | {w['time_ratio_pyhessian_over_lmech']:.1f}x |"),
        (f"| warm: max relative error at {len(w['checks'])} checkpoints | {w['lmech_max_rel_error_at_checks']:.1e} | "
         f"{w['pyhessian_max_rel_error_at_checks']:.1e} ({w['pyhessian_checks_beyond_accuracy']} beyond 1e-3) | |"),
        "",
        (f"Warm run: GD at lr {w['lr']} ({w['steps']} steps, 2/lr = {w['threshold_2_over_lr']:.2f}); S first within 5% of "
         f"2/lr at step {w['first_step_at_95pct_of_2_over_lr']}, {w['fraction_of_measurements_at_eos']:.0%} of measurements "
         f"there. lmech's previous scheme (last eigenvector only, residual rule): "
         f"{w['previous_scheme_hvps_per_measurement']:.2f} HVPs per measurement (max error "
         f"{w['previous_scheme_max_rel_error_at_checks']:.1e}). Tracker: {w['lmech_first_measurement_hvps']} HVPs for the "
         f"first (cold) call, {w['lmech_hvps_per_warm_measurement']:.2f} per warm call; largest estimated relative error "
         f"{w['lmech_max_estimated_rel_error']:.1e}."),
        "",
        (f"Targets: cold time ratio >= 2 -> {'met' if c['time_ratio'] >= 2 else 'NOT met'}; "
         f"warm HVPs per measurement <= 5 -> {'met' if w['lmech_hvps_per_measurement'] <= 5 else 'NOT met'}."),
    ]
    return "\n".join(lines)


def _plain(obj):
    """NumPy scalars and arrays as plain JSON numbers and lists."""
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500, help="GD steps of the warm-tracking run")
    parser.add_argument("--repeats", type=int, default=5, help="random starts per tolerance in the cold comparison")
    args = parser.parse_args()
    torch.set_num_threads(2)
    counter = _Counted()
    model, x, _ = problem()
    started = time.perf_counter()
    result = {
        "setup": {"data": "digits, 1000 training examples", "model": f"MLP 64-{WIDTH}-{WIDTH}-10 ReLU, init scale {INIT_SCALE}",
                  "parameters": sum(p.numel() for p in model.parameters()), "examples": len(x), "dtype": "float32",
                  "loss": "half_mse: 0.5 * sum over outputs, mean over examples", "accuracy_target": ACCURACY},
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "numpy": np.__version__, "scipy": scipy.__version__, "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    result["cold"] = cold(counter, args.repeats)
    result["warm"] = warm(counter, args.steps, result["cold"]["pyhessian"]["tol"])
    result["wall_s"] = time.perf_counter() - started
    text = table(result)
    print(text)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "sharpness.json").write_text(json.dumps(result, indent=1, default=_plain))
    (out / "sharpness.md").write_text(text + "\n")
    print(f"\nwrote {out / 'sharpness.json'} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

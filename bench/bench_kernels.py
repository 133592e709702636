"""Analytic NNGP/NTK benchmark: ``lmech.theory.kernels.nngp_ntk`` against neural-tangents' ``kernel_fn``, one run.

Setup: n = 5000 inputs in 64 dimensions (scikit-learn digits / 16, resampled with replacement to n rows plus
Gaussian noise of std 0.1, seed 0), float64 on both sides; the full n x n NNGP and NTK (25M entries each, x2=None)
of a depth-3 MLP (3 hidden layers) in NTK parameterization, for ReLU (W_std = sqrt 2) and erf (W_std = 1.5), both
with b_std = 0.1. neural-tangents 0.6.5 (``stax.serial(Dense(1, W_std, b_std), act, ..., Dense(1, W_std, b_std))``,
``jax_enable_x64``, ``jax.jit(kernel_fn, static_argnames="get")``) runs in its own venv (.venv-nt, see
bench/requirements-nt.txt) through bench/_nt_worker.py, fed the same float64 array via a temporary .npy file; lmech
runs in this process. Times: the first call apart (NT: compilation + one evaluation), then ``--repeats`` calls;
best and median reported. The two kernels are compared in the same run (max relative error: normwise, entrywise,
off the diagonal and on it); for ReLU both diagonals are also checked against the exact angle-0 values, since
arccos near 1 costs ~1e-8 there in float64 (NT's ReLU NTK diagonal is ~1e-8 off).

Writes bench/out/kernels.json and prints a markdown table.

    .venv/bin/python bench/bench_kernels.py [--n 5000] [--depth 3] [--activations relu,erf] [--repeats 7]
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
import torch

CASES = {  # activation -> (w_std, b_std)
    "relu": (math.sqrt(2.0), 0.1),
    "erf": (1.5, 0.1),
    "gelu": (1.0, 0.1),
}


def make_inputs(n: int, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    from sklearn.datasets import load_digits
    digits = load_digits().data / 16.0  # (1797, 64) in [0, 1]
    rng = np.random.default_rng(seed)
    x = digits[rng.integers(0, len(digits), size=n)] + noise * rng.standard_normal((n, digits.shape[1]))
    return np.ascontiguousarray(x, dtype=np.float64)


def relu_diagonal_exact(x: np.ndarray, depth: int, w_std: float, b_std: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact diagonals of the ReLU NNGP and NTK (angle 0: E[relu(z)^2] = q/2, E[relu'(z)^2] = 1/2).

    Off the diagonal both tools go through arccos(k / sqrt(q q')), whose slope is infinite at 1: in float64 the
    diagonal of the NTK comes out ~1e-8 off (relative) when computed that way, so it is checked apart."""
    q = w_std ** 2 * np.einsum("ij,ij->i", x, x) / x.shape[1] + b_std ** 2
    theta = q.copy()
    for _ in range(depth):
        q = w_std ** 2 * q / 2 + b_std ** 2
        theta = q + w_std ** 2 * theta / 2
    return q, theta


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    """``a`` against ``b`` (relative to ``b``): all entries, off-diagonal entries, diagonal."""
    out = bu.rel_errors(a, b)
    rel = np.abs(a - b) / np.abs(b)
    out["max_rel_diagonal"] = float(np.diag(rel).max())
    np.fill_diagonal(rel, 0.0)
    out["max_rel_offdiagonal"] = float(rel.max())
    return out


def diagonal_vs_exact(nngp: np.ndarray, ntk: np.ndarray, exact: tuple[np.ndarray, np.ndarray]) -> dict:
    return {k: float(np.max(np.abs(np.diag(m) - e) / np.abs(e))) for k, m, e in
            (("nngp", nngp, exact[0]), ("ntk", ntk, exact[1]))}


def lmech_kernels():
    try:
        from lmech.theory.kernels import nngp_ntk
    except ImportError as e:
        print(f"[bench] lmech.theory.kernels.nngp_ntk not available ({e}); NT side only", file=sys.stderr)
        return None
    return nngp_ntk


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--activations", default="relu,erf")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads on the lmech side")
    ap.add_argument("--skip-nt", action="store_true")
    ap.add_argument("--skip-lmech", action="store_true")
    ap.add_argument("--out", default=str(bu.OUT / "kernels.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    acts = [a for a in args.activations.split(",") if a]

    x = make_inputs(args.n)
    cases = [{"name": f"{a}_d{args.depth}", "activation": a, "depth": args.depth, "w_std": CASES[a][0],
              "b_std": CASES[a][1]} for a in acts]
    report = {"benchmark": "analytic nngp/ntk", "n": args.n, "dim": x.shape[1], "depth": args.depth,
              "inputs": "sklearn digits/16 resampled with replacement + N(0, 0.1^2) noise, seed 0, float64",
              "repeats": args.repeats, "facts": bu.machine_facts(), "cases": {}}
    for c in cases:
        report["cases"][c["name"]] = {k: c[k] for k in ("activation", "depth", "w_std", "b_std")}

    with tempfile.TemporaryDirectory(prefix="lmech-bench-kernels-") as tmp:
        tmp = Path(tmp)
        nt_res = None
        if not args.skip_nt:
            np.save(tmp / "x.npy", x)
            busy = bu.wait_quiet(label="neural-tangents kernel_fn")
            nt_res = bu.run_nt_worker({"mode": "analytic", "x": str(tmp / "x.npy"), "cases": cases,
                                       "repeats": args.repeats}, tmp)
            report["nt_facts"] = nt_res["facts"]
            report["nt_worker_wall_s"] = nt_res["worker_wall_s"]
            for c in cases:
                r = nt_res["cases"][c["name"]]
                entry = report["cases"][c["name"]]
                entry["nt"] = {k: v for k, v in r.items() if k not in ("paths", "name")}
                entry["nt"]["busy_cores_before"] = busy
                if c["activation"] == "relu":
                    exact = relu_diagonal_exact(x, c["depth"], c["w_std"], c["b_std"])
                    entry["nt"]["relu_diagonal_vs_exact"] = diagonal_vs_exact(
                        np.load(r["paths"]["nngp"], mmap_mode="r"), np.load(r["paths"]["ntk"], mmap_mode="r"), exact)

        nngp_ntk = None if args.skip_lmech else lmech_kernels()
        if nngp_ntk is not None:
            report["lmech_source"] = bu.source_fingerprint(sys.modules[nngp_ntk.__module__])
        for c in cases:
            entry = report["cases"][c["name"]]
            if nngp_ntk is None:
                continue
            busy = bu.wait_quiet(label=f"lmech nngp_ntk {c['name']}")
            try:
                (nngp, ntk), timing = bu.timed(
                    lambda c=c: nngp_ntk(x, None, depth=c["depth"], activation=c["activation"], w_std=c["w_std"],
                                     b_std=c["b_std"], parameterization="ntk"), args.repeats,
                    label=f"lmech {c['name']}")
            except Exception as e:  # noqa: BLE001  (e.g. an activation lmech does not support (yet))
                entry["lmech"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                print(f"[bench] lmech {c['name']}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
                continue
            entry["lmech"] = {**timing, "busy_cores_before": busy}
            print(f"[lmech] {c['name']}: first {timing['first_call_s']:.3f} s, best {timing['best_s']:.3f} s, "
                  f"median {timing['median_s']:.3f} s", file=sys.stderr, flush=True)
            nngp, ntk = np.asarray(nngp), np.asarray(ntk)
            entry["lmech"]["dtype"] = [str(nngp.dtype), str(ntk.dtype)]
            if c["activation"] == "relu":
                entry["lmech"]["relu_diagonal_vs_exact"] = diagonal_vs_exact(
                    nngp, ntk, relu_diagonal_exact(x, c["depth"], c["w_std"], c["b_std"]))
            if nt_res is not None:
                paths = nt_res["cases"][c["name"]]["paths"]
                entry["agreement_vs_nt"] = {
                    "nngp": agreement(nngp, np.load(paths["nngp"])),
                    "ntk": agreement(ntk, np.load(paths["ntk"])),
                }
                entry["nt_over_lmech_best"] = round(entry["nt"]["best_s"] / timing["best_s"], 3)
                entry["nt_over_lmech_median"] = round(entry["nt"]["median_s"] / timing["median_s"], 3)
            del nngp, ntk

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"\nwrote {out}")


def _fmt(d: dict | None, key: str = "best_s") -> str:
    if not d:
        return "n/a"
    if "error" in d:
        return "error"
    return f"{d[key]:.3f} s"


def print_table(report: dict) -> None:
    n = report["n"]
    print(f"\n| kernel (n={n}, d={report['dim']}, float64) | lmech best (median) | NT kernel_fn best (median) "
          f"| NT first call (compile) | NT / lmech | max rel err NNGP (off-diag / diag) "
          f"| max rel err NTK (off-diag / diag) | ReLU NTK diag vs exact: lmech / NT |")
    print("|---|---|---|---|---|---|---|---|")
    for e in report["cases"].values():
        lm, nt = e.get("lmech"), e.get("nt")
        lm_s = f"{_fmt(lm)} ({_fmt(lm, 'median_s')})" if lm else "to fill"
        nt_s = f"{_fmt(nt)} ({_fmt(nt, 'median_s')})" if nt else "n/a"
        nt_c = f"{nt['first_call_s']:.3f} s ({nt['compile_s_est']:.3f} s)" if nt else "n/a"
        ratio = f"{e['nt_over_lmech_best']:.2f}x" if "nt_over_lmech_best" in e else ""
        ag = e.get("agreement_vs_nt", {})
        errs = [f"{ag[k]['max_rel_offdiagonal']:.1e} / {ag[k]['max_rel_diagonal']:.1e}" if k in ag else ""
                for k in ("nngp", "ntk")]
        dex = [d.get("relu_diagonal_vs_exact", {}).get("ntk") if d and "error" not in d else None for d in (lm, nt)]
        dex_s = " / ".join("" if v is None else f"{v:.1e}" for v in dex) if e["activation"] == "relu" else ""
        print(f"| {e['activation']}, depth {e['depth']}, W_std={e['w_std']:.3g}, b_std={e['b_std']:g} "
              f"| {lm_s} | {nt_s} | {nt_c} | {ratio} | {errs[0]} | {errs[1]} | {dex_s} |")


if __name__ == "__main__":
    main()

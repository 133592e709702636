"""Empirical NTK benchmark: ``lmech.observables.ntk.empirical_ntk`` against a per-sample Jacobian loop in PyTorch
and neural-tangents' ``empirical_ntk_fn``, on the same network weights, in one run.

Setup: scikit-learn digits / 16, the first 500 examples (500 x 64), float32. A bias-free 3-hidden-layer ReLU MLP
of width 512 with a scalar output in NTK parameterization, lmech's ``MLPNet`` (``z = W h / sqrt(fan_in)``,
``W ~ N(0, 2)``, seed 0; 64-512-512-512-1, 557,568 parameters). Full 500 x 500 kernel ``J J^T`` (x2=None).

* lmech: ``empirical_ntk(model, x, method=m)`` for m in auto, jacobian, ntk-vp, structured.
* baseline: for each example, ``torch.autograd.grad`` of its output with respect to all parameters, flattened
  into row i of J (500 x P, preallocated), then ``J @ J.T``.
* neural-tangents 0.6.5 in its own venv (.venv-nt, bench/requirements-nt.txt) through bench/_nt_worker.py: the same
  weights (exported as .npz) in ``stax.serial(Dense(512, W_std=1, b_std=None), Relu(), ..., Dense(1, ...))`` with
  params ``W.T`` (NT's NTK parameterization computes ``W_std / sqrt(fan_in) x W``: the same function and the same
  parameters), ``jax.jit(nt.empirical_ntk_fn(apply_fn, trace_axes=(-1,), vmap_axes=0, implementation=impl))`` for
  JACOBIAN_CONTRACTION (NT's default), NTK_VECTOR_PRODUCTS, STRUCTURED_DERIVATIVES and AUTO (which NT documents as
  unreliable off TPU; its agreement is checked like the others).

Times: the first call apart (NT: JIT compilation + one evaluation; lmech: warm-up), then ``--repeats`` calls, best
and median. Both sides get the same 2 cores (``torch.set_num_threads(2)``; XLA's CPU client uses all cores of the
process' affinity mask by default). Every kernel is compared with a float64 reference (the same loop in float64).

Writes bench/out/entk.json and prints a markdown table.

    .venv/bin/python bench/bench_entk.py [--n 500] [--width 512] [--depth 3] [--repeats 5]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import tempfile
from pathlib import Path

import _benchutil as bu
import numpy as np
import torch

LMECH_METHODS = ("auto", "jacobian", "ntk-vp", "structured")
NT_IMPLS = ("JACOBIAN_CONTRACTION", "NTK_VECTOR_PRODUCTS", "STRUCTURED_DERIVATIVES", "AUTO")


def make_model(dim: int, width: int, depth: int, seed: int = 0) -> torch.nn.Module:
    """lmech's MLPNet, bias-free, multipliers 1/sqrt(fan_in), raw weights N(0, 2) (the same function as ``build_model``'s
    NTK parameterization, which puts the relu gain sqrt(2) in the multiplier instead)."""
    from lmech.systems.networks import MLPNet
    dims = [dim] + [width] * depth + [1]
    model = MLPNet(dims, "relu", bias=False, alpha=1.0, ntk=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen, dtype=torch.float64) * math.sqrt(2.0))
    return model.float()


def loop_ntk(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Per-sample Jacobian loop: row i of J is d f(x_i) / d theta (autograd.grad), then J J^T."""
    params = [p for p in model.parameters() if p.requires_grad]
    n_params = sum(p.numel() for p in params)
    jac = torch.empty(x.shape[0], n_params, dtype=x.dtype)
    for i in range(x.shape[0]):
        out = model(x[i:i + 1]).sum()
        grads = torch.autograd.grad(out, params)
        torch.cat([g.reshape(-1) for g in grads], out=jac[i])
    return jac @ jac.T


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--loop-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--nt-impls", default=",".join(NT_IMPLS))
    ap.add_argument("--lmech-methods", default=",".join(LMECH_METHODS))
    ap.add_argument("--skip-nt", action="store_true")
    ap.add_argument("--skip-lmech", action="store_true")
    ap.add_argument("--out", default=str(bu.OUT / "entk.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sklearn.datasets import load_digits
    x_np = np.ascontiguousarray(load_digits().data[:args.n] / 16.0, dtype=np.float32)
    x = torch.from_numpy(x_np)
    model = make_model(x.shape[1], args.width, args.depth)
    n_params = sum(p.numel() for p in model.parameters())
    report = {"benchmark": "empirical ntk", "n": args.n, "dim": x.shape[1], "width": args.width,
              "depth": args.depth, "n_params": n_params, "dtype": "float32", "repeats": args.repeats,
              "loop_repeats": args.loop_repeats, "facts": bu.machine_facts(), "results": {}}
    print(f"[bench] MLP {[x.shape[1]] + [args.width] * args.depth + [1]}, {n_params} parameters, n={args.n}",
          file=sys.stderr)

    # float64 reference: the same loop on a float64 copy of the weights
    ref = loop_ntk(copy.deepcopy(model).double(), x.double()).numpy()
    report["reference"] = "per-sample autograd loop in float64 on the same weights"
    kernels: dict[str, np.ndarray] = {}

    with tempfile.TemporaryDirectory(prefix="lmech-bench-entk-") as tmp:
        tmp = Path(tmp)
        if not args.skip_nt:
            np.save(tmp / "x.npy", x_np)
            np.savez(tmp / "w.npz", **{f"w{i}": layer.weight.detach().numpy() for i, layer in enumerate(model.layers)})
            busy = bu.wait_quiet(label="neural-tangents empirical_ntk_fn")
            nt_res = bu.run_nt_worker({"mode": "entk", "x": str(tmp / "x.npy"), "weights": str(tmp / "w.npz"),
                                       "impls": [s for s in args.nt_impls.split(",") if s],
                                       "repeats": args.repeats}, tmp)
            report["nt_facts"] = nt_res["facts"]
            report["nt_worker_wall_s"] = nt_res["worker_wall_s"]
            assert nt_res["n_params"] == n_params
            f_nt = np.load(tmp / "f.npy").reshape(-1)
            with torch.no_grad():
                f_torch = model(x).reshape(-1).numpy()
            report["forward_max_abs_diff_nt_vs_torch"] = float(np.abs(f_nt - f_torch).max())
            for name, r in nt_res["impls"].items():
                entry = {k: v for k, v in r.items() if k != "path"}
                entry["busy_cores_before"] = busy
                if "path" in r:
                    kernels[f"nt:{name}"] = np.load(r["path"])
                report["results"][f"nt:{name}"] = entry

    busy = bu.wait_quiet(label="torch per-sample loop")
    k, timing = bu.timed(lambda: loop_ntk(model, x), args.loop_repeats, label="torch loop")
    kernels["torch:loop"] = k.numpy()
    report["results"]["torch:loop"] = {**timing, "busy_cores_before": busy}
    print(f"[torch] loop: first {timing['first_call_s']:.3f} s, best {timing['best_s']:.3f} s", file=sys.stderr)

    if not args.skip_lmech:
        try:
            from lmech.observables.ntk import empirical_ntk
        except ImportError as e:
            empirical_ntk = None
            print(f"[bench] lmech.observables.ntk.empirical_ntk not available ({e})", file=sys.stderr)
        else:
            report["lmech_source"] = bu.source_fingerprint(sys.modules[empirical_ntk.__module__])
        for m in [s for s in args.lmech_methods.split(",") if s] if empirical_ntk else []:
            busy = bu.wait_quiet(label=f"lmech empirical_ntk {m}")
            try:
                k, timing = bu.timed(lambda m=m: empirical_ntk(model, x, method=m), args.repeats, label=f"lmech {m}")
            except Exception as e:  # noqa: BLE001  (a method that fails is recorded; the others still run)
                report["results"][f"lmech:{m}"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
                print(f"[bench] lmech {m}: FAILED {type(e).__name__}: {e}", file=sys.stderr)
                continue
            if m == "auto":
                try:
                    from lmech.observables.ntk import _choose, _costs, _problem
                    p = _problem(model, x, None, False)
                    timing["auto_chose"] = _choose(_costs(p), p.n1 * p.n2 * p.k ** 2)
                except Exception as e:  # noqa: BLE001  (private helpers; the choice is informational only)
                    timing["auto_chose"] = f"unknown ({type(e).__name__})"
            kernels[f"lmech:{m}"] = k.detach().numpy()
            report["results"][f"lmech:{m}"] = {**timing, "busy_cores_before": busy}
            print(f"[lmech] {m}: first {timing['first_call_s']:.3f} s, best {timing['best_s']:.3f} s",
                  file=sys.stderr)

    for name, k in kernels.items():
        report["results"][name]["vs_float64_reference"] = bu.rel_errors(k, ref)
    if "nt:JACOBIAN_CONTRACTION" in kernels:
        for name, k in kernels.items():
            report["results"][name]["vs_nt_default"] = bu.rel_errors(k, kernels["nt:JACOBIAN_CONTRACTION"])
    loop_best = report["results"]["torch:loop"]["best_s"]
    for name, r in report["results"].items():
        if "best_s" in r:
            r["loop_over_this"] = round(loop_best / r["best_s"], 3)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print_table(report)
    print(f"\nwrote {out}")


def print_table(report: dict) -> None:
    res = report["results"]
    lm_best = [r["best_s"] for k, r in res.items() if k.startswith("lmech:") and "best_s" in r]
    lm_ref = res.get("lmech:auto", {}).get("best_s") or (min(lm_best) if lm_best else None)
    print(f"\n| eNTK (n={report['n']}, {report['n_params']} params, float32) | best (median) | clean calls, spread "
          f"| first call | loop / this | this / lmech auto | max rel err vs float64 (normwise / entrywise) |")
    print("|---|---|---|---|---|---|---|")
    for name, r in res.items():
        if "error" in r:
            print(f"| {name} | error: {r['error'][:80]} | | | | | |")
            continue
        ratio = f"{r['best_s'] / lm_ref:.2f}x" if lm_ref else ""
        e = r.get("vs_float64_reference", {})
        err = f"{e['max_rel_normwise']:.1e} / {e['max_rel_entrywise']:.1e}" if e else ""
        print(f"| {name} | {r['best_s']:.4g} s ({r['median_s']:.4g} s) | {r['n_clean']}/{len(r['times_s'])}, "
              f"{100 * r['spread']:.0f}% | {r['first_call_s']:.4g} s "
              f"| {r['loop_over_this']:.2f}x | {ratio} | {err} |")


if __name__ == "__main__":
    main()

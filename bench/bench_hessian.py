"""Hessian trace and spectral density benchmark: lmech against curvlinops and PyHessian 0.1, in one run.

Setup (as bench/bench_sharpness.py): scikit-learn digits (1000 training examples), MLP 64-256-256-10 with ReLU
(85,002 parameters, lmech's default init at scale 0.5) after 200 full-batch GD steps at lr 0.05, half-MSE on
one-hot targets (``0.5 * sum over outputs, mean over examples``), float32, ``torch.set_num_threads(--threads)``.

References (float64 copy of the model, lmech's ``HessianOperator``): ``tr(H)`` from one large Hutch++ run
(``--ref-matvecs`` products; its standard error is reported and is far below the 1% target), the top eigenvalue
from scipy's ``eigsh`` (ARPACK).

(a) TRACE at equal accuracy: for each estimator the number of products ``m`` is raised along a ladder (12, 24, 48,
    96, 192) until the root-mean-square relative error over ``--repeats`` seeds is at most 1%; past 192 the ``m``
    for 1% is extrapolated by the 1/sqrt(m) law of Hutchinson errors: those tools all run Rademacher Hutchinson,
    so ``m rms^2`` is pooled over all their rungs (:func:`pool_extrapolations`) into one ``m`` for 1%.
    Time: one call from model to number (operator set-up included) at the last rung, median process CPU time of
    ``--timing-repeats`` calls after a warm-up (:func:`measure`), scaled by products when extrapolated.
    PyHessian's ``trace(maxIter=m, tol=0.0)`` runs exactly ``m`` Hutchinson products (its own stopping rule,
    relative change of the running mean below ``tol``, is not an error control and is not used).
(b) DENSITY at equal work: ``--probes`` SLQ probes of ``--steps`` Lanczos steps each in all three tools; wall time
    as in (a), and over ``--density-repeats`` seeds the accuracy of what the quadrature rules give:
    ``dim * moment(1)`` against ``tr(H)``, the top node against ``lambda_max``, and the number of nodes per probe
    within 1e-3 of ``lambda_max`` (more than one is a "ghost" copy: Lanczos without reorthogonalization losing
    orthogonality). lmech's and PyHessian's probes coincide for equal seeds (both draw Rademacher signs from
    torch's default Mersenne twister in parameter order), so their accuracies are paired.

Tool notes. curvlinops: ``HessianLinearOperator(..., check_deterministic=False)`` (its determinism check costs
extra products), ``hutchinson_trace`` / ``hutchpp_trace``, and ``LanczosApproximateSpectrumCached`` given the
spectral boundaries (so that it spends no products on ``eigsh``; this favours curvlinops); its Lanczos has no
reorthogonalization; the quadrature rules are read from its cache ``_lanczos_iters``. PyHessian 0.1's
``density()`` calls ``torch.eig``, removed from torch 2.x: a shim returning ``torch.linalg.eigh``'s result in
``torch.eig``'s format is installed for it (T is symmetric, so this is the same decomposition).

Writes bench/out/hessian.json and prints a markdown table.

    python bench/bench_hessian.py [--repeats 10] [--density-repeats 3] [--timing-repeats 3] [--probes 5] [--steps 80] [--ref-matvecs 600]
"""
from __future__ import annotations

import argparse
import copy
import importlib.metadata
import json
import sys
import time
import warnings

import numpy as np
import torch

from _benchutil import OUT, _busy_seconds, machine_facts, source_fingerprint
from bench_sharpness import gd_step, problem, reference
from lmech.observables import HessianOperator, hessian_trace, trace_estimate
from lmech.observables import density as density_module
from lmech.observables.density import hessian_density
from lmech.systems.task import half_mse

TARGET = 0.01  # relative accuracy of tr(H)
LADDER = (12, 24, 48, 96, 192)  # products (divisible by 3 for curvlinops' Hutch++)

warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")


class HalfMSE(torch.nn.Module):
    """lmech's half_mse as a loss module with the ``reduction`` attribute curvlinops reads (one batch: factor 1)."""

    reduction = "mean"

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return half_mse(pred, target)


# ------------------------------------------------------------------------------------------ the tools
def _curvlinops_op(model, x, y):
    from curvlinops import HessianLinearOperator

    params = [p for p in model.parameters() if p.requires_grad]
    return HessianLinearOperator(model, HalfMSE(), params, [(x, y)], check_deterministic=False, num_data=len(x))


def _pyhessian(model, x, y):
    from pyhessian import hessian

    return hessian(model, half_mse, data=(x, y), cuda=False)


def _pyhessian_done(model) -> None:
    model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients in .grad
    model.train()


def _eig_shim(a: torch.Tensor, eigenvectors: bool = False):
    """``torch.eig`` (removed in torch 2.x) for the symmetric T of PyHessian's density: (values as (n, 2), vectors)."""
    vals, vecs = torch.linalg.eigh(a)
    return torch.stack([vals, torch.zeros_like(vals)], 1), vecs


def trace_tools(model, x, y) -> dict:
    """name -> (products, seed) -> (value, products)."""
    from curvlinops import hutchinson_trace, hutchpp_trace

    def lm(method):
        return lambda m, s: (lambda r: (r.value, r.matvecs))(hessian_trace(model, half_mse, x, y, matvecs=m,
                                                                            method=method, seed=s))

    def cl(fn):
        def run(m, s):
            torch.manual_seed(s)
            return float(fn(_curvlinops_op(model, x, y), m)), m
        return run

    def ph(m, s):
        torch.manual_seed(s)
        samples = _pyhessian(model, x, y).trace(maxIter=m, tol=0.0)  # tol=0: exactly m products (no early stop)
        _pyhessian_done(model)
        return float(np.mean(samples)), len(samples)

    return {"lmech hutch++": lm("hutch++"), "lmech hutchinson": lm("hutchinson"),
            "curvlinops hutchpp_trace": cl(hutchpp_trace), "curvlinops hutchinson_trace": cl(hutchinson_trace),
            "pyhessian trace": ph}


def density_tools(model, x, y, probes: int, steps: int, bounds: tuple[float, float]) -> dict:
    """name -> seed -> list of (nodes, weights) quadrature rules, one per probe."""
    from curvlinops import LanczosApproximateSpectrumCached

    def lm(s):
        d = hessian_density(model, half_mse, x, y, probes=probes, steps=steps, seed=s)
        return list(zip(d.nodes, d.weights))

    def cl(s):
        torch.manual_seed(s)
        spec = LanczosApproximateSpectrumCached(_curvlinops_op(model, x, y), ncv=steps, boundaries=bounds)
        spec.approximate_spectrum(num_repeats=probes)
        return [(e.double().numpy(), v[0].double().numpy() ** 2) for e, v in spec._lanczos_iters]

    def ph(s):
        torch.manual_seed(s)
        torch.eig = _eig_shim
        nodes, weights = _pyhessian(model, x, y).density(iter=steps, n_v=probes)
        _pyhessian_done(model)
        return [(np.sort(np.array(n)), np.array(w)[np.argsort(n)]) for n, w in zip(nodes, weights)]

    return {"lmech hessian_density": lm, "curvlinops LanczosApproximateSpectrumCached": cl, "pyhessian density": ph}


# ------------------------------------------------------------------------------------------ the parts
def measure(fn, repeats: int) -> dict:
    """Wall and process CPU seconds of ``repeats`` calls after one warm-up call, with the cores other processes kept
    busy during each (this machine is shared). With one torch thread the CPU time is the single-core compute time,
    robust to that load; ``median_s`` is the median CPU time."""
    fn()
    wall, cpu, others = [], [], []
    for _ in range(repeats):
        b0, c0, t0 = _busy_seconds(), time.process_time(), time.perf_counter()
        fn()
        w, c = time.perf_counter() - t0, time.process_time() - c0
        wall.append(round(w, 4))
        cpu.append(round(c, 4))
        others.append(round(max(_busy_seconds() - b0 - c, 0.0) / w, 3))
    return {"median_s": float(np.median(cpu)), "cpu_s": cpu, "wall_s": wall, "others_cores": others}



def references(model, x, y, ref_matvecs: int) -> dict:
    model64 = copy.deepcopy(model).double()
    op = HessianOperator(model64, half_mse, x.double(), y.double())
    start = time.perf_counter()
    est = trace_estimate(op.matvec, op.dim, op.flat.vector, matvecs=ref_matvecs, method="hutch++", seed=12345)
    top = reference(model, x, y, k=1)
    return {"trace": est.value, "trace_stderr": est.stderr, "trace_matvecs": est.matvecs,
            "trace_rel_stderr": est.stderr / abs(est.value), "lambda_max": float(top[0]),
            "seconds": time.perf_counter() - start}


def scan_trace(run, truth: float, repeats: int, timing_repeats: int, label: str) -> dict:
    """Raise the products along LADDER until the RMS relative error over ``repeats`` seeds is at most TARGET, then
    time one seed there with :func:`measure`; past the ladder's end see :func:`pool_extrapolations`."""
    rows = []
    for m in LADDER:
        trials = [run(m, seed) for seed in range(repeats)]
        errors = np.array([(v - truth) / truth for v, _ in trials])
        row = {"products": m, "rms_rel_error": float(np.sqrt(np.mean(errors ** 2))),
               "max_rel_error": float(np.abs(errors).max()), "products_returned": [n for _, n in trials]}
        rows.append(row)
        print(f"[trace] {label} {m}: rms {row['rms_rel_error']:.4f}", file=sys.stderr, flush=True)
        if row["rms_rel_error"] <= TARGET:
            break
    last = rows[-1]
    timing = measure(lambda: run(last["products"], 0), timing_repeats)
    reached = last["rms_rel_error"] <= TARGET
    return {"products_for_target": last["products"] if reached else None, "extrapolated": not reached,
            "timed_products": last["products"], "timed_median_s": timing["median_s"],
            "seconds_for_target": timing["median_s"] if reached else None,
            "rms_rel_error_at_timed": last["rms_rel_error"], "timing": timing, "scan": rows}


def pool_extrapolations(trace: dict) -> dict:
    """The tools that did not reach TARGET on the ladder all run Rademacher Hutchinson, whose squared relative error
    is ``sigma^2 / m``: ``m rms^2`` estimates ``sigma^2`` at every rung of every such tool, and their mean (pooled,
    much steadier than one rung of a few seeds) gives the common ``m = sigma^2 / TARGET^2``, each tool's time
    scaled from its timed call by products."""
    rows = [r for t in trace.values() if t["extrapolated"] for r in t["scan"]]
    if not rows:
        return {}
    estimates = [r["products"] * r["rms_rel_error"] ** 2 for r in rows]
    needed = float(np.mean(estimates)) / TARGET ** 2
    for t in trace.values():
        if t["extrapolated"]:
            t["products_for_target"] = round(needed)
            t["seconds_for_target"] = t["timed_median_s"] * needed / t["timed_products"]
    return {"sigma2_rel_per_product": float(np.mean(estimates)), "rungs": len(estimates),
            "sigma2_stderr": float(np.std(estimates, ddof=1) / np.sqrt(len(estimates))), "products_for_target": needed}


def rule_accuracy(rules: list, dim: int, ref: dict) -> dict:
    m1 = [float(np.sum(w * n)) for n, w in rules]
    lam = ref["lambda_max"]
    return {"trace": dim * float(np.mean(m1)), "trace_rel_error": abs(dim * np.mean(m1) - ref["trace"]) / ref["trace"],
            "moment2": float(np.mean([np.sum(w * n ** 2) for n, w in rules])),
            "weights_sum_max_dev": float(max(abs(np.sum(w) - 1) for _, w in rules)),
            "top_node_rel_error": abs(max(float(n.max()) for n, _ in rules) - lam) / lam,
            "max_nodes_near_top": int(max(np.sum(np.abs(n - lam) <= 1e-3 * lam) for n, _ in rules))}


def run_density(tools: dict, dim: int, ref: dict, repeats: int, timing_repeats: int) -> dict:
    """Accuracy of each tool's rules over ``repeats`` seeds; time of seed 0 with :func:`measure`."""
    out = {}
    for name, run in tools.items():
        accs = [rule_accuracy(run(seed), dim, ref) for seed in range(repeats)]
        timing = measure(lambda: run(0), timing_repeats)
        out[name] = {"median_s": timing["median_s"], "timing": timing, "per_seed": accs,
                     "rms_trace_rel_error": float(np.sqrt(np.mean([a["trace_rel_error"] ** 2 for a in accs]))),
                     "max_top_node_rel_error": max(a["top_node_rel_error"] for a in accs),
                     "max_nodes_near_top": max(a["max_nodes_near_top"] for a in accs)}
        print(f"[density] {name}: {out[name]['median_s']:.3f} s", file=sys.stderr, flush=True)
    return out


# ------------------------------------------------------------------------------------------ report
def table(result: dict) -> str:
    tr, de = result["trace"], result["density"]
    best_lm = min(v["seconds_for_target"] for k, v in tr.items() if k.startswith("lmech"))
    lines = [f"## Hessian trace to {TARGET:.0%} (RMS over {result['args']['repeats']} seeds); reference tr(H) = "
             f"{result['reference']['trace']:.4f} +- {result['reference']['trace_stderr']:.4f}",
             "", "| tool | products for 1% | CPU time for 1% | time / best lmech | timed: products, median CPU s, RMS error |",
             "|---|---|---|---|---|"]
    for name, r in tr.items():
        star = " (extrapolated)" if r["extrapolated"] else ""
        lines.append(f"| {name} | {r['products_for_target']}{star} | {r['seconds_for_target']:.3f} s | "
                     f"{r['seconds_for_target'] / best_lm:.2f}x | {r['timed_products']}, {r['timed_median_s']:.3f} s, "
                     f"{r['rms_rel_error_at_timed']:.4f} |")
    a = result["args"]
    lm = de["lmech hessian_density"]
    lines += ["", f"## SLQ density, {a['probes']} probes x {a['steps']} steps (CPU time: median of {a['timing_repeats']} "
              f"calls; accuracy over {a['density_repeats']} seeds); lambda_max = {result['reference']['lambda_max']:.5f}", "",
              "| tool | median CPU time | time / lmech | RMS trace rel. error | max top-node rel. error | max nodes near top |",
              "|---|---|---|---|---|---|"]
    for name, r in de.items():
        lines.append(f"| {name} | {r['median_s']:.3f} s | {r['median_s'] / lm['median_s']:.2f}x | "
                     f"{r['rms_trace_rel_error']:.4f} | {r['max_top_node_rel_error']:.1e} | {r['max_nodes_near_top']} |")
    return "\n".join(lines)


def _plain(obj):
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="seeds per trace setting")
    parser.add_argument("--density-repeats", type=int, default=3, help="seeds per density tool")
    parser.add_argument("--timing-repeats", type=int, default=3, help="timed calls per measurement")
    parser.add_argument("--probes", type=int, default=5, help="SLQ probes in the density comparison")
    parser.add_argument("--steps", type=int, default=80, help="Lanczos steps per probe in the density comparison")
    parser.add_argument("--ref-matvecs", type=int, default=600, help="products of the float64 Hutch++ reference")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (1 on a loaded machine)")
    parser.add_argument("--only", choices=("trace", "density"), default=None, help="run one part")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, x, y = problem()
    for _ in range(200):
        gd_step(model, x, y, 0.05)
    dim = sum(p.numel() for p in model.parameters())
    started = time.perf_counter()
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("curvlinops-for-pytorch", "pyhessian")}
    result = {"setup": {"model": "MLP 64-256-256-10 ReLU, init scale 0.5, after 200 GD steps at lr 0.05",
                        "data": "digits, 1000 training examples", "parameters": dim, "dtype": "float32",
                        "loss": "half_mse"},
              "args": vars(args), "machine": machine_facts(), "versions": versions,
              "lmech_source": [source_fingerprint(m) for m in (density_module, sys.modules["lmech.observables.trace"])]}
    result["reference"] = ref = references(model, x, y, args.ref_matvecs)
    print(f"[ref] {ref}", file=sys.stderr, flush=True)
    result["trace"] = {} if args.only == "density" else {
        name: scan_trace(run, ref["trace"], args.repeats, args.timing_repeats, name)
        for name, run in trace_tools(model, x, y).items()}
    result["hutchinson_pooled"] = pool_extrapolations(result["trace"])
    bounds = (-1.0, 1.05 * ref["lambda_max"])  # only sets curvlinops' grid; its rules do not depend on it
    result["density"] = {} if args.only == "trace" else run_density(
        density_tools(model, x, y, args.probes, args.steps, bounds), dim, ref, args.density_repeats, args.timing_repeats)
    result["wall_s"] = time.perf_counter() - started
    text = table(result) if args.only is None else json.dumps(result[args.only], indent=1, default=_plain)
    print(text)
    OUT.mkdir(parents=True, exist_ok=True)
    name = "hessian" if args.only is None else f"hessian_{args.only}"
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=1, default=_plain))
    (OUT / f"{name}.md").write_text(text + "\n")
    print(f"\nwrote {OUT / f'{name}.json'} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

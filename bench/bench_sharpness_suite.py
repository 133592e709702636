"""Cold sharpness at equal accuracy on 8 networks x 2 states: lmech against PyHessian 0.1 and curvlinops' eigsh.

For every network of bench/_sharpness_networks.py, at initialization and after training, and for every tool:
5 random starts at each tolerance, scanned from loose to tight, and the loosest tolerance at which all 5 starts
land within 1e-3 (relative) of a float64 reference is the one reported (lmech runs at ``tol=1e-3``, its default,
and is reported there whatever its error, so a miss shows). Times are medians over the 5 starts of one call each
(one untimed warm-up call per tool and network first) and include building the gradient graph; products are
counted for each tool (PyHessian's ``hessian_vector_product`` wrapped; curvlinops' scipy operator's ``matvec``).

* lmech: ``lmech.sharpness(model, loss, x, y, k=1, tol, seed)``.
* PyHessian 0.1: ``hessian(model, loss, data=(x, y)).eigenvalues(maxIter=10000, tol, top_n=1)`` (power iteration).
* curvlinops 3.0.1: ``scipy.sparse.linalg.eigsh(HessianLinearOperator(...).to_scipy(), k=1, which="LA", tol, v0)``
  (ARPACK's implicitly restarted Lanczos, ``ncv`` = 20), ``check_deterministic=False``.
* Reference: ARPACK at tol 1e-10 on lmech's float64 Hessian operator of a float64 copy of the network.

The transformers' attention runs on PyTorch's math kernel for PyHessian and curvlinops (the fused kernel has no
second derivative; lmech switches to the math kernel itself). Usage: ``python bench/bench_sharpness_suite.py``
(about 10 minutes; writes bench/out/sharpness_suite.json and .md).
"""
from __future__ import annotations

import argparse
import copy
import json
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
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import OUT, wait_quiet  # noqa: E402
from _sharpness_networks import NETWORKS, State, states  # noqa: E402

from lmech.observables.hessian import HessianOperator  # noqa: E402
from lmech.observables.sharpness import sharpness  # noqa: E402

ACCURACY = 1e-3
STARTS = 5
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph=True")


def reference(st: State) -> np.ndarray:
    model = copy.deepcopy(st.model).double()
    op = HessianOperator(model, st.loss, st.x.double(), st.y)
    lin = sla.LinearOperator((op.dim, op.dim), dtype=np.float64,
                             matvec=lambda v: op.matvec(torch.from_numpy(np.ravel(v))).numpy())
    v0 = np.random.default_rng(0).standard_normal(op.dim)
    return np.sort(sla.eigsh(lin, k=2, which="LA", tol=1e-10, v0=v0, return_eigenvectors=False))[::-1]


def run_lmech(st: State, tol: float, seed: int) -> tuple[float, int, float]:
    start = time.perf_counter()
    res = sharpness(st.model, st.loss, st.x, st.y, k=1, tol=tol, seed=seed)
    return float(res.values[0]), res.matvecs, time.perf_counter() - start


class PyHessian:
    def __init__(self) -> None:
        import pyhessian  # noqa: F401  (pyhessian==0.1, from .[bench])

        self.module = sys.modules["pyhessian.hessian"]
        inner = self.module.hessian_vector_product
        self.count = 0

        def counted(*args, **kwargs):
            self.count += 1
            return inner(*args, **kwargs)

        self.module.hessian_vector_product = counted

    def __call__(self, st: State, tol: float, seed: int) -> tuple[float, int, float]:
        torch.manual_seed(seed)
        self.count = 0
        start = time.perf_counter()
        with sdpa_kernel(SDPBackend.MATH):
            h = self.module.hessian(st.model, st.loss, data=(st.x, st.y), cuda=False)
            values, _ = h.eigenvalues(maxIter=10_000, tol=tol, top_n=1)
        seconds = time.perf_counter() - start
        st.model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients in .grad
        st.model.train()  # and puts the model in eval mode
        return float(values[0]), self.count, seconds


class _LossModule(torch.nn.Module):
    """The suite's loss as the ``nn.Module`` with ``reduction="mean"`` that curvlinops reads."""

    reduction = "mean"

    def __init__(self, loss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(out, y)


def run_curvlinops(st: State, tol: float, seed: int) -> tuple[float, int, float]:
    from curvlinops import HessianLinearOperator

    start = time.perf_counter()
    params = [p for p in st.model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        op = HessianLinearOperator(st.model, _LossModule(st.loss), params, [(st.x, st.y)], check_deterministic=False,
                                   num_data=len(st.x)).to_scipy()
        count = [0]

        def matvec(v):
            count[0] += 1
            return op.matvec(v)

        lin = sla.LinearOperator(op.shape, matvec=matvec, dtype=op.dtype)
        v0 = np.random.default_rng(seed).standard_normal(op.shape[0]).astype(op.dtype)
        value = sla.eigsh(lin, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0]
    return float(value), count[0], time.perf_counter() - start


def scan(run, st: State, s_ref: float, tols) -> dict:
    """The loosest tolerance of ``tols`` at which every start lands within ACCURACY; medians there."""
    run(st, tols[0], 10_000)  # warm-up, untimed
    rows = []
    for tol in tols:
        trials = [run(st, tol, seed) for seed in range(STARTS)]
        errors = [abs(v - s_ref) / abs(s_ref) for v, _, _ in trials]
        rows.append({"tol": tol, "hvps": [n for _, n, _ in trials], "seconds": [round(t, 4) for _, _, t in trials],
                     "rel_errors": [float(f"{e:.3g}") for e in errors], "max_rel_error": max(errors),
                     "median_hvps": statistics.median(n for _, n, _ in trials),
                     "median_seconds": statistics.median(t for _, _, t in trials)})
        if max(errors) <= ACCURACY:
            break
    return {**rows[-1], "scan": rows}


def table(rows: list[dict]) -> str:
    head = ("| network | P | lambda_1 (gap to lambda_2) | lmech s (HVPs) | max error | PyHessian tol: s (HVPs) | "
            "curvlinops eigsh tol: s (HVPs) | PyHessian / lmech | curvlinops / lmech |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lm, ph, cl = r["lmech"], r["pyhessian"], r["curvlinops"]
        lines.append(f"| {r['label']} | {r['parameters']} | {r['reference'][0]:.4g} ({r['gap']:.1%}) | "
                     f"{lm['median_seconds']:.3f} ({lm['median_hvps']:g}) | {lm['max_rel_error']:.1e} | "
                     f"{ph['tol']:g}: {ph['median_seconds']:.3f} ({ph['median_hvps']:g}) | "
                     f"{cl['tol']:g}: {cl['median_seconds']:.3f} ({cl['median_hvps']:g}) | "
                     f"{r['ratio_pyhessian']:.1f}x | {r['ratio_curvlinops']:.1f}x |")
    ph = [r["ratio_pyhessian"] for r in rows]
    cl = [r["ratio_curvlinops"] for r in rows]
    lines.append(f"\nPyHessian / lmech: median {statistics.median(ph):.2f}x, min {min(ph):.2f}x; curvlinops / lmech: "
                 f"median {statistics.median(cl):.2f}x, min {min(cl):.2f}x; lmech's largest error "
                 f"{max(r['lmech']['max_rel_error'] for r in rows):.1e}; lmech's median HVPs "
                 f"{statistics.median(r['lmech']['median_hvps'] for r in rows):g}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", nargs="*", choices=list(NETWORKS), help="a subset (default: all 8)")
    parser.add_argument("--out", default=str(OUT / "sharpness_suite"), help="output path without extension")
    args = parser.parse_args()
    torch.set_num_threads(2)
    pyhessian = PyHessian()
    started = time.perf_counter()
    rows = []
    for st in states(args.networks):
        ref = reference(st)
        busy = wait_quiet(label=st.label)
        row = {"label": st.label, "parameters": sum(p.numel() for p in st.model.parameters()),
               "reference": ref.tolist(), "gap": float((ref[0] - ref[1]) / abs(ref[0])), "others_busy": busy,
               "lmech": scan(run_lmech, st, ref[0], (ACCURACY,)),
               "pyhessian": scan(pyhessian, st, ref[0], TOLS),
               "curvlinops": scan(run_curvlinops, st, ref[0], TOLS)}
        for tool in ("pyhessian", "curvlinops"):
            row[f"ratio_{tool}"] = row[tool]["median_seconds"] / row["lmech"]["median_seconds"]
        rows.append(row)
        print(table([row]).splitlines()[2], flush=True)
    text = table(rows)
    print(text)
    result = {"rows": rows, "wall_s": time.perf_counter() - started, "accuracy": ACCURACY, "starts": STARTS,
              "machine": {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                          "python": platform.python_version(), "threads": torch.get_num_threads()}}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    out.with_suffix(".md").write_text(text + "\n")
    print(f"wrote {out}.json ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

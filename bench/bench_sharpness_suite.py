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
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy
import scipy.sparse.linalg as sla
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _benchutil import OUT, wait_quiet  # noqa: E402
from _sharpness_networks import NETWORKS, State, states  # noqa: E402
from bench_sharpness import ACCURACY, _Counted, reference, run_lmech, run_pyhessian, scan  # noqa: E402

STARTS = 5
TOLS = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)


class _LossModule(torch.nn.Module):
    """The suite's loss as the ``nn.Module`` with ``reduction="mean"`` that curvlinops reads."""

    reduction = "mean"

    def __init__(self, loss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(out, y)


def run_curvlinops(model, x, y, tol: float, seed: int, loss) -> tuple[float, int, float]:
    from curvlinops import HessianLinearOperator

    start = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        op = HessianLinearOperator(model, _LossModule(loss), params, [(x, y)], check_deterministic=False,
                                   num_data=len(x)).to_scipy()
        count = [0]

        def matvec(v):
            count[0] += 1
            return op.matvec(v)

        lin = sla.LinearOperator(op.shape, matvec=matvec, dtype=op.dtype)
        v0 = np.random.default_rng(seed).standard_normal(op.shape[0]).astype(op.dtype)
        value = sla.eigsh(lin, k=1, which="LA", tol=tol, v0=v0, return_eigenvectors=False)[0]
    return float(value), count[0], time.perf_counter() - start


def scan_tool(run, st: State, s_ref: float, tols) -> dict:
    """bench_sharpness's scan for one tool on one state: the loosest tolerance of ``tols`` at which every start lands
    within ACCURACY; medians there, and the whole scan."""
    row, rows = scan(lambda tol, seed: run(st.model, st.x, st.y, tol, seed, loss=st.loss), tols, s_ref, STARTS)
    return {**row, "scan": rows}


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
    counter = _Counted()

    def pyhessian(model, x, y, tol, seed, loss):
        return run_pyhessian(counter, model, x, y, tol, seed, loss=loss)

    started = time.perf_counter()
    rows = []
    for st in states(args.networks):
        ref = reference(st.model, st.x, st.y, k=2, loss=st.loss)
        busy = wait_quiet(label=st.label)
        row = {"label": st.label, "parameters": sum(p.numel() for p in st.model.parameters()),
               "reference": ref.tolist(), "gap": float((ref[0] - ref[1]) / abs(ref[0])), "others_busy": busy,
               "lmech": scan_tool(run_lmech, st, ref[0], (ACCURACY,)),
               "pyhessian": scan_tool(pyhessian, st, ref[0], TOLS),
               "curvlinops": scan_tool(run_curvlinops, st, ref[0], TOLS)}
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

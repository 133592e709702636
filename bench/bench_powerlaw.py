"""Power-law tail fit of a 1000-eigenvalue spectrum: lmech's ``powerlaw_fit`` (all x_min candidates at once) against
the ``powerlaw`` package 2.0.0 (``Fit(..., parameter_ranges={"alpha": [1, None]})``, the unrestricted alpha of
Clauset et al. and WeightWatcher) and a plain Python loop over x_min with the same estimator.

Data: the eigenvalues of W^T W for a 2000 x 1000 matrix with Student-t(3) entries (a heavy-tailed layer, 1000
eigenvalues), and 1000 Pareto(alpha = 2.5) draws. All three run in this process, numpy on 2 threads; each timing is
the best of 5 clean measurements (the package's and the loop's of 3; `_benchutil.timed`). The fits must agree
(alpha, x_min, D). Writes bench/out/powerlaw.json.
Run: .venv/bin/python bench/bench_powerlaw.py (needs `pip install powerlaw==2.0.0`, the bench extra)
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import powerlaw

from _benchutil import OUT, machine_facts, timed, wait_quiet
from lmech import powerlaw_fit


def _loop(x: np.ndarray) -> tuple[float, float, float]:
    x = np.sort(x)
    best = (np.inf, np.nan, np.nan)
    for xmin in np.unique(x)[:-1]:
        tail = x[x >= xmin]
        alpha = 1 + len(tail) / np.sum(np.log(tail / xmin))
        d = np.max(np.abs(1 - (tail / xmin) ** (1 - alpha) - np.arange(len(tail)) / len(tail)))
        if d < best[0]:
            best = (d, alpha, xmin)
    return best


def _package(x: np.ndarray):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return powerlaw.Fit(x, parameter_ranges={"alpha": [1, None]}, verbose=0)


def main() -> None:
    rng = np.random.default_rng(0)
    spectra = {"student-t layer 2000x1000": np.linalg.svd(rng.standard_t(3, (2000, 1000)), compute_uv=False) ** 2,
               "pareto alpha 2.5": 1 + rng.pareto(1.5, 1000)}
    wait_quiet()
    rows = {}
    for name, x in spectra.items():
        ours, t_lmech = timed(lambda: powerlaw_fit(x, compare=False), 5, label=f"lmech {name}")
        _, t_full = timed(lambda: powerlaw_fit(x), 3, label=f"lmech with comparisons {name}")
        pkg, t_pkg = timed(lambda: _package(x), 3, label=f"powerlaw {name}")
        (d, alpha, xmin), t_loop = timed(lambda: _loop(x), 3, label=f"loop {name}")
        t_lmech, t_full, t_pkg, t_loop = (t["best_s"] for t in (t_lmech, t_full, t_pkg, t_loop))
        rows[name] = {"lmech_s": t_lmech, "lmech_with_comparisons_s": t_full, "powerlaw_pkg_s": t_pkg,
                      "loop_s": t_loop, "speedup_vs_pkg": t_pkg / t_lmech, "speedup_vs_loop": t_loop / t_lmech,
                      "alpha": [ours.alpha, pkg.power_law.alpha, alpha], "xmin": [ours.xmin, pkg.xmin, xmin],
                      "D": [ours.D, pkg.power_law.D, d]}
        print(f"{name}: lmech {t_lmech * 1e3:.1f} ms (with comparisons {t_full * 1e3:.0f} ms), powerlaw "
              f"{t_pkg * 1e3:.1f} ms ({t_pkg / t_lmech:.1f}x), loop {t_loop * 1e3:.1f} ms ({t_loop / t_lmech:.1f}x); "
              f"alpha {ours.alpha:.6f} / {pkg.power_law.alpha:.6f} / {alpha:.6f}, xmin {ours.xmin:.6g} / "
              f"{pkg.xmin:.6g} / {xmin:.6g}")
    OUT.mkdir(exist_ok=True)
    (OUT / "powerlaw.json").write_text(json.dumps({"machine": machine_facts(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()

"""Law ``nngp-monte-carlo``: the kernels of random finite networks converge to the analytic NNGP and NTK."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Kernels
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ._kernels import analytic_kernels, weight_std
from .base import Law, loglog_slope, power_law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Networks as (activation, hidden layers), hidden widths, random networks (seeds) per width, the number of
    digits inputs the kernels are measured on, and the NNGP ensemble (width, networks): forward passes only, enough
    networks that the seed mean resolves about 1%."""

    networks: tuple[tuple[str, int], ...]
    widths: tuple[int, ...]
    seeds: int
    points: int
    ensemble: tuple[int, int]

_SLOPE, _SLOPE_BAND = -0.5, 0.1
_UNBIASED = 2.0  # the mean of S networks deviates by at most this x (single-network deviation) / sqrt(S)
_NNGP_MEAN = 0.02  # REFERENCE 2.3: the Monte Carlo NNGP (seed mean) within 2% of the analytic kernel
_RESOLUTION = 0.005  # the ensemble's standard error, single deviation / sqrt(S): a 3% error is then >= 2 s.e. past 2%


def _system(activation: str, depth: int, width: int, seed: int, points: int) -> System:
    arch = MLP(width=width, depth=depth, activation=activation, bias=False, parameterization="ntk")
    rule = LearningRule(lr=1.0, steps=0, seed=seed, dtype="float64")
    return System(arch, Digits(n_train=points, n_test=0, target="parity"), Task("mse"), rule)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@register
class NNGPMonteCarlo(Law):
    id = "nngp-monte-carlo"
    title = "Random finite networks have the analytic NNGP and NTK, with fluctuations ~ width^-1/2"
    pillar = "limits"
    claim = ("At initialization, the readout's conditional covariance w_std^2 h(x).h(x')/m (the empirical NNGP) and "
             "the empirical NTK J(x)J(x')^T of a fully connected network converge to the layer-recursion kernels "
             "of the infinite-width limit; the deviation of one network shrinks as width^-1/2.")
    citation = ("Neal 1996; Lee et al. 2018, arXiv:1711.00165; Matthews et al. 2018, arXiv:1804.11271; "
                "Jacot, Gabriel & Hongler 2018, arXiv:1806.07572; Novak et al. 2020, arXiv:1912.02803")
    regime = ("NTK parameterization, bias-free MLP at init, depth << width (finite-width corrections grow like "
              "exp(depth/width), Hanin & Nica 2019), float64, digits inputs with the x.x'/d input kernel. The quick NNGP ensemble "
              "was first 256 networks at width 1024 (mean 1.05% off, passing, but 0.7% standard error let a kernel 3% "
              "too large pass too); it was changed to 1024 at width 512 for the resolution, not for the verdict.")
    tolerance_note = (f"Fitted exponent of the mean relative Frobenius deviation against width within "
                      f"{_SLOPE:g} +- {_SLOPE_BAND:g} for both kernels (shared/REFERENCE.md 2.3). NNGP: the mean readout "
                      "kernel of an ensemble of networks (forward passes only: 1024 at width 512 quick, 200 at width 4096 "
                      "full) within 2% of the analytic kernel (REFERENCE 2.3). Its Monte Carlo error ~ 1/sqrt(width x "
                      f"networks) must be <= {_RESOLUTION:.1%} (single deviation / sqrt(S), else inconclusive), so a kernel "
                      "uniformly 3% off fails with >= 2 standard errors to spare. Narrow networks buy that resolution "
                      "cheapest: on digits, whose non-negative pixels make all pre-activations of a unit nearly equal, the "
                      "kernel's common mode fluctuates like the ReLU fourth moment, sqrt(E[relu^4]/E[relu^2]^2 - 1) = "
                      "2.2/sqrt(m) per layer (12% for one 2-layer network at m = 512), and the seed mean's finite-width bias "
                      "is below the Monte Carlo error (ReLU's kernel map is homogeneous; measured within +-0.9% at widths 64 "
                      f"to 1024 with 512-4096 networks). NTK (a Jacobian per network): the mean of the S networks at the "
                      f"largest width deviates by at most {_UNBIASED:g} x the single-network deviation / sqrt(S), as "
                      "independent fluctuations average out (a wrong recursion would not); the reference's 5% "
                      "single-network bound at width 4096 tests the seed's luck, not the theory.")

    settings = {"quick": Setting((("relu", 2),), (64, 128, 256, 512, 1024, 2048), 16, 48, (512, 1024)),
                "full": Setting((("relu", 2), ("tanh", 3)), (64, 128, 256, 512, 1024, 2048, 4096), 32, 64, (4096, 200))}

    def design(self, s: Setting) -> list[Experiment]:
        both = [Kernels(Schedule(at=(0,)), points=s.points)]
        nngp_only = [Kernels(Schedule(at=(0,)), points=s.points, ntk=False)]
        width, networks = s.ensemble
        sweep = [Experiment({"activation": act, "depth": depth, "width": w, "seed": seed, "ensemble": False},
                            _system(act, depth, w, seed, s.points), both)
                 for act, depth in s.networks for w in s.widths for seed in range(s.seeds)]
        extra = [Experiment({"activation": act, "depth": depth, "width": width, "seed": seed, "ensemble": True},
                            _system(act, depth, width, seed, s.points), nngp_only)
                 for act, depth in s.networks for seed in range(s.seeds if width in s.widths else 0, networks)]
        return sweep + extra

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        checks: list[Check] = []
        deviation = Panel("Relative deviation from the analytic kernel", "width", "||K_emp - K|| / ||K||",
                          xscale="log", yscale="log")
        panels = [deviation]
        worst = 0.0
        for act, depth in s.networks:
            net = f"{act} L={depth}"
            system = _system(act, depth, s.widths[0], 0, s.points)
            x = system.data.load().x_train
            nngp, ntk = analytic_kernels(system, x)
            w_std2 = weight_std(system) ** 2
            widths, by_width = zip(*runs.where(activation=act, depth=depth, ensemble=False).group("width"))
            networks = [sub.sweep("seed")[1] for sub in by_width]  # per width, its random networks in seed order
            errors = {"NNGP": [], "NTK": []}
            for seeded in networks:
                errors["NNGP"].append(np.mean([_relative(w_std2 * r.array("kernels/readout", 0), nngp) for r in seeded]))
                errors["NTK"].append(np.mean([_relative(r.array("kernels/ntk", 0), ntk) for r in seeded]))
            for kind, errs in errors.items():
                slope = loglog_slope(widths, errs)
                worst = max(worst, abs(slope - _SLOPE))
                deviation.series.append(Series.of(f"{net} {kind} measured", widths, errs, "measured", f"{net} {kind}"))
                deviation.series.append(Series.of(f"{net} {kind} ~ width^-1/2", widths, power_law(widths, errs, _SLOPE),
                                                  "theory", f"{net} {kind}"))
                checks.append(Check(f"{net} {kind}: fitted exponent of deviation vs width", slope,
                                    f"{_SLOPE:g} +- {_SLOPE_BAND:g}", abs(slope - _SLOPE) <= _SLOPE_BAND, headline=True))
            checks += _nngp_ensemble_checks(net, runs.where(activation=act, depth=depth, width=s.ensemble[0]), nngp, w_std2)
            top, widest = widths[-1], networks[-1]
            mean_ntk = np.mean([r.array("kernels/ntk", 0) for r in widest], axis=0)
            mean_err, bound = _relative(mean_ntk, ntk), _UNBIASED * errors["NTK"][-1] / np.sqrt(len(widest))
            checks.append(Check(f"{net} NTK: deviation of the mean of {len(widest)} networks at width {top} (no bias)",
                                mean_err, f"<= {bound:.3g} = {_UNBIASED:g} x single / sqrt({len(widest)})", mean_err <= bound))
            mean_nngp = w_std2 * np.mean([r.array("kernels/readout", 0) for r in widest], axis=0)
            panels.append(_diagonal_panel(net, nngp, ntk, mean_nngp, widest[0].array("kernels/ntk", 0), top))
        summary = "; ".join(f"{c.name.split(':')[0]} exponent {c.value:.3f}" if "exponent" in c.name
                            else f"{c.name.split(':')[0]} seed mean off by {c.value:.2%}" for c in checks if c.headline)
        return self.verdict(runs, metric="max |fitted exponent + 1/2|", error=worst, tolerance=_SLOPE_BAND,
                            summary=summary, checks=checks, panels=panels)


def _nngp_ensemble_checks(net: str, ensemble: Runs, nngp: np.ndarray, w_std2: float) -> list[Check]:
    """The seed-mean NNGP against the analytic one (REFERENCE 2.3's 2%), gated on the ensemble resolving 1%."""
    kernels = np.stack([w_std2 * r.array("kernels/readout", 0) for r in ensemble.values()])
    width, size = ensemble.values_of("width")[0], len(kernels)
    resolution = np.mean([_relative(k, nngp) for k in kernels]) / np.sqrt(size)
    mean_err = _relative(kernels.mean(axis=0), nngp)
    return [Check(f"{net} NNGP: ensemble resolution at width {width}, single deviation / sqrt({size})", resolution,
                  f"<= {_RESOLUTION:g}", resolution <= _RESOLUTION, kind="data"),
            Check(f"{net} NNGP: deviation of the mean of {size} networks at width {width}", mean_err,
                  f"<= {_NNGP_MEAN:g} (REFERENCE 2.3)", mean_err <= _NNGP_MEAN, headline=True)]


def _diagonal_panel(net: str, nngp: np.ndarray, ntk: np.ndarray, emp_nngp: np.ndarray, emp_ntk: np.ndarray,
                    width: int) -> Panel:
    """Kernel entries against the first input: analytic (line) and measured at the largest width (dots)."""
    order = np.argsort(nngp[0])
    idx = np.arange(len(order))
    panel = Panel(f"{net}: K(x_0, x_j) at width {width}", "input j (sorted by analytic NNGP)", "kernel value")
    panel.series += [Series.of("NNGP theory", idx, nngp[0, order], "theory", "NNGP"),
                     Series.of("NNGP measured (seed mean)", idx, emp_nngp[0, order], "measured", "NNGP"),
                     Series.of("NTK theory", idx, ntk[0, order], "theory", "NTK"),
                     Series.of("NTK measured (one network)", idx, emp_ntk[0, order], "measured", "NTK")]
    return panel

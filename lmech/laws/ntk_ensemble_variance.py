"""Law ``ntk-ensemble-variance``: the spread over seeds of wide networks trained by GD is the kernel limit's
predicted ensemble variance."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from ..engine.experiment import Experiment
from ..observables.probes import Outputs
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ..theory.ensemble import ntk_predict
from ._kernels import weight_std
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Hidden widths (one hidden layer, NTK parameterization, no biases), seeds per width, training and test points,
    GD rate and steps."""

    widths: tuple[int, ...]
    seeds: int
    n_train: int
    n_test: int
    lr: float
    steps: int


_GET = "ntk"  # every layer trained from f_0 ~ GP(0, K): Lee et al. 2019's ensemble
_TOL = 0.1  # REFERENCE 2.20: median measured / predicted variance in [0.9, 1.1] at the widest width
_SPEARMAN = 0.9  # REFERENCE 2.20: Spearman >= 0.9 across test points
_MEAN_Z = 4.0  # ensemble mean within 4 standard errors of the predicted mean at every test point


def _system(s: Setting, width: int, seed: int) -> System:
    return System(MLP(width=width, depth=1, bias=False, parameterization="ntk"),
                  Digits(n_train=s.n_train, n_test=s.n_test, target="parity"), Task("mse"),
                  LearningRule(lr=s.lr, steps=s.steps, seed=seed, dtype="float32"))


def predicted(s: Setting):
    """The GD ensemble at ``steps`` discrete steps: lmech's ``L = 1/(2n) sum (f - y)^2`` is ``reduction="sum"``."""
    system = _system(s, s.widths[0], 0)
    data = system.data.load()
    return ntk_predict(data.x_train, data.y_train, data.x_test, t=float(s.steps), learning_rate=s.lr, get=_GET,
                       reduction="sum", flow=False, depth=1, activation="relu", w_std=weight_std(system))


@register
class NtkEnsembleVariance(Law):
    id = "ntk-ensemble-variance"
    title = "Ensemble variance: the spread of wide networks over seeds is the kernel limit's predicted variance"
    pillar = "limits"
    claim = ("An infinite ensemble of infinitely wide networks trained by gradient descent on MSE is a Gaussian process "
             "with closed-form mean and covariance at every step (Lee et al. 2019, Eqs. 13-16): the variance over "
             "random seeds of a wide network's trained outputs at each test point is the predicted one, before any "
             "ensemble is trained, and the finite-width deviation shrinks as the width grows. Scope: the variance "
             "says where a prediction is not constrained by the data under the kernel prior; it does not see label "
             "noise.")
    citation = ("Lee et al. 2019, arXiv:1902.06720 (Eqs. 13, 15, 16); Jacot et al. 2018, arXiv:1806.07572; "
                "neural-tangents predict.gradient_descent_mse_ensemble; REFERENCE 2.20")
    regime = ("Bias-free one-hidden-layer ReLU MLPs in NTK parameterization (w_std = sqrt 2), widths 256-1024 (to "
              "4096 full), on 100 scikit-learn digits with +-1 parity targets, float32 (float64 until issue 18: the "
              "quick verdict, 0.0142, is the same to its 3 digits at 0.76x the time), full-batch GD at lr 1 for 100 "
              "steps (lr lambda_max / n ~ 0.6, well below 2; the network is half trained), L = 1/(2n) sum (f - y)^2; "
              "128 seeds per width (256 full); the prediction is lmech.theory.ntk_predict in discrete steps "
              "(reduction='sum') with the analytic NNGP/NTK. Each seed's sample variance has relative error "
              "sqrt(2/(seeds - 1)), about 0.13 at 128 seeds, so the median over 100 test points moves by a few "
              "percent between seed sets.")
    tolerance_note = (f"Claims at the widest width: median over test points of measured / predicted variance within "
                      f"{_TOL:g} of 1 (the error; REFERENCE 2.20); Spearman's rho between them across test points "
                      f">= {_SPEARMAN:g}; the ensemble mean within {_MEAN_Z:g} standard errors sqrt(var / seeds) of "
                      "the predicted mean at every test point. Across widths: |median ratio - 1| at the widest width "
                      "no larger than at the narrowest (the finite-width deviation shrinks).")

    settings = {"quick": Setting((256, 1024), 128, 100, 100, 1.0, 100),
                "full": Setting((256, 1024, 4096), 256, 100, 100, 1.0, 100)}

    def design(self, s: Setting) -> list[Experiment]:
        probes = (Outputs(Schedule(at=(s.steps,))),)
        return [Experiment({"width": w, "seed": seed}, _system(s, w, seed), probes)
                for w in s.widths for seed in range(s.seeds)]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        theory = predicted(s)
        variance, mean = theory.variance, theory.mean[:, 0]
        order = np.argsort(variance)
        ratios, rhos, zs = [], [], []
        scatter = Panel("Seed variance per test point", "predicted variance",
                        "measured variance", xscale="log", yscale="log")
        for w in s.widths:
            outputs = np.array([runs.one(width=w, seed=seed).array("output/test")[:, 0] for seed in range(s.seeds)])
            measured = outputs.var(axis=0, ddof=1)
            ratios.append(float(np.median(measured / variance)))
            rhos.append(float(spearmanr(measured, variance)[0]))
            zs.append(float(np.max(np.abs(outputs.mean(axis=0) - mean) / np.sqrt(variance / s.seeds))))
            scatter.series.append(Series.of(f"width {w}", variance[order], measured[order], "measured", f"w{w}"))
        scatter.series.append(Series.of("predicted (y = x)", variance[order], variance[order], "theory", "theory"))
        deviation = [abs(r - 1) for r in ratios]
        error = deviation[-1]
        widest = s.widths[-1]
        checks = [
            Check(f"width {widest}: median measured / predicted variance ({', '.join(f'{r:.3f}' for r in ratios)} "
                  f"at widths {', '.join(map(str, s.widths))})", ratios[-1], f"1 +- {_TOL:g}", error <= _TOL,
                  headline=True),
            Check(f"width {widest}: Spearman rho of measured and predicted variance across test points",
                  rhos[-1], f">= {_SPEARMAN:g}", rhos[-1] >= _SPEARMAN, headline=True),
            Check(f"width {widest}: largest |ensemble mean - predicted mean| in standard errors", zs[-1],
                  f"<= {_MEAN_Z:g}", zs[-1] <= _MEAN_Z),
            Check("|median ratio - 1| at the widest width no larger than at the narrowest",
                  deviation[-1] - deviation[0], "<= 0", deviation[-1] <= deviation[0]),
            Check("Spearman rho at each width", float(np.min(rhos)), "reported", True, kind="info"),
        ]
        by_width = Panel("Median variance ratio", "width", "measured / predicted", xscale="log")
        by_width.series += [Series.of("measured", s.widths, ratios, "measured", "measured"),
                            Series.of("kernel limit", s.widths, np.ones(len(s.widths)), "theory", "theory")]
        summary = (f"median variance ratio {ratios[-1]:.3f} at width {widest} ({ratios[0]:.3f} at {s.widths[0]}); "
                   f"Spearman {rhos[-1]:.2f}")
        return self.verdict(runs, metric="|median variance ratio - 1| at the widest width", error=error,
                            tolerance=_TOL, summary=summary, checks=checks, panels=[scatter, by_width])

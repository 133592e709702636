"""Law ``representation-convergence``: wider networks trained from different seeds learn more similar
representations, converging on the infinite-width kernel."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Kernels, Loss
from ..observables.schedule import Schedule
from ..observables.similarity import cka, mutual_knn
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ._kernels import analytic_kernels
from ._trend import spearman_trend
from .base import Law, loglog_slope, power_law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Hidden widths (two hidden layers, NTK parameterization), seeds per width, GD rate, steps, training inputs on
    which the representations are compared."""

    widths: tuple[int, ...]
    seeds: int
    lr: float
    steps: int
    points: int


_EXPONENT = -1.0  # 1 - CKA(K_w, K_inf) ~ w^-1: O(w^-1/2) kernel fluctuations enter the CKA deficit squared
_SLOPE_TOL = 0.25
_LEVEL = 0.95
_N_TRAIN = 1000


def _system(s: Setting, width: int, seed: int) -> System:
    return System(MLP(width=width, depth=2, bias=False, parameterization="ntk"),
                  Digits(n_train=_N_TRAIN, n_test=1797 - _N_TRAIN), Task("mse"),
                  LearningRule(lr=s.lr, steps=s.steps, seed=seed))


def _deficit(k: np.ndarray, limit: np.ndarray) -> float:
    return 1.0 - cka(k, limit, kernel="precomputed", debiased=True)


@register
class RepresentationConvergence(Law):
    id = "representation-convergence"
    title = "Representation convergence: wider nets from different seeds agree more, approaching the infinite-width kernel"
    pillar = "universal behaviours"
    claim = ("Networks trained on the same data from different random seeds learn increasingly similar representations "
             "as they grow wider and more accurate (the Platonic representation hypothesis, Fig. 6b), and the "
             "similarity they approach is the one of the infinite-width limit: each network's representation kernel "
             "converges on the analytic NNGP kernel, its debiased-CKA deficit falling as 1/width at initialization "
             "(kernel fluctuations of order width^-1/2, entering squared).")
    citation = ("Huh, Cheung, Wang & Isola 2024, arXiv:2405.07987; Kornblith et al. 2019, arXiv:1905.00414; Nguyen, "
                "Raghu & Kornblith 2021, arXiv:2010.15327 (debiased CKA); Lee et al. 2018, arXiv:1711.00165 (NNGP); "
                "REFERENCE 2.17, 2.3")
    regime = (f"Bias-free 64-w-w-10 ReLU MLPs in NTK parameterization on scikit-learn digits ({_N_TRAIN} training "
              "images), MSE on one-hot targets, full-batch GD at lr 1 for 300 steps (about 90% test accuracy), "
              "float32. The representation is the readout's input kernel h h^T / w on the first training inputs; "
              "similarities are debiased CKA (Song et al.'s unbiased HSIC on the raw Gram matrices) and mutual k-NN "
              "(k = 10) between every pair of seeds at one width; the analytic kernel is lmech's NNGP of the same "
              "architecture. Seed pairs share runs, so the bootstrap (pairs resampled within each width) is a rough "
              "interval. In NTK parameterization the features freeze as the width grows, so the infinite-width "
              "limit of the trained representation is the NNGP kernel; the mean-field/muP limit, where features "
              "keep learning, is not measured here.")
    tolerance_note = (f"Claims: Spearman's rho of seed-pair debiased CKA against width, of mutual k-NN against width, "
                      f"and of CKA against the pair's mean test accuracy (pairs resampled within each width) all "
                      f"positive with {_LEVEL:.0%} bootstrap intervals above 0; each trained network's deficit "
                      "1 - CKA(K_w, K_NNGP) falls with width (interval below 0); the log-log slope of the init "
                      f"deficit against width within {_SLOPE_TOL:g} of {_EXPONENT:g} (the error, pass at <= {_SLOPE_TOL:g}). Info: the trained "
                      "deficit's slope (feature learning adds a shared, seed-independent shift at finite width).")

    settings = {"quick": Setting((64, 128, 256), 3, 1.0, 300, 300),
                "full": Setting((64, 128, 256, 512, 1024), 4, 1.0, 300, 300)}

    def design(self, s: Setting) -> list[Experiment]:
        probes = (Loss(Schedule(at=(s.steps,)), split="test"),
                  Kernels(Schedule(at=(0, s.steps)), points=s.points, ntk=False))
        return [Experiment({"width": w, "seed": seed}, _system(s, w, seed), probes)
                for w in s.widths for seed in range(s.seeds)]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        system = _system(s, s.widths[0], 0)
        limit, _ = analytic_kernels(system, np.asarray(system.data.load().x_train[:s.points], np.float64))
        pair_w, pair_cka, pair_knn, pair_acc = [], [], [], []
        net_w, init_deficit, final_deficit = [], [], []
        for w in s.widths:
            kernels, accuracy = [], []
            for seed in range(s.seeds):
                run = runs.one(width=w, seed=seed)
                kernels.append(np.asarray(run.array("kernels/readout"), np.float64))
                accuracy.append(run.series("accuracy/test")[1][-1])
                net_w.append(w)
                init_deficit.append(_deficit(np.asarray(run.array("kernels/readout", 0), np.float64), limit))
                final_deficit.append(_deficit(kernels[-1], limit))
            for a, b in combinations(range(s.seeds), 2):
                pair_w.append(w)
                pair_cka.append(cka(kernels[a], kernels[b], kernel="precomputed", debiased=True))
                pair_knn.append(mutual_knn(kernels[a], kernels[b], kernel="precomputed"))
                pair_acc.append((accuracy[a] + accuracy[b]) / 2)
        pair_w, pair_cka, pair_knn, pair_acc, net_w, init_deficit, final_deficit = map(
            np.array, (pair_w, pair_cka, pair_knn, pair_acc, net_w, init_deficit, final_deficit))
        by_width = spearman_trend(pair_w, pair_cka, level=_LEVEL)
        knn_width = spearman_trend(pair_w, pair_knn, level=_LEVEL)
        by_accuracy = spearman_trend(pair_acc, pair_cka, strata=pair_w, level=_LEVEL)
        approach = spearman_trend(net_w, final_deficit, level=_LEVEL)
        init_slope = loglog_slope(net_w, np.maximum(init_deficit, 1e-12))
        final_slope = loglog_slope(net_w, np.maximum(final_deficit, 1e-12))
        error = abs(init_slope - _EXPONENT)

        def trend_check(name: str, trend, sign: int, headline: bool = False) -> Check:
            side = "above" if sign > 0 else "below"
            return Check(f"{name}: rho = {trend.rho:.2f}, {_LEVEL:.0%} interval [{trend.low:.2f}, {trend.high:.2f}] "
                         f"{side} 0", -trend.low if sign > 0 else trend.high, "< 0", trend.same_sign(sign),
                         headline=headline)

        checks = [trend_check("seed-pair debiased CKA rises with width", by_width, +1, True),
                  trend_check("seed-pair mutual k-NN rises with width", knn_width, +1),
                  trend_check("seed-pair CKA rises with test accuracy", by_accuracy, +1),
                  trend_check("trained deficit 1 - CKA(K_w, K_NNGP) falls with width", approach, -1),
                  Check(f"init: log-log slope of 1 - CKA(K_w, K_NNGP) against width (predicted {_EXPONENT:g})",
                        init_slope, f"within {_SLOPE_TOL:g} of {_EXPONENT:g}", error <= _SLOPE_TOL, headline=True),
                  Check("trained: log-log slope of 1 - CKA(K_w, K_NNGP) against width", final_slope, "reported",
                        True, kind="info")]
        widths = np.array(s.widths, float)

        def per_width(values: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            groups = [values[at == w] for w in s.widths]
            return (np.array([g.mean() for g in groups]), np.array([g.min() for g in groups]),
                    np.array([g.max() for g in groups]))

        similarity = Panel("Seed-pair similarity (bars: range over pairs)", "width",
                           "similarity", xscale="log")
        for label, values, group in (("debiased CKA", pair_cka, "cka"), ("mutual k-NN (k = 10)", pair_knn, "knn")):
            mean, low, high = per_width(values, pair_w)
            similarity.series.append(Series.of(label, widths, mean, "measured", group, low=low, high=high))
        similarity.series.append(Series.of("infinite-width limit (CKA = 1)", widths, np.ones_like(widths), "reference",
                                           "theory"))
        deficit = Panel("1 - CKA to the analytic NNGP kernel", "width", "1 - CKA(K_w, K_NNGP)",
                        xscale="log", yscale="log")
        for label, values, group in (("init", init_deficit, "init"), ("trained", final_deficit, "trained")):
            mean, low, high = per_width(values, net_w)
            deficit.series.append(Series.of(label, widths, mean, "measured", group, low=low, high=high))
        deficit.series.append(Series.of(f"c width^{_EXPONENT:g}", widths, power_law(
            net_w, np.maximum(init_deficit, 1e-12), _EXPONENT, at=widths), "theory", "init"))
        accuracy = Panel("Seed-pair CKA against accuracy", "mean test accuracy of the pair", "debiased CKA")
        accuracy.series.append(Series.of("seed pairs", pair_acc, pair_cka, "measured", "cka"))
        mean_cka = per_width(pair_cka, pair_w)[0]
        summary = (f"seed-pair CKA {mean_cka[0]:.2f} -> {mean_cka[-1]:.2f} "
                   f"from width {s.widths[0]} to {s.widths[-1]}; init deficit slope {init_slope:.2f} "
                   f"(predicted {_EXPONENT:g}), trained {final_slope:.2f}")
        return self.verdict(runs, metric="|init deficit slope + 1|", error=error, tolerance=_SLOPE_TOL,
                            summary=summary, checks=checks, panels=[similarity, deficit, accuracy])

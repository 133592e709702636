"""Law ``heavy-tailed-spectra``: SGD noise (learning rate / batch size) grows heavy tails in the weight spectra."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss, WeightSpectrum
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, MNIST1D, LearningRule, System, Task
from ._trend import median_reversals, spearman_trend
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Batch sizes (the sweep of lr/B at a fixed rate), seeds per batch size, hidden width (two hidden layers), SGD
    rate, steps, spectrum measurements over training (log-spaced)."""

    batches: tuple[int, ...]
    seeds: int
    width: int
    lr: float
    steps: int
    points: int


_SIGN = -1  # Martin & Mahoney: a larger lr / B gives a smaller alpha (a heavier tail)
_LAYER = 1  # the width x width hidden layer: the one matrix with enough eigenvalues for a tail fit
_LEVEL = 0.95


@register
class HeavyTailedSpectra(Law):
    id = "heavy-tailed-spectra"
    title = "Heavy-tailed weight spectra: more SGD noise (lr / batch) gives a heavier power-law tail"
    pillar = "universal behaviours"
    claim = ("A layer's eigenvalue spectrum (ESD of W^T W) starts as the Marchenko-Pastur bulk of a random matrix (not "
             "heavy-tailed) and grows a power-law tail during training; the stronger SGD's implicit regularization, "
             "measured by the ratio of learning rate to batch size, the heavier the tail: the fitted exponent alpha "
             "falls as lr/B grows, and more eigenvalues leave the MP bulk.")
    citation = ("Martin & Mahoney 2021, arXiv:1810.01075 (JMLR 22:165); Clauset, Shalizi & Newman 2009, "
                "arXiv:0706.1062 (the fit); REFERENCE 2.16")
    regime = ("A 40-w-w-10 ReLU MLP (w = 256) on MNIST-1D (4000 training samples), cross-entropy, SGD at lr 0.1 for "
              "3000 steps from the standard init, float32; the batch size sets lr/B at a fixed rate and step count, "
              "so only the gradient noise differs between runs (smaller batches train the same number of steps with "
              "noisier gradients; the smallest do not fit the training set). The spectrum is that of the 256 x 256 "
              "hidden layer (the 40- and 10-sided layers have too few eigenvalues for a tail fit); alpha is the "
              "Clauset-Shalizi-Newman MLE with x_min at the minimal KS distance, and the MP edge is that of the "
              "layer's shape at its init variance. Only the direction of change is predicted (REFERENCE 2.16): the "
              "fitted alpha of a 256-eigenvalue spectrum varies by 1-4 between seeds, hence the seeds per batch "
              "size and the bootstrap intervals. The monotonicity check was changed after the first full-scale "
              "verdict: strict monotonicity of the seed medians failed there at B = 32 (6.95 against 5.92 at B = 64, inside "
              "the seed scatter); the law now asks for monotonicity within bootstrap intervals, as the issue "
              "specified.")
    tolerance_note = (f"Claims: at init every seed's layer is 'not heavy-tailed' (no eigenvalue past the MP edge); at "
                      f"the end Spearman's rho of alpha against lr/B is negative with its {_LEVEL:.0%} bootstrap "
                      "interval (runs resampled within each batch size) below 0; the median alpha over seeds does "
                      "not rise significantly between adjacent lr/B (no adjacent pair whose bootstrap interval of the "
                      "difference of medians lies entirely on the rising side); the count of eigenvalues past the MP "
                      "edge rises with lr/B (interval above 0). The error is the alpha interval's upper end (pass at "
                      "<= 0).")

    settings = {"quick": Setting((4, 16, 64), 3, 256, 0.1, 3000, 8),
                "full": Setting((4, 8, 16, 32, 64, 128, 256), 5, 256, 0.1, 3000, 12)}

    def design(self, s: Setting) -> list[Experiment]:
        probes = (Loss(Schedule(at=(0, s.steps))), WeightSpectrum(schedule=Schedule(log_points=s.points)))
        return [Experiment({"batch": b, "seed": seed},
                           System(MLP(width=s.width, depth=2), MNIST1D(), Task("cross_entropy"),
                                  LearningRule(lr=s.lr, steps=s.steps, optimizer="sgd", batch_size=b, seed=seed)),
                           probes) for b in s.batches for seed in range(s.seeds)]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        ratio = np.array([[s.lr / b] * s.seeds for b in s.batches])  # (batches, seeds)
        alpha, above, init_above = (np.zeros(ratio.shape) for _ in range(3))
        over_training = Panel(f"Layer {_LAYER} alpha over training (seed median)", "step", "alpha",
                              xscale="log")
        for i, b in enumerate(s.batches):
            history = []
            for seed in range(s.seeds):
                run = runs.one(batch=b, seed=seed)
                steps, alphas = run.series(f"esd/{_LAYER}/alpha")
                counts = run.series(f"esd/{_LAYER}/above_mp")[1]
                history.append(alphas)
                alpha[i, seed], above[i, seed], init_above[i, seed] = alphas[-1], counts[-1], counts[0]
            shown = steps > 0
            over_training.series.append(Series.of(f"B = {b} (lr/B = {s.lr / b:.2g})", steps[shown],
                                                  np.median(history, axis=0)[shown], "curve", f"B{b}"))
        alpha_trend = spearman_trend(ratio, alpha, level=_LEVEL)
        above_trend = spearman_trend(ratio, above, level=_LEVEL)
        medians = np.median(alpha, axis=1)
        order = np.argsort(ratio[:, 0])
        reversals = median_reversals(ratio, alpha, _SIGN, level=_LEVEL)
        direction = "negative" if _SIGN < 0 else "positive"
        checks = [
            Check("init: eigenvalues past the Marchenko-Pastur edge, most over seeds (not heavy-tailed)",
                  float(init_above.max()), "= 0", init_above.max() == 0),
            Check(f"Spearman rho(alpha, lr/B) = {alpha_trend.rho:.2f}, {_LEVEL:.0%} interval [{alpha_trend.low:.2f}, "
                  f"{alpha_trend.high:.2f}] entirely {direction}", alpha_trend.high if _SIGN < 0 else -alpha_trend.low,
                  "< 0", alpha_trend.same_sign(_SIGN), headline=True),
            Check(f"median alpha over seeds {'falls' if _SIGN < 0 else 'rises'} with lr/B within its {_LEVEL:.0%} "
                  f"intervals (medians {', '.join(f'{m:.2f}' for m in medians[order])}): adjacent pairs reversed "
                  f"significantly", float(len(reversals)), "= 0", not reversals),
            Check(f"Spearman rho(eigenvalues past the MP edge, lr/B) = {above_trend.rho:.2f}, interval "
                  f"[{above_trend.low:.2f}, {above_trend.high:.2f}] entirely positive", -above_trend.low, "< 0",
                  above_trend.same_sign(+1)),
            Check("final layer status heavy-tailed (fraction of runs)", float(np.mean(above > 0)), "reported", True,
                  kind="info"),
        ]
        x = ratio[:, 0]
        final = Panel(f"Layer {_LAYER} alpha at the end (bars: seeds)", "lr / batch size", "alpha",
                      xscale="log")
        final.series.append(Series.of(f"median over {s.seeds} seeds", x, medians, "measured", "alpha",
                                      low=alpha.min(axis=1), high=alpha.max(axis=1)))
        bulk = Panel("Eigenvalues past the MP edge at the end", "lr / batch size", "count", xscale="log")
        bulk.series.append(Series.of(f"median over {s.seeds} seeds", x, np.median(above, axis=1), "measured", "mp",
                                     low=above.min(axis=1), high=above.max(axis=1)))
        summary = (f"rho(alpha, lr/B) = {alpha_trend.rho:.2f} [{alpha_trend.low:.2f}, {alpha_trend.high:.2f}]; "
                   f"median alpha {medians[order][0]:.1f} -> {medians[order][-1]:.1f} as lr/B grows "
                   f"{x.min():.2g} -> {x.max():.2g}")
        error = alpha_trend.high if _SIGN < 0 else -alpha_trend.low
        return self.verdict(runs, metric="upper end of the alpha trend's interval", error=error, tolerance=0.0,
                            summary=summary, checks=checks, panels=[final, over_training, bulk])

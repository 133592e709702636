"""Law ``scaling-collapse``: compute-optimal loss curves collapse across model sizes, below the seed noise floor."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import DeepLinear, LearningRule, PowerLawFeatures, System, Task
from ..theory.collapse import Horizons, collapse_statistics, compute_optimal_horizons, power_law_features_loss
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Model sizes (features seen), seeds per size (trained in one stack), the minibatch, the peak learning rate
    (linear decay to zero over each size's horizon) and the fractions of the horizon where the loss is read."""

    sizes: tuple[int, ...]
    seeds: int
    batch: int
    lr: float
    points: int


_SPECTRUM, _SOURCE = 1.5, 1.5  # lambda_i = i^-1.5, target power i^-1.5 per mode: gamma = 1.5, L ~ p^-0.5
_LR_MEAN = 0.5  # mean multiplier of a linear decay to zero
_COLLAPSE_RANGE = (0.6, 0.95)  # REFERENCE 2.14 CPU (d): Delta < sigma for x in [0.6, 1] (x = 1 is 0 by construction)
_SHAPE_FROM, _SHAPE_TOL = 0.2, 0.03  # normalized curves against gradient-descent theory, x >= 0.2, within 3%
_INIT = 1e-3  # init scale: the model starts at (nearly) zero, as the theory does


def horizons(s: Setting) -> Horizons:
    """The theory's compute-optimal horizons ``t*(p) = c p^gamma`` for the setting's sizes (blind to any run)."""
    return compute_optimal_horizons(_SPECTRUM, _SOURCE, s.lr, _LR_MEAN, sizes=(min(s.sizes), max(s.sizes)))


def fractions(s: Setting) -> np.ndarray:
    """The fractions ``x`` of the horizon at which the loss is read (the last is 1)."""
    return np.arange(1, s.points + 1) / s.points


def _system(s: Setting, size: int, steps: int, seed: int) -> System:
    return System(DeepLinear(depth=1, width=1), PowerLawFeatures(features=size, spectrum=_SPECTRUM, source=_SOURCE),
                  Task("mse"), LearningRule(lr=s.lr, steps=steps, optimizer="sgd", batch_size=s.batch, seed=seed,
                                            schedule="linear", init_scale=_INIT))


@register
class ScalingCollapse(Law):
    id = "scaling-collapse"
    title = "Scaling collapse: compute-optimal loss curves of every size fall on one curve, within the seed noise"
    pillar = "simple laws"
    claim = ("When the loss has a scaling form L - L_hat = p^-nu F(t / p^gamma) and each size p trains for its "
             "compute-optimal horizon t*(p) ~ p^gamma, the loss curves normalized to 1 at the end of training, "
             "l(x) = (L(x t*) - L_hat) / (L(t*) - L_hat), are the same curve for every size; under learning-rate decay "
             "they agree more closely than one size's curves agree across seeds (supercollapse). The horizons, and "
             "the curve itself, follow from the data's spectrum before any training.")
    citation = ("Qiu, Xiao, Wilson, Pennington & Agarwala 2025, arXiv:2507.02119 (scaling collapse, supercollapse); "
                "Maloney, Roberts & Sully 2022, arXiv:2210.16859 and Paquette et al. 2024, arXiv:2405.15074 (the "
                "solvable power-law model); REFERENCE 2.14")
    regime = ("The solvable setting of Qiu et al.'s analysis: linear models on the top p of infinitely many Gaussian "
              "features with variances i^-1.5 and target power i^-1.5 per mode (PowerLawFeatures; the modes a model "
              "cannot see are exact Gaussian noise to it, so every size is the same task), trained by minibatch SGD "
              "(batch 128, peak rate 0.5, linear decay to zero, from zero) on 32768 samples, tested on 8192 fixed "
              "ones; L_hat = 0 (no label noise). The compute-optimal horizons come from the theory's frontier "
              "(C = p t, gradient-flow limit): t* ~ p^1.48 for sizes 16-128 (the continuum exponent is the spectrum's "
              "1.5). Seeds change the initial draw and the minibatch order. Networks were tried first and set "
              "aside: ReLU MLPs on power-law Fourier regression of the circle (widths 4-128, Adam) stayed limited by "
              "steps, not size, within CPU budgets (final losses within 30% across a 16x width range), and multitask "
              "sparse parity did not collapse (Delta 1.5-4 sigma: the smallest widths plateau first). The quick setting was "
              "prototyped once before the law was written (max Delta/sigma 0.66 with these sizes and seeds); the full "
              "scale gave 0.85. Sensitivity: horizons off by p^0.3 (the largest size's kept) give 1.17, a fail; the "
              "late curve is dominated by the decay's common drop, so smaller exponent errors can pass.")
    tolerance_note = (f"Collapse: the deviation Delta(x) over sizes and seeds stays below the noise floor sigma(x) (one "
                      f"size's seed spread of L, mean over sizes) for every read fraction x in "
                      f"[{_COLLAPSE_RANGE[0]:g}, {_COLLAPSE_RANGE[1]:g}] (REFERENCE 2.14 CPU (d); x = 1 is excluded, "
                      f"where Delta = 0 by construction). Shape: each size's seed-mean normalized curve within "
                      f"{_SHAPE_TOL:.0%} of gradient-descent theory for x >= {_SHAPE_FROM:g} (minibatch noise adds "
                      "about eta tr(Sigma) / (2 B) ~ 0.5% at the peak rate and the finite training set p/n <= 1%).")

    settings = {"quick": Setting((16, 32, 64, 128), 6, 128, 0.5, 20),
                "full": Setting((16, 32, 64, 128, 256, 512), 10, 128, 0.5, 40)}

    def design(self, s: Setting) -> list[Experiment]:
        h, x = horizons(s), fractions(s)
        experiments = []
        for size in s.sizes:
            steps = h.steps(size)
            probes = (Loss(Schedule(at=tuple(int(round(f * steps)) for f in x)), split="test"),)
            experiments += [Experiment({"size": size, "seed": seed}, _system(s, size, steps, seed), probes)
                            for seed in range(s.seeds)]
        return experiments

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        x = fractions(s)
        loss, theory, horizon = [], [], {}
        for size in s.sizes:
            rule = runs.one(size=size, seed=0).system.rule
            horizon[size] = rule.steps
            curves = [runs.one(size=size, seed=seed).series("loss/test") for seed in range(s.seeds)]
            loss.append([c[1] for c in curves])
            theory.append(power_law_features_loss(size, _SPECTRUM, _SOURCE, rule.learning_rates(), curves[0][0]))
        loss, theory = np.array(loss), np.array(theory)  # (sizes, seeds, x), (sizes, x)
        stats = collapse_statistics(loss)
        floor = stats.noise_floor.mean(axis=0)
        window = (x >= _COLLAPSE_RANGE[0] - 1e-9) & (x <= _COLLAPSE_RANGE[1] + 1e-9)
        ratio = stats.deviation[window] / floor[window]
        worst = float(ratio.max())
        mean_curves = stats.curves.mean(axis=1)
        predicted = theory / theory[:, -1:]
        shape_window = x >= _SHAPE_FROM - 1e-9
        shape = float(np.max(np.abs(mean_curves[:, shape_window] / predicted[:, shape_window] - 1)))
        h = horizons(s)

        checks = [
            Check(f"collapse: max over x in [{_COLLAPSE_RANGE[0]:g}, {_COLLAPSE_RANGE[1]:g}] of Delta(x) / sigma(x) "
                  f"(Delta up to {stats.deviation[window].max():.2e}, sigma at least {floor[window].min():.2e})",
                  worst, "< 1", worst < 1, headline=True),
            Check(f"shape: max |l measured / l theory - 1| over sizes and x >= {_SHAPE_FROM:g}", shape,
                  f"<= {_SHAPE_TOL:g}", shape <= _SHAPE_TOL, headline=True),
            Check("noise floor resolved: smallest seed spread sigma(x, p) over the collapse range",
                  float(stats.noise_floor[:, window].min()), "> 0", bool(stats.noise_floor[:, window].min() > 0),
                  kind="data"),
            Check(f"compute-optimal horizon exponent gamma of the theory's frontier (continuum: {_SPECTRUM:g}); "
                  f"horizons {', '.join(f'{p}: {t}' for p, t in horizon.items())} steps", h.gamma, "reported", True,
                  kind="info"),
        ]
        checks += [Check(f"size {p}: final loss measured / gradient-descent theory", float(loss[k, :, -1].mean() /
                                                                                          theory[k, -1]),
                         "reported", True, kind="info") for k, p in enumerate(s.sizes)]

        curves = Panel("Normalized loss curves l(x) = L(x t*) / L(t*)", "fraction of the compute-optimal horizon x",
                       "normalized loss l")
        spread = Panel(f"Collapse deviation against the seed noise floor (judged on x in [{_COLLAPSE_RANGE[0]:g}, "
                       f"{_COLLAPSE_RANGE[1]:g}])", "fraction of the horizon x",
                       "relative spread", yscale="log")
        compute = Panel("Loss against compute p t", "compute p t (parameter-steps)", "test loss", xscale="log",
                        yscale="log")
        for k, p in enumerate(s.sizes):
            group = f"p{p}"
            curves.series += [Series.of(f"p = {p}", x, mean_curves[k], "measured", group,
                                        low=stats.curves[k].min(axis=0), high=stats.curves[k].max(axis=0)),
                              Series.of(f"_theory p = {p}", x, predicted[k], "theory", group)]
            compute.series += [Series.of(f"p = {p}", p * x * horizon[p], loss[k].mean(axis=0), "measured", group),
                               Series.of(f"_theory p = {p}", p * x * horizon[p], theory[k], "theory", group)]
        spread.series += [Series.of("Delta (all sizes and seeds)", x[:-1], stats.deviation[:-1], "curve", "delta"),
                          Series.of("sigma (seed noise floor, mean over sizes)", x[:-1], floor[:-1], "reference",
                                    "sigma")]
        summary = (f"max Delta/sigma = {worst:.2f} over x in [{_COLLAPSE_RANGE[0]:g}, {_COLLAPSE_RANGE[1]:g}]; "
                   f"normalized curves within {shape:.1%} of theory (horizons t* ~ p^{h.gamma:.2f})")
        return self.verdict(runs, metric="max Delta / sigma over the collapse range", error=worst, tolerance=1.0,
                            summary=summary, checks=checks, panels=[curves, spread, compute])

"""Law ``grokking-weight-decay``: on modular addition the delay to generalize scales as 1 / weight decay."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.learning_curves import fourier_sparsity, grokking_times
from ..observables.probes import Loss, Parameters, StopWhen, WeightChange
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, LearningRule, ModularArithmetic, System, Task
from .base import Law, loglog_slope, power_law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Modulus, training fraction of the p^2 pairs, hidden width (one hidden ReLU layer), AdamW rate, weight decays
    (at init scale 1), init scales (at ``decays[alpha_decay]``; empty: not swept), step budget in units of the
    predicted time scale 1 / (eta lambda), log interval."""

    p: int
    train_fraction: float
    width: int
    lr: float
    decays: tuple[float, ...]
    scales: tuple[float, ...]
    alpha_decay: int
    horizon: float
    every: int


_KAPPA = 1.0  # log t_grok = c - kappa log lambda: the weight-decay time scale 1 / (eta lambda) (Lyu et al. 2024)
_KAPPA_TOL = 0.3  # REFERENCE 2.18: kappa in [0.7, 1.3]
_R2 = 0.9  # REFERENCE 2.18: t_grok linear in log alpha
_THRESHOLD = 0.95  # t_grok: first logged step with test accuracy >= 95% (REFERENCE 2.18)
_EMBEDDING = "layers.0.weight"  # its first p columns embed the residue a


def _steps(s: Setting, decay: float, scale: float) -> int:
    """The budget: ``horizon (1 + ln alpha) / (eta lambda)`` steps, the predicted time scale with room to spare."""
    return int(np.ceil(s.horizon * (1 + np.log(scale)) / (s.lr * decay)))


def _system(s: Setting, decay: float, scale: float) -> System:
    n = s.p * s.p
    n_train = int(round(s.train_fraction * n))
    return System(MLP(width=s.width, depth=1),
                  ModularArithmetic(p=s.p, n_train=n_train, n_test=n - n_train, encoding="one_hot"),
                  Task("cross_entropy"),
                  LearningRule(lr=s.lr, steps=_steps(s, decay, scale), optimizer="adamw", weight_decay=decay,
                               init_scale=scale))


def _runs(s: Setting) -> list[tuple[float, float]]:
    """(weight decay, init scale) of every run: the decay sweep at scale 1, then the scale sweep at one decay."""
    return [(d, 1.0) for d in s.decays] + [(s.decays[s.alpha_decay], a) for a in s.scales if a != 1.0]


@register
class GrokkingWeightDecay(Law):
    id = "grokking-weight-decay"
    title = "Grokking: the delay to generalize on modular addition scales as 1 / (learning rate x weight decay)"
    pillar = "universal behaviours"
    claim = ("A network that first memorizes modular addition generalizes (groks) only once weight decay has shrunk "
             "the memorizing solution; the time that takes is set by the decay rate eta lambda, so log t_grok = c - "
             "kappa log lambda with kappa = 1, and it grows with the log of the initialization scale alpha (the "
             "kernel-regime phase lasts ~ ln(alpha) / (eta lambda)).")
    citation = ("Power et al. 2022, arXiv:2201.02177; Liu, Michaud & Tegmark 2023 (Omnigrok), arXiv:2210.01117; Lyu, "
                "Jin, Li, Du, Lee & Hu 2024, arXiv:2311.18817; Kumar et al. 2024, arXiv:2310.06110; Gromov 2023, "
                "arXiv:2301.02679 (single-frequency neurons); REFERENCE 2.18")
    regime = ("Addition mod 59 with one-hot(a) + one-hot(b) inputs, half of the 3481 pairs for training (REFERENCE's "
              "0.4 left test accuracy below 95% within a CPU budget: 0.80 after 3000 steps in a prototype), a "
              "118-512-59 ReLU MLP, cross-entropy, full-batch AdamW (decoupled decay theta -= eta lambda theta) at "
              "lr 1e-2 (REFERENCE's 1e-3 is ten times slower), lambda 0.3-1.2 (0.15-1.2 full), float32. t_grok is the "
              "first logged step with test accuracy >= 95%; each run has 7/(eta lambda) steps (14 full; times "
              "(1 + ln alpha) in the init-scale sweep). In a prototype kappa flattened above eta lambda ~ 6e-3 "
              "(width 512: 0.75 between lambda 0.6 and 1.2; width 256: 0.47), where a decay-independent time to "
              "form the generalizing circuit starts to dominate. The init-scale sweep (full scale only) scales every "
              "layer's init by alpha; t_grok grew faster than linearly in ln alpha there in the prototype (800, 900, "
              "1300 steps at alpha 1, 2, 4), so that claim may fail. A run stops at t_grok (issue 18: the budget's "
              "remaining 20-35% of steps measured nothing the verdict uses; t_grok is unchanged), so its last "
              "measurements, the Fourier check's included, are at t_grok.")
    tolerance_note = (f"Claims: every run fits the training set and groks within its budget (else inconclusive); the "
                      f"least-squares slope of log t_grok against log lambda is -{_KAPPA:g} +- {_KAPPA_TOL:g} "
                      f"(REFERENCE 2.18: kappa in [0.7, 1.3]; the error is |kappa - {_KAPPA:g}|, pass at <= "
                      f"{_KAPPA_TOL:g}); with an init-scale sweep, t_grok rises with ln alpha and is linear in it "
                      f"(R^2 > {_R2:g}).")

    settings = {"quick": Setting(59, 0.5, 512, 1e-2, (0.3, 0.6, 1.2), (), 1, 7.0, 25),
                "full": Setting(59, 0.5, 512, 1e-2, (0.15, 0.3, 0.6, 1.2), (1.0, 2.0, 4.0, 8.0), 2, 14.0, 25)}

    def design(self, s: Setting) -> list[Experiment]:
        every = Schedule(every=s.every)
        probes = (Loss(every), Loss(every, split="test"), StopWhen(every, "accuracy/test", at_least=_THRESHOLD),
                  WeightChange(every), Parameters(Schedule(log_points=2), names=(_EMBEDDING,)))
        return [Experiment({"decay": d, "scale": a}, _system(s, d, a), probes) for d, a in _runs(s)]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        times, labels = {}, []
        accuracy = Panel("Test accuracy (dashed: train)", "step", "accuracy", xscale="log")
        norms = Panel("Weight norm (decay shrinks the memorizing solution)", "step", "||theta||",
                      xscale="log")
        for d, a in _runs(s):
            run = runs.one(decay=d, scale=a)
            steps, train = run.series("accuracy/train")
            _, test = run.series("accuracy/test")
            g = grokking_times(steps, train, test, threshold=_THRESHOLD)
            times[d, a] = g
            label = f"lambda = {d:g}" + (f", alpha = {a:g}" if a != 1.0 else "")
            shown = steps > 0
            accuracy.series += [Series.of(label, steps[shown], test[shown], "curve", label),
                                Series.of(f"_{label} train", steps[shown], train[shown], "reference", label)]
            norm_steps, norm = run.series("weights/norm")
            norms.series.append(Series.of(label, norm_steps[norm_steps > 0], norm[norm_steps > 0], "curve", label))
            if not g.grokked or g.t_train is None:
                labels.append(f"{label} ({'did not fit' if g.t_train is None else 'did not grok'} in {steps[-1]:.0f})")
        peaks = np.array([_fourier_peaks(runs.one(decay=d, scale=a), s.p) for d, a in _runs(s)])  # (runs, init/end)
        checks = [Check("runs that fit the training set and grokked within their budget" +
                        (f" (not: {'; '.join(labels)})" if labels else ""), float(len(labels)), "= 0", not labels,
                        kind="data")]
        decays = np.array(s.decays)
        t_decay = np.array([times[d, 1.0].t_test or np.nan for d in s.decays], float)
        ok = np.isfinite(t_decay)
        kappa = -loglog_slope(decays[ok], t_decay[ok]) if ok.sum() >= 2 else float("nan")
        error = abs(kappa - _KAPPA) if np.isfinite(kappa) else float("inf")
        checks.append(Check(f"kappa: -slope of log t_grok against log lambda (t_grok "
                            f"{', '.join(f'{t:.0f}' for t in t_decay)} steps)", kappa,
                            f"{_KAPPA:g} +- {_KAPPA_TOL:g}", error <= _KAPPA_TOL, headline=True))
        checks.append(Check(f"Fourier: a-embedding neurons' power share at their own strongest of {s.p // 2} "
                            f"frequencies at t_grok, where the run stops (mean over runs; {peaks[:, 0].mean():.2f} at "
                            "init; 1 for single-cosine neurons)", float(peaks[:, 1].mean()), "reported", True, kind="info"))
        checks.append(Check("t_grok x eta lambda (constant when kappa = 1)", float(np.nanmean(t_decay * s.lr * decays)),
                            "reported", True, kind="info"))
        law = Panel("t_grok against weight decay", "weight decay lambda", "t_grok (steps)", xscale="log",
                    yscale="log")
        law.series.append(Series.of("measured", decays[ok], t_decay[ok], "measured", "measured"))
        if ok.sum() >= 2:
            law.series.append(Series.of(f"c / lambda^{_KAPPA:g}", decays, power_law(decays[ok], t_decay[ok], -_KAPPA,
                                                                                     at=decays), "theory", "theory"))
        panels = [law, accuracy, norms]
        if s.scales:
            decay = s.decays[s.alpha_decay]
            scales = np.array(s.scales)
            t_scale = np.array([times[decay, a].t_test or np.nan for a in s.scales], float)
            good = np.isfinite(t_scale)
            log_a = np.log(scales[good])
            if good.sum() >= 3:
                slope, intercept = np.polyfit(log_a, t_scale[good], 1)
                residual = t_scale[good] - (slope * log_a + intercept)
                r2 = 1 - np.sum(residual ** 2) / np.sum((t_scale[good] - t_scale[good].mean()) ** 2)
            else:
                slope, r2 = float("nan"), float("nan")
            checks += [Check(f"init scale: t_grok rises with ln alpha at lambda = {decay:g} (slope, steps per e-fold)",
                             slope, "> 0", bool(slope > 0)),
                       Check(f"init scale: R^2 of t_grok linear in ln alpha (t_grok "
                             f"{', '.join(f'{t:.0f}' for t in t_scale)} at alpha {', '.join(f'{a:g}' for a in scales)})",
                             r2, f"> {_R2:g}", bool(r2 > _R2), headline=True),
                       Check("init scale: fitted slope x eta lambda (Lyu et al.'s kernel phase: 1)",
                             float(slope * s.lr * decay), "reported", True, kind="info")]
            alpha = Panel(f"t_grok against init scale (lambda = {decay:g})", "ln alpha", "t_grok (steps)")
            alpha.series.append(Series.of("measured", log_a, t_scale[good], "measured", "measured"))
            if good.sum() >= 3:
                alpha.series.append(Series.of("linear fit", log_a, slope * log_a + intercept, "theory", "theory"))
            panels.insert(1, alpha)
        summary = (f"kappa = {kappa:.2f} (predicted {_KAPPA:g} +- {_KAPPA_TOL:g}); t_grok "
                   f"{', '.join(f'{t:.0f}' for t in t_decay)} at lambda {', '.join(f'{d:g}' for d in s.decays)}")
        return self.verdict(runs, metric="|kappa - 1|", error=error, tolerance=_KAPPA_TOL, summary=summary,
                            checks=checks, panels=panels)


def _fourier_peaks(run, p: int) -> tuple[float, float]:
    """How much each neuron's embedding of residue ``a`` (the first ``p`` input columns of the first layer) is one
    cosine at init and at the end of the run, t_grok (:func:`lmech.fourier_sparsity`'s ``dimension_peak``; Gromov 2023: grokked MLP
    neurons are single-frequency)."""
    _, weights = run.array_series(f"param/{_EMBEDDING}")
    first, last = (fourier_sparsity(np.asarray(w, np.float64)[:, :p].T).dimension_peak
                   for w in (weights[0], weights[-1]))
    return first, last

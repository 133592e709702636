"""Shared law logic of the edge-of-stability family: a (preconditioned) sharpness that rises to an optimizer's
stability threshold and hovers there, at several step sizes."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss, Probe, Sharpness
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from .base import Law

ARCH = MLP(width=100, depth=2, activation="tanh")  # 64-100-100-10: 17,710 parameters
INIT_SCALE = 0.5  # starts the sharpness (about 5) well below every threshold, so sharpening is visible
FINAL_FRACTION = 0.5
REACHED = 0.95
START_BELOW = 0.9


@dataclass(frozen=True)
class Setting:
    """Training examples, steps, the step sizes eta (one run each) and the sharpness measured every ``every`` steps."""

    n_train: int
    steps: int
    lrs: tuple[float, ...]
    every: int


class HoverLaw(Law):
    """Train digits (MSE, full batch) at each step size of the setting and compare the median of ``metric`` over the
    final half of training with ``threshold(lr)``.

    Subclasses set ``settings`` (scale -> :class:`Setting`), ``metric``, ``threshold_name``, ``tolerance`` (and
    ``band`` for an asymmetric one) and implement :meth:`rule` and :meth:`threshold`. Regime checks: every run starts below ``START_BELOW`` x threshold
    and first reaches ``REACHED`` x threshold before the final half.
    """

    settings: ClassVar[Mapping[str, Setting]]
    metric: ClassVar[str] = "sharpness/0"
    threshold_name: ClassVar[str]
    tolerance: ClassVar[float]
    band: ClassVar[tuple[float, float] | None] = None  # (low, high) for the ratio; default 1 -+ tolerance

    def rule(self, lr: float, steps: int) -> LearningRule:
        raise NotImplementedError

    def threshold(self, lr: float) -> float:
        raise NotImplementedError

    def probes(self, every: int) -> list[Probe]:
        preconditioned = self.metric.startswith("preconditioned")
        return [Sharpness(Schedule(every=every), k=1, preconditioned=preconditioned),
                Loss(Schedule(every=max(every // 2, 1)))]

    def design(self, s: Setting) -> list[Experiment]:
        data = Digits(n_train=s.n_train, n_test=0)
        return [Experiment({"eta": lr}, System(ARCH, data, Task("mse"), self.rule(lr, s.steps)), self.probes(s.every))
                for lr in s.lrs]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        total, name, tol = s.steps, self.threshold_name, self.tolerance
        low, high = self.band or (1 - tol, 1 + tol)
        bound = f"in [{low:g}, {high:g}]" if self.band else f"1 +- {tol:g}"
        checks: list[Check] = []
        sharp_panel = Panel(f"{self.metric.split('/')[0].replace('_', ' ')} against {name}", "step", "sharpness")
        loss_panel = Panel("Training loss", "step", "loss", yscale="log")
        ratio_panel = Panel(f"Final median sharpness / ({name})", "eta", "median S / threshold", xscale="log")
        lrs, ordered = runs.sweep("eta")
        ratios, errors = [], []
        for lr, run in zip(lrs, ordered):
            label = f"eta={lr:g}"
            steps, sharp = run.series(self.metric)
            threshold = self.threshold(lr)
            sharp_panel.series.append(Series.of(f"{label} measured", steps, sharp, "measured", label))
            sharp_panel.series.append(Series.of(f"{name} = {threshold:.4g}", [0, total], [threshold, threshold],
                                                "reference", label))
            loss_panel.series.append(Series.of(label, *run.series("loss/train"), "measured", label))
            checks.append(Check(f"{label}: initial S / ({name})", float(sharp[0] / threshold),
                                f"< {START_BELOW:g} (regime: sharpening, not an initial catapult)",
                                sharp[0] < START_BELOW * threshold, kind="regime"))
            hits = np.nonzero(sharp >= REACHED * threshold)[0]
            first = int(steps[hits[0]]) if len(hits) else None
            checks.append(Check(f"{label}: S first reaches {REACHED:g} x ({name}) at step",
                                float(first if first is not None else np.nan),
                                f"< {int((1 - FINAL_FRACTION) * total)} (regime)",
                                first is not None and first < (1 - FINAL_FRACTION) * total, kind="regime"))
            final = steps >= (1 - FINAL_FRACTION) * total
            ratio = float(np.median(sharp[final]) / threshold) if final.any() else np.nan
            ratios.append(ratio)
            errors.append(abs(ratio - 1))
            checks.append(Check(f"{label}: median final S / ({name})", ratio, bound, bool(low <= ratio <= high),
                                headline=True))
        ratio_panel.series.append(Series.of("measured", lrs, ratios, "measured", "ratio"))
        ratio_panel.series.append(Series.of(f"theory: S = {name}", lrs, np.ones(len(lrs)), "theory", "ratio"))
        summary = f"median final S / ({name}) = " + ", ".join(f"{r:.3f} (eta={lr:g})" for r, lr in zip(ratios, lrs))
        return self.verdict(runs, metric=f"max over eta of |median final S / ({name}) - 1|",
                            error=float(np.nanmax(errors)) if np.isfinite(errors).any() else np.nan, tolerance=tol,
                            summary=summary, checks=checks, panels=[sharp_panel, ratio_panel, loss_panel])

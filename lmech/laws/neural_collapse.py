"""Law ``neural-collapse``: past zero training error, the last-layer features collapse onto a simplex ETF."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss, NeuralCollapse
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Digits training-set size, hidden width (two hidden layers), heavy-ball step, L2 weight decay, steps, log
    interval."""

    n_train: int
    width: int
    lr: float
    weight_decay: float
    steps: int
    every: int


_DROP = 10.0  # NC1 falls at least this factor between zero training error and the end (REFERENCE 2.15)
_HALVES = 2.0  # NC2's maximal-angle deviation and NC3 fall at least this factor over the terminal phase
_NC4 = 0.01  # nearest-class-centre mismatch at the end
_METRICS = (("nc/1", "NC1 = tr(Sigma_W Sigma_B^+)/C"), ("nc/2_max_angle_means", "NC2: mean |cos + 1/(C-1)|"),
            ("nc/2_equinorm_means", "NC2: equinorm (std/mean of |mu_c - mu_G|)"),
            ("nc/3", "NC3: |W/|W| - M^T/|M||_F^2"), ("nc/4", "NC4: nearest-centre mismatch"))


@register
class NeuralCollapseLaw(Law):
    id = "neural-collapse"
    title = "Neural collapse: past zero training error, last-layer features collapse to their class means in a simplex"
    pillar = "universal behaviours"
    claim = ("Trained with weight decay well past zero training error (the terminal phase), a classifier's last-layer "
             "features collapse onto their class means (NC1 -> 0), the centred means form a simplex equiangular tight "
             "frame with pairwise cosines -1/(C-1) (NC2), the classifier rows align with them (NC3 -> 0) and the "
             "network's decision becomes the nearest-class-centre rule (NC4 -> 0).")
    citation = ("Papyan, Han & Donoho 2020, arXiv:2008.08186; Han, Papyan & Donoho 2021, arXiv:2106.02073 (MSE loss); "
                "Zhu et al. 2021, arXiv:2105.02375; REFERENCE 2.15")
    regime = ("A 64-w-w-10 ReLU MLP (w = 256) on scikit-learn digits (300 training images quick, 1000 full; 10 balanced-"
              "ish classes), MSE on one-hot targets (Han et al. 2021), full-batch heavy ball (lr 0.05, momentum 0.9), "
              "L2 weight decay 5e-4, float32; features are the readout's (post-ReLU) inputs on the training set. The "
              "terminal phase starts at the first logged step with zero training error. Cross-entropy was tried "
              "first and set aside: on this MLP its weight-decay equilibrium is not collapsed within a CPU budget "
              "(NC1 0.92 -> 0.51 over 2000 steps at lr 0.05, wd 5e-4; a plateau at 0.45 with lr 0.1, wd 5e-3 after "
              "5000; 0.30 for a depth-4 width-256 net), so the law uses the MSE form of the claim.")
    tolerance_note = (f"Regime: training error reaches 0. Claims: NC1 falls at least {_DROP:g}x from zero training "
                      f"error to the end (REFERENCE 2.15); NC2's maximal-angle deviation and NC3 each fall at least "
                      f"{_HALVES:g}x over the same span; NC4 mismatch < {_NC4:.0%} at the end. The error is "
                      f"{_DROP:g} / (measured NC1 drop), a pass at <= 1.")

    settings = {"quick": Setting(300, 256, 0.05, 5e-4, 8000, 200),
                "full": Setting(1000, 256, 0.05, 5e-4, 20000, 250)}

    def design(self, s: Setting) -> list[Experiment]:
        system = System(MLP(width=s.width, depth=2), Digits(n_train=s.n_train, n_test=1797 - s.n_train), Task("mse"),
                        LearningRule(lr=s.lr, steps=s.steps, optimizer="momentum", weight_decay=s.weight_decay))
        every = Schedule(every=s.every)
        return [Experiment({}, system, (Loss(every), NeuralCollapse(schedule=every)))]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        run = runs.one()
        steps, accuracy = run.series("accuracy/train")
        curves = {name: run.series(name)[1] for name, _ in _METRICS}
        perfect = np.flatnonzero(accuracy >= 1.0)
        reached = perfect.size > 0
        start = int(perfect[0]) if reached else len(steps) - 1
        start_step = float(steps[start])

        def drop(name: str) -> float:
            values = curves[name]
            return float(values[start] / max(values[-1], 1e-300))

        nc1_drop, nc2_drop, nc3_drop = drop("nc/1"), drop("nc/2_max_angle_means"), drop("nc/3")
        nc4 = float(curves["nc/4"][-1])
        error = _DROP / nc1_drop if nc1_drop > 0 else float("inf")
        checks = [
            Check(f"training error reaches 0 (first at step {start_step:.0f})" if reached else
                  "training error reaches 0 (never did)", float(1 - accuracy.max()), "= 0", reached, kind="regime"),
            Check(f"NC1 drop over the terminal phase ({curves['nc/1'][start]:.3g} -> {curves['nc/1'][-1]:.3g})",
                  nc1_drop, f">= {_DROP:g}", nc1_drop >= _DROP, headline=True),
            Check("NC2 maximal-angle deviation mean |cos + 1/(C-1)|: drop over the terminal phase "
                  f"({curves['nc/2_max_angle_means'][start]:.3g} -> {curves['nc/2_max_angle_means'][-1]:.3g})",
                  nc2_drop, f">= {_HALVES:g}", nc2_drop >= _HALVES),
            Check(f"NC3 drop over the terminal phase ({curves['nc/3'][start]:.3g} -> {curves['nc/3'][-1]:.3g})",
                  nc3_drop, f">= {_HALVES:g}", nc3_drop >= _HALVES),
            Check("NC4 nearest-centre mismatch at the end", nc4, f"< {_NC4:g}", nc4 < _NC4, headline=True),
            Check("NC2 equinorm of the class means at the end", float(curves["nc/2_equinorm_means"][-1]), "reported",
                  True, kind="info"),
        ]
        panel = Panel("NC1-NC4 against step (dashed: zero training error)", "step", "metric",
                      yscale="log")
        for name, label in _METRICS:
            positive = curves[name] > 0  # NC4 reaches exactly 0: off a log axis
            panel.series.append(Series.of(label, steps[positive], curves[name][positive], "curve", name))
        finite = np.concatenate([v[v > 0] for v in curves.values()])
        panel.series.append(Series.of("_terminal phase", [start_step, start_step], [finite.min(), finite.max()],
                                      "reference", "theory"))
        summary = (f"NC1 fell {nc1_drop:.1f}x after zero training error (step {start_step:.0f}); NC4 {nc4:.1%} at the "
                   f"end")
        return self.verdict(runs, metric="10 / NC1 drop factor", error=error, tolerance=1.0, summary=summary,
                            checks=checks, panels=[panel])

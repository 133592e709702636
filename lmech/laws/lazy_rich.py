"""Law ``lazy-rich-multiplier``: the output multiplier alpha moves a network between lazy and rich training."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Kernels, Loss, Parameters, RepresentationChange, WeightChange
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.result import RunResult
from ..store.runs import Runs
from ..systems import MLP, LearningRule, System, Task, TeacherStudent
from .base import Law, loglog_slope, power_law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """How many identifiable teachers to train students on (the first data seeds passing the rule)."""

    teachers: int


_ALPHAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
_WIDTH, _N, _STEPS = 200, 200, 5000
_RICH, _CONCENTRATION = 0.1, 0.8  # at alpha = 0.1, >= 80% of neuron mass within 10 degrees of the teacher
_ANGLE = 10.0
_LAZY_KERNEL = 0.05  # lazy runs: NTK distance from init below this; the 1/alpha fit uses those
_SLOPE, _SLOPE_BAND = -1.0, 0.1
_MIN_SEPARATION = 30.0  # degrees between teacher directions, so that the 10-degree windows are disjoint


def _eta(alpha: float) -> float:
    """Function-space step: 0.1, smaller at small alpha where the weights grow by O(1/alpha)."""
    return min(0.1, alpha / 2)


def identifiable(w: np.ndarray, a: np.ndarray) -> bool:
    """Whether a 2-D ReLU teacher ``sum_k a_k ReLU(w_k . x)`` is the unique sparsest student measure.

    ReLU(u.x) = u.x + ReLU(-u.x), so mass can move from teacher k to its antipode at no norm cost
    whenever sum_k lambda_k a_k w_k = 0 for some lambda >= 0; that is impossible exactly when the
    signed directions a_k w_k lie in an open half-plane (their largest angular gap exceeds 180 degrees).
    Directions must also be ``_MIN_SEPARATION`` apart.
    """
    signed = np.sort(np.degrees(np.arctan2(a * w[:, 1], a * w[:, 0])) % 360)
    gaps = np.diff(np.r_[signed, signed[0] + 360])
    angles = np.sort(np.degrees(np.arctan2(w[:, 1], w[:, 0])) % 360)
    separation = np.diff(np.r_[angles, angles[0] + 360]).min()
    return bool(gaps.max() > 180 and separation >= _MIN_SEPARATION)


def _teacher_seeds(count: int) -> list[int]:
    seeds, seed = [], 0
    while len(seeds) < count:
        info = TeacherStudent(n_train=1, n_test=0, seed=seed).load().info
        if identifiable(info["teacher_w"], info["teacher_a"]):
            seeds.append(seed)
        seed += 1
    return seeds


def _system(alpha: float, seed: int) -> System:
    """The student f = (alpha/m) sum_i a_i ReLU(w_i . x) with a, w ~ N(0, 1), trained on loss/alpha^2 with
    per-neuron step eta*m, in lmech's NTK parameterization: raw weights ~ N(0, 1) under multipliers
    g/sqrt(fan_in) with the relu gain g = sqrt(2), i.e. 1 on the 2-D input and sqrt(2/m) on the readout,
    so the output multiplier alpha/sqrt(2m) makes the raw (a, w) exactly the paper's, and lr = eta m / alpha^2."""
    arch = MLP(width=_WIDTH, depth=1, activation="relu", bias=False, alpha=alpha / np.sqrt(2 * _WIDTH), parameterization="ntk")
    rule = LearningRule(lr=_eta(alpha) * _WIDTH / alpha ** 2, steps=_STEPS, init="symmetric")
    return System(arch, TeacherStudent(d_in=2, n_train=_N, n_test=0, seed=seed), Task("mse"), rule)


def concentration(w: np.ndarray, a: np.ndarray, teacher_w: np.ndarray, teacher_a: np.ndarray,
                  angle: float = _ANGLE) -> float:
    """Fraction of the neuron mass |a_i| ||w_i|| within ``angle`` degrees of a teacher direction of the same sign."""
    mass = np.abs(a) * np.linalg.norm(w, axis=1)
    cos = (w / np.linalg.norm(w, axis=1, keepdims=True)) @ teacher_w.T
    close = (cos >= np.cos(np.radians(angle))) & (np.sign(a)[:, None] == np.sign(teacher_a)[None, :])
    return float(mass[close.any(axis=1)].sum() / mass.sum())


@register
class LazyRichMultiplier(Law):
    id = "lazy-rich-multiplier"
    title = "The output multiplier alpha sets lazy vs rich training: weights move ~1/alpha, or find the teacher"
    pillar = "limits"
    claim = ("Training h = alpha f on loss/alpha^2 from a symmetric init (f_0 = 0): for large alpha the parameters move "
             "O(1/alpha) and training is lazy (kernel regime); for small alpha the neurons of a two-layer ReLU student "
             "move O(1) and concentrate on the directions of a ReLU teacher (rich, feature-learning regime).")
    citation = ("Chizat, Oyallon & Bach 2019, arXiv:1812.07956 (Fig. 2); Woodworth et al. 2020, arXiv:2002.09277; "
                "Simon et al. 2026, arXiv:2604.21691 (Fig. 2)")
    regime = (f"2-D Gaussian inputs (n = {_N}), teacher of 3 ReLU units, student width {_WIDTH} with a, w ~ N(0, 1) paired "
              f"symmetrically, full-batch GD with function-space step eta = min(0.1, alpha/2) for {_STEPS} steps. The teacher "
              "must be identifiable: its signed directions a_k w_k in an open half-plane (else equal-norm students put "
              f"mass on antipodes, ReLU(u.x) = u.x + ReLU(-u.x)) and {_MIN_SEPARATION:g} degrees apart; teachers are the "
              "first data seeds passing that rule: 3 at quick scale (1 before issue 13), 5 at full.")
    tolerance_note = (f"Fitted exponent of the relative weight change against alpha within {_SLOPE:g} +- {_SLOPE_BAND:g} "
                      f"over the lazy runs, those whose empirical NTK moved less than {_LAZY_KERNEL:g} in kernel distance "
                      "(at least 3 spanning 10x, else out-of-regime); shared/REFERENCE.md 2.6 fits over [1, 100], which "
                      "includes the transitional alpha = 1 (NTK distance ~0.2) and gives -0.90, reported in the summary; "
                      f"at alpha = {_RICH:g} at least {_CONCENTRATION:.0%} of the neuron mass "
                      f"|a_i| ||w_i|| within {_ANGLE:g} degrees of a same-sign teacher direction (shared/REFERENCE.md 2.6).")

    settings = {"quick": Setting(3), "full": Setting(5)}

    def design(self, s: Setting) -> list[Experiment]:
        end = Schedule(at=(_STEPS,))
        probes = [WeightChange(end), RepresentationChange(end), Loss(Schedule(log_points=20)),
                  Parameters(Schedule(at=(0, _STEPS))), Kernels(Schedule(at=(0, _STEPS)), points=_N)]
        return [Experiment({"teacher": seed, "alpha": alpha}, _system(alpha, seed), probes)
                for seed in _teacher_seeds(s.teachers) for alpha in _ALPHAS]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        checks: list[Check] = []
        move = Panel("Relative weight change against alpha", "alpha", "||theta - theta_0|| / ||theta_0||", xscale="log", yscale="log")
        conc = Panel("Neuron mass on the teacher directions", "alpha", f"fraction within {_ANGLE:g} deg", xscale="log")
        kernel = Panel("NTK distance from init (laziness)", "alpha", "1 - <K0, K>/(|K0| |K|)", xscale="log", yscale="log")
        panels = [move, conc, kernel]
        worst, notes, concentrations = 0.0, [], []
        for n_teacher, (seed, students) in enumerate(runs.group("teacher")):
            info = TeacherStudent(n_train=1, n_test=0, seed=seed).load().info
            group = f"teacher {seed}"
            alphas, ordered = students.sweep("alpha")
            alphas = np.array(alphas)
            moved = np.array([r.last("weights/relative") for r in ordered])
            fractions = [concentration(r.array("param/layers.0.weight"), r.array("param/layers.1.weight")[0],
                                       info["teacher_w"], info["teacher_a"]) for r in ordered]
            kernel_moved = np.array([r.last("kernels/distance") for r in ordered])
            fit = kernel_moved < _LAZY_KERNEL
            span = float(alphas[fit].max() / alphas[fit].min()) if fit.any() else 0.0
            lazy_enough = bool(fit.sum() >= 3 and span >= 10)
            checks.append(Check(f"{group}: lazy runs (NTK distance < {_LAZY_KERNEL:g}) span of alpha (regime)", span,
                                ">= 10, 3 runs", lazy_enough, kind="regime"))
            if not lazy_enough:
                continue
            slope = loglog_slope(alphas[fit], moved[fit])
            wide_slope = loglog_slope(alphas[alphas >= 1], moved[alphas >= 1])
            worst = max(worst, abs(slope - _SLOPE))
            features = [r.last("representation/0") for r in ordered]
            move.series += [Series.of(f"{group} measured", alphas, moved, "measured", group),
                            Series.of(f"{group} hidden representation change", alphas, features, "measured", f"{group} h"),
                            Series.of(f"{group} ~ 1/alpha", alphas[fit], power_law(alphas[fit], moved[fit], _SLOPE),
                                      "theory", group)]
            conc.series.append(Series.of(f"{group} measured", alphas, fractions, "measured", group))
            rich = fractions[list(alphas).index(_RICH)]
            checks.append(Check(f"{group}: exponent of weight change vs alpha over the lazy runs, alpha in "
                                f"[{alphas[fit].min():g}, {alphas[fit].max():g}]", slope, f"{_SLOPE:g} +- {_SLOPE_BAND:g}",
                                abs(slope - _SLOPE) <= _SLOPE_BAND, headline=True))
            kernel.series.append(Series.of(f"{group} measured", alphas, kernel_moved, "measured", group))
            notes.append(f"{group}: exponent {slope:.3f} over lazy alpha, {wide_slope:.3f} over [1, 100] (reported only)")
            checks.append(Check(f"{group}: neuron mass within {_ANGLE:g} deg of the teacher at alpha = {_RICH:g}", rich,
                                f">= {_CONCENTRATION:g}", rich >= _CONCENTRATION, headline=True))
            concentrations.append(f"{group}: rich concentration {rich:.3f}")
            if n_teacher == 0:
                panels.append(_neuron_panel(ordered[0], info, f"Rich (alpha = {alphas[0]:g}): neurons a_i w_i"))
                panels.append(_neuron_panel(ordered[-1], info, f"Lazy (alpha = {alphas[-1]:g}): neurons a_i w_i"))
        conc.series.append(Series.of(f"bound {_CONCENTRATION:g} at alpha = {_RICH:g}", [_RICH, _RICH * 3],
                                     [_CONCENTRATION] * 2, "reference", "bound"))
        kernel.series.append(Series.of(f"lazy below {_LAZY_KERNEL:g}", [_ALPHAS[0], _ALPHAS[-1]], [_LAZY_KERNEL] * 2,
                                       "reference", "bound"))
        return self.verdict(runs, metric="max |fitted exponent + 1|", error=worst, tolerance=_SLOPE_BAND,
                            summary="; ".join(notes + concentrations), checks=checks, panels=panels)


def _neuron_panel(run: RunResult, info: dict, title: str) -> Panel:
    """Neurons as points |a_i| w_i (final: dots, init: faint dots) with the teacher directions as rays."""
    panel = Panel(title, "w_1 direction x |a|", "w_2 direction x |a|")
    for step, kind in ((0, "init"), (None, "trained")):
        w = run.array("param/layers.0.weight", step)
        a = run.array("param/layers.1.weight", step)[0]
        points = np.abs(a)[:, None] * w
        panel.series.append(Series.of(f"{kind} neurons", points[:, 0], points[:, 1], "measured", kind))
    scale = float(np.abs(run.array("param/layers.1.weight")[0]).max() * np.linalg.norm(run.array("param/layers.0.weight"), axis=1).max())
    for k, (w, a) in enumerate(zip(info["teacher_w"], info["teacher_a"])):
        panel.series.append(Series.of(f"teacher {k} (a = {a:+g})", [0, scale * w[0]], [0, scale * w[1]], "reference", f"t{k}"))
    return panel

"""Law ``catapult``: GD above 2/lambda0 catapults (loss spike, then lower curvature) up to about 4/lambda0, then diverges."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss, Sharpness
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.result import DIVERGED, RunResult
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ._kernels import ntk_sharpness
from .base import Law
from .registry import register

_TOL = 0.10
_LOWER, _UPPER = 1.0, 2.0  # predicted thresholds in units of 2/S0: eta = 2/S0 (catapult) and 4/S0 (divergence)
_S0_TOL = 0.10  # regime: measured initial sharpness within 10% of the infinite-width NTK's lambda0


@dataclass(frozen=True)
class Setting:
    """Hidden width, training examples, GD steps and the grid of eta in units of 2/lambda0 of the infinite-width
    NTK."""

    width: int
    n_train: int
    steps: int
    grid: tuple[float, ...]


def _system(s: Setting, c: float) -> System:
    arch = MLP(width=s.width, depth=1, activation="linear", bias=False, parameterization="ntk")
    data = Digits(n_train=s.n_train, n_test=0, target="parity")
    return System(arch, data, Task("mse"), LearningRule(lr=c * 2 / ntk_sharpness(arch, data), steps=s.steps))


def _classify(run: RunResult) -> str:
    """``"diverged"``, ``"catapult"`` (the loss rose above its initial value before converging) or ``"monotone"``."""
    if run.outcome == DIVERGED:
        return "diverged"
    _, loss = run.series("loss/train")
    return "catapult" if np.max(loss[1:]) > loss[0] else "monotone"


def _threshold(name: str, x: np.ndarray, below: np.ndarray, predicted: float) -> tuple[float, Check]:
    """The located threshold (:func:`_boundary`) and its check against ``predicted`` (relative tolerance ``_TOL``).

    A threshold not found inside the grid lies beyond its edge: a ``fail`` when that edge is already outside the
    tolerance band (the grid spans the band, so the threshold is off by more than the tolerance), ``inconclusive``
    (a ``data`` check) when the grid stops inside the band."""
    value, _ = _boundary(x, below)
    band = f"{predicted:g} +- {_TOL * predicted:g}"
    if np.isfinite(value):
        return value, Check(name, value, band, abs(value / predicted - 1) <= _TOL, headline=True)
    edge = float(x.max() if below.all() else x.min())
    side = ">" if below.all() else "<"
    decided = edge >= predicted * (1 + _TOL) if below.all() else edge <= predicted * (1 - _TOL)
    return float("nan"), Check(f"{name}: not inside the grid, so {side} {edge:.3f}", edge, band, False,
                               kind="claim" if decided else "data", headline=True)


def _boundary(x: np.ndarray, below: np.ndarray) -> tuple[float, bool]:
    """Geometric midpoint between the last ``x`` where ``below`` holds and the first where it does not, and
    whether the split is clean (all ``below`` first)."""
    if below.all() or not below.any():
        return float("nan"), False
    last, first = x[below].max(), x[~below].min()
    return float(np.sqrt(last * first)), bool(last < first)


@register
class Catapult(Law):
    id = "catapult"
    title = "Catapult phase: GD with 2/lambda0 < eta < 4/lambda0 spikes, flattens and converges; above, it diverges"
    pillar = "solvable settings"
    claim = ("For a wide two-layer linear network trained by full-batch GD on squared loss, with lambda0 the "
             "sharpness at initialization: below eta = 2/lambda0 the loss falls monotonically (lazy, kernel-like "
             "training); for 2/lambda0 < eta < 4/lambda0 the loss first grows (a spike) while the curvature drops, "
             "until the sharpness is below 2/eta, and then training converges (the catapult phase); above "
             "4/lambda0 training diverges.")
    citation = ("Lewkowycz, Bahri, Dyer, Sohl-Dickstein & Gur-Ari 2020, arXiv:2003.02218 "
                "(eta_max = 4/lambda0 for the two-layer linear model; about 12/lambda0 for ReLU networks)")
    regime = ("Wide one-hidden-layer linear network in NTK parameterization, no biases, half-MSE with the 1/(2n) "
              "reduction, full batch; the step-size grid is placed in units of 2/lambda0 of the infinite-width NTK, "
              "and the thresholds are compared with the measured initial sharpness S0, which must lie within "
              f"{_S0_TOL:.0%} of lambda0 (a wide network; otherwise out-of-regime). Phases out of order along eta, "
              "or a threshold outside the grid while the grid spans its tolerance band, fail the law (changed in "
              "issue 13: both read as out-of-regime before).")
    divergence_predicted = True  # above 4/lambda0 divergence is the predicted outcome, not a failed run
    tolerance_note = (f"Located thresholds (geometric midpoints between neighbouring grid points) within {_TOL:.0%} "
                      "of 2/S0 and 4/S0; every catapult run ends with sharpness below 2/eta.")

    settings = {
        "quick": Setting(2048, 128, 300, (0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.3, 1.6, 1.85, 1.95, 2.05, 2.15, 2.4)),
        "full": Setting(4096, 256, 600, (0.8, 0.9, 0.94, 0.97, 1.0, 1.03, 1.06, 1.1, 1.3, 1.6, 1.8, 1.9, 1.94, 1.97,
                                         2.0, 2.03, 2.06, 2.1, 2.2, 2.5)),
    }

    def design(self, s: Setting) -> list[Experiment]:
        probes = [Loss(Schedule(every=1)), Sharpness(Schedule(at=(0, s.steps)), k=1)]
        return [Experiment({"c": c}, _system(s, c), probes) for c in s.grid]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        grid, ordered = runs.sweep("c")
        grid = np.array(grid)
        labels = [f"c={c:g}" for c in grid]
        lrs = np.array([r.system.rule.lr for r in ordered])
        s0 = float(np.median([r.series("sharpness/0")[1][0] for r in ordered]))
        x = lrs * s0 / 2  # eta in units of 2/S0: the catapult band is (1, 2)
        phase = np.array([_classify(r) for r in ordered])
        lambda0 = 2 * grid[0] / lrs[0]
        lower, lower_check = _threshold("lower threshold eta S0 / 2 (monotone -> catapult)", x, phase == "monotone",
                                        _LOWER)
        upper, upper_check = _threshold("upper threshold eta S0 / 2 (catapult -> diverged)", x, phase != "diverged",
                                        _UPPER)
        in_order = bool(_boundary(x, phase == "monotone")[1] and _boundary(x, phase != "diverged")[1]
                        and (phase == "catapult").any())
        checks = [
            lower_check, upper_check,
            Check("phases in order along eta (monotone, then catapult, then diverged), each present", float(in_order),
                  "== 1", in_order),
            Check("measured initial sharpness S0 / lambda0 of the infinite-width NTK (regime)", s0 / lambda0,
                  f"1 +- {_S0_TOL:g}", abs(s0 / lambda0 - 1) <= _S0_TOL, kind="regime"),
        ]
        loss_panel = Panel("Training loss (eta in units of 2/S0)", "step", "loss", yscale="log")
        final_ratio = []
        for lb, xi, ph, run in zip(labels, x, phase, ordered):
            steps, loss = run.series("loss/train")
            ok = np.isfinite(loss)
            loss_panel.series.append(Series.of(f"eta S0/2 = {xi:.2f} ({ph})", steps[ok], loss[ok], "measured", lb))
            if ph == "catapult":
                sharp_steps, sharp = run.series("sharpness/0")
                ratio = float(sharp[-1] * run.system.rule.lr / 2)
                final_ratio.append((xi, ratio))
                checks.append(Check(f"{lb} (eta S0/2 = {xi:.2f}): final S / (2/eta)", ratio, "< 1", ratio < 1))
        phase_panel = Panel("Phase and final sharpness against the step size", "eta S0 / 2", "final S eta / 2")
        if final_ratio:
            phase_panel.series.append(Series.of("catapult runs: final S / (2/eta)", *zip(*final_ratio), "measured", "f"))
        phase_panel.series.append(Series.of("lazy: S = S0 (S eta/2 = eta S0/2)", [x.min(), 1], [x.min(), 1], "theory", "t"))
        phase_panel.series.append(Series.of("2/eta", [x.min(), x.max()], [1, 1], "reference", "r"))
        for bound, name in ((_LOWER, f"{2 * _LOWER:g}/S0"), (_UPPER, f"{2 * _UPPER:g}/S0")):
            phase_panel.series.append(Series.of(f"theory threshold {name}", [bound, bound], [0, 1.2], "theory", name))
        summary = (f"S0 = {s0:.4g} (infinite-width NTK: {lambda0:.4g}); "
                   f"thresholds located at eta S0/2 = {lower:.3f} (theory {_LOWER:g}) and {upper:.3f} (theory "
                   f"{_UPPER:g}); phases: "
                   + ", ".join(f"{xi:.2f}:{ph[0]}" for xi, ph in zip(x, phase)))
        return self.verdict(runs, metric="max relative error of the located thresholds",
                            error=max(abs(lower / _LOWER - 1), abs(upper / _UPPER - 1)), tolerance=_TOL, summary=summary,
                            checks=checks, panels=[loss_panel, phase_panel])

"""Law ``central-flow``: the central flow, integrated from the init, predicts GD's time-averaged loss, sharpness and
oscillation at the edge of stability; plain gradient flow does not."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..engine.experiment import Experiment
from ..engine.trainer import initial_state
from ..observables.probes import GradNorm, Loss, Sharpness
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.result import RunResult
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ..theory.central_flow import CentralFlowResult, central_flow, moving_average
from ..theory.stability import gd_threshold
from .base import Law
from .registry import register

ARCH = MLP(width=32, depth=2, activation="tanh")  # 64-32-32-10: 3,466 parameters, cheap enough to integrate the flow
INIT_SCALE = 0.5  # initial sharpness ~3.3, well below 2/eta: progressive sharpening, then EoS
DT = 0.25  # flow substep, in GD steps
# Top eigenpairs that may oscillate. GD holds the top two eigenvalues at 2/eta on this net, but one direction
# suffices: when the second eigenvalue overtakes, the constrained direction switches (a sliding mode on
# {lambda_max <= 2/eta}); k = 2 gave the same time-averaged loss and tr Sigma to 3 digits (full, eta = 0.2) at 2.3x the cost.
DIRECTIONS = 1
# Relative tolerance of the flow's warm-started Lanczos solves (one per substep). Issue 18 raised it from 1e-4 for
# cost (24.4 -> 16.7 s): on the quick flow the time-averaged loss moved by at most 0.37% and the final-half mean
# sigma^2 by 0.14%, against tolerances of 10% and 20%.
FLOW_TOL = 1e-3
WINDOW = 50  # time average over 50 steps: longer than the self-stabilization cycle (~40-80 steps here)
SHARPNESS_EVERY = 5
FINAL_FRACTION = 0.5  # compare over the final half: GD's oscillation needs time to grow from rounding noise
START_BELOW = 0.9
REACHED = 0.95
LOSS_TOL, SIGMA_TOL, SHARPNESS_TOL = 0.10, 0.20, 0.10


@dataclass(frozen=True)
class Setting:
    """Training examples, GD steps and the step sizes eta (one run and one pair of flows each)."""

    n_train: int
    steps: int
    lrs: tuple[float, ...]


def _system(s: Setting, lr: float) -> System:
    return System(ARCH, Digits(n_train=s.n_train, n_test=0), Task("mse"), LearningRule(lr=lr, steps=s.steps, init_scale=INIT_SCALE))


@lru_cache(maxsize=8)
def flows(system: System) -> tuple[CentralFlowResult, CentralFlowResult]:
    """``(central flow, gradient flow)`` of GD with ``system.rule.lr`` from the system's init, recorded every step."""
    state = initial_state(system)
    model, x, y = state.model, state.x_train, state.y_train
    rule, loss_fn = system.rule, system.task.loss_fn
    return (central_flow(model, loss_fn, x, y, rule.lr, rule.steps, dt=DT, k=DIRECTIONS, tol=FLOW_TOL),
            central_flow(model, loss_fn, x, y, rule.lr, rule.steps, dt=DT, k=DIRECTIONS, tol=FLOW_TOL,
                         gradient_flow=True))


def _first(steps: np.ndarray, hit: np.ndarray) -> float:
    return float(steps[np.nonzero(hit)[0][0]]) if hit.any() else np.nan


@register
class CentralFlow(Law):
    id = "central-flow"
    title = "The central flow predicts GD's time-averaged loss and sharpness at the edge of stability"
    pillar = "simple laws"
    claim = ("Full-batch GD with step eta at the edge of stability oscillates along the top Hessian eigenvector; its "
             "time average follows the central flow dw/dt = -eta [grad L + 1/2 sigma^2 grad S], with sigma^2 the "
             "smallest oscillation that holds the sharpness S at 2/eta. Integrated from the init alone, the flow "
             "predicts GD's time-averaged loss L(w) + sigma^2/eta, its sharpness 2/eta and the oscillation's "
             "variance sigma^2, where plain gradient flow overshoots 2/eta and underestimates the loss.")
    citation = "Cohen, Damian, Talwalkar, Kolter & Lee 2025, arXiv:2410.24206 (central flows); Cohen et al. 2021"
    regime = ("Full batch, MSE with the 1/(2n) reduction, a small tanh MLP on digits whose sharpness starts below "
              f"{START_BELOW:g} x 2/eta and reaches it (GD and the flow) before the final {FINAL_FRACTION:.0%} of "
              "training, where the comparison is made; otherwise out-of-regime. The flows' Lanczos tolerance was "
              f"raised from 1e-4 to {FLOW_TOL:g} by issue 18 for cost, after the verdict had passed: the time-averaged "
              "loss moved by at most 0.37% and sigma^2 by 0.14%.")
    tolerance_note = (f"Over the final {FINAL_FRACTION:.0%} of steps, with GD and the flow averaged over the same {WINDOW} "
                      "steps (longer than GD's self-stabilization cycle, which a 20-step window does not average out): "
                      f"time-averaged loss within {LOSS_TOL:.0%} at every window; mean sigma^2 within "
                      f"{SIGMA_TOL:.0%}, read as eta^2/4 (<||grad L_GD||^2> - ||grad L(w)||^2): GD's measured mean squared "
                      "gradient minus the flow's own ||grad L(w)||^2 at its w (a theory term, as GD alone does not give "
                      "the gradient at its time-averaged point), so the check compares GD's <||g||^2> with the flow's "
                      "prediction ||grad L(w)||^2 + (2/eta)^2 sigma^2 in the units of sigma^2; median smoothed "
                      f"GD sharpness within {SHARPNESS_TOL:.0%} of the flow's (Cohen et al. 2025; reference tolerances). "
                      f"Gradient flow must miss: loss off by more than {LOSS_TOL:.0%} and sharpness above "
                      f"{1 + SHARPNESS_TOL:g} x 2/eta somewhere in the final part.")
    settings = {"quick": Setting(300, 600, (0.2,)), "full": Setting(500, 1500, (0.15, 0.2, 0.25))}

    def design(self, s: Setting) -> list[Experiment]:
        probes = [Loss(Schedule(every=1)), GradNorm(Schedule(every=1)),
                  Sharpness(Schedule(every=SHARPNESS_EVERY), k=DIRECTIONS)]
        return [Experiment({"eta": lr}, _system(s, lr), probes) for lr in s.lrs]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        checks: list[Check] = []
        panels = [Panel("Training loss: GD, central flow, gradient flow", "step", "loss", yscale="log"),
                  Panel("Sharpness against 2/eta", "step", "sharpness"),
                  Panel("Oscillation variance sigma^2 (final part)", "step", "sigma^2")]
        numbers = {}
        for lr, run in zip(*runs.sweep("eta")):
            label = f"eta={lr:g}"
            numbers[label] = self._compare(label, run, *flows(_system(s, lr)), lr, s.steps, checks, panels)
        if any(v is None for v in numbers.values()):
            error = np.nan
            summary = "out of regime: " + ", ".join(label for label, v in numbers.items() if v is None)
        else:
            error = max(v[0] for v in numbers.values())
            summary = "; ".join(f"{label}: loss error {v[0]:.3f}, sigma^2 (GD <g^2> less the flow gradient) / predicted {v[1]:.3f}, "
                                f"gradient-flow loss gap {v[2]:.3f}" for label, v in numbers.items())
        return self.verdict(runs, metric="max over eta and final windows of |<L_GD> / <L_CF> - 1|",
                            error=error, tolerance=LOSS_TOL, summary=summary, checks=checks, panels=panels)

    @staticmethod
    def _compare(label: str, run: RunResult, cf: CentralFlowResult, gf: CentralFlowResult, lr: float, total: int,
                 checks: list[Check], panels: list[Panel]) -> tuple[float, float, float] | None:
        """Append ``label``'s checks and series; return ``(loss error, sigma^2 ratio, gradient-flow loss gap)``, or
        ``None`` out of regime."""
        threshold = gd_threshold(lr)
        loss_steps, loss = run.series("loss/train")
        _, grad_norm = run.series("grad_norm")
        sharp_steps, sharp = run.series("sharpness/0")
        centre, gd_loss = moving_average(loss_steps, loss, WINDOW)
        _, gd_grad_sq = moving_average(loss_steps, grad_norm ** 2, WINDOW)
        s_centre, gd_sharp = moving_average(sharp_steps, sharp, max(WINDOW // SHARPNESS_EVERY, 1))
        _, cf_loss = moving_average(cf.times, cf.time_averaged_loss, WINDOW)
        _, cf_sigma = moving_average(cf.times, cf.sigma2.sum(axis=1), WINDOW)  # tr Sigma
        _, cf_grad_sq = moving_average(cf.times, cf.grad_norm_sq, WINDOW)
        final, s_final = centre >= FINAL_FRACTION * total, s_centre >= FINAL_FRACTION * total
        gd_first = _first(sharp_steps, sharp >= REACHED * threshold)
        cf_first = _first(cf.times, cf.sigma2.sum(axis=1) > 0)
        regime = [Check(f"{label}: initial S / (2/eta) (regime)", sharp[0] / threshold, f"< {START_BELOW:g}",
                        sharp[0] < START_BELOW * threshold, kind="regime"),
                  Check(f"{label}: GD S first reaches {REACHED:g} x 2/eta at step (regime)", gd_first,
                        f"< {FINAL_FRACTION * total:g}", gd_first < FINAL_FRACTION * total, kind="regime"),
                  Check(f"{label}: central flow first holds S = 2/eta at step (regime)", cf_first,
                        f"< {FINAL_FRACTION * total:g}", cf_first < FINAL_FRACTION * total, kind="regime")]
        checks.extend(regime)
        if not all(c.ok for c in regime):
            return None
        loss_error = float(np.max(np.abs(gd_loss[final] / cf_loss[final] - 1)))
        sigma_measured = float(np.mean(lr ** 2 / 4 * (gd_grad_sq[final] - cf_grad_sq[final])))
        sigma_ratio = sigma_measured / float(np.mean(cf_sigma[final]))
        at = s_centre[s_final].astype(int)
        sharp_ratio = float(np.median(gd_sharp[s_final] / cf.sharpness[at, 0]))
        gf_gap = float(np.max(np.abs(np.interp(centre[final], gf.times, gf.loss) / gd_loss[final] - 1)))
        gf_sharp = float(np.max(gf.sharpness[gf.times >= FINAL_FRACTION * total, 0]) / threshold)
        checks += [Check(f"{label}: max |<L_GD> / <L_CF> - 1|", loss_error, f"<= {LOSS_TOL:g}", loss_error <= LOSS_TOL,
                         headline=True),
                   Check(f"{label}: sigma^2 from GD's <|g|^2> less the flow's |grad L(w)|^2, / predicted", sigma_ratio,
                         f"1 +- {SIGMA_TOL:g}",
                         abs(sigma_ratio - 1) <= SIGMA_TOL, headline=True),
                   Check(f"{label}: median <S_GD> / S_CF", sharp_ratio, f"1 +- {SHARPNESS_TOL:g}",
                         abs(sharp_ratio - 1) <= SHARPNESS_TOL, headline=True),
                   Check(f"{label}: gradient flow max |L_GF / <L_GD> - 1|", gf_gap, f"> {LOSS_TOL:g} (GF misses)",
                         gf_gap > LOSS_TOL),
                   Check(f"{label}: gradient flow max S_GF / (2/eta)", gf_sharp, f"> {1 + SHARPNESS_TOL:g} (GF misses)",
                         gf_sharp > 1 + SHARPNESS_TOL)]
        loss_panel, sharp_panel, sigma_panel = panels
        loss_panel.series += [Series.of(f"{label} GD", loss_steps, loss, "measured", label),
                              Series.of(f"{label} central flow L + sigma^2/eta", cf.times, cf.time_averaged_loss,
                                        "theory", label),
                              Series.of(f"{label} gradient flow", gf.times, gf.loss, "reference", label)]
        sharp_panel.series += [Series.of(f"{label} GD", sharp_steps, sharp, "measured", label),
                               Series.of(f"{label} central flow", cf.times, cf.sharpness[:, 0], "theory", label),
                               Series.of(f"{label} gradient flow", gf.times, gf.sharpness[:, 0], "reference", label)]
        sigma_panel.series += [Series.of(f"{label} GD: eta^2/4 (<|g|^2> - |grad L(w)|^2)", centre[final],
                                         lr ** 2 / 4 * (gd_grad_sq[final] - cf_grad_sq[final]), "measured", label),
                               Series.of(f"{label} central flow", centre[final], cf_sigma[final], "theory", label)]
        return loss_error, sigma_ratio, gf_gap

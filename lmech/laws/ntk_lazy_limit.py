"""Law ``ntk-lazy-limit``: wide NTK-parameterized MLPs trained by GD follow the linearized (kernel) dynamics."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.probes import Loss, Outputs, WeightChange
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, System, Task
from ..theory.linearized import linearized_gd
from ._kernels import analytic_kernels
from .base import Law, loglog_slope, power_law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Hidden widths, seeds per width, digits examples n (as many train as test points) and GD steps."""

    widths: tuple[int, ...]
    seeds: int
    n: int
    steps: int

_DEPTH = 2
_LR_FRACTION = 0.5  # eta * lambda_max(Theta) / n: a quarter of the stability limit 2
_GAP_TOL = 0.05  # relative test-set gap at the largest width
_SLOPE_MAX = -0.4  # fitted exponent of the gap against width (theory: -1/2)
_LAZY = 0.1  # regime: relative weight change at the largest width


def _system(width: int, seed: int, n: int, steps: int, lr: float) -> System:
    arch = MLP(width=width, depth=_DEPTH, activation="relu", bias=False, parameterization="ntk")
    return System(arch, Digits(n_train=n, n_test=n, target="parity"), Task("mse"),
                  LearningRule(lr=lr, steps=steps, seed=seed))


def _theory_inputs(s: Setting) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The training targets, the analytic NTK blocks (train-train, test-train) and the step size they imply."""
    probe = _system(s.widths[0], 0, s.n, s.steps, 1.0)
    data = probe.data.load()
    _, ntk_train = analytic_kernels(probe, data.x_train)
    _, ntk_test = analytic_kernels(probe, data.x_test, data.x_train)
    lr = float(np.round(_LR_FRACTION * s.n / np.linalg.eigvalsh(ntk_train)[-1], 4))
    return data.y_train, ntk_train, ntk_test, lr


@register
class NTKLazyLimit(Law):
    id = "ntk-lazy-limit"
    title = "Wide networks trained by GD follow their linearization: kernel dynamics with the analytic NTK"
    pillar = "solvable settings / limits"
    claim = ("A wide MLP in NTK parameterization trained by full-batch GD on MSE follows the linearized dynamics "
             "f_T = f_0 + Theta(x,X) Theta^-1 (I - (I - eta Theta/n)^T)(Y - f_0(X)) with the infinite-width NTK "
             "Theta, on training and test points, along all of training; the gap shrinks as width^-1/2.")
    citation = ("Jacot, Gabriel & Hongler 2018, arXiv:1806.07572; Lee et al. 2019, arXiv:1902.06720 (Eq. 9-11); "
                "Arora et al. 2019, arXiv:1904.11955")
    regime = (f"NTK parameterization, bias-free 2-hidden-layer ReLU MLP, full-batch GD with eta lambda_max(Theta)/n = "
              f"{_LR_FRACTION:g} (the 1/n of lmech's 1/(2n) sum-over-outputs MSE), scalar +-1 parity targets on "
              f"digits; lazy: relative weight change at the largest width below {_LAZY:g} (else out-of-regime).")
    tolerance_note = (f"Relative L2 gap ||f_net - f_lin|| / ||f_lin|| on test points at the end of training, averaged "
                      f"over seeds: below {_GAP_TOL:.0%} at the largest width and fitted exponent against width <= "
                      f"{_SLOPE_MAX:g} (theory -1/2; shared/REFERENCE.md 2.4).")

    settings = {"quick": Setting((128, 256, 512, 1024, 2048), 2, 128, 400),
                "full": Setting((128, 256, 512, 1024, 2048, 4096), 3, 256, 1000)}

    def design(self, s: Setting) -> list[Experiment]:
        lr = _theory_inputs(s)[-1]
        probes = [Outputs(Schedule(log_points=12)), Loss(Schedule(log_points=12)), WeightChange(Schedule(at=(s.steps,)))]
        return [Experiment({"width": w, "seed": seed}, _system(w, seed, s.n, s.steps, lr), probes)
                for w in s.widths for seed in range(s.seeds)]

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        widths = runs.values_of("width")
        y, ntk_train, ntk_test, lr = _theory_inputs(s)
        gap_panel = Panel("Network vs linearized prediction (test points)", "width", "relative L2 gap", xscale="log", yscale="log")
        path_panel = Panel(f"Test outputs along training, width {widths[-1]}", "step", "f(x_test)")
        loss_panel = Panel("Test MSE: linearized theory (lines) vs networks (dots)", "step", "test MSE", yscale="log")
        final_gaps, along_gaps, weight_moves = [], [], []
        dense = np.unique(np.round(np.geomspace(1, s.steps, 60)).astype(int))
        y_test = Digits(n_train=s.n, n_test=s.n, target="parity").load().y_test
        for width in widths:
            finals, alongs, moves = [], [], []
            for seed, run in zip(*runs.where(width=width).sweep("seed")):
                t, f_train = run.array_series("output/train")
                _, f_test = run.array_series("output/test")
                _, lin_test = linearized_gd(ntk_train, y, f_train[0], lr=lr, steps=t, ntk_test_train=ntk_test,
                                            f0_test=f_test[0])
                gap = np.linalg.norm((f_test - lin_test).reshape(len(t), -1), axis=1) / \
                    np.linalg.norm(lin_test.reshape(len(t), -1), axis=1)
                finals.append(gap[-1])
                alongs.append(gap.max())
                moves.append(run.last("weights/relative"))
                if seed == 0 and width in (widths[0], widths[-1]):
                    _, theory = linearized_gd(ntk_train, y, f_train[0], lr=lr, steps=dense, ntk_test_train=ntk_test,
                                              f0_test=f_test[0])
                    mse = lambda f: np.mean((f.reshape(len(f), -1) - y_test.ravel()) ** 2, axis=1)  # noqa: E731
                    loss_panel.series.append(Series.of(f"m={width} theory", dense, mse(theory), "theory", f"m={width}"))
                    loss_panel.series.append(Series.of(f"m={width} measured", t[1:], mse(f_test)[1:], "measured", f"m={width}"))
                    if width == widths[-1]:
                        for j in range(3):
                            path_panel.series.append(Series.of(f"x_{j} theory", dense, theory[:, j], "theory", f"x_{j}"))
                            path_panel.series.append(Series.of(f"x_{j} network", t, f_test[:, j], "measured", f"x_{j}"))
            final_gaps.append(np.mean(finals))
            along_gaps.append(np.mean(alongs))
            weight_moves.append(np.mean(moves))
        slope = loglog_slope(widths, final_gaps)
        along_slope = loglog_slope(widths, along_gaps)
        gap_panel.series += [
            Series.of("final gap (measured)", widths, final_gaps, "measured", "final"),
            Series.of("max gap along training (measured)", widths, along_gaps, "measured", "along"),
            Series.of("~ width^-1/2", widths, power_law(widths, final_gaps, -0.5), "theory", "final"),
            Series.of("relative weight change", widths, weight_moves, "measured", "weights"),
        ]
        checks = [
            Check(f"final test gap at width {widths[-1]}", final_gaps[-1], f"< {_GAP_TOL:g}", final_gaps[-1] < _GAP_TOL,
                  headline=True),
            Check("fitted exponent of the final gap vs width", slope, f"<= {_SLOPE_MAX:g} (theory -0.5)", slope <= _SLOPE_MAX,
                  headline=True),
            Check("fitted exponent of the max gap along training vs width", along_slope, f"<= {_SLOPE_MAX:g} (theory -0.5)",
                  along_slope <= _SLOPE_MAX),
            Check(f"relative weight change at width {widths[-1]} (regime)", weight_moves[-1], f"< {_LAZY:g}",
                  weight_moves[-1] < _LAZY, kind="regime"),
        ]
        summary = (f"final test gap {final_gaps[0]:.3f} (m={widths[0]}) -> {final_gaps[-1]:.4f} (m={widths[-1]}), "
                   f"exponent {slope:.2f}; max gap along training exponent {along_slope:.2f}; eta = {lr:g}")
        return self.verdict(runs, metric=f"relative test gap at width {widths[-1]}", error=final_gaps[-1], tolerance=_GAP_TOL,
                            summary=summary, checks=checks, panels=[gap_panel, path_panel, loss_panel])

"""Law ``critical-batch-size``: steps and examples to a target loss trade off on a hyperbola whose knee
B_crit = E_min / S_min is near the gradient noise scale (McCandlish et al. 2018, arXiv:1812.06162)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

from ..engine.experiment import Experiment
from ..observables.probes import Loss, NoiseScale
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.result import RunResult
from ..store.runs import Runs
from ..systems import MLP, MNIST1D, LearningRule, System, Task
from .base import Law
from .registry import register

_ARCH = MLP(width=64)  # 40-64-10 relu, 3,274 parameters
_TARGET = 1.2  # training cross-entropy (ln 10 = 2.30 at chance)
_R2 = 0.95
_FACTOR = 3.0
_MIN_REACHED = 3
_WINDOW = 1.5  # noise-scale measurements within this factor of a run's crossing step count as "at the target"
# Per-point residual of the hyperbola: with the learning rate tuned on a factor-2 grid, the best grid point is within
# a factor sqrt(2) of the optimum; on a quadratic the loss decrease per step at r = eta / eta_opt is (2r - r^2) of
# the optimum's (McCandlish et al. 2018, Sec. 2.2), 0.83 at r = sqrt(2), so a tuned S can sit up to 1/0.83 - 1 = 21%
# above the hyperbola; 25% leaves 4% for SGD noise in the crossing step.
_RESIDUAL = 0.25
_METRIC = "max |ln(B_crit / B)| over B = B_simple, B_noise"


@dataclass(frozen=True)
class Setting:
    """Training examples, batch sizes, the learning-rate grid tuned over per batch, the reference batch that carries
    the noise-scale probe, the examples budget per run, and the seeds (init and batch order; steps to the target are
    averaged over them, in log, before the learning rate is tuned)."""

    n_train: int
    batches: tuple[int, ...]
    lrs: tuple[float, ...]
    ref: int
    examples: int
    seeds: tuple[int, ...] = (0,)


def _steps_budget(batch: int, examples: int) -> int:
    """Steps each run may take: ``examples / B`` plus a floor for the large batches, whose ``S_min`` dominates."""
    return examples // batch + 300


def fit_hyperbola(batch: np.ndarray, steps: np.ndarray) -> tuple[float, float, float]:
    """``(S_min, E_min, R^2)`` of ``S = S_min + E_min / B``, i.e. ``(S/S_min - 1)(E/E_min - 1) = 1`` with
    ``E = B S`` (McCandlish et al. 2018, Eq. 2.11). Least squares on ``log S`` (started from the linear fit of
    ``S`` on ``1/B``); ``R^2`` is that of ``log S``. Exact on exact data."""
    batch, steps = np.asarray(batch, float), np.asarray(steps, float)
    if len(batch) < 2 or np.any(batch <= 0) or np.any(steps <= 0):
        raise ValueError("fit_hyperbola needs >= 2 positive batch sizes and step counts")
    e0, s0 = np.polyfit(1 / batch, steps, 1)
    start = np.log(np.clip([s0, e0], 1e-3 * steps.min(), None))
    fit = least_squares(lambda p: np.log(np.exp(p[0]) + np.exp(p[1]) / batch) - np.log(steps), start,
                        xtol=1e-14, ftol=1e-14, gtol=1e-14)
    s_min, e_min = np.exp(fit.x)
    log_s = np.log(steps)
    total = float(((log_s - log_s.mean()) ** 2).sum())
    r2 = 1 - float((fit.fun ** 2).sum()) / total if total > 0 else 1.0
    return float(s_min), float(e_min), r2


def steps_to_target(run: RunResult, target: float) -> float:
    """First step at which ``loss/train`` reaches ``target``, interpolated in ``log step`` and ``log loss``
    between the measurements around the crossing; ``inf`` if never reached (or diverged first)."""
    steps, loss = run.series("loss/train")
    below = np.nonzero(np.isfinite(loss) & (loss <= target))[0]
    if not len(below):
        return float("inf")
    i = below[0]
    if i == 0:
        return float(steps[0])
    s0, s1 = max(steps[i - 1], 0.5), steps[i]
    frac = np.log(loss[i - 1] / target) / np.log(loss[i - 1] / loss[i])
    return float(s0 * (s1 / s0) ** frac)


def noise_at_target(runs: list[RunResult], crossings: list[float], name: str) -> tuple[float, int]:
    """Geometric mean of metric ``name`` over every measurement taken within a factor ``_WINDOW`` of its run's
    target crossing, pooled over ``runs`` (the reference batch's learning rates that reach the target), and the
    number of measurements. The noise scale fluctuates along an SGD trajectory (``|G|^2`` at the current iterate)
    by ~2x between neighbouring measurements; pooling averages that out at a fixed loss."""
    values = []
    for run, crossing in zip(runs, crossings):
        steps, v = run.series(name)
        values += list(v[(steps >= crossing / _WINDOW) & (steps <= crossing * _WINDOW)])
    values = np.array(values)
    if not len(values) or np.any(values <= 0):
        return float("nan"), len(values)
    return float(np.exp(np.log(values).mean())), len(values)


@register
class CriticalBatchSize(Law):
    id = "critical-batch-size"
    title = "Steps and examples to a target loss lie on a hyperbola whose knee B_crit is near the noise scale"
    pillar = "simple laws"
    claim = ("With the learning rate tuned per batch size B, the steps S and examples E = B S that SGD needs to "
             "reach a target loss satisfy (S/S_min - 1)(E/E_min - 1) = 1, i.e. S = S_min (1 + B_crit/B), with "
             "B_crit = E_min/S_min close to the gradient noise scale B_noise = tr(H Sigma)/(G^T H G) and its "
             "Hessian-free proxy B_simple = tr Sigma/|G|^2, measured at the target loss.")
    citation = "McCandlish, Kaplan, Amodei et al. 2018, arXiv:1812.06162; Kaplan et al. 2020, arXiv:2001.08361"
    regime = ("Derived for a locally quadratic loss with the learning rate re-tuned per batch (here tuned on a grid "
              "of factor-2 steps, so each S is within the grid's resolution of its optimum), so B_crit agrees with "
              "the noise scale only to order of magnitude; the noise scale grows as the loss falls and is measured "
              "at the target loss: pooled (geometric mean) over the reference batch's runs, measurements within a "
              f"factor {_WINDOW:g} of each run's crossing step. Needs >= 3 batch sizes reaching the target, the "
              "reference batch among them; otherwise out-of-regime. A best learning rate at the edge of its grid "
              "is not tuned: inconclusive (issue 13; the quick and full grids were extended by one factor 2 at the "
              "top, to 6.4, after the quick B=256 optimum was seen at the old edge 3.2). Three seeds at quick scale (four "
              "at full; one before issue 13): steps to the target are averaged over them in log before the learning "
              "rate is tuned (a seed that misses the target makes that learning rate miss), and each seed's own tuned "
              "S gives the spread, drawn as bars; residuals smaller than the seed spread cannot test the shape.")
    divergence_predicted = True  # the top of each batch's learning-rate grid may diverge: "did not reach the target"
    tolerance = float(np.log(_FACTOR))
    tolerance_note = (f"Hyperbola fit R^2 (on log S) > {_R2} and every tuned S within {_RESIDUAL:.0%} of the fitted "
                      "hyperbola (a factor-2 learning-rate grid leaves up to 21% on a quadratic); fitted B_crit "
                      f"within a factor {_FACTOR:g} of B_simple "
                      "(REFERENCE 2.10) and of B_noise (the quantity the theory predicts; B_simple assumes H ~ I) at the "
                      "target loss; the seed spread of the tuned S (median s.d. of log S) at most half the residual bound, "
                      "else inconclusive.")

    settings = {"quick": Setting(2000, (8, 16, 32, 64, 128, 256), (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4), 32, 12000,
                                 (0, 1, 2)),
                "full": Setting(4000, (4, 8, 16, 32, 64, 128, 256, 512), tuple(0.1 * 2 ** (k / 2) for k in range(13)),
                                32, 24000, (0, 1, 2, 3))}

    def design(self, s: Setting) -> list[Experiment]:
        out = []
        for batch in s.batches:
            steps = _steps_budget(batch, s.examples)
            for lr in s.lrs:
                for seed in s.seeds:
                    system = System(_ARCH, MNIST1D(n_train=s.n_train, n_test=0), Task("cross_entropy"),
                                    LearningRule(lr=lr, steps=steps, optimizer="sgd", batch_size=batch, seed=seed))
                    probes = [Loss(Schedule(log_points=120))]
                    if batch == s.ref:
                        probes.append(NoiseScale(Schedule(log_points=25), points=1000, hessian_samples=32))
                    out.append(Experiment({"batch": batch, "lr": lr, "seed": seed}, system, probes))
        return out

    def judge(self, runs: Runs, setting: Setting) -> Verdict:
        lrs, ref = setting.lrs, setting.ref
        best, spread = {}, {}  # batch -> (tuned lr, seed-mean steps to the target); per-seed tuned steps
        for batch in setting.batches:
            per_seed = {lr: [steps_to_target(r, _TARGET) for r in runs.where(batch=batch, lr=lr).sweep("seed")[1]]
                        for lr in lrs}
            reached = {lr: float(np.exp(np.mean(np.log(v)))) for lr, v in per_seed.items()}  # inf if a seed missed
            lr = min(reached, key=reached.get)
            if np.isfinite(reached[lr]):
                best[batch] = (lr, reached[lr])
                spread[batch] = np.min(np.array(list(per_seed.values())), axis=0)  # each seed's own tuned S
        lr_edges = [k for k, (lr, _) in best.items() if lr in (lrs[0], lrs[-1])]
        checks = [Check(f"batch sizes reaching loss {_TARGET:g}", len(best), f">= {_MIN_REACHED} (regime)",
                        len(best) >= _MIN_REACHED, kind="regime"),
                  Check(f"reference batch B={ref} (noise-scale probe) reaches loss {_TARGET:g}", ref in best,
                        "== 1 (regime)", ref in best, kind="regime"),
                  Check("batch sizes whose best learning rate is at the edge of the grid (not tuned)", len(lr_edges),
                        "== 0 (else inconclusive)", not lr_edges, kind="data")]
        if not all(c.ok for c in checks[:2]):  # the regime checks
            return self.verdict(runs, metric=_METRIC, error=float("nan"), tolerance=self.tolerance, checks=checks,
                                panels=[], summary=f"{len(best)} batch sizes reached the target loss {_TARGET:g}"
                                + ("" if ref in best else f", the reference B={ref} not among them"))
        b = np.array(sorted(best), float)
        s = np.array([best[k][1] for k in sorted(best)])
        s_min, e_min, r2 = fit_hyperbola(b, s)
        b_crit = e_min / s_min
        sd = float(np.median([np.std(np.log(v), ddof=1) for v in spread.values()])) if len(setting.seeds) > 1 \
            else float("nan")
        checks.append(Check(f"seed spread of the tuned S: median s.d. of log S over the {len(setting.seeds)} seeds",
                            sd, f"<= {_RESIDUAL / 2:g} (half the residual bound, else the residuals are noise)",
                            bool(sd <= _RESIDUAL / 2), kind="data"))
        ref_runs = list(runs.where(batch=ref).values())
        crossings = [steps_to_target(r, _TARGET) for r in ref_runs]
        ref_runs, crossings = zip(*[(r, c) for r, c in zip(ref_runs, crossings) if np.isfinite(c)])
        b_simple, count = noise_at_target(ref_runs, crossings, "noise_scale/b_simple")
        b_noise, _ = noise_at_target(ref_runs, crossings, "noise_scale/b_noise")
        errors = [abs(float(np.log(b_crit / v))) if v > 0 else float("inf") for v in (b_simple, b_noise)]
        checks.append(Check("hyperbola R^2 (log S)", r2, f"> {_R2}", r2 > _R2, headline=True))
        for (name, value), err in zip((("B_simple", b_simple), ("B_noise", b_noise)), errors):
            checks.append(Check(f"B_crit / {name} at the target loss", b_crit / value, f"in [1/{_FACTOR:g}, {_FACTOR:g}]",
                                err <= self.tolerance, headline=True))  # NaN fails
        error = max(errors)
        worst = float(np.max(np.abs(s / (s_min + e_min / b) - 1)))
        checks.insert(-2, Check("max |S / S_fit - 1| over the tuned batch sizes", worst, f"<= {_RESIDUAL:g}",
                                worst <= _RESIDUAL, headline=True))
        summary = (f"S_min={s_min:.1f}, E_min={e_min:.0f}, B_crit={b_crit:.1f} (R^2={r2:.3f}, max |S/S_fit - 1|="
                   f"{worst:.2f}); at loss {_TARGET:g}: "
                   f"B_simple={b_simple:.1f}, B_noise={b_noise:.1f}; B_crit/B_simple={b_crit / b_simple:.2f}, "
                   f"B_crit/B_noise={b_crit / b_noise:.2f} ({count} noise measurements at B={ref} pooled)"
                   + (f"; best lr at the grid edge for B={lr_edges}" if lr_edges else ""))
        return self.verdict(runs, metric=_METRIC, error=error, tolerance=self.tolerance, summary=summary, checks=checks,
                            panels=self._panels(b, s, s_min, e_min, b_simple, b_noise, b_crit,
                                                [spread[k] for k in sorted(best)]))

    @staticmethod
    def _panels(b, s, s_min, e_min, b_simple, b_noise, b_crit, per_seed) -> list[Panel]:
        grid = np.geomspace(b.min() / 2, b.max() * 2, 60)
        fit_s = s_min + e_min / grid
        trade = Panel(f"Steps vs examples to loss {_TARGET:g} (tuned lr per batch)", "examples E = B S", "steps S",
                      xscale="log", yscale="log")
        trade.series += [Series.of("fitted hyperbola (S/S_min - 1)(E/E_min - 1) = 1", grid * fit_s, fit_s, "theory"),
                         Series.of("measured (best lr per batch)", b * s, s)]
        knee = Panel("Steps vs batch size: knee B_crit against the noise scale", "batch size B", "steps S",
                     xscale="log", yscale="log")
        knee.series += [Series.of("S_min (1 + B_crit / B)", grid, fit_s, "theory"),
                        Series.of("measured (bars: each seed's own tuned S)", b, s,
                                  low=[v.min() for v in per_seed], high=[v.max() for v in per_seed])]
        for label, value in (("B_crit (fit)", b_crit), ("B_simple at target", b_simple),
                             ("B_noise at target", b_noise)):
            knee.series.append(Series.of(label, [value, value], [s.min(), s.max()], "reference", label))
        return [trade, knee]

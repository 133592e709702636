"""Law ``instability-early-warning``: the curvature alarm warns of loss spikes and divergences as precisely as the
reactive loss-based detectors, and earlier."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..observables.instability import GradNormZScore, LossSpike, NonFinite
from ..observables.probes import GradNorm, Instability, Loss
from ..observables.schedule import Schedule
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.result import RunResult
from ..store.runs import Runs
from ..systems import MLP, Digits, LearningRule, ModularArithmetic, System, Task, Transformer
from ._alarms import AlarmScore, Event, auroc, loss_event, replay, score_alarms
from ._kernels import ntk_sharpness
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Pre-registered runs. GD: a one-hidden-layer ReLU MLP of ``gd_width`` in NTK parameterization at ``eta`` =
    each of ``gd_grid`` times ``2/lambda0`` (the infinite-width NTK's sharpness), monitored every ``gd_every`` steps.
    Adam: a depth-2 ReLU MLP of ``adam_width`` (standard parameterization) over ``adam_lrs x adam_beta2s x adam_eps``,
    monitored every ``adam_every`` steps; ``transformer_lrs`` (empty at quick scale) adds a depth-2 transformer under
    Adam (beta2 0.999) on modular addition. ``horizon``: the steps ahead that an alarm speaks for, the monitor's
    forecast horizon and the scoring's alike."""

    n_train: int
    gd_width: int
    gd_grid: tuple[float, ...]
    gd_steps: int
    gd_every: int
    adam_width: int
    adam_lrs: tuple[float, ...]
    adam_beta2s: tuple[float, ...]
    adam_eps: tuple[float, ...]
    adam_steps: int
    adam_every: int
    transformer_lrs: tuple[float, ...] = ()
    horizon: int = 200


_MARGIN = 0.1  # the theory alarm's precision may fall short of the best baseline's by one false alarm in ten
_LEADS = (0, 1, 5, 20, 100)  # recall reported at these leads (steps)
_DETECTORS = {"loss spike": LossSpike, "grad-norm z-score": GradNormZScore, "NaN/inf stop": NonFinite}
_THEORY = "theory alarm"


def _gd_system(s: Setting, c: float) -> System:
    arch = MLP(width=s.gd_width, depth=1, bias=False, parameterization="ntk")
    data = Digits(n_train=s.n_train, n_test=0, target="parity")
    return System(arch, data, Task("mse"), LearningRule(lr=c * 2 / ntk_sharpness(arch, data), steps=s.gd_steps))


def _probes(every: int, horizon: int) -> list:
    return [Loss(Schedule(every=1)), GradNorm(Schedule(every=1)), Instability(Schedule(every=every), horizon=horizon)]


@register
class InstabilityEarlyWarning(Law):
    id = "instability-early-warning"
    title = "Instability early warning: the curvature alarm is as precise as loss-based detectors, and earlier"
    pillar = "hyperparameter theories"
    claim = ("Loss spikes and divergences are preceded by the (preconditioned) sharpness S reaching the optimizer's "
             "stability threshold T (2/eta for GD, 38/eta for Adam at beta1 = 0.9): an alarm from S/T (lmech's "
             "InstabilityMonitor: above T by more than the edge-of-stability band, or an adaptive optimizer's "
             "forecast crossing within its horizon) warns of the event with the precision of the reactive "
             "detectors (loss > 2x its running minimum, gradient-norm z-score, NaN/inf stop) and a longer lead. "
             "Under GD above 2/lambda0 the top mode's growth (eta S - 1)^2 per step forecasts when the loss spikes "
             "(the catapult).")
    citation = ("Cohen et al. 2021, arXiv:2103.00065; Cohen et al. 2022, arXiv:2207.14484; Lewkowycz et al. 2020, "
                "arXiv:2003.02218; Bai et al. 2025, arXiv:2506.04805; REFERENCE 2.19")
    regime = ("Pre-registered before any alarm was scored (the monitor's defaults fixed in an earlier commit): full "
              "batch on scikit-learn digits with +-1 parity targets and half-MSE; GD on a wide one-hidden-layer ReLU "
              "MLP in NTK parameterization at eta from 0.8 to 5 times 2/lambda0; Adam (beta1 0.9) on a depth-2 ReLU "
              "MLP over eta x beta2 x eps; at full scale also Adam on a depth-2 transformer on modular addition "
              "(cross-entropy). Events from the loss at every step: a non-finite loss or L > 10 L0 (divergence), "
              "L_t > 2 min_{s<t} L_s (spike). The loss-based baselines see every step; the monitor sees every few "
              "steps (on the full training batch). An alarm is true when an event follows within the horizon, 200 "
              "steps, the monitor's forecast horizon (changed after the first verdicts: the scoring horizon was 50 "
              "steps, shorter than the 200 steps the monitor's default forecasts speak for, and a first alarm "
              "counted for any later event before that). Adam's first update, a step of about eta in every "
              "coordinate, blows the loss up at step 1 for eta >= 3e-3 here: no curvature monitor can warn of it, "
              "since the preconditioner does not exist before that step.")
    divergence_predicted = True  # the top of the GD grid may diverge: those runs are events to warn of
    tolerance_note = (f"Claims: the theory alarm's run-level precision at least the best baseline's minus {_MARGIN:g} "
                      "(the error: how far it falls short), and its median lead over all event runs (a missed event "
                      "counts as no warning) longer than every baseline's. Recall at leads "
                      f"{', '.join(map(str, _LEADS))}, the AUROC of each statistic at the horizon, the catapult's "
                      "forecast spike step and the forecast kinds are reported.")

    settings = {
        "quick": Setting(n_train=128, gd_width=1024, gd_grid=(0.8, 1.2, 1.6, 2.0, 3.0, 4.0, 5.0), gd_steps=100,
                         gd_every=2, adam_width=256, adam_lrs=(1e-3, 1e-2), adam_beta2s=(0.99, 0.999),
                         adam_eps=(1e-8, 1e-5), adam_steps=500, adam_every=5),
        "full": Setting(n_train=256, gd_width=2048, gd_grid=(0.8, 0.9, 1.1, 1.2, 1.4, 1.6, 2.0, 2.5, 3.0, 4.0, 5.0),
                        gd_steps=300, gd_every=1, adam_width=256, adam_lrs=(3e-4, 1e-3, 3e-3, 1e-2),
                        adam_beta2s=(0.95, 0.99, 0.999), adam_eps=(1e-8, 1e-6), adam_steps=2000, adam_every=5,
                        transformer_lrs=(1e-3, 3e-3, 1e-2, 3e-2)),
    }

    def design(self, s: Setting) -> list[Experiment]:
        out = [Experiment({"family": "GD", "c": c}, _gd_system(s, c), _probes(s.gd_every, s.horizon))
               for c in s.gd_grid]
        data = Digits(n_train=s.n_train, n_test=0, target="parity")
        for lr in s.adam_lrs:
            for beta2 in s.adam_beta2s:
                for eps in s.adam_eps:
                    rule = LearningRule(lr=lr, steps=s.adam_steps, optimizer="adam", betas=(0.9, beta2), eps=eps)
                    out.append(Experiment({"family": "Adam", "lr": lr, "beta2": beta2, "eps": eps},
                                          System(MLP(width=s.adam_width, depth=2), data, Task("mse"), rule),
                                          _probes(s.adam_every, s.horizon)))
        tokens = ModularArithmetic(p=23, n_train=256, n_test=0)
        for lr in s.transformer_lrs:
            rule = LearningRule(lr=lr, steps=s.adam_steps, optimizer="adam")
            out.append(Experiment({"family": "transformer", "lr": lr},
                                  System(Transformer(64, depth=2, heads=2, parameterization="sp"), tokens,
                                         Task("cross_entropy"), rule), _probes(s.adam_every, s.horizon)))
        return out

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        keys = list(runs)
        ordered = [runs[k] for k in keys]
        events = [_event(r) for r in ordered]
        theory_alarms, theory_stats = zip(*(_theory(r) for r in ordered))
        scores = [score_alarms(_THEORY, events, theory_alarms, s.horizon)]
        aurocs = {_THEORY: auroc(events, theory_stats, s.horizon)}
        for name, make in _DETECTORS.items():
            alarms, stats = zip(*(replay(make, *_logged(r)) for r in ordered))
            scores.append(score_alarms(name, events, alarms, s.horizon))
            aurocs[name] = auroc(events, stats, s.horizon)
        theory, baselines = scores[0], scores[1:]
        best = max(baselines, key=lambda b: np.nan_to_num(b.precision, nan=-1.0))
        n_events = sum(e.kind != "none" for e in events)
        error = max(0.0, np.nan_to_num(best.precision, nan=0.0) - np.nan_to_num(theory.precision, nan=0.0))
        longest = max(b.median_lead for b in baselines)
        checks = [
            Check(f"theory alarm's precision ({theory.false_alarms} false alarms) against the best baseline's "
                  f"({best.detector}, {best.precision:.2f})", theory.precision, f">= {best.precision - _MARGIN:.2f}",
                  error <= _MARGIN, headline=True),
            Check("theory alarm's median lead over all event runs (steps; a miss is -inf) against the baselines' "
                  f"({', '.join(f'{b.detector} {b.median_lead:g}' for b in baselines)})", theory.median_lead,
                  f"> {longest:g}", bool(theory.median_lead > longest), headline=True),
            Check(f"event runs among {len(events)} (some needed, and some without)", n_events,
                  f"in [1, {len(events) - 1}]", 0 < n_events < len(events), kind="data"),
        ]
        checks += [Check(f"{sc.detector}: precision {sc.precision:.2f}, recall at lead "
                         + ", ".join(f"{lead}: {sc.recall(lead):.2f}" for lead in _LEADS)
                         + f"; AUROC at horizon {s.horizon}: {aurocs[sc.detector]:.3f}",
                         sc.recall(1), "recall at lead 1, reported", True, kind="info") for sc in scores]
        gd = _gd_forecasts(keys, ordered, events)
        checks += _family_rows(keys, events, theory_alarms, s.horizon) + _forecast_rows(keys, ordered, gd)
        summary = (f"{n_events} events in {len(events)} runs; theory alarm precision {theory.precision:.2f}, median "
                   f"lead {theory.median_lead:g} steps, recall at lead 1 {theory.recall(1):.2f}; best baseline "
                   f"{best.detector}: precision {best.precision:.2f}, median lead {best.median_lead:g}")
        return self.verdict(runs, metric="best baseline's precision - theory alarm's precision", error=error,
                            tolerance=_MARGIN, summary=summary, checks=checks,
                            panels=_ratio_panels(keys, ordered, events) + [_recall_panel(scores)]
                            + _forecast_panel(gd))


def _event(run: RunResult) -> Event:
    steps, loss = run.series("loss/train")
    return loss_event(steps, loss, run.diverged_step)


def _logged(run: RunResult) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    steps, loss = run.series("loss/train")
    return steps, loss, run.series("grad_norm")[1]  # both logged at every step, in one measurement


def _theory(run: RunResult) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
    """The monitor's alarm steps and its statistic ``S/T`` (a non-finite ratio ranks highest)."""
    if "instability/alarm" not in run.names():
        return [], (np.zeros(0), np.zeros(0))
    steps, alarm = run.series("instability/alarm")
    _, ratio = run.series("instability/ratio")
    return [int(t) for t, a in zip(steps, alarm) if a > 0], (steps, np.nan_to_num(ratio, nan=np.inf))


def _family_rows(keys, events: list[Event], alarms, horizon: int) -> list[Check]:
    """Per family: events by kind, and the theory alarm's warned events and false alarms (info)."""
    rows = []
    for family in dict.fromkeys(k["family"] for k in keys):
        idx = [i for i, k in enumerate(keys) if k["family"] == family]
        sc = score_alarms(_THEORY, [events[i] for i in idx], [alarms[i] for i in idx], horizon)
        kinds = [events[i].kind for i in idx]
        rows.append(Check(f"{family}: {len(idx)} runs, {kinds.count('spike')} spikes, {kinds.count('divergence')} "
                          f"divergences; theory alarm warned {int(np.sum(np.isfinite(sc.leads)))}, "
                          f"{sc.false_alarms} false alarms, median lead {sc.median_lead:g}",
                          sc.recall(0), "recall, reported", True, kind="info"))
    return rows


def _gd_forecasts(keys, ordered: list[RunResult], events: list[Event]) -> list[tuple[float, float, float, float]]:
    """GD runs with a spike or divergence and a forecast at the first measurement: ``(c, forecast step, measured
    event step, measured loss-peak step)``."""
    out = []
    for key, run, event in zip(keys, ordered, events):
        if key["family"] != "GD" or event.kind == "none" or "instability/event_step" not in run.names():
            continue
        forecast = run.series("instability/event_step")[1][0]
        steps, loss = run.series("loss/train")
        finite = np.isfinite(loss)
        if math.isfinite(forecast):
            out.append((key["c"], float(forecast), event.step, float(steps[finite][np.argmax(loss[finite])])))
    return out


def _forecast_rows(keys, ordered: list[RunResult], gd: list[tuple[float, float, float, float]]) -> list[Check]:
    rows = []
    if gd:
        errors = [f - m for _, f, m, _ in gd]
        rows.append(Check("GD catapult: forecast spike step - measured (steps; "
                          + ", ".join(f"c={c:g}: {f:.1f} vs {m:g}, peak {p:g}" for c, f, m, p in gd) + ")",
                          float(np.median(np.abs(errors))), "median |error|, reported", True, kind="info"))
    decay = []
    for key, run in zip(keys, ordered):
        if key["family"] == "GD" or "instability/decay_crossing_step" not in run.names():
            continue
        steps, ratio = run.series("instability/ratio")
        crossed = np.flatnonzero(ratio >= 1)
        if len(crossed) and crossed[0] > 0:
            forecast = run.series("instability/decay_crossing_step")[1][crossed[0] - 1]
            decay.append((float(forecast), float(steps[crossed[0]])))
    if decay:
        rows.append(Check(f"Adam: preconditioner-decay forecast of the threshold crossing (the fastest possible) - "
                          f"measured crossing, over {len(decay)} runs (steps)",
                          float(np.median([f - m for f, m in decay])), "median, reported", True, kind="info"))
    return rows


def _ratio_panels(keys, ordered: list[RunResult], events: list[Event]) -> list[Panel]:
    panels = []
    for family in dict.fromkeys(k["family"] for k in keys):
        panel = Panel(f"{family}: sharpness / threshold", "step", "S / T", yscale="log")
        alarm_x, alarm_y, event_x, last = [], [], [], 0.0
        for key, run, event in zip(keys, ordered, events):
            if key["family"] != family or "instability/ratio" not in run.names():
                continue
            steps, ratio = run.series("instability/ratio")
            ok = np.isfinite(ratio) & (ratio > 0)
            label = ", ".join(f"{k}={v:g}" for k, v in key.items() if k != "family")
            panel.series.append(Series.of(f"_{label}", steps[ok], ratio[ok], "curve", label))
            _, alarm = run.series("instability/alarm")
            hit = ok & (alarm > 0)
            alarm_x += list(steps[hit])
            alarm_y += list(ratio[hit])
            if math.isfinite(event.step):
                event_x.append(event.step)
            last = max(last, float(run.series("loss/train")[0][-1]))
        panel.series += [Series.of("theory alarms", alarm_x, alarm_y, "measured", "alarm"),
                         Series.of("events (at S/T = 1)", event_x, np.ones(len(event_x)), "measured", "event"),
                         Series.of("threshold", [0, last], [1, 1], "reference", "threshold")]
        panels.append(panel)
    return panels


def _recall_panel(scores: list[AlarmScore]) -> Panel:
    panel = Panel("Recall at lead time", "lead (steps ahead)", "recall")
    for sc in scores:
        panel.series.append(Series.of(sc.detector, _LEADS, [sc.recall(lead) for lead in _LEADS],
                                      "theory" if sc.detector == _THEORY else "curve", sc.detector))
    return panel


def _forecast_panel(gd: list[tuple[float, float, float, float]]) -> list[Panel]:
    if not gd:
        return []
    c, forecast, measured, peak = (np.array(v, float) for v in zip(*gd))
    panel = Panel("GD catapult: spike step", "eta lambda0 / 2", "step")
    panel.series += [Series.of("forecast ln(2/p) / (2 ln(eta S - 1))", c, forecast, "theory", "forecast"),
                     Series.of("measured spike (L > 2 min)", c, measured, "measured", "spike"),
                     Series.of("measured loss peak", c, peak, "measured", "peak")]
    return [panel]

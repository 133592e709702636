"""Early-warning alarms scored against pre-registered loss events (REFERENCE 2.19).

Events, from a loss logged at every step: a *divergence* (a non-finite loss, or ``L_t > 10 L_0``) and a *spike*
(``L_t > 2 min_{s<t} L_s``); a run's event is the first step where either holds, and its kind is ``"divergence"``
when the run diverges at any point, else ``"spike"``. An alarm at step ``a`` is *true* when the run's event
follows within the horizon ``H`` (``0 <= t_e - a <= H``), else *false*; alarms after a run's event are not
counted. Scores: precision (true over counted alarms), the lead of each event run (``t_e`` minus its earliest true
alarm; ``-inf`` when none), recall at lead ``l`` (event runs with a lead of at least ``l``), and the AUROC of a
detector's statistic at ``H``: over the measured steps up to each run's event, positives are those within ``H``
steps of it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy.stats import rankdata

DIVERGENCE_FACTOR = 10.0  # L_t > 10 L_0: a divergence (REFERENCE 2.19)
SPIKE_FACTOR = 2.0  # L_t > 2 min_{s<t} L_s: a spike


@dataclass(frozen=True)
class Event:
    """A run's first event step (``inf`` when none) and kind: ``"none"``, ``"spike"`` or ``"divergence"``."""

    step: float
    kind: str


def loss_event(steps: np.ndarray, loss: np.ndarray, diverged_step: int | None = None) -> Event:
    """The first event of a loss logged at consecutive ``steps`` (module docstring); a run stopped as diverged
    at ``diverged_step`` without one in its series has its event there."""
    loss = np.asarray(loss, float)
    finite = np.isfinite(loss)
    blown = ~finite | (loss > DIVERGENCE_FACTOR * loss[0])
    running_min = np.minimum.accumulate(np.where(finite, loss, np.inf))
    spike = np.zeros(len(loss), bool)
    spike[1:] = finite[1:] & (loss[1:] > SPIKE_FACTOR * running_min[:-1])
    diverges = bool(blown.any()) or diverged_step is not None
    hit = blown | spike
    if hit.any():
        return Event(float(steps[int(np.argmax(hit))]), "divergence" if diverges else "spike")
    return Event(float(diverged_step), "divergence") if diverged_step is not None else Event(math.inf, "none")


@dataclass(frozen=True)
class AlarmScore:
    """One detector over a set of runs: ``precision`` (NaN without alarms), ``false_alarms`` (alarms with no event
    within the horizon) and ``leads`` (one per event run; ``-inf`` when not warned)."""

    detector: str
    precision: float
    false_alarms: int
    leads: np.ndarray

    def recall(self, lead: float = 0.0) -> float:
        """Share of event runs warned at least ``lead`` steps ahead."""
        return float(np.mean(self.leads >= lead)) if len(self.leads) else math.nan

    @property
    def median_lead(self) -> float:
        """Median lead over every event run (``-inf`` when at most half were warned)."""
        return float(np.median(self.leads)) if len(self.leads) else math.nan


def score_alarms(detector: str, events: Sequence[Event], alarms: Sequence[Sequence[int]],
                 horizon: float) -> AlarmScore:
    """Precision, false alarms and leads of ``alarms`` (each run's alarm steps) against ``events`` at ``horizon``."""
    true = false = 0
    leads = []
    for event, steps in zip(events, alarms, strict=True):
        ahead = event.step - np.asarray([a for a in steps if a <= event.step], float)
        hit = ahead <= horizon
        true, false = true + int(hit.sum()), false + int((~hit).sum())
        if event.kind != "none":
            leads.append(float(ahead[hit].max()) if hit.any() else -math.inf)
    counted = true + false
    return AlarmScore(detector, true / counted if counted else math.nan, false, np.array(leads, float))


def auroc(events: Sequence[Event], scores: Sequence[tuple[np.ndarray, np.ndarray]], horizon: float) -> float:
    """AUROC at ``horizon`` of per-run ``(steps, statistic)`` (NaN statistics rank lowest); NaN when one class is
    empty."""
    labels, values = [], []
    for event, (steps, stat) in zip(events, scores, strict=True):
        before = np.asarray(steps, float) <= event.step
        labels.append(event.step - np.asarray(steps, float)[before] <= horizon)
        values.append(np.nan_to_num(np.asarray(stat, float)[before], nan=-np.inf))
    y, s = np.concatenate(labels), np.concatenate(values)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return math.nan
    ranks = rankdata(s)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def replay(make: Callable[[], Callable[..., bool]], steps: np.ndarray, loss: np.ndarray,
           grad_norm: np.ndarray) -> tuple[list[int], tuple[np.ndarray, np.ndarray]]:
    """A fresh reactive detector fed a logged run step by step: its alarm steps and its ``(steps, statistic)``."""
    detector = make()
    for step, value, norm in zip(steps, loss, grad_norm, strict=True):
        detector(int(step), loss=float(value), grad_norm=float(norm))
    at, stat = zip(*detector.scores) if detector.scores else ((), ())
    return list(detector.alarms), (np.array(at, float), np.array(stat, float))

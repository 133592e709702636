"""Instability early warning: the (preconditioned) sharpness against the optimizer's own stability threshold, with a
forecast of the crossing and of the kind of event, and the reactive loss-based detectors it is scored against.

:class:`InstabilityMonitor` measures ``S`` (``lambda_max(H)``, or ``lambda_max(P^-1 H)`` for Adam and RMSprop with
``P`` read from the optimizer's state) warm-started on a fixed batch, and the threshold ``T`` of the optimizer's
current hyperparameters (:func:`lmech.theory.stability_threshold`: ``2/eta``, ``(2 + 2 beta)/eta``, ``(2 + 2 beta1)/
((1 - beta1) eta)``; read at every call, so schedules are followed). With ``r = S/T`` and ``g`` the least-squares
growth rate of ``log r`` per step over the last ``window`` measurements (REFERENCE 2.19; Cohen et al. 2021,
arXiv:2103.00065; Cohen et al. 2022, arXiv:2207.14484):

- ``r < 1``, ``"stable"``: the forecast crossing is ``step + ln(1/r)/g`` when ``g > 0``. For Adam the preconditioner
  can also decay (``v -> beta2 v`` where ``g^2 << v``, so ``P^-1/2`` grows as ``beta2^(-t/2)``): the fastest crossing
  that allows is ``step + 2 ln(1/r)/ln(1/beta2)`` (Bai et al. 2025, arXiv:2506.04805), reported apart. An alarm fires
  when an adaptive optimizer's forecast crossing is within ``horizon`` steps; a non-adaptive one sharpening toward
  ``2/eta`` is progressive sharpening, which ends at the edge of stability, not in a blow-up.
- ``1 <= r <= 1 + band``, ``"edge-of-stability"``: the self-stabilizing regime in which the sharpness hovers at the
  threshold while the loss keeps falling on average; never an alarm (the false positive of a bare ``S > 2/eta``
  rule).
- ``r > 1 + band``: beyond what self-stabilization absorbs. ``"catapult"`` up to ``catapult_ratio`` (the loss rises,
  the curvature falls below the threshold, training goes on: Lewkowycz et al. 2020, arXiv:2003.02218, where
  ``eta < 4/lambda_0``, i.e. ``r < 2``, for the two-layer linear model), ``"divergence"`` above it. Both alarm.
  Under plain GD the forecast also says when: the quadratic model's top mode holds the loss ``E = (g . u)^2 / (2 S)``
  (``g`` the gradient, ``u`` the top eigenvector) and grows by ``(eta S - 1)^2`` per step, so the loss reaches
  ``spike_factor`` times its current value after ``ln(spike_factor L / E) / (2 ln(eta S - 1))`` steps (REFERENCE
  2.19, the catapult's lead time).

The detectors (:class:`LossSpike`, :class:`GradNormZScore`, :class:`NonFinite`) share one call,
``detector(step, loss=..., grad_norm=...) -> bool``, and record their alarm steps, as the monitor does, and the
``(step, statistic)`` each alarm rule compares with its threshold (for ROC curves).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..systems._validate import ConfigError, positive_float, positive_int
from .stability import catapult_time, stability_threshold
from ._params import LossFn
from .sharpness import SharpnessTracker

KINDS = ("stable", "edge-of-stability", "catapult", "divergence")
_ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)


@dataclass(frozen=True)
class InstabilityForecast:
    """One measurement: ``ratio = sharpness / threshold``; ``growth`` (per step, of ``log ratio``; NaN with fewer than
    two measurements); ``crossing_step`` (forecast step where ``ratio`` reaches 1, NaN if not rising or crossed);
    ``decay_crossing_step`` (Adam's fastest crossing by preconditioner decay, NaN otherwise); ``event_step`` (plain
    GD above the threshold: the forecast step of the loss spike, NaN otherwise); ``top_fraction`` (plain GD: the
    share ``E / L`` of the loss in the top mode, NaN otherwise); ``kind`` (one of ``KINDS``); ``alarm``; ``matvecs``
    (Hessian-vector products this measurement took)."""

    step: int
    sharpness: float
    threshold: float
    ratio: float
    growth: float
    crossing_step: float
    decay_crossing_step: float
    event_step: float
    top_fraction: float
    kind: str
    alarm: bool
    matvecs: int


class InstabilityMonitor:
    """The theory alarm (module docstring). Call it every few steps of your own loop on a fixed batch:

    >>> monitor = InstabilityMonitor(optimizer)
    >>> for step in range(steps):
    ...     ...; optimizer.step()
    ...     if step % 10 == 0:
    ...         forecast = monitor(step, model, loss_fn, x_fixed, y_fixed)
    ...         if forecast.alarm: print(forecast.kind, "forecast at step", forecast.crossing_step)

    ``band``: how far above the threshold the edge of stability may hover; ``catapult_ratio``: the ratio above which
    the event is a divergence; ``horizon``: how many steps ahead an adaptive optimizer's crossing alarms; ``window``:
    measurements in the growth fit; ``spike_factor``: the loss rise whose time plain GD's forecast gives. Each call
    costs one warm-started Lanczos run (``matvecs`` HVPs, usually a few), and one gradient under plain GD.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, *, band: float = 0.15, catapult_ratio: float = 2.0,
                 horizon: int = 200, window: int = 5, spike_factor: float = 2.0, tol: float = 1e-3,
                 max_matvecs: int = 100) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(f"optimizer must be a torch.optim.Optimizer; got {type(optimizer).__name__}")
        try:
            stability_threshold(optimizer)
        except ValueError as e:
            raise ConfigError(f"InstabilityMonitor cannot read {type(optimizer).__name__}: {e}") from None
        positive_float("band", band)
        if not catapult_ratio > 1 + band:
            raise ConfigError(f"catapult_ratio={catapult_ratio!r} must exceed 1 + band = {1 + band:g}")
        positive_int("horizon", horizon)
        positive_int("window", window, minimum=2)
        if not spike_factor > 1:
            raise ConfigError(f"spike_factor={spike_factor!r} must exceed 1 (a rise of the loss)")
        self.spike_factor = spike_factor
        self.optimizer, self.band, self.catapult_ratio, self.horizon = optimizer, band, catapult_ratio, horizon
        self.adaptive = isinstance(optimizer, _ADAPTIVE)
        self.plain_gd = type(optimizer) is torch.optim.SGD and all(
            g.get("momentum", 0) == 0 for g in optimizer.param_groups)
        self._tracker = SharpnessTracker(tol=tol, max_matvecs=max_matvecs)
        self._history: deque[tuple[int, float]] = deque(maxlen=window)
        self.forecasts: list[InstabilityForecast] = []

    @property
    def alarms(self) -> list[int]:
        """Steps at which the monitor alarmed."""
        return [f.step for f in self.forecasts if f.alarm]

    def __call__(self, step: int, model: nn.Module, loss_fn: LossFn, x: torch.Tensor,
                 y: torch.Tensor) -> InstabilityForecast | None:
        """Measure at ``step`` (after the optimizer's update). ``None`` before an adaptive optimizer's first step,
        when its preconditioner does not exist yet."""
        if self.adaptive and not self.optimizer.state:
            return None
        threshold = stability_threshold(self.optimizer)
        finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
        try:
            res = self._tracker(model, loss_fn, x, y, self.optimizer if self.adaptive else None) if finite else None
        except np.linalg.LinAlgError:  # non-finite curvature products: the run has already blown up
            res = None
        top = float("nan")
        if res is None:  # an outcome, not a crash; the next call starts cold
            self._tracker.last = None
            sharpness, matvecs = float("nan"), 0
        else:
            sharpness, matvecs = float(res.values[0]), int(res.matvecs)
            if self.plain_gd and sharpness > 0:
                top = _top_mode_fraction(model, loss_fn, x, y, res.vectors[0], sharpness)
        forecast = self._forecast(int(step), sharpness, threshold, sharpness / threshold, matvecs, top)
        self.forecasts.append(forecast)
        return forecast

    def _forecast(self, step: int, sharpness: float, threshold: float, ratio: float, matvecs: int,
                  top: float) -> InstabilityForecast:
        nan = float("nan")
        if not math.isfinite(ratio):
            return InstabilityForecast(step, sharpness, threshold, ratio, nan, nan, nan, nan, top, "divergence", True,
                                       matvecs)
        if ratio <= 0:  # no positive curvature (a saddle's top eigenvalue at rounding level): nothing to cross
            return InstabilityForecast(step, sharpness, threshold, ratio, nan, nan, nan, nan, top, "stable", False,
                                       matvecs)
        self._history.append((step, math.log(ratio)))
        steps, logs = (np.array(v, float) for v in zip(*self._history))
        growth = float(np.polyfit(steps, logs, 1)[0]) if len(steps) >= 2 and np.ptp(steps) > 0 else nan
        crossing = decay = event = nan
        if ratio > 1 and top > 0:  # plain GD, eta S = 2 ratio; a share past 1 (beyond the quadratic model) counts as 1
            event = step + catapult_time(2 * ratio, 1.0, loss_fraction=min(top, 1.0), factor=self.spike_factor)
        if ratio < 1:
            kind = "stable"
            if growth > 0:
                crossing = step - math.log(ratio) / growth
            if isinstance(self.optimizer, (torch.optim.Adam, torch.optim.AdamW)):
                beta2 = float(self.optimizer.param_groups[0]["betas"][1])
                decay = step - 2 * math.log(ratio) / math.log(1 / beta2)
            alarm = self.adaptive and math.isfinite(crossing) and crossing - step <= self.horizon
        elif ratio <= 1 + self.band:
            kind, alarm = "edge-of-stability", False
        else:
            kind, alarm = ("catapult" if ratio <= self.catapult_ratio else "divergence"), True
        return InstabilityForecast(step, sharpness, threshold, ratio, growth, crossing, decay, event, top, kind,
                                   bool(alarm), matvecs)


def _top_mode_fraction(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, u: torch.Tensor,
                       sharpness: float) -> float:
    """``E / L`` with ``E = (g . u)^2 / (2 S)``: the quadratic model's loss in the top mode (``L = sum_i lambda_i
    c_i^2 / 2`` and ``g . u_i = lambda_i c_i``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        grads = torch.autograd.grad(loss, params)
    g = torch.cat([t.reshape(-1) for t in grads]).to(u.dtype)
    value = float(loss.detach())
    return float((g @ u) ** 2 / (2 * sharpness)) / value if value > 0 and math.isfinite(value) else float("nan")


@dataclass
class LossSpike:
    """Alarm when ``loss > factor * min`` of the losses before it (over the last ``window`` calls; all if ``None``):
    the reactive rule of llm-foundry's kill-loss-spike and Composer's spike detection."""

    factor: float = 2.0
    window: int | None = None
    alarms: list[int] = field(default_factory=list)
    scores: list[tuple[int, float]] = field(default_factory=list)  # loss / min of those before it
    _seen: deque = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        positive_float("factor", self.factor)
        if self.window is not None:
            positive_int("window", self.window)
        self._seen = deque(maxlen=self.window)

    def __call__(self, step: int, *, loss: float, grad_norm: float | None = None) -> bool:
        score = loss / min(self._seen) if self._seen and min(self._seen) > 0 else float("nan")
        self.scores.append((int(step), score if math.isfinite(loss) else math.inf))
        alarm = bool(self._seen) and math.isfinite(loss) and loss > self.factor * min(self._seen)
        if math.isfinite(loss):
            self._seen.append(loss)
        if alarm:
            self.alarms.append(int(step))
        return alarm


@dataclass
class GradNormZScore:
    """Alarm when the gradient norm's z-score against the previous ``window`` norms exceeds ``z`` (after at least
    ``min_history`` of them)."""

    z: float = 4.0
    window: int = 50
    min_history: int = 10
    alarms: list[int] = field(default_factory=list)
    scores: list[tuple[int, float]] = field(default_factory=list)  # the z-score (NaN before min_history norms)
    _seen: deque = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        positive_float("z", self.z)
        positive_int("window", self.window, minimum=2)
        positive_int("min_history", self.min_history, minimum=2)
        self._seen = deque(maxlen=self.window)

    def __call__(self, step: int, *, loss: float | None = None, grad_norm: float) -> bool:
        alarm, score = False, float("nan")
        if len(self._seen) >= self.min_history:
            mean, sd = float(np.mean(self._seen)), float(np.std(self._seen))
            score = math.inf if not math.isfinite(grad_norm) else (grad_norm - mean) / sd if sd > 0 else float("nan")
            alarm = not math.isfinite(grad_norm) or (sd > 0 and score > self.z)
        self.scores.append((int(step), score))
        if math.isfinite(grad_norm):
            self._seen.append(grad_norm)
        if alarm:
            self.alarms.append(int(step))
        return bool(alarm)


@dataclass
class NonFinite:
    """Alarm on a NaN or infinite loss (or gradient norm): the NaN stopper."""

    alarms: list[int] = field(default_factory=list)
    scores: list[tuple[int, float]] = field(default_factory=list)  # 1 for a non-finite value, else 0

    def __call__(self, step: int, *, loss: float, grad_norm: float | None = None) -> bool:
        alarm = not math.isfinite(loss) or (grad_norm is not None and not math.isfinite(grad_norm))
        self.scores.append((int(step), float(alarm)))
        if alarm:
            self.alarms.append(int(step))
        return alarm

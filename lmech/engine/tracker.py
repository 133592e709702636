"""Tracker: lmech's observables on an ordinary PyTorch training loop, recorded into the store every k steps."""
from __future__ import annotations

import math
import time
import uuid
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..observables._params import LossFn
from ..observables.metrics import loss as full_loss
from ..observables.probes import Probe, Sharpness
from ..observables.weights import snapshot
from ..store.sqlite import Store
from ..systems._validate import ConfigError, positive_float, positive_int
from ..store.result import COMPLETED, DIVERGED, RunResult
from ..observables.state import TrainState
from .loop import measure_probes, nonfinite
from .trainer import versions

_ADAPTIVE = (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop)
_LADDER = (1, 2, 5)  # auto gaps are 1, 2, 5, 10, 20, 50, ... steps, so measured steps line up across runs


def ladder_gap(steps: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... that is >= ``steps`` (the spacing of ``every="auto"``)."""
    decade = 1
    while True:
        for mantissa in _LADDER:
            if mantissa * decade >= steps:
                return mantissa * decade
        decade *= 10


def default_probes(optimizer: torch.optim.Optimizer | None) -> list[Probe]:
    """Sharpness; for an adaptive optimizer also the preconditioned sharpness (the loss is always recorded)."""
    probes: list[Probe] = [Sharpness()]
    if isinstance(optimizer, _ADAPTIVE):
        probes.append(Sharpness(preconditioned=True))
    return probes


class Tracker:
    """Measure ``probes`` on ``model`` during a loop you write, within a time budget, and store them.

    Two lines added to a plain loop (``x, y``: a fixed measurement batch, e.g. 256-1000 training examples;
    the loss is the one you train with, mean over examples)::

        tracker = lmech.Tracker(model, loss_fn, x, y, optimizer=opt, store="runs.db")
        for step in range(steps):
            opt.zero_grad(); loss_fn(model(xb), yb).backward(); opt.step()
            tracker.step()
        tracker.close()  # or use ``with lmech.Tracker(...) as tracker:``

    Schedule. ``tracker.step()`` counts one update; the tracker measures at construction (step 0) and then:

    * ``every="auto"`` (default): at multiples of a gap chosen so that measuring costs about ``budget`` (default 5%)
      of the loop's own time. After each measurement the gap is ``cost / (budget * step_time)`` (the measurement's
      wall time over the mean wall time per counted step, the loop's time outside measurements) rounded up to
      1, 2, 5, 10, 20, 50, ... steps; the next measurement is at the next multiple of that gap. The gap grows at
      most tenfold per measurement (at most 10 steps after step 0, then 100, ...), so the first, often fastest
      phase of training is measured too, and the first measurement's one-time costs do not silence the tracker for
      a whole short run. Which steps are measured thus depends on the machine's speed; pass an integer for a fixed
      schedule.
    * ``every=k``: after updates ``k``, ``2k``, ... (whatever they cost).

    ``autostep=True`` instead hooks ``optimizer.step`` so the loop needs no change.
    The loss on the measurement batch is always recorded (``loss/train``; it is also the divergence check). Default
    probes: sharpness (warm-started Lanczos) and, for Adam/AdamW/RMSprop, the preconditioned sharpness
    ``lambda_max(P^-1 H)``; any engine :class:`~lmech.Probe` works. Measurements
    go to :attr:`result` (a :class:`~lmech.RunResult`) and, with ``store``, are appended to the SQLite store
    at each measurement (nothing recorded is lost if the loop dies). A non-finite loss on the measurement
    batch ends tracking with outcome ``"diverged"``. :attr:`overhead` is the measured time spent measuring
    divided by the time spent in the loop itself (recorded as ``tracker/overhead`` on close).
    ``loggers`` (e.g. :class:`lmech.integrations.TensorBoardLogger`; anything with ``log(metrics, step)``) receive
    each measurement as it is taken, and are flushed on close (closing them is left to their owner).
    ``tracker.step(step)`` sets the count to a framework's global step instead of adding one (a measurement is
    taken at the first count at or past the next scheduled step).
    """

    def __init__(self, model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                 optimizer: torch.optim.Optimizer | None = None, every: int | str = "auto", budget: float = 0.05,
                 probes: Sequence[Probe] | None = None, store: Store | str | Path | None = None,
                 name: str = "tracked", autostep: bool = False, x_test: torch.Tensor | None = None,
                 y_test: torch.Tensor | None = None, loggers: Sequence = ()) -> None:
        if every != "auto":
            positive_int("every", every)
        positive_float("budget", budget)
        if budget >= 1:
            raise ConfigError(f"budget={budget!r} is the measuring time over the loop's time: use a fraction below 1, "
                              "e.g. 0.05 for 5%")
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)) or len(x) != len(y) or len(x) == 0:
            raise ValueError("x and y must be tensors with the same nonzero number of examples (a measurement batch)")
        if autostep and optimizer is None:
            raise ValueError("autostep=True hooks optimizer.step: pass optimizer=")
        self.every, self.budget = every, budget
        self.loggers = list(loggers)
        self.probes = list(probes) if probes is not None else default_probes(optimizer)
        empty = x[:0]
        self.state = TrainState(0, model, loss_fn, x, y, empty if x_test is None else x_test,
                                y[:0] if y_test is None else y_test, False, snapshot(model), optimizer)
        system = {"tracked": name, "model": type(model).__name__,
                  "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                  "optimizer": None if optimizer is None else type(optimizer).__name__,
                  "optimizer_defaults": None if optimizer is None else _plain(optimizer.defaults),
                  "measurement_examples": len(x), "every": every,
                  "budget": budget if every == "auto" else None}
        self.result = RunResult(f"{name}-{uuid.uuid4().hex[:12]}", None, [p.to_dict() for p in self.probes],
                                versions=versions(), info=system)
        self._owns_store = store is not None and not isinstance(store, Store)
        self.store = Store(store) if self._owns_store else store
        self.measure_seconds = 0.0
        self._counted = 0  # step() calls: the loop's time per step is measured over these
        self._last_measured, self._last_cost = 0, 0.0
        self._cap = 10  # an auto gap grows at most tenfold per measurement: 10, 100, ... steps while it ramps up
        self._start = time.perf_counter()
        self._hook = optimizer.register_step_post_hook(lambda *_: self.step()) if autostep else None
        self._measure()

    @property
    def steps(self) -> int:
        return self.state.step

    @property
    def active(self) -> bool:
        return self.result.outcome == COMPLETED

    @property
    def overhead(self) -> float:
        """Time measuring / time in the training loop (wall time since construction minus measuring)."""
        loop = self._loop_seconds()
        return self.measure_seconds / loop if loop > 0 else math.nan

    def _loop_seconds(self) -> float:
        """Wall time since construction spent outside measurements (the loop's own time)."""
        return time.perf_counter() - self._start - self.measure_seconds

    def step(self, step: int | None = None) -> None:
        """Count one optimizer update (or set the count to ``step``, a framework's global step); measure once the
        count reaches the next multiple of :attr:`gap` after the last measured step."""
        if not self.active:
            return
        self._counted += 1
        self.state.step = self.state.step + 1 if step is None else int(step)
        gap = self.gap
        if self.state.step >= self._due(gap):
            self._measure()
            self._cap = 10 * gap

    @property
    def gap(self) -> int:
        """Steps between measurements now: ``every``, or for ``"auto"`` the last measurement's cost over ``budget``
        times the loop's mean time per step, rounded up to 1, 2, 5, 10, 20, ... (see the class docstring)."""
        if self.every != "auto":
            return self.every
        per_step = self._loop_seconds() / max(self._counted, 1)
        return min(ladder_gap(self._last_cost / (self.budget * per_step)), self._cap) if per_step > 0 else 1

    def _due(self, gap: int) -> int:
        """The step at which the next measurement is due: the next multiple of ``gap`` after the last one."""
        return (self._last_measured // gap + 1) * gap

    def _measure(self) -> None:
        start = time.perf_counter()
        n_records, n_arrays = len(self.result.records), len(self.result.arrays)
        value = full_loss(self.state.model, self.state.loss_fn, self.state.x_train, self.state.y_train)
        self.result.records.append((self.state.step, "loss/train", value))
        if bool(nonfinite(value)):  # the engine's divergence rule, on the measurement batch
            self.result.outcome, self.result.diverged_step = DIVERGED, self.state.step
        else:
            measure_probes(self.probes, self.state, self.result)
        new = self.result.records[n_records:]
        for logger in self.loggers:
            logger.log({name: value for _, name, value in new}, self.state.step)
        self._last_cost = time.perf_counter() - start
        self._last_measured = self.state.step
        self.measure_seconds += self._last_cost
        self.result.wall_time = time.perf_counter() - self._start
        self._flush(new, self.result.arrays[n_arrays:], finished=not self.active)

    def _flush(self, records: list, arrays: list, finished: bool) -> None:
        if self.store is not None:
            self.store.append_run(self.result, records, arrays, finished=finished)

    def close(self) -> RunResult:
        """Stop tracking (remove the hook), record ``tracker/overhead``, mark the run finished; returns :attr:`result`."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        self.result.wall_time = time.perf_counter() - self._start
        tail = [(self.state.step, "tracker/overhead", self.overhead),
                (self.state.step, "tracker/measure_seconds", self.measure_seconds)]
        self.result.records.extend(tail)
        self._flush(tail, [], finished=True)
        for logger in self.loggers:
            logger.log({name: value for _, name, value in tail}, self.state.step)
            getattr(logger, "flush", lambda: None)()
        if self._owns_store:
            self.store.close()
        return self.result

    def __enter__(self) -> "Tracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(d: dict) -> dict:
    """JSON-safe copy of optimizer defaults (tuples to lists, tensors and other objects to str)."""
    return {k: (list(v) if isinstance(v, tuple) else v if isinstance(v, (int, float, bool, str, type(None))) else str(v))
            for k, v in d.items()}

"""The outcome of one training run: long-format metrics plus how the run ended."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..systems.system import System

COMPLETED, DIVERGED, ERROR = "completed", "diverged", "error"


@dataclass
class RunResult:
    """Metrics as ``(step, name, value)`` records; ``outcome`` is ``"completed"``, ``"diverged"`` or ``"error"``
    (the run raised; ``error`` holds the message). ``system`` is the :class:`~lmech.System` that was trained, or
    ``None`` for a run recorded from a user's own loop (:class:`~lmech.Tracker`), which ``info`` describes.

    ``arrays`` holds array-valued measurements (kernels, network outputs) as ``(step, name, array)``.
    A diverged run (non-finite training loss at ``diverged_step``) keeps every measurement before it.
    """

    run_id: str
    system: System | None
    probes: list[dict]
    records: list[tuple[int, str, float]] = field(default_factory=list)
    outcome: str = COMPLETED
    diverged_step: int | None = None
    wall_time: float = 0.0
    versions: dict = field(default_factory=dict)
    arrays: list[tuple[int, str, np.ndarray]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def config(self) -> dict[str, Any]:
        """The serialized system (or, for a tracked run, its ``info``): what the store keeps."""
        return self.system.to_dict() if self.system is not None else self.info

    def names(self) -> list[str]:
        return sorted({name for _, name, _ in self.records})

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of one metric, ordered by step."""
        rows = sorted((s, v) for s, n, v in self.records if n == name)
        if not rows:
            raise KeyError(f"metric {name!r} was not recorded; recorded: {self.names()}")
        steps, values = zip(*rows)
        return np.array(steps), np.array(values, dtype=float)

    def last(self, name: str) -> float:
        return float(self.series(name)[1][-1])

    def array(self, name: str, step: int | None = None) -> np.ndarray:
        """The array ``name`` measured at ``step`` (the last measured one when ``step`` is None)."""
        rows = sorted(((s, a) for s, n, a in self.arrays if n == name and (step is None or s == step)), key=lambda r: r[0])
        if not rows:
            names = sorted({n for _, n, _ in self.arrays})
            raise KeyError(f"array {name!r} was not recorded at step {step}; recorded arrays: {names}")
        return rows[-1][1]

    def array_series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, stacked arrays)`` of one array-valued measurement, ordered by step."""
        rows = sorted(((s, a) for s, n, a in self.arrays if n == name), key=lambda r: r[0])
        if not rows:
            raise KeyError(f"array {name!r} was not recorded")
        return np.array([s for s, _ in rows]), np.stack([a for _, a in rows])

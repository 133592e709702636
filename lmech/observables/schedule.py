"""When observables are measured: every k steps, at log-spaced steps, or at an explicit list."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..systems._validate import ConfigError, positive_int


@dataclass(frozen=True)
class Schedule:
    """Exactly one of ``every`` (steps 0, k, 2k, ... and the last), ``log_points`` (about that many
    log-spaced steps from 0 to the last) or ``at`` (explicit steps; those past the budget are dropped)."""

    every: int | None = None
    log_points: int | None = None
    at: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        given = [f for f in ("every", "log_points", "at") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ConfigError(f"schedule needs exactly one of every, log_points, at; got {given or 'none'}")
        if self.every is not None:
            positive_int("schedule.every", self.every)
        if self.log_points is not None:
            positive_int("schedule.log_points", self.log_points, minimum=2)
        if self.at is not None:
            object.__setattr__(self, "at", tuple(sorted(set(int(s) for s in self.at))))
            if any(s < 0 for s in self.at):
                raise ConfigError(f"schedule.at={self.at!r} must hold steps >= 0")

    def steps(self, total: int) -> frozenset[int]:
        """The steps in ``[0, total]`` at which to measure."""
        if self.every is not None:
            return frozenset(range(0, total + 1, self.every)) | {total}
        if self.log_points is not None:
            grid = np.unique(np.round(np.geomspace(1, total + 1, self.log_points)).astype(int) - 1)
            return frozenset(int(s) for s in grid) | {0, total}
        return frozenset(s for s in self.at if s <= total)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in
                (("every", self.every), ("log_points", self.log_points), ("at", self.at)) if v is not None}

"""Stability of optimizers: the linear-stability thresholds and the catapult's loss-growth forecast (defined next to
the sharpness they use, in :mod:`lmech.observables.stability`, re-exported here)."""
from __future__ import annotations

from ..observables.stability import adam_threshold, catapult_time, gd_threshold, heavy_ball_threshold, stability_threshold

__all__ = ["adam_threshold", "gd_threshold", "heavy_ball_threshold", "stability_threshold", "catapult_time"]

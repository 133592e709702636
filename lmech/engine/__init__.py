"""Engine: train a system and measure probes on a schedule (``engine.tracker.Tracker``, for a user's own loop, is
imported by the package root: it depends on the observables, which depend on ``engine.schedule``)."""
from .result import COMPLETED, DIVERGED, RunResult
from .schedule import Schedule
from .state import TrainState
from .trainer import initial_state, run_id, train

__all__ = ["COMPLETED", "DIVERGED", "RunResult", "Schedule", "TrainState", "initial_state", "run_id", "train"]

"""Engine: train a system and measure probes on a schedule."""
from .result import COMPLETED, DIVERGED, RunResult
from .schedule import Schedule
from .state import TrainState
from .tracker import Tracker
from .trainer import initial_state, run_id, train

__all__ = ["COMPLETED", "DIVERGED", "RunResult", "Schedule", "TrainState", "Tracker", "initial_state", "run_id", "train"]

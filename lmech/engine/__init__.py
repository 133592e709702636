"""Engine: train a system and measure probes on a schedule, one model at a time (:func:`train`), many same-shape
models together (:func:`train_stacked`), the coordinate check (:func:`coord_check`) and :class:`Tracker` for a
user's own loop."""
from ..observables.schedule import Schedule
from ..observables.state import TrainState
from ..store.result import COMPLETED, DIVERGED, RunResult
from .batched import StackedRun, train_stacked
from .coord_check import CoordCheck, coord_check
from .tracker import Tracker
from .trainer import initial_state, run_id, train

__all__ = ["COMPLETED", "DIVERGED", "RunResult", "Schedule", "TrainState", "initial_state", "run_id", "train",
           "StackedRun", "train_stacked", "CoordCheck", "coord_check", "Tracker"]

"""lmech: learning mechanics you can run.

First-principles predictions, measurements on real PyTorch training runs, and verdicts.
"""
from ._version import __version__
from .engine import RunResult, Schedule, TrainState, run_id, train
from .observables import *  # noqa: F401,F403
from .observables import __all__ as _observables
from .systems import *  # noqa: F401,F403
from .systems import __all__ as _systems

__all__ = ["__version__", "RunResult", "Schedule", "TrainState", "run_id", "train", *_observables, *_systems]

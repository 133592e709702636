"""lmech: learning mechanics you can run.

First-principles predictions, measurements on real PyTorch training runs, and verdicts.
"""
from . import engine, hyper, laws, theory
from .engine import CoordCheck, RunResult, Schedule, Tracker, TrainState, coord_check, run_id, train
from ._version import __version__
from .hyper import Parametrization, parametrize
from .laws import LAWS, Check, Experiment, Law, Panel, Series, Verdict, get_law, register
from .observables import *  # noqa: F401,F403
from .observables import __all__ as _observables
from .report import plot_coord_check, plot_density, render_report, write_report
from .runner import check, run_experiments
from .store import Store
from .systems import *  # noqa: F401,F403
from .systems import __all__ as _systems
from .theory import *  # noqa: F401,F403
from .theory import __all__ as _theory

__all__ = ["__version__", "engine", "hyper", "laws", "theory", "CoordCheck", "coord_check", "Parametrization", "parametrize",
           "RunResult", "Schedule", "TrainState", "Tracker", "run_id", "train", "LAWS", "Check", "Experiment", "Law",
           "Panel", "Series", "Verdict", "get_law", "register", "plot_coord_check", "plot_density", "render_report",
           "write_report", "check", "run_experiments", "Store", *_observables, *_systems, *_theory]

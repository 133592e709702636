"""lmech: learning mechanics you can run.

First-principles predictions, measurements on real PyTorch training runs, and verdicts. The package root holds what
a user calls: the system configs, ``train``, ``check``, ``sweep``, the executors, the instruments and their probes,
``Tracker``, ``parametrize`` and ``coord_check``, ``fit_scaling_law``, ``fit_loss_curve`` and
``fit_multi_power_law`` (for a user's own scaling data and loss curves), the store and the report. Theory
(:mod:`lmech.theory`) and the laws (:mod:`lmech.laws`) stay in their subpackages.
"""
from . import engine, hyper, integrations, laws, observables, report, store, systems, theory
from ._version import __version__
from .engine import RunResult, StackedRun, Tracker, TrainState, coord_check, train, train_stacked
from .diagnosis import Diagnosis, Finding, diagnose
from .engine.executor import InProcess, LocalPool, Ray
from .hyper import Parametrization, parametrize
from .observables import *  # noqa: F401,F403  (the instruments and Schedule; probe classes are in lmech.probes)
from .observables import __all__ as _observables
from . import probes
from .report import plot_coord_check, plot_density, write_report
from .runner import check
from .store import Runs, Store
from .sweep import sweep
from .theory.loss_curves import MultiPowerFit, fit_loss_curve, fit_multi_power_law
from .theory.scaling import ScalingFit, fit_scaling_law
from .systems import *  # noqa: F401,F403
from .systems import __all__ as _systems

__all__ = ["__version__", "engine", "hyper", "integrations", "laws", "observables", "probes", "report", "systems", "theory",
           "train", "check", "sweep", "InProcess", "LocalPool", "Ray", "Tracker", "RunResult", "Runs",
           "Store", "StackedRun", "train_stacked", "TrainState", "Parametrization", "parametrize", "coord_check",
           "plot_coord_check", "plot_density", "write_report", "ScalingFit", "fit_scaling_law",
           "MultiPowerFit", "fit_loss_curve", "fit_multi_power_law", "diagnose", "Diagnosis", "Finding",
           *_observables, *_systems]

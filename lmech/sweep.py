"""User sweeps: a base system, axes of config fields to vary, probes; the grid runs through the same executors and
store as :func:`lmech.check`, and comes back as the :class:`~lmech.laws.Runs` view keyed by the axes.

A sweep file (``lmech sweep GRID.json``)::

    {"base": {"architecture": {"kind": "mlp", "width": 64}, "data": {"kind": "digits", "n_train": 500},
              "task": {"loss": "mse"}, "rule": {"lr": 0.1, "steps": 200}},
     "axes": {"rule.lr": [0.05, 0.1, 0.2], "architecture.width": [64, 256]},
     "probes": [{"name": "loss", "schedule": {"every": 10}}]}

Axis names are dotted paths into the system's sections (``section.field``); the grid is their Cartesian product,
each point keyed by the axes' field names (``{"rule.lr": 0.1, "architecture.width": 256}``).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable, Mapping, Sequence

from .engine.executor import Executor
from .engine.experiment import Experiment
from .observables.probes import Loss, Probe, probe_from_dict
from .observables.schedule import Schedule
from .runner import Progress, StepProgress, run_experiments
from .store import Store
from .store.result import RunResult
from .store.runs import Runs
from .systems._validate import ConfigError
from .systems.system import System

SECTIONS = ("architecture", "data", "task", "rule")


def sweep_experiments(base: System | Mapping[str, Any], axes: Mapping[str, Sequence[Any]],
                      probes: Sequence[Probe | Mapping[str, Any]] | None = None) -> list[Experiment]:
    """The grid's experiments: ``base`` with every combination of ``axes`` values substituted (each point validated as
    a :class:`System`); ``probes`` default to training and test loss at about 100 steps."""
    config = (base if isinstance(base, System) else System.from_dict(dict(base))).to_dict()  # complete and valid
    if not isinstance(axes, Mapping) or not axes:
        raise ConfigError("sweep axes must be a non-empty mapping such as {'rule.lr': [0.05, 0.1]}")
    for name, values in axes.items():
        section, _, field = name.partition(".")
        if section not in SECTIONS or not field or "." in field:
            raise ConfigError(f"sweep axis {name!r} must be section.field with section one of {', '.join(SECTIONS)} "
                              "(e.g. 'rule.lr', 'architecture.width')")
        if field not in config[section]:
            fields = sorted(k for k in config[section] if k != "kind")
            raise ConfigError(f"sweep axis {name!r}: {section} has no field {field!r}; its fields: {', '.join(fields)}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ConfigError(f"sweep axis {name!r} needs a non-empty list of values, got {values!r}")
    out = []
    for point in itertools.product(*axes.values()):
        cfg = {k: dict(v) if isinstance(v, Mapping) else v for k, v in config.items()}
        for name, value in zip(axes, point):
            section, _, field = name.partition(".")
            cfg[section][field] = value
        system = System.from_dict(cfg)
        measured = _probes(probes, system.rule.steps)
        out.append(Experiment(dict(zip(axes, point)), system, measured))
    return out


def _probes(probes: Sequence[Probe | Mapping[str, Any]] | None, steps: int) -> list[Probe]:
    if probes is None:
        every = Schedule(every=max(steps // 100, 1))
        return [Loss(every), Loss(every, split="test")]
    return [p if isinstance(p, Probe) else probe_from_dict(dict(p)) for p in probes]


def sweep(base: System | Mapping[str, Any], axes: Mapping[str, Sequence[Any]],
          probes: Sequence[Probe | Mapping[str, Any]] | None = None, *, store: Store | None = None,
          executor: Executor | None = None, force: bool = False, device: str = "cpu",
          progress: Progress | None = None, step_progress: StepProgress | None = None,
          on_run: Callable[[RunResult], None] | None = None) -> Runs:
    """Train the grid of ``axes`` around ``base`` (see the module docstring) and return its :class:`Runs`, keyed by
    the axes (``runs.where(**{"architecture.width": 256})``, ``runs.table()``). Stored runs are reused; runs that
    differ only in ``rule.lr`` and the seeds, with probes that stack (:meth:`~lmech.Probe.stacks`), train together as
    one batched task."""
    experiments = sweep_experiments(base, axes, probes)
    return run_experiments(experiments, store, force=force, device=device, executor=executor, progress=progress,
                           step_progress=step_progress, on_run=on_run)

"""An experiment: one training run a law or a sweep needs, named by a typed key rather than a label string."""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping, Sequence

from ..observables.probes import Probe
from ..store.runs import Key, make_key
from ..systems.system import System
from .trainer import run_id


@dataclass(frozen=True)
class Experiment:
    """``key`` names the run inside its law or sweep (``{"width": 256, "seed": 1}``, or a frozen dataclass, kept as a
    :class:`~lmech.store.runs.Key`); ``system`` is what to train and ``probes`` what to measure on it."""

    key: Key
    system: System
    probes: tuple[Probe, ...]

    def __init__(self, key: Mapping[str, Any] | Any, system: System, probes: Sequence[Probe] = ()) -> None:
        if not isinstance(system, System):
            raise TypeError(f"Experiment.system must be a lmech System, got {type(system).__name__}")
        object.__setattr__(self, "key", make_key(key))
        object.__setattr__(self, "system", system)
        object.__setattr__(self, "probes", tuple(probes))

    @property
    def label(self) -> str:
        """``"width=256 seed=1"``: the key as text, for progress lines and the report."""
        return self.key.label

    @cached_property
    def run_id(self) -> str:
        """The content hash of the system and probes (:func:`lmech.engine.trainer.run_id`), computed once."""
        return run_id(self.system, self.probes)



"""A learning system: architecture + data + task + learning rule, serializable, with a stable id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Union

from ._validate import ConfigError, one_of
from .architecture import ARCHITECTURES, MLP, DeepLinear, ResidualMLP, Transformer
from .data import (DATASETS, MNIST1D, CircleFourier, Digits, DigitsPriorTeacher, ModularArithmetic, MultiIndex,
                   MultitaskParity, PowerLawFeatures, TeacherStudent, WhitenedLinear)
from .learning_rule import LearningRule
from .task import Task

Architecture = Union[MLP, DeepLinear, ResidualMLP, Transformer]
Data = Union[WhitenedLinear, TeacherStudent, MNIST1D, Digits, DigitsPriorTeacher, MultiIndex, ModularArithmetic,
             CircleFourier, MultitaskParity, PowerLawFeatures]

SCHEMA_VERSION = 1


def config_dict(cfg: Any) -> dict:
    """Plain-JSON form of a config dataclass, with its ``kind`` when it has one."""
    out = {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    kind = getattr(type(cfg), "kind", None)
    return {"kind": kind, **out} if kind else out


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def stable_hash(obj: Any, length: int = 16) -> str:
    """SHA-256 of canonical JSON (sorted keys, no whitespace), truncated to ``length`` hex digits."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _from_dict(registry: dict, section: str, d: dict) -> Any:
    if not isinstance(d, dict):
        raise ConfigError(f"{section} must be a mapping, got {type(d).__name__}")
    d = dict(d)
    kind = d.pop("kind", None)
    one_of(f"{section}.kind", kind, registry)
    cls = registry[kind]
    return _build(cls, section, d)


def _build(cls: type, section: str, d: dict) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"{section} has unknown field(s) {unknown}; allowed: {sorted(names)}")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    try:
        return cls(**d)
    except TypeError as exc:  # a missing required field
        raise ConfigError(f"{section}: {exc}") from None


@dataclass(frozen=True)
class System:
    """The four ingredients that fix a training run (Simon et al. 2026, arXiv:2604.21691, Sec. 2).

    ``System.id`` is a content hash of the canonical JSON, so equal configs share an id across
    processes and machines; the store uses it to avoid recomputing identical systems.
    """

    architecture: Architecture
    data: Data
    task: Task
    rule: LearningRule

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, tuple(ARCHITECTURES.values())):
            raise ConfigError(f"architecture must be one of {sorted(ARCHITECTURES)}")
        if not isinstance(self.data, tuple(DATASETS.values())):
            raise ConfigError(f"data must be one of {sorted(DATASETS)}")
        if self.rule.init == "aligned" and not (
            isinstance(self.architecture, DeepLinear) and isinstance(self.data, WhitenedLinear)
        ):
            raise ConfigError("rule.init='aligned' needs a deep_linear architecture on whitened_linear data; use rule.init='normal'")
        if self.task.loss == "cross_entropy" and isinstance(self.data, (WhitenedLinear, TeacherStudent)):
            raise ConfigError(f"task.loss='cross_entropy' needs labelled data (mnist1d, digits), not {self.data.kind}; use task.loss='mse'")
        tokens = isinstance(self.data, ModularArithmetic) and self.data.encoding == "tokens"
        if isinstance(self.architecture, Transformer) != tokens:
            raise ConfigError("architecture 'transformer' reads token sequences: pair it with data 'modular_arithmetic' "
                              "(encoding 'tokens'), and other architectures with vector data (modular_arithmetic "
                              "with encoding='one_hot')")
        if self.rule.batch_size is not None and self.rule.batch_size > self.data.n_train:
            raise ConfigError(f"rule.batch_size={self.rule.batch_size} exceeds data.n_train={self.data.n_train}")

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "architecture": config_dict(self.architecture),
            "data": config_dict(self.data),
            "task": config_dict(self.task),
            "rule": config_dict(self.rule),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "System":
        if not isinstance(d, dict):
            raise ConfigError("a system must be a mapping with architecture, data, task and rule")
        missing = [k for k in ("architecture", "data", "task", "rule") if k not in d]
        if missing:
            raise ConfigError(f"system is missing {missing}; a system needs architecture, data, task and rule")
        return cls(
            architecture=_from_dict(ARCHITECTURES, "architecture", d["architecture"]),
            data=_from_dict(DATASETS, "data", d["data"]),
            task=_build(Task, "task", d["task"]),
            rule=_build(LearningRule, "rule", d["rule"]),
        )

    @property
    def id(self) -> str:
        return stable_hash(self.to_dict())

    def replace(self, **sections: Any) -> "System":
        """A copy with whole sections swapped, e.g. ``system.replace(rule=rule)``."""
        return dataclasses.replace(self, **sections)

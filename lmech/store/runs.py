"""Runs by key: the typed view of a law's or a sweep's runs that evaluation queries.

Each run is named by a :class:`Key`, an immutable mapping such as ``{"scheme": "mup", "width": 256, "seed": 1}``.
:class:`Runs` selects by key fields (``runs.where(width=256)``, ``runs.one(width=256, seed=1)``), walks an axis
(``runs.sweep("width")``, ``runs.group("width")``) and tabulates (``runs.table()``: one row per run with its key,
its configuration and its final metrics), so no law parses a label string.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Iterator, Mapping

from .result import RunResult


class Key(Mapping[str, Any]):
    """An immutable, hashable, ordered mapping of key fields to plain values (numbers, strings, tuples)."""

    __slots__ = ("_items", "_hash")

    def __init__(self, items: Iterable[tuple[str, Any]] = ()) -> None:
        pairs = tuple((str(k), _plain(k, v)) for k, v in items)
        if len({k for k, _ in pairs}) != len(pairs):
            raise ValueError(f"key fields repeat: {[k for k, _ in pairs]}")
        self._items = pairs
        self._hash = hash(frozenset(pairs))  # keys are looked up often (Runs, the driver's bookkeeping)

    def __getitem__(self, name: str) -> Any:
        for k, v in self._items:
            if k == name:
                return v
        raise KeyError(f"key {self.label!r} has no field {name!r}; fields: {[k for k, _ in self._items]}")

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._items) == dict(other)

    def __repr__(self) -> str:
        return f"Key({dict(self._items)!r})"

    @property
    def label(self) -> str:
        """``"width=256 seed=1"``."""
        return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self._items)

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in self._items}


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, (int, float, str)):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, (tuple, list)):
        return tuple(_plain(name, v) for v in value)
    raise TypeError(f"key field {name!r} = {value!r}: key values must be numbers, strings or tuples of them")


def make_key(key: Mapping[str, Any] | Any) -> Key:
    """A :class:`Key` from a mapping or a dataclass instance (its fields, in order)."""
    if isinstance(key, Key):
        return key
    if isinstance(key, Mapping):
        return Key(key.items())
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        return Key((f.name, getattr(key, f.name)) for f in dataclasses.fields(key))
    raise TypeError(f"an experiment key must be a dict or a dataclass instance such as {{'width': 256, 'seed': 1}}, "
                    f"got {type(key).__name__}")


class Runs(Mapping[Key, RunResult]):
    """Runs by :class:`Key`, in the order the experiments were given. ``runs[{"width": 256}]`` needs the whole key;
    :meth:`one`, :meth:`where`, :meth:`sweep`, :meth:`group` and :meth:`table` query by fields."""

    def __init__(self, pairs: Iterable[tuple[Mapping[str, Any] | Key, RunResult]] = ()) -> None:
        self._runs: dict[Key, RunResult] = {}
        for key, run in pairs:
            key = make_key(key)
            if key in self._runs:
                raise ValueError(f"two runs share the key {key.label!r}")
            self._runs[key] = run

    def __getitem__(self, key: Mapping[str, Any]) -> RunResult:
        try:
            return self._runs[make_key(key)]
        except KeyError:
            raise KeyError(f"no run with key {make_key(key).label!r}; keys look like {self._example()}") from None

    def __iter__(self) -> Iterator[Key]:
        return iter(self._runs)

    def __len__(self) -> int:
        return len(self._runs)

    def __repr__(self) -> str:
        return f"Runs({len(self)} runs{', e.g. ' + self._example() if self else ''})"

    def _example(self) -> str:
        return next(iter(self._runs)).label if self._runs else "(none)"

    def where(self, **fields: Any) -> "Runs":
        """The runs whose key has every given field equal to its value (a list or set value: any of them; a tuple is a
        value)."""
        self._check_fields(fields)

        def match(key: Key) -> bool:
            return all(key.get(f) in v if isinstance(v, (list, set)) else key.get(f) == v for f, v in fields.items())
        return Runs((k, r) for k, r in self._runs.items() if match(k))

    def one(self, **fields: Any) -> RunResult:
        """The single run matching ``fields``; an error says how many matched."""
        found = self.where(**fields)
        if len(found) != 1:
            raise KeyError(f"{len(found)} runs match {fields} (need exactly one); keys look like {self._example()}")
        return next(iter(found.values()))

    def values_of(self, field: str) -> list[Any]:
        """The distinct values of ``field``, sorted."""
        self._check_fields({field: None})
        return sorted({k[field] for k in self._runs if field in k})

    def group(self, field: str) -> list[tuple[Any, "Runs"]]:
        """``[(value, runs with that value), ...]`` for each value of ``field``, sorted by value."""
        return [(v, self.where(**{field: v})) for v in self.values_of(field)]

    def sweep(self, field: str) -> tuple[list[Any], list[RunResult]]:
        """The ordered values of ``field`` and the one run at each (select the other fields with :meth:`where`
        first, or use :meth:`group` when several runs share a value)."""
        values, runs = [], []
        for v, sub in self.group(field):
            if len(sub) != 1:
                raise ValueError(f"sweep({field!r}): {len(sub)} runs have {field}={v!r} ({[k.label for k in sub]}); "
                                 f"narrow with where(...) or use group({field!r})")
            values.append(v)
            runs.append(next(iter(sub.values())))
        return values, runs

    def table(self):
        """A pandas DataFrame, one row per run: its key fields, ``run_id``, ``outcome``, the flattened system config
        (``architecture.width``, ``rule.lr``, ...) and the last value of every scalar metric."""
        import pandas as pd

        rows = []
        for key, run in self._runs.items():
            row: dict[str, Any] = dict(key.to_dict())
            row.update(run_id=run.run_id, outcome=run.outcome)
            if run.system is not None:
                row.update(_flatten(run.system.to_dict()))
            row.update({name: run.last(name) for name in run.names()})
            rows.append(row)
        return pd.DataFrame(rows)

    def labels(self) -> dict[str, RunResult]:
        """``{key label: run}``, for reports and progress lines."""
        return {k.label: r for k, r in self._runs.items()}

    def _check_fields(self, fields: Mapping[str, Any]) -> None:
        known = {f for k in self._runs for f in k}
        unknown = set(fields) - known
        if self._runs and unknown:
            raise KeyError(f"unknown key field(s) {sorted(unknown)}; the runs' keys have {sorted(known)}")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = tuple(v) if isinstance(v, list) else v
    return out

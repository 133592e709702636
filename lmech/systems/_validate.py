"""Field checks shared by the config dataclasses: each raises a ValueError naming the field and the fix."""
from __future__ import annotations

from typing import Any, Iterable


class ConfigError(ValueError):
    """A config field holds a value lmech cannot use; the message names the field and the fix."""


def one_of(field: str, value: Any, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ConfigError(f"{field}={value!r} is not supported; allowed values: {', '.join(map(repr, allowed))}")


def positive_int(field: str, value: Any, *, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{field}={value!r} must be an integer >= {minimum}")


def positive_float(field: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value
    ok = ok and (value >= 0 if allow_zero else value > 0) and value != float("inf")
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{field}={value!r} must be a finite number {bound}")


def in_unit_interval(field: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value < 1.0:
        raise ConfigError(f"{field}={value!r} must be a number in [0, 1)")


_SIMPLE = {"int": ((int,), "an integer"), "float": ((int, float), "a number"), "bool": ((bool,), "True or False"),
           "str": ((str,), "a string")}


def check_types(config: Any, section: str) -> None:
    """Every field of the dataclass ``config`` holds a value of its annotated type (``int``, ``float``, ``bool``,
    ``str``, ``tuple[...]``, each optionally ``| None``; a bool is not a number), else a :class:`ConfigError` naming
    ``section.field``, the value and the type it needs."""
    import dataclasses

    for f in dataclasses.fields(config):
        options = [o.strip() for o in str(f.type).split("|")]
        value = getattr(config, f.name)
        if value is None and "None" in options:
            continue
        kind = options[0].split("[")[0]
        if kind == "tuple":
            ok, need = isinstance(value, (tuple, list)), "a list of values"
        elif kind in _SIMPLE:
            types, need = _SIMPLE[kind]
            ok = isinstance(value, types) and (kind == "bool" or not isinstance(value, bool))
        else:
            continue
        if not ok:
            need += " or null" if "None" in options else ""
            raise ConfigError(f"{section}.{f.name}={value!r} must be {need}, not {type(value).__name__}")

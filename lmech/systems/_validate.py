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

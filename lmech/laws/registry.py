"""The atlas: the registry of laws, by id."""
from __future__ import annotations

from .base import Law

LAWS: dict[str, Law] = {}


def register(cls: type[Law]) -> type[Law]:
    """Class decorator: add one instance of ``cls`` to :data:`LAWS` under ``cls.id``."""
    if cls.id in LAWS:
        raise ValueError(f"law id {cls.id!r} is registered twice")
    LAWS[cls.id] = cls()
    return cls


def get_law(law_id: str) -> Law:
    if law_id not in LAWS:
        raise ValueError(f"unknown law {law_id!r}; known laws: {', '.join(sorted(LAWS))} (see `lmech list`)")
    return LAWS[law_id]

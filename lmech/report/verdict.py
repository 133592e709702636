"""Verdicts and their figures as plain data: what a law returns and what the report renders.

A :class:`Verdict` holds the status of one law at one scale, its error against a tolerance, the
:class:`Check` rows behind the status and figure :class:`Panel` s of :class:`Series` (theory as lines,
measurements as dots). Everything serializes to JSON (:meth:`Verdict.to_dict`) for the store.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PASS, FAIL, INCONCLUSIVE, OUT_OF_REGIME, DIVERGED = "pass", "fail", "inconclusive", "out-of-regime", "diverged"
STATUSES = (PASS, FAIL, INCONCLUSIVE, OUT_OF_REGIME, DIVERGED)
CHECK_KINDS = ("claim", "regime", "data", "info")


@dataclass
class Series:
    """One line or set of dots in a figure panel. ``kind``: ``theory`` (line), ``measured`` (dots),
    ``reference`` (dashed line, e.g. a threshold), ``curve`` (measured dots joined by a line, e.g. loss against
learning rate). Series sharing ``group`` share a colour; a label starting with ``_`` stays out of the legend.
``low``/``high`` (optional, one per point) draw an error bar from ``low`` to ``high``, e.g. the spread over seeds."""

    label: str
    x: list[float]
    y: list[float]
    kind: str = "measured"
    group: str = ""
    low: list[float] | None = None
    high: list[float] | None = None

    @classmethod
    def of(cls, label: str, x: Any, y: Any, kind: str = "measured", group: str = "", *, low: Any = None,
           high: Any = None) -> "Series":
        def floats(v: Any) -> list[float] | None:
            return None if v is None else [float(a) for a in np.ravel(v)]
        return cls(label, floats(x), floats(y), kind, group or label, floats(low), floats(high))


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"


@dataclass
class Check:
    """A named measured quantity compared with a bound; ``ok`` says whether it holds.

    ``kind`` says what a violation means: ``"claim"`` (the theory's prediction is off: the law fails),
    ``"regime"`` (the runs are outside the regime where the theory applies: out-of-regime), ``"data"`` (too few
    usable points to decide, e.g. an optimum on a grid's edge: inconclusive) or ``"info"`` (reported next to the
    others, never changes the status: a comparison the theory does not commit to). ``headline`` marks the checks the
    report and the summary lead with (the law's main comparisons).
    """

    name: str
    value: float
    bound: str
    ok: bool
    kind: str = "claim"
    headline: bool = False

    def __post_init__(self) -> None:  # plain Python types, so verdicts serialize to JSON
        self.value, self.ok, self.headline = float(self.value), bool(self.ok), bool(self.headline)
        if self.kind not in CHECK_KINDS:
            raise ValueError(f"Check.kind={self.kind!r} must be one of {CHECK_KINDS}")


def derive_status(checks: list[Check], *, diverged: bool = False) -> str:
    """The verdict status from its checks: an unpredicted divergence gives ``diverged``; else a failed regime check
    ``out-of-regime``; else a failed data check ``inconclusive``; else a failed claim ``fail``; else ``pass``
    (``info`` checks never count)."""
    if diverged:
        return DIVERGED
    for kind, status in (("regime", OUT_OF_REGIME), ("data", INCONCLUSIVE), ("claim", FAIL)):
        if any(not c.ok for c in checks if c.kind == kind):
            return status
    return PASS


@dataclass
class Verdict:
    """The outcome of checking one law at one scale.

    ``error`` is the law's error metric (``metric`` says what it is) and ``tolerance`` its pass bound;
    ``checks`` lists every per-system comparison and regime condition behind the status.
    """

    law: str
    scale: str
    status: str
    metric: str
    error: float
    tolerance: float
    summary: str
    checks: list[Check] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    systems: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Verdict":
        d = dict(d)
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        d["panels"] = [Panel(**{**p, "series": [Series(**s) for s in p["series"]]}) for p in d.get("panels", [])]
        return cls(**d)

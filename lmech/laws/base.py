"""Laws and verdicts: a claim, the systems it runs, a prediction, a measurement and a tolerance."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from ..engine.result import RunResult
from ..observables.probes import Probe
from ..systems.system import System

PASS, FAIL, INCONCLUSIVE, OUT_OF_REGIME, DIVERGED = "pass", "fail", "inconclusive", "out-of-regime", "diverged"
STATUSES = (PASS, FAIL, INCONCLUSIVE, OUT_OF_REGIME, DIVERGED)
SCALES = ("quick", "full")


@dataclass
class Experiment:
    """One training run a law needs: a label, the system, and what to measure."""

    label: str
    system: System
    probes: list[Probe]


@dataclass
class Series:
    """One line or set of dots in a figure panel. ``kind``: ``theory`` (line), ``measured`` (dots),
    ``reference`` (dashed line, e.g. a threshold), ``curve`` (measured dots joined by a line, e.g. loss against
learning rate). Series sharing ``group`` share a colour; a label starting with ``_`` stays out of the legend."""

    label: str
    x: list[float]
    y: list[float]
    kind: str = "measured"
    group: str = ""

    @classmethod
    def of(cls, label: str, x: Any, y: Any, kind: str = "measured", group: str = "") -> "Series":
        return cls(label, [float(v) for v in np.ravel(x)], [float(v) for v in np.ravel(y)], kind, group or label)


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
    """A named measured quantity compared with a bound; ``ok`` says whether it holds."""

    name: str
    value: float
    bound: str
    ok: bool

    def __post_init__(self) -> None:  # plain Python types, so verdicts serialize to JSON
        self.value, self.ok = float(self.value), bool(self.ok)


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


class Law:
    """Base class. Subclasses set the metadata and implement :meth:`experiments` and :meth:`evaluate`.

    ``evaluate`` must compute its prediction from theory and the configs only (blind to the
    measurement) and compare it with the runs; :meth:`verdict` fills in the shared fields.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    pillar: ClassVar[str]
    claim: ClassVar[str]
    citation: ClassVar[str]
    regime: ClassVar[str]
    tolerance_note: ClassVar[str]
    divergence_predicted: ClassVar[bool] = False  # True when some runs are meant to diverge (e.g. the catapult law)

    def experiments(self, scale: str) -> list[Experiment]:
        raise NotImplementedError

    def evaluate(self, runs: dict[str, RunResult], scale: str) -> Verdict:
        raise NotImplementedError

    def verdict(self, scale: str, runs: dict[str, RunResult], *, status: str, metric: str, error: float,
                tolerance: float, summary: str, checks: list[Check], panels: list[Panel]) -> Verdict:
        """Assemble a :class:`Verdict` with this law's metadata, configs and run ids; a diverged run turns a
        non-passing status into ``diverged`` unless the law predicts divergence (``divergence_predicted``)."""
        diverged = [label for label, r in runs.items() if r.outcome == DIVERGED]
        if diverged and status != PASS and not self.divergence_predicted:
            status = DIVERGED
            summary = f"run(s) {', '.join(diverged)} diverged; " + summary
        meta = {"title": self.title, "pillar": self.pillar, "claim": self.claim, "citation": self.citation,
                "regime": self.regime, "tolerance": self.tolerance_note}
        return Verdict(self.id, scale, status, metric, float(error), float(tolerance), summary, checks, panels,
                       {label: r.system for label, r in runs.items()}, {label: r.run_id for label, r in runs.items()}, meta)


def loglog_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``log y`` against ``log x``: a power law's exponent."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def power_law(x: Any, y: Any, exponent: float) -> np.ndarray:
    """The curve ``c x^exponent`` with ``c`` fitted to ``y`` in log space: a theory line with a fixed exponent."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.exp(np.mean(np.log(y) - exponent * np.log(x))) * x ** exponent


def status_from(checks: list[Check]) -> str:
    return PASS if all(c.ok for c in checks) else FAIL

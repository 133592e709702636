"""Laws: a claim, the systems it runs, a prediction, a measurement and a tolerance.

A law is one class with metadata, ``settings`` (one frozen dataclass per scale), :meth:`Law.design` (the
experiments for a setting, each named by a typed key) and :meth:`Law.judge` (prediction from theory and the
configs, measurement from the runs, checks and figure panels). The base class turns that into the public
:meth:`Law.experiments` / :meth:`Law.evaluate` by scale and derives the verdict's status from the checks.
"""
from __future__ import annotations

from typing import Any, ClassVar, Iterable, Mapping

import numpy as np

from ..engine.experiment import Experiment
from ..report.verdict import DIVERGED, Check, Panel, Verdict, derive_status
from ..store.result import ERROR, RunResult
from ..store.runs import Runs
from ..systems._validate import one_of

SCALES = ("quick", "full")


class Law:
    """Base class. Subclasses set the metadata and ``settings`` and implement :meth:`design` and :meth:`judge`.

    ``judge`` must compute its prediction from theory and the configs only (blind to the measurement), compare it
    with the runs and return :meth:`verdict`; it never sets a status: the status follows from the checks' kinds
    (:func:`~lmech.report.verdict.derive_status`).
    """

    id: ClassVar[str]
    title: ClassVar[str]
    pillar: ClassVar[str]
    claim: ClassVar[str]
    citation: ClassVar[str]
    regime: ClassVar[str]
    tolerance_note: ClassVar[str]
    settings: ClassVar[Mapping[str, Any]]  # scale -> a frozen dataclass instance
    divergence_predicted: ClassVar[bool] = False  # True when some runs are meant to diverge (e.g. the catapult law)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        settings = cls.__dict__.get("settings")
        if settings is None:  # an abstract family base (e.g. the edge-of-stability laws' HoverLaw)
            return
        if set(settings) != set(SCALES):
            raise TypeError(f"law {cls.__name__}: settings must have exactly the scales {SCALES}, got {sorted(settings)}")
        for scale, s in settings.items():
            params = getattr(type(s), "__dataclass_params__", None)
            if params is None or not params.frozen:
                raise TypeError(f"law {cls.__name__}: settings[{scale!r}] must be a frozen dataclass instance")

    # what a law implements ------------------------------------------------------------------------
    def design(self, s: Any) -> list[Experiment]:
        """The experiments for setting ``s`` (empty for a law that needs no training run)."""
        raise NotImplementedError

    def judge(self, runs: Runs, s: Any) -> Verdict:
        """Prediction vs measurement on ``runs`` (keyed as :meth:`design` keyed them) at setting ``s``."""
        raise NotImplementedError

    # what the runner and tests call -----------------------------------------------------------------
    def setting(self, scale: str) -> Any:
        one_of("scale", scale, SCALES)
        return self.settings[scale]

    def experiments(self, scale: str) -> list[Experiment]:
        return self.design(self.setting(scale))

    def evaluate(self, runs: Runs | Mapping | Iterable[tuple[Any, RunResult]], scale: str) -> Verdict:
        """The verdict at ``scale`` on ``runs`` (a :class:`Runs`, or pairs/a mapping of key to run)."""
        runs = runs if isinstance(runs, Runs) else Runs(runs.items() if isinstance(runs, Mapping) else runs)
        s = self.setting(scale)
        failed = [(k.label, r.error) for k, r in runs.items() if r.outcome == ERROR]
        verdict = self._failed_runs(runs, failed) if failed else self.judge(runs, s)
        verdict.scale = scale
        verdict.meta["settings"] = repr(s)
        return verdict

    def _failed_runs(self, runs: Runs, failed: list[tuple[str, str | None]]) -> Verdict:
        """Inconclusive: some runs raised instead of training (their messages in the summary)."""
        check = Check("runs that raised an error instead of training", len(failed), "= 0 (else inconclusive)", False,
                      kind="data", headline=True)
        summary = f"{len(failed)} of {len(runs)} runs failed: " + "; ".join(f"{k}: {e}" for k, e in failed[:3])
        return self.verdict(runs, metric="runs that failed", error=float(len(failed)), tolerance=0.0, summary=summary,
                            checks=[check], panels=[])

    def verdict(self, runs: Runs, *, metric: str, error: float, tolerance: float, summary: str,
                checks: list[Check], panels: list[Panel]) -> Verdict:
        """Assemble the :class:`Verdict`: this law's metadata, configs and run ids, the status derived from
        ``checks`` (a run that diverged gives ``diverged`` unless the law predicts divergence)."""
        diverged = [k.label for k, r in runs.items() if r.outcome == DIVERGED]
        unpredicted = bool(diverged) and not self.divergence_predicted
        status = derive_status(checks, diverged=unpredicted)
        if unpredicted:
            summary = f"run(s) {', '.join(diverged)} diverged; " + summary
        meta = {"title": self.title, "pillar": self.pillar, "claim": self.claim, "citation": self.citation,
                "regime": self.regime, "tolerance": self.tolerance_note}
        labelled = runs.labels()
        return Verdict(self.id, "", status, metric, float(error), float(tolerance), summary, checks, panels,
                       {label: r.config() for label, r in labelled.items()},
                       {label: r.run_id for label, r in labelled.items()}, meta)


def loglog_slope(x: Any, y: Any) -> float:
    """Least-squares slope of ``log y`` against ``log x``: a power law's exponent."""
    return float(np.polyfit(np.log(np.asarray(x, float)), np.log(np.asarray(y, float)), 1)[0])


def power_law(x: Any, y: Any, exponent: float, at: Any = None) -> np.ndarray:
    """The curve ``c x^exponent`` with ``c`` fitted to ``y`` in log space, evaluated at ``x`` (or at ``at``): a theory
    line with a fixed exponent."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return np.exp(np.mean(np.log(y) - exponent * np.log(x))) * np.asarray(x if at is None else at, float) ** exponent



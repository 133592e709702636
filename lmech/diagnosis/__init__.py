"""Diagnose one run: the theory applied to its measurements, one finding per topic (:mod:`.findings`), as text for
the terminal and as a self-contained HTML page (the report's machinery)."""
from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from ..report.figures import figure_data_uri
from ..report.html import html_page
from ..report.verdict import Panel, Series
from ..store.result import RunResult
from .findings import ATTENTION, MISSING, OK, TOPICS, Finding, RunView

__all__ = ["Diagnosis", "Finding", "diagnose"]

_MARK = {OK: "ok", ATTENTION: "!!", MISSING: "--"}


@dataclass(frozen=True)
class Diagnosis:
    """``run_id``, ``description`` (what was trained) and the :class:`Finding` s, plus the figure's panels."""

    run_id: str
    description: str
    findings: tuple[Finding, ...]
    panels: tuple[Panel, ...]

    def finding(self, topic: str) -> Finding:
        return next(f for f in self.findings if f.topic == topic)

    def text(self) -> str:
        """The diagnosis for a terminal: one block per finding."""
        lines = [f"diagnosis of run {self.run_id}: {self.description}", ""]
        for f in self.findings:
            lines.append(f"[{_MARK[f.status]}] {f.topic}: {f.summary}")
            if f.status != MISSING:
                lines += [f"     meaning: {f.meaning}"] if f.meaning else []
                lines.append(f"     theory:  {f.theory}")
            lines += [f"     try:     {f.advice}"] if f.advice else []
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """The diagnosis as one self-contained HTML page."""
        rows = "".join(
            f"<tr class='{ {OK: 'pass', ATTENTION: 'fail', MISSING: 'inconclusive'}[f.status]}'>"
            f"<td id='{escape(f.topic.replace(' ', '-'))}'><b>{escape(f.topic)}</b></td><td>{escape(f.status)}</td>"
            f"<td>{escape(f.summary)}</td><td>{escape(f.meaning)}</td><td>{escape(f.advice)}</td>"
            f"<td>{escape(f.theory)}</td></tr>" for f in self.findings)
        figure = f"<img alt='run {escape(self.run_id)} figure' src='{figure_data_uri(list(self.panels))}'>" \
            if self.panels else ""
        return html_page(f"lmech diagnosis {self.run_id}", f"""<h1>Diagnosis of run {escape(self.run_id)}</h1>
<p>{escape(self.description)}</p>{figure}
<table><tr><th>topic</th><th>status</th><th>finding</th><th>what it means</th><th>what to try</th><th>theory</th></tr>
{rows}</table>""")

    def write_html(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.html(), encoding="utf-8")
        return path


def diagnose(run: RunResult) -> Diagnosis:
    """Apply the theory to ``run`` (a stored run: trained by lmech, or recorded from your loop by
    :class:`lmech.Tracker`): the training outcome, the edge of stability, instability alarms, lazy vs rich, coordinate
    sizes, the batch size against the gradient noise scale, heavy-tailed weight spectra and neural collapse. Topics
    whose observables were not recorded say which probe to add."""
    if not isinstance(run, RunResult):
        raise TypeError(f"diagnose needs a RunResult (from a store or a Tracker); got {type(run).__name__}")
    view = RunView(run)
    return Diagnosis(run.run_id, _describe(run, view), tuple(topic(view) for topic in TOPICS), tuple(_panels(view)))


def _describe(run: RunResult, view: RunView) -> str:
    opt = view.optimizer
    if run.system is not None:
        s = run.system
        what = f"{type(s.architecture).__name__} on {type(s.data).__name__}, {s.task.loss}, {s.rule.optimizer}"
    else:
        what = f"{run.info.get('model', 'a model')} from your loop ({run.info.get('optimizer')})"
    return f"{what} at lr {opt.lr:g}, {run.outcome}"


def _panels(view: RunView) -> list[Panel]:
    panels = []
    if view.has("loss/train"):
        steps, loss = view.series("loss/train")
        ok = np.isfinite(loss) & (loss > 0)
        panels.append(Panel("Training loss", "step", "loss", [Series.of("loss", steps[ok], loss[ok], "curve")],
                            yscale="log"))
    name = "preconditioned_sharpness/0" if view.optimizer.kind == "adam" else "sharpness/0"
    threshold = view.optimizer.threshold
    if view.has(name) and np.isfinite(threshold):
        steps, s = view.series(name)
        panels.append(Panel("Sharpness / threshold", "step", "S / T", [
            Series.of("measured", steps, s / threshold, "curve"),
            Series.of("threshold", [steps[0], steps[-1]], [1, 1], "reference", "threshold")]))
    return panels

"""Dots-on-curves figures from a verdict's panels: theory as lines, measurements as dots."""
from __future__ import annotations

import base64
import dataclasses
import io
import json
import textwrap

from .verdict import Panel, Series

_STYLE = {
    "theory": {"linestyle": "-", "linewidth": 1.6, "marker": None},
    "measured": {"linestyle": "none", "marker": "o", "markersize": 3.5, "alpha": 0.85},
    "reference": {"linestyle": "--", "linewidth": 1.0, "marker": None},
    "curve": {"linestyle": "-", "linewidth": 1.0, "marker": "o", "markersize": 3.0},
}


def figure_png(panels: list[Panel], *, dpi: int = 110) -> bytes:
    """Render ``panels`` side by side and return PNG bytes (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        colours: dict[str, str] = {}
        cycle = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"] * 10)
        for s in panel.series:
            key = s.group or s.label
            if key not in colours:  # a colour per new group (next(cycle) only then: setdefault would always draw)
                colours[key] = next(cycle)
            colour = colours[key]
            label = s.label if s.kind != "reference" or s.label not in ax.get_legend_handles_labels()[1] else None
            ax.plot(s.x, s.y, color=colour, label=label, **_STYLE.get(s.kind, _STYLE["measured"]))
            if s.low is not None and s.high is not None:
                ax.vlines(s.x, s.low, s.high, color=colour, linewidth=1.0, alpha=0.7)
        ax.set(xlabel=panel.xlabel, ylabel=panel.ylabel, xscale=panel.xscale, yscale=panel.yscale)
        ax.set_title(textwrap.fill(panel.title, 46), fontsize=9.5)  # long titles wrap instead of running into the next
        ax.tick_params(labelsize=8)
        for axis, scale, (low, high) in ((ax.xaxis, panel.xscale, ax.get_xlim()), (ax.yaxis, panel.yscale, ax.get_ylim())):
            if scale == "log" and 0 < low < high < 100 * low:  # short log spans: matplotlib's minor labels
                plain = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}")  # (3x10^-1, 4x10^-1, ..) collide
                axis.set_minor_locator(matplotlib.ticker.LogLocator(subs=(2.0, 5.0)))
                axis.set_minor_formatter(plain)
                axis.set_major_formatter(plain)
        _label_sweep_points(ax, panel)
        if sum(not s.label.startswith("_") for s in panel.series) <= 14:
            ax.legend(fontsize=6.5, frameon=False)
        ax.grid(alpha=0.25)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _label_sweep_points(ax, panel: Panel) -> None:
    """On a log x axis over a short sweep (2-10 measured x values with short labels, e.g. widths 32..512), tick and
    label exactly those values instead of matplotlib's overlapping minor-tick labels."""
    from matplotlib.ticker import NullFormatter

    xs = sorted({x for s in panel.series if s.kind in ("measured", "curve") for x in s.x if x > 0})
    labels = [f"{x:g}" for x in xs]
    if panel.xscale == "log" and 2 <= len(xs) <= 10 and max(map(len, labels)) <= 5:  # short labels: 16, 2048, 0.1
        ax.set_xticks(xs, labels)
        ax.xaxis.set_minor_formatter(NullFormatter())


_RENDERED: dict[str, str] = {}  # panels' JSON -> data URI, the most recent _KEEP
_KEEP = 128


def figure_data_uri(panels: list[Panel]) -> str:
    """``figure_png`` as a base64 data URI, cached by the panels' content: ``lmech check`` renders each law's figure
    as soon as its verdict is in (while the workers train the other laws), so writing the report reuses it."""
    key = json.dumps([dataclasses.asdict(p) for p in panels], sort_keys=True, allow_nan=True)
    if key not in _RENDERED:
        if len(_RENDERED) >= _KEEP:
            _RENDERED.pop(next(iter(_RENDERED)))
        _RENDERED[key] = "data:image/png;base64," + base64.b64encode(figure_png(panels)).decode("ascii")
    return _RENDERED[key]


def scaling_panels(fit, n, d, loss, x_label: str = "x") -> list[Panel]:
    """A scaling fit's figure: fitted against measured loss (the diagonal is a perfect fit) and, for two-variable
    forms, loss against compute 6 N D with the fitted compute-optimal frontier L*(C), for one-variable forms the loss
    against the variable (``x_label``) with the fitted law and its bootstrap interval (``fit``: a
    :class:`lmech.theory.ScalingFit`)."""
    import numpy as np

    predicted = fit.predict(n, d)
    span = [float(min(loss.min(), predicted.min())), float(max(loss.max(), predicted.max()))]
    parity = Panel(f"{fit.form} fit: fitted vs measured loss", "measured loss", "fitted loss", xscale="log",
                   yscale="log")
    parity.series += [Series.of("points", loss, predicted), Series.of("perfect fit", span, span, "reference")]
    if d is None:  # one variable (e.g. a loss curve in steps): the data and the fitted law, with its interval
        x = np.asarray(n, float)
        dense = np.geomspace(x.min(), x.max(), 80)
        curve = Panel(f"{fit.form} fit: loss against {x_label}", x_label, "loss", xscale="log", yscale="log")
        curve.series += [Series.of("measured", x, loss), Series.of("fit", dense, fit.predict(dense), "theory")]
        if fit.replicates is not None:
            low, high = fit.predict_interval(dense)
            curve.series += [Series.of("95% interval", dense, low, "reference", "interval"),
                             Series.of("_95% interval", dense, high, "reference", "interval")]
        return [parity, curve]
    compute = 6 * np.asarray(n, float) * np.asarray(d, float)
    budgets = np.geomspace(compute.min(), compute.max() * 10, 60)
    frontier = Panel("Loss vs compute, fitted frontier L*(C)", "compute 6 N D", "loss",
                     xscale="log", yscale="log")
    frontier.series += [Series.of("runs", compute, loss), Series.of("L*(C) fitted", budgets,
                                                                   fit.compute_optimal(budgets)[2], "theory")]
    return [parity, frontier]
"""The coordinate-check figure (Yang et al. 2022, arXiv:2203.03466, Fig. 5 and App. D.1; microsoft/mup
``plot_coord_data``): per-layer activation sizes against width, one row per parameterization, one column per step."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..engine.coord_check import CoordCheck


def plot_coord_check(checks: Mapping[str, CoordCheck] | Sequence[CoordCheck], path: str | Path | None = None, *,
                     kind: str = "activation") -> Any:
    """Draw the standard coord-check layout and return the matplotlib ``Figure`` (saved to ``path`` when given).

    One row per check (``checks[label]``, or labelled by its scheme when a sequence), one column per step ``t``;
    each panel plots ``mean |h_t|`` (``kind="activation"``, steps 0..T) or ``mean |h_t - h_0|`` (``kind="update"``,
    steps 1..T) against the width (log2 axis, log y), one line per layer coloured along the network's order. Flat
    lines are muP's prediction; under SP the hidden and output lines rise with the width. A standalone ``Figure``
    (Agg canvas): no pyplot state, the user's backend untouched.
    """
    if kind not in ("activation", "update"):
        raise ValueError(f"kind={kind!r}: use 'activation' (mean |h_t|) or 'update' (mean |h_t - h_0|)")
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    rows = dict(checks) if isinstance(checks, Mapping) else {c.scheme: c for c in checks}
    sizes = {label: cc.activation if kind == "activation" else cc.update for label, cc in rows.items()}
    first = 0 if kind == "activation" else 1
    columns = max(next(iter(s.values())).shape[1] for s in sizes.values()) - first
    fig = Figure(figsize=(2.5 * columns + 1.6, 2.2 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (label, cc) in enumerate(rows.items()):
        layers = list(sizes[label])
        colours = colormaps["viridis"](np.linspace(0.0, 0.9, len(layers)))
        for c in range(columns):
            ax, t = axes[r, c], c + first
            for name, colour in zip(layers, colours):
                y = sizes[label][name][:, t] if t < sizes[label][name].shape[1] else np.full(len(cc.widths), np.nan)
                ax.plot(cc.widths, np.where(y > 0, y, np.nan), marker="o", markersize=2.5, linewidth=1.0,
                        color=colour, label=name)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{label}, t={t}", fontsize=8)
            ax.tick_params(which="both", labelsize=7)
            ax.grid(alpha=0.25)
            if r == len(rows) - 1:
                ax.set_xlabel("width", fontsize=8)
            if c == 0:
                ax.set_ylabel("mean |h_t|" if kind == "activation" else "mean |h_t - h_0|", fontsize=8)
    legend = {line.get_label(): line for ax in axes[:, 0] for line in ax.get_lines()}  # one entry per layer name
    fig.legend(list(legend.values()), list(legend), loc="outside right upper", fontsize=6, frameon=False,
               ncols=1 + len(legend) // 16)
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig

"""Figure of a Hessian eigenvalue density from stochastic Lanczos quadrature (as in Ghorbani et al. 2019, Fig. 1)."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..observables.density import SpectralDensity


def plot_density(density: SpectralDensity, ax: Any = None, *, sigma: float | None = None, log: bool = True,
                 counts: bool = False, num: int = 1024, floor: float = 1e-7, color: str = "C0",
                 label: str | None = None) -> Any:
    """Draw the Gaussian-smoothed SLQ density (:meth:`SpectralDensity.density`) and return the matplotlib Axes.

    ``log`` puts the density on a log axis, clipped below at ``floor`` times its peak (the Gaussian tails
    would otherwise reach 1e-300); each probe's nodes are drawn as ticks along the bottom edge. ``counts``
    plots ``dim x density`` (eigenvalues per unit). When ``ax`` is None a new standalone
    ``matplotlib.figure.Figure`` is made (save it with ``ax.figure.savefig(path)``).
    """
    if ax is None:  # a standalone Figure: no pyplot state, the user's backend untouched
        from matplotlib.figure import Figure

        ax = Figure(figsize=(5.0, 3.6), layout="constrained").add_subplot()
    sigma = density.default_sigma() if sigma is None else sigma
    grid = density.grid(num, sigma)
    values = density.density(grid, sigma, counts=counts)
    if log:
        values = np.maximum(values, floor * values.max())
        ax.set_yscale("log")
    ax.plot(grid, values, color=color, label=label, linewidth=1.4)
    for nodes in density.nodes:
        ax.vlines(nodes, 0.0, 0.04, transform=ax.get_xaxis_transform(), color=color, alpha=0.5, linewidth=0.6)
    ax.set(xlabel="eigenvalue", ylabel="eigenvalues per unit" if counts else "density",
           title=f"SLQ: {density.probes} probes, {max(len(n) for n in density.nodes)} nodes each, sigma={sigma:.2g}")
    ax.grid(alpha=0.25)
    if label is not None:
        ax.legend(fontsize=7, frameon=False)
    return ax

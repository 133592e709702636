"""Shared pieces of the hyperparameter-transfer laws: the optimal learning rate on a grid and the transfer figure.

The optimum is read from a log-spaced learning-rate grid by a parabola in ``log2(lr)`` through the grid minimum
and its two neighbours (a grid point at an edge is reported as is, and flagged), so a shift smaller than a grid
step is still resolved. Diverged runs (non-finite final loss) count as infinitely bad.

The width-transfer laws key their runs ``{"scheme", "width", "log2_lr", "seed"}`` (:func:`width_transfer`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..report.verdict import Check, Panel, Series
from ..store.result import RunResult
from ..store.runs import Runs
from ..theory.parameterization import layer_scaling
from .base import power_law

SCHEMES = ("sp", "mup")
NAMES = {"sp": "SP", "mup": "muP"}
SPREAD = 1.0  # octaves: muP optima within a factor 2 across the whole width range (REFERENCE 2.13)
PER_DOUBLING = 0.5  # octaves of muP optimum movement per width doubling (REFERENCE 2.13)
SP_BAND = 0.5  # octaves per doubling: SP's slope within this of the predicted -1 (so falling by more than 0.5)


@dataclass(frozen=True)
class Optimum:
    """The optimal learning rate ``lr`` of one loss-vs-lr curve, the loss there (``loss``, the grid minimum) and
    whether the minimum sat on the grid's edge (``at_edge``: the true optimum may lie outside the grid)."""

    lr: float
    loss: float
    at_edge: bool


def optimal_lr(lrs: Sequence[float], losses: Sequence[float]) -> Optimum:
    """The optimum of ``losses`` over the log-spaced grid ``lrs`` (see the module docstring)."""
    x = np.log2(np.asarray(lrs, float))
    y = np.asarray(losses, float)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError("optimal_lr needs matching grids of at least three learning rates and losses")
    y = np.where(np.isfinite(y), y, np.inf)
    i = int(np.argmin(y))
    if not np.isfinite(y[i]):
        return Optimum(float("nan"), float("inf"), True)
    if i == 0 or i == len(x) - 1 or not np.all(np.isfinite(y[i - 1:i + 2])):
        return Optimum(float(2 ** x[i]), float(y[i]), i in (0, len(x) - 1))
    a, b, _ = np.polyfit(x[i - 1:i + 2], y[i - 1:i + 2], 2)
    vertex = -b / (2 * a) if a > 0 else x[i]
    return Optimum(float(2 ** np.clip(vertex, x[i - 1], x[i + 1])), float(y[i]), False)


def seed_optima(lrs: Sequence[float], cell: Runs, loss: Callable[[RunResult], float],
                lr_key: str = "log2_lr") -> np.ndarray:
    """log2 of each seed's own optimal learning rate in ``cell`` (runs keyed by ``seed`` and ``lr_key``, in the order
    of ``lrs``): the seed spread an optimum shift must exceed to count as evidence (NaN for a seed whose runs all
    diverged)."""
    return np.log2([optimal_lr(lrs, [loss(r) for r in seeded.sweep(lr_key)[1]]).lr
                    for _, seeded in cell.group("seed")])


def seed_sd(per_seed: Sequence[np.ndarray]) -> float:
    """Median over cells of the standard deviation (ddof 1) of the per-seed log2 optima: the seed spread in octaves
    (NaN with fewer than two seeds)."""
    sds = [np.std(v[np.isfinite(v)], ddof=1) for v in per_seed if np.isfinite(v).sum() > 1]
    return float(np.median(sds)) if sds else float("nan")


def seed_checks(sd: float, seeds: int, shift: float, shift_text: str) -> list[Check]:
    """Data checks that the seeds resolve a transfer law's claims: the seed spread ``sd`` (octaves) at most
    ``PER_DOUBLING`` (else a half-octave move is noise), and the predicted optimum ``shift`` (octaves, described by
    ``shift_text``) at least two standard errors of a seed mean, ``2 sd / sqrt(seeds)`` (issue 13 §4)."""
    se = sd / np.sqrt(seeds)
    return [Check(f"seed spread of the optimum: median s.d. of the {seeds} per-seed optima (octaves)", sd,
                  f"<= {PER_DOUBLING:g} (resolves a half-octave move)", bool(sd <= PER_DOUBLING), kind="data"),
            Check(f"{shift_text} in seed standard errors (s.d./sqrt({seeds}))", abs(shift) / se if se > 0 else np.inf,
                  ">= 2 (a shift smaller than the seed spread is not evidence)", bool(abs(shift) >= 2 * se), kind="data")]


def transfer_panel(title: str, lrs: Sequence[float], curves: dict[str, Sequence[float]],
                   optima: dict[str, Optimum], ylabel: str = "final training loss") -> Panel:
    """One panel of the transfer figure (Yang et al. 2022, arXiv:2203.03466, Fig. 1/5 layout): loss against learning
    rate, one curve per model size (``curves[label]``), each optimum marked as a dot on the curve's colour."""
    panel = Panel(title, "learning rate", ylabel, xscale="log", yscale="log")
    for label, losses in curves.items():
        finite = [(lr, v) for lr, v in zip(lrs, losses) if np.isfinite(v)]
        if finite:
            panel.series.append(Series.of(label, *zip(*finite), kind="curve", group=label))
        opt = optima[label]
        if np.isfinite(opt.lr):
            panel.series.append(Series.of(f"_{label} optimum", [opt.lr], [opt.loss], group=label))
    return panel


def predicted_sp_exponent(widths: Sequence[int]) -> float:
    """Exponent ``p`` of SP's optimal Adam learning rate ``~ width^p``: SP must shrink its learning rate by the
    factor muP applies to the hidden (and output) weights, ``lr_mult = base_fan_in / fan_in``, read from the abc
    table (:func:`lmech.theory.layer_scaling`), so ``p = d log lr_mult / d log width = -1``."""
    base = widths[0]
    mult = [layer_scaling("mup", "hidden", fan_in=w, fan_out=w, base_fan_in=base, base_fan_out=base,
                          optimizer="adam").lr_mult for w in widths]
    return float(np.polyfit(np.log(widths), np.log(mult), 1)[0])


@dataclass
class WidthTransfer:
    """The width-transfer verdict's parts (:func:`width_transfer`): the muP optimum ``spread`` (octaves, the error
    metric), ``summary``, ``checks`` and ``panels``."""

    spread: float
    summary: str
    checks: list[Check]
    panels: list[Panel]


def width_transfer(runs: Runs, loss: Callable[[RunResult], float], *, trained: float, trained_text: str, title: str,
                   ylabel: str) -> WidthTransfer:
    """Compare the SP and muP loss-vs-lr curves of ``runs`` (keyed by scheme, width, log2_lr and seed; ``loss`` of
    each run averaged over the seeds) (Yang et al. 2022, arXiv:2203.03466, Fig. 1/5): muP's optima within a factor 2
    across widths and <= 0.5 octave per doubling, wider no worse at its optimum; SP's fitted slope of log2(optimal lr)
    on log2(width) within 0.5 of the predicted -1. An optimum on the grid's edge makes the verdict inconclusive, a
    best loss not below ``trained`` (``trained_text`` says what it is) out-of-regime."""
    lrs = 2.0 ** np.asarray(runs.values_of("log2_lr"), float)
    widths = runs.values_of("width")
    curves = {scheme: {w: [float(np.mean([loss(r) for r in cell.values()]))
                           for _, cell in runs.where(scheme=scheme, width=w).group("log2_lr")] for w in widths}
              for scheme in SCHEMES}
    x = np.log2(np.asarray(widths, float))
    optima = {scheme: {w: optimal_lr(lrs, curves[scheme][w]) for w in widths} for scheme in SCHEMES}
    log2_opt = {scheme: np.log2([optima[scheme][w].lr for w in widths]) for scheme in SCHEMES}
    best = {scheme: np.array([optima[scheme][w].loss for w in widths]) for scheme in SCHEMES}
    predicted = predicted_sp_exponent(widths)
    per_seed = {scheme: {w: seed_optima(lrs, runs.where(scheme=scheme, width=w), loss) for w in widths}
                for scheme in SCHEMES}
    seeds = len(runs.values_of("seed"))
    sd = seed_sd([v for cells in per_seed.values() for v in cells.values()])
    edges = [f"{NAMES[scheme]} width {w}" for scheme in SCHEMES for w in widths if optima[scheme][w].at_edge]
    worst_best = float(max(b.max() for b in best.values()))
    mup = log2_opt["mup"]
    spread = float(mup.max() - mup.min())
    per_doubling = float(np.max(np.abs(np.diff(mup)) / np.diff(x)))
    wider = float(np.max(best["mup"][1:] / best["mup"][:-1]))
    slopes = {scheme: float(np.polyfit(x, log2_opt[scheme], 1)[0]) for scheme in SCHEMES}
    moves = np.abs(np.diff(mup)) / np.diff(x)
    half = len(moves) // 2
    narrow_moves, wide_moves = float(moves[:half].mean()), float(moves[-half:].mean())
    margin = sd / np.sqrt(seeds)
    checks = seed_checks(sd, seeds, slopes["sp"] * (x[-1] - x[0]), "SP optimum's fall across the widths") + [
        Check("optima on the learning-rate grid's edge", len(edges), "= 0", not edges, kind="data"),
        Check("worst best loss over widths and schemes", worst_best, f"< {trained_text} = {trained:.3f} (the runs "
              "trained)", worst_best < trained, kind="regime"),
        Check("muP optimal-lr spread across widths, log2(max/min)", spread, f"< {SPREAD:g} octave (factor 2)",
              spread < SPREAD, headline=True),
        Check("muP largest optimum move per width doubling (octaves)", per_doubling, f"<= {PER_DOUBLING:g}",
              per_doubling <= PER_DOUBLING),
        Check("muP wider is no worse: max best-loss ratio to the next narrower width", wider, "<= 1", wider <= 1.0),
        Check(f"muP optimum moves less as the width grows: mean move per doubling over the {half} widest doublings "
              f"minus that over the {half} narrowest (octaves)", wide_moves - narrow_moves,
              f"<= {margin:.2g} (one seed standard error; the transfer is asymptotic in width)",
              wide_moves - narrow_moves <= margin),
        Check("SP slope of log2(optimal lr) on log2(width)", slopes["sp"],
              f"in [{predicted - SP_BAND:g}, {predicted + SP_BAND:g}] (predicted {predicted:g})",
              abs(slopes["sp"] - predicted) <= SP_BAND, headline=True),
    ]
    summary = (f"optimal log2 lr at widths {list(widths)}: muP {np.round(mup, 2).tolist()} (spread {spread:.2f} "
               f"octave, slope {slopes['mup']:+.2f}), SP {np.round(log2_opt['sp'], 2).tolist()} (slope "
               f"{slopes['sp']:+.2f}, predicted {predicted:g}); muP best loss {np.round(best['mup'], 4).tolist()}"
               + (f"; optimum at the grid edge: {edges}" if edges else ""))
    panels = [transfer_panel(f"{NAMES[scheme]}: {title}", lrs, {f"width {w}": curves[scheme][w] for w in widths},
                             {f"width {w}": optima[scheme][w] for w in widths}, ylabel=ylabel) for scheme in SCHEMES]
    panels.append(_optimum_panel(np.asarray(widths, float), optima, predicted, per_seed))
    return WidthTransfer(spread, summary, checks, panels)


def _optimum_panel(widths: np.ndarray, optima: dict[str, dict[int, Optimum]], predicted: float,
                   per_seed: dict[str, dict[int, np.ndarray]]) -> Panel:
    """Optimal learning rate against width: measured optima (of the seed-mean curves; bars span the per-seed
    optima), muP's flat prediction (level fitted) inside its factor-2 band, and SP's ``width^predicted`` (constant
    fitted)."""
    panel = Panel("Optimal learning rate vs width", "width", "optimal Adam learning rate", xscale="log", yscale="log")
    for scheme, exponent in (("mup", 0.0), ("sp", predicted)):
        lr = np.array([optima[scheme][int(w)].lr for w in widths])
        name = NAMES[scheme]
        bars = [per_seed[scheme][int(w)] for w in widths]
        panel.series += [Series.of(f"{name} measured (bars: per-seed optima)", widths, lr, group=name,
                                   low=[2 ** np.nanmin(b) for b in bars], high=[2 ** np.nanmax(b) for b in bars]),
                         Series.of(f"{name} theory ~ width^{exponent:g}", widths, power_law(widths, lr, exponent),
                                   "theory", group=name)]
    level = power_law(widths, [optima["mup"][int(w)].lr for w in widths], 0.0)
    for factor, text in ((2 ** -0.5, "muP factor-2 band"), (2 ** 0.5, "_muP factor-2 band top")):
        panel.series.append(Series.of(text, widths, level * factor, "reference", group="muP"))
    return panel

"""Law ``scaling-extrapolation``: a scaling law fitted on the small-compute end predicts the largest runs (Fig. 3)."""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..engine.experiment import Experiment
from ..report.verdict import Check, Panel, Series, Verdict
from ..store.runs import Runs
from ..systems import CircleFourier
from ..theory.scaling import ScalingFitWarning, fit_scaling_law
from .base import Law
from .registry import register


@dataclass(frozen=True)
class Setting:
    """Model sizes (random features ``N``) and dataset sizes ``D`` (powers of two), independent draws (features and
    data) averaged per point, and bootstrap replicates of the fit."""

    sizes: tuple[int, ...]
    samples: tuple[int, ...]
    seeds: int
    bootstrap: int


_NOISE = 0.1  # label noise: the irreducible test loss is NOISE^2 / 2 (half squared error)
_DECAY = 1.0  # target amplitudes k^-1
_GRID = 4096  # test angles (the target keeps every harmonic this grid resolves)
_VALIDATION = 1024  # validation draws that pick each run's ridge
_RIDGES = 10.0 ** np.arange(-8, 0)
_FIT_FRACTION, _HELD_OUT_FRACTION = 1 / 64, 1 / 8  # fit on C <= C_max/64; predict every run with C >= C_max/8
_SEED_SE = 2.0  # the measured loss's seed noise enters the tolerance as this many standard errors


def flops(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Compute of a run: ``N D`` (one pass of the readout's normal equations over the data, up to a constant)."""
    return n * d


def _features(t: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.maximum(np.stack([np.cos(t), np.sin(t), np.ones_like(t)], axis=1) @ w.T, 0.0)


def random_feature_losses(s: Setting, target: CircleFourier) -> np.ndarray:
    """Test loss ``(sizes, samples, seeds)`` of two-layer ReLU random-feature networks ``f(t) = a . relu(W x(t)) /
    sqrt(N)`` (``W ~ N(0, I_3)`` on ``x = (cos t, sin t, 1)``, frozen at init; the first ``N`` units of one draw, so
    sizes are nested) whose readout ``a`` is trained to its optimum on ``D`` noisy samples: ridge regression, the limit
    of gradient descent with weight decay, the ridge picked from ``_RIDGES`` on a validation draw, as scaling studies
    tune a learning rate per run. Loss: half squared error against noisy labels, exactly
    ``mean_grid (f - f*)^2 / 2 + NOISE^2 / 2``."""
    grid = 2 * np.pi * np.arange(_GRID) / _GRID
    truth = target.on_grid(_GRID)
    out = np.zeros((len(s.sizes), len(s.samples), s.seeds))
    for seed in range(s.seeds):
        rng = np.random.default_rng([seed, 17])
        w = rng.standard_normal((max(s.sizes), 3))
        t = rng.uniform(0, 2 * np.pi, max(s.samples) + _VALIDATION)
        y = target.function(t) + _NOISE * rng.standard_normal(len(t))
        train, test, val = _features(t[:max(s.samples)], w), _features(grid, w), _features(t[max(s.samples):], w)
        for a, n in enumerate(s.sizes):
            for b, d in enumerate(s.samples):
                p = train[:d, :n] / np.sqrt(n)
                if n <= d:  # eigendecomposition of the smaller Gram matrix serves every ridge at once
                    lam, u = np.linalg.eigh(p.T @ p / d)
                    coef = u @ ((u.T @ (p.T @ y[:d] / d))[:, None] / (lam[:, None] + _RIDGES))
                else:
                    lam, u = np.linalg.eigh(p @ p.T / d)
                    coef = p.T @ (u @ ((u.T @ y[:d] / d)[:, None] / (lam[:, None] + _RIDGES)))
                val_loss = np.mean((val[:, :n] @ coef / np.sqrt(n) - y[max(s.samples):, None]) ** 2, axis=0)
                best = coef[:, int(np.argmin(val_loss))]
                out[a, b, seed] = 0.5 * np.mean((test[:, :n] @ best / np.sqrt(n) - truth) ** 2) + 0.5 * _NOISE ** 2
    return out


def _iso_optimum(n: np.ndarray, loss: np.ndarray) -> tuple[float, bool]:
    """The loss-minimizing ``N`` on one iso-compute line: the vertex of the parabola in ``log N`` through the lowest
    point and its neighbours, and whether that minimum is interior (else the grid does not bracket it)."""
    order = np.argsort(n)
    n, loss = n[order], loss[order]
    k = int(np.argmin(loss))
    if k == 0 or k == len(n) - 1:
        return float(n[k]), False
    x, y = np.log(n[k - 1:k + 2]), np.log(loss[k - 1:k + 2])
    c2, c1, _ = np.polyfit(x, y, 2)
    return float(np.exp(np.clip(-c1 / (2 * c2), x[0], x[-1]))), True


@register
class ScalingExtrapolation(Law):
    id = "scaling-extrapolation"
    title = "A Chinchilla law fitted on the small-compute end predicts the largest runs and their compute-optimal size"
    pillar = "simple laws"
    claim = ("Test loss over model size N and dataset size D follows L = E + A/N^alpha + B/D^beta closely enough that "
             "the approach-3 fit on runs of small compute predicts, within its own bootstrap uncertainty, the loss "
             "of runs with 8-64x more compute, the compute-optimal model size at the largest budget the grid "
             "brackets, and the irreducible loss (here the label noise).")
    citation = ("Hoffmann et al. 2022, arXiv:2203.15556 (approach 3); Besiroglu et al. 2024, arXiv:2404.10102 "
                "(bootstrap, replication); Kaplan et al. 2020, arXiv:2001.08361; Bahri et al. 2021, arXiv:2102.06701 "
                "and Maloney, Roberts & Sully 2022, arXiv:2210.16859 (random-feature scaling laws); REFERENCE 2.14")
    regime = ("Two-layer ReLU random-feature networks on power-law Fourier regression (CircleFourier, amplitudes k^-1, "
              f"label noise {_NOISE:g}, so E = {_NOISE ** 2 / 2:g}), readout trained to its optimum (ridge picked on a "
              "validation draw), sizes N and D powers of two, compute N D; the fit (Chinchilla form, Huber 1e-3 on "
              "log loss, 4500 starts) uses the runs with C <= C_max/64 and predicts every run with C >= C_max/8. "
              "Hidden layers stay at init: the model size is the number of random features (the solvable setting of "
              "random-feature scaling laws); trained hidden layers and one-pass training are not covered. Designed "
              "after prototypes that measured a larger grid of this setting (N to 2048, D to 4096: held-out errors up "
              "to 28%, inside intervals of ~30%, and the compute-optimal N bracketed); one-pass SGD on teacher tasks "
              "and power-law random features, and converged MLPs, were tried first at CPU scale and their "
              "small-compute runs were still in the optimization transient (held-out errors 3-6x). The bootstrap "
              "resamples points, so the intervals are wide (30-60% at 8-64x extrapolation): the check is as sharp as "
              "the fit's own uncertainty; an alpha 0.3 off fails through the compute-optimal size, not the losses.")
    tolerance_note = (f"Every held-out run's |predicted/measured - 1| within the relative half-width of the fit's 95% "
                      f"bootstrap prediction interval plus {_SEED_SE:g} standard errors of the measured mean over draws; "
                      "the measured compute-optimal N at the largest bracketed budget (parabola vertex in log N on its "
                      "iso-compute line) within the bootstrap interval of N*(C), widened by the grid's half step "
                      "(sqrt 2); the label-noise floor NOISE^2/2 inside the bootstrap interval of E. Inconclusive when the "
                      "grid does not bracket the iso-compute minimum.")

    settings = {"quick": Setting(tuple(2 ** np.arange(3, 11)), tuple(2 ** np.arange(4, 12)), 3, 200),
                "full": Setting(tuple(2 ** np.arange(3, 12)), tuple(2 ** np.arange(4, 13)), 5, 1000)}

    def design(self, s: Setting) -> list[Experiment]:
        return []  # each readout is trained to its optimum in closed form; nothing to step through

    def judge(self, runs: Runs, s: Setting) -> Verdict:
        target = CircleFourier(decay=_DECAY, harmonics=_GRID // 2 - 1, n_train=1, n_test=0)
        losses = random_feature_losses(s, target)
        mean, se = losses.mean(axis=2), losses.std(axis=2, ddof=1) / np.sqrt(s.seeds)
        n, d = (a.ravel().astype(float) for a in np.meshgrid(s.sizes, s.samples, indexing="ij"))
        loss, noise = mean.ravel(), se.ravel()
        compute = flops(n, d)
        fitted, held = compute <= compute.max() * _FIT_FRACTION, compute >= compute.max() * _HELD_OUT_FRACTION
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ScalingFitWarning)
            fit = fit_scaling_law(n[fitted], d[fitted], loss[fitted], bootstrap=s.bootstrap, seed=0)
        predicted = fit.predict(n[held], d[held])
        low, high = fit.predict_interval(n[held], d[held])
        error = predicted / loss[held] - 1
        allowed = (high - low) / 2 / predicted + _SEED_SE * noise[held] / loss[held]
        checks = [Check(f"N={int(a)}, D={int(b)} (C = {c:.3g}): |predicted/measured - 1| (predicted {p:.4g}, measured "
                        f"{m:.4g})", abs(e), f"<= {t:.3f} (95% interval + {_SEED_SE:g} s.e.)", abs(e) <= t,
                        headline=True)
                  for a, b, c, p, m, e, t in zip(n[held], d[held], compute[held], predicted, loss[held], error, allowed)]

        budget, optimum, interior = self._largest_bracketed_budget(n, compute, loss)
        n_star = float(fit.compute_optimal(budget, flops=flops)[0][0])
        n_low, n_high = (float(v[0]) for v in fit.compute_optimal_interval(budget, flops=flops)["N"])
        ratio = optimum / n_star
        inside = n_low / 2 ** 0.5 <= optimum <= n_high * 2 ** 0.5
        checks += [Check(f"compute-optimal N at C = {budget:.3g}: measured {optimum:.0f} vs predicted {n_star:.0f} "
                         f"[{n_low:.0f}, {n_high:.0f}] (ratio measured/predicted)", ratio,
                         f"in [{n_low / n_star / 2 ** 0.5:.2f}, {n_high / n_star * 2 ** 0.5:.2f}]", inside, headline=True),
                   Check(f"the iso-compute line at C = {budget:.3g} brackets its minimum", float(interior), "= 1",
                         interior, kind="data")]
        floor = _NOISE ** 2 / 2
        e_low, e_high = fit.ci["E"]
        checks.append(Check(f"irreducible loss: fitted E = {fit.E:.4g} [{e_low:.4g}, {e_high:.4g}] vs label noise "
                            f"NOISE^2/2 = {floor:g} (relative difference)", fit.E / floor - 1,
                            "noise floor inside the 95% interval of E", e_low <= floor <= e_high))
        checks += [Check(f"fit diagnostic: {w.message}", 1.0, "reported", True, kind="info") for w in caught]
        worst = float(np.max(np.abs(error) / allowed))
        summary = (f"held-out runs (C >= C_max/8): worst |error| {np.max(np.abs(error)):.1%}, worst error / allowed "
                   f"{worst:.2f}; compute-optimal N at C = {budget:.3g}: measured {optimum:.0f}, predicted {n_star:.0f} "
                   f"[{n_low:.0f}, {n_high:.0f}]; fit: {fit.summary()}")
        return self.verdict(runs, metric="worst held-out error / allowed", error=worst, tolerance=1.0, summary=summary,
                            checks=checks, panels=self._panels(s, fit, n, d, compute, loss, noise, fitted, held,
                                                               budget, n_star, (n_low, n_high)))

    @staticmethod
    def _largest_bracketed_budget(n: np.ndarray, compute: np.ndarray, loss: np.ndarray) -> tuple[float, float, bool]:
        """The largest compute whose iso-compute line holds at least three runs with an interior minimum (else the
        line with the most runs), its measured optimum and whether it is interior."""
        candidates = []
        for c in np.unique(compute):
            on = compute == c
            if on.sum() >= 3:
                optimum, interior = _iso_optimum(n[on], loss[on])
                candidates.append((interior, c, optimum, on.sum()))
        bracketed = [x for x in candidates if x[0]]
        interior, c, optimum, _ = max(bracketed, key=lambda x: x[1]) if bracketed else max(candidates, key=lambda x: x[3])
        return float(c), optimum, interior

    @staticmethod
    def _panels(s: Setting, fit, n, d, compute, loss, noise, fitted, held, budget, n_star, n_interval) -> list[Panel]:
        frontier = Panel("Loss against compute (lines: fit on C <= C_max/64)", "compute C = N D", "test loss",
                         xscale="log", yscale="log")
        for size in s.sizes:
            on, group = n == size, f"N={size}"
            if (on & ~held).any():
                mask = on & ~held
                frontier.series.append(Series.of(group, compute[mask], loss[mask], "measured", group,
                                                 low=loss[mask] - 2 * noise[mask], high=loss[mask] + 2 * noise[mask]))
            dense = np.geomspace(min(s.samples), max(s.samples), 40)
            frontier.series.append(Series.of(f"_{group} fit", size * dense, fit.predict(np.full(40, size), dense),
                                             "theory", group))
        frontier.series.append(Series.of("held out (C >= C_max/8)", compute[held], loss[held], "measured", "held out",
                                         low=loss[held] - 2 * noise[held], high=loss[held] + 2 * noise[held]))
        on = compute == budget
        iso = Panel(f"Iso-compute C = {budget:.3g}", "model size N (random features)", "test loss", xscale="log")
        iso.series.append(Series.of("measured", n[on], loss[on], "measured", "measured",
                                    low=loss[on] - 2 * noise[on], high=loss[on] + 2 * noise[on]))
        dense = np.geomspace(n[on].min(), n[on].max(), 60)
        iso.series.append(Series.of("fit", dense, fit.predict(dense, budget / dense), "theory", "fit"))
        top = float(loss[on].max())
        iso.series.append(Series.of(f"predicted N* = {n_star:.0f}", [n_star, n_star], [loss[on].min(), top],
                                    "reference", "N*"))
        iso.series.append(Series.of("_N* interval", list(n_interval), [top, top], "reference", "N*"))
        return [frontier, iso]

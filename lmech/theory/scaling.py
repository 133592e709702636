"""Scaling-law fits: Hoffmann et al.'s approach 3, with every start of the initialization grid optimized at once.

Forms (REFERENCE 2.14; parameters named as in the form):

- ``chinchilla``: ``L = E + A/N^alpha + B/D^beta`` (Hoffmann et al. 2022, arXiv:2203.15556);
- ``kaplan``: ``L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D`` (Kaplan et al. 2020, arXiv:2001.08361);
- ``quanta``: ``L = E + (A/N + B/D^(1/(1+alpha)))^alpha`` (Michaud et al. 2023, arXiv:2303.13506);
- ``power``: one variable, ``L = E + A x^-alpha``; ``power-no-offset``: ``L = A x^-alpha``.

Approach 3 (as replicated by Besiroglu et al. 2024, arXiv:2404.10102, epoch-research/analyzing-chinchilla):
with positive scales fitted in log (``log_A``, ``log_B``, ``log_E``) the Chinchilla model's log loss is a
log-sum-exp, ``LSE(log_A - alpha log N, log_B - beta log D, log_E)``, and the fit minimizes ``sum_i w_i Huber_delta(log L_hat_i - log L_i)``
with ``delta = 1e-3`` from every point of a grid of starts (for Chinchilla 4500: ``alpha, beta in {0, .5, .., 2}``,
``e in {-1, -.5, .., 1}``, ``a, b in {0, 5, .., 25}``), keeping the best optimum. Where the replications loop
``scipy.optimize.minimize(method="L-BFGS-B")`` over the starts, here all starts advance together: a batched
Levenberg-Marquardt iteration on the exact gradient and the Gauss-Newton curvature of the Huber majorizer (weights
``min(1, delta/|r|)``: iteratively reweighted least squares), each start with its own damping, keeping a step only
when its objective does not rise. The derivatives are in closed form for the forms whose log loss is a log-sum-exp of
terms linear in the parameters (chinchilla, power) and by forward-mode autograd (``vmap(jacfwd)``) for the others
(kaplan, quanta). bench/bench_scaling_fit.py times it against the scipy loop.
"""
from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import jacfwd, vmap

_GRID_EXPONENTS = np.arange(0.0, 2.01, 0.5)
_GRID_OFFSETS = np.arange(-1.0, 1.01, 0.5)
_GRID_SCALES = np.arange(0.0, 25.1, 5.0)
_GRID_KAPLAN = np.array([0.05, 0.25, 0.5, 1.0])
_BOOTSTRAP_STARTS = 4  # each bootstrap replicate starts from the full-data optimum and 3 other distinct optima
_PATIENCE, _FAR = 20, 1e-3  # after 20 iterations, starts whose objective is 0.1% above the best stop


@dataclass(frozen=True)
class _Form:
    """A scaling-law form: internal parameter names (``log_X`` for a positive scale ``X``, fitted in log; exponents
    as they are), the number of variables, the model's log loss, the default grid of starts and, for forms whose log
    loss is a log-sum-exp of terms linear in the parameters, those terms' coefficients (closed-form derivatives)."""

    name: str
    internal: tuple[str, ...]
    variables: int
    log_model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    grid: Callable[[], np.ndarray]
    terms: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # log L_hat = LSE_t (M[p, t] @ theta)

    def public(self, theta: np.ndarray) -> dict[str, float]:
        """``{"E": exp(log_E), ..., "alpha": ...}`` from the internal vector."""
        return {k[4:] if k.startswith("log_") else k: float(np.exp(v) if k.startswith("log_") else v)
                for k, v in zip(self.internal, theta)}


def _chinchilla(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    a, b, e, alpha, beta = theta
    return torch.logsumexp(torch.stack([a - alpha * log_n, b - beta * log_d, e.expand_as(log_n)]), dim=0)


def _power(theta: torch.Tensor, log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    a, e, alpha = theta
    return torch.logaddexp(a - alpha * log_x, e.expand_as(log_x))


def _pure_power(theta: torch.Tensor, log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    a, alpha = theta
    return a - alpha * log_x


def _kaplan(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    log_nc, log_dc, alpha_n, alpha_d = theta
    return alpha_d * torch.logaddexp(alpha_n / alpha_d * (log_nc - log_n), log_dc - log_d)


def _quanta(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    log_a, log_b, log_e, alpha = theta
    inner = torch.logaddexp(log_a - log_n, log_b - log_d / (1 + alpha))
    return torch.logaddexp(log_e.expand_as(log_n), alpha * inner)


def _chinchilla_terms(log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(log_n), torch.zeros_like(log_n)
    return torch.stack([torch.stack([one, zero, zero, -log_n, zero], 1), torch.stack([zero, one, zero, zero, -log_d], 1),
                        torch.stack([zero, zero, one, zero, zero], 1)], 1)


def _power_terms(log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    one, zero = torch.ones_like(log_x), torch.zeros_like(log_x)
    return torch.stack([torch.stack([one, zero, -log_x], 1), torch.stack([zero, one, zero], 1)], 1)


def _pure_power_terms(log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    return torch.stack([torch.ones_like(log_x), -log_x], 1).unsqueeze(1)


def _product(*axes: np.ndarray) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), float)


FORMS = {
    "chinchilla": _Form("chinchilla", ("log_A", "log_B", "log_E", "alpha", "beta"), 2, _chinchilla,
                        lambda: _product(_GRID_SCALES, _GRID_SCALES, _GRID_OFFSETS, _GRID_EXPONENTS, _GRID_EXPONENTS),
                        _chinchilla_terms),
    "power": _Form("power", ("log_A", "log_E", "alpha"), 1, _power,
                   lambda: _product(_GRID_SCALES, _GRID_OFFSETS, _GRID_EXPONENTS), _power_terms),
    "power-no-offset": _Form("power-no-offset", ("log_A", "alpha"), 1, _pure_power,
                             lambda: _product(_GRID_SCALES, _GRID_EXPONENTS), _pure_power_terms),
    # no published grid: log N_c, log D_c over 0..35 in steps of 5 (Kaplan's fits: 32, 31.6), exponents 0.05..1
    "kaplan": _Form("kaplan", ("log_N_c", "log_D_c", "alpha_N", "alpha_D"), 2, _kaplan,
                    lambda: _product(np.arange(0.0, 35.1, 5.0), np.arange(0.0, 35.1, 5.0), _GRID_KAPLAN, _GRID_KAPLAN)),
    # Michaud et al. 2023's joint form: the Chinchilla grid for the scales, its exponents from 0.25 (alpha = 0 is flat)
    "quanta": _Form("quanta", ("log_A", "log_B", "log_E", "alpha"), 2, _quanta,
                    lambda: _product(_GRID_SCALES, _GRID_SCALES, _GRID_OFFSETS, np.array([0.25, 0.5, 1.0, 1.5, 2.0]))),
}


class ScalingFitWarning(UserWarning):
    """A scaling-law fit whose exponents the data may not identify (short spans, a near-singular curvature, bootstrap
    intervals wider than the exponent)."""


_MIN_DECADES = 1.5  # a variable spanning fewer decades leaves its exponent weakly identified (REFERENCE 2.14)
_MAX_CONDITION = 1e10


class _ParamsAsAttributes:
    """A fit whose ``params`` dict is also read as attributes (``fit.alpha``)."""

    def __getattr__(self, name: str) -> float:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}; parameters: {sorted(params)}")


@dataclass(frozen=True)
class ScalingFit(_ParamsAsAttributes):
    """A fitted scaling law: ``params`` (public names, e.g. ``E, A, B, alpha, beta``; also attributes), the
    minimized ``objective`` (weighted Huber sum on log loss), ``residuals`` (``log L_hat - log L`` per point),
    ``converged`` (the best start's gradient norm fell below tolerance), ``starts`` and ``iterations``."""

    form: str
    params: dict[str, float]
    objective: float
    residuals: np.ndarray = field(repr=False)
    converged: bool
    starts: int
    iterations: int
    huber_delta: float
    theta: tuple[float, ...] = field(repr=False, default=())  # the internal parameters (FORMS[form].internal)
    replicates: np.ndarray | None = field(repr=False, default=None)  # bootstrap refits, rows of internal parameters
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% percentile intervals from the bootstrap
    condition: float = float("nan")  # condition number of the objective's curvature at the optimum
    warnings: tuple[str, ...] = ()  # identifiability warnings (also issued as ScalingFitWarning)

    def predict(self, n: Sequence[float] | float, d: Sequence[float] | float | None = None) -> np.ndarray:
        """The fitted loss at ``n`` (and ``d`` for the two-variable forms)."""
        spec = FORMS[self.form]
        if spec.variables == 2 and d is None:
            raise ValueError(f"the {self.form} form needs d (data) as well as n (parameters)")
        log_n = torch.as_tensor(np.log(np.asarray(n, float)))
        log_d = torch.as_tensor(np.log(np.asarray(d, float))) if d is not None else log_n
        log_n, log_d = torch.broadcast_tensors(log_n, log_d)
        return np.exp(spec.log_model(torch.tensor(self.theta, dtype=torch.float64), log_n, log_d).numpy())

    @property
    def allocation_exponents(self) -> tuple[float, float]:
        """Chinchilla's compute-optimal exponents ``(a, b)``: ``N* ~ C^a``, ``D* ~ C^b`` with ``a = beta/(alpha +
        beta)`` and ``b = alpha/(alpha + beta)`` (Hoffmann et al. 2022, App. D; REFERENCE 2.14)."""
        self._need_chinchilla("allocation_exponents")
        alpha, beta = self.params["alpha"], self.params["beta"]
        return beta / (alpha + beta), alpha / (alpha + beta)

    def compute_optimal(self, c: Sequence[float] | float,
                        flops: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(N*, D*, L*)`` minimizing the fitted loss at compute ``c``. With the default ``flops = 6 N D`` in closed
        form: ``N* = G (C/6)^a``, ``D* = (C/6)^b / G``, ``G = (alpha A / (beta B))^(1/(alpha + beta))``; for another
        ``flops(N, D)`` (increasing in ``D``), or another form, by a bounded search over ``log N``, ``D`` solving
        ``flops(N, D) = C``."""
        if FORMS[self.form].variables != 2:
            raise ValueError(f"compute_optimal needs a form in N and D; this fit is {self.form!r}")
        c = np.atleast_1d(np.asarray(c, float))
        p = self.params
        if flops is None and self.form == "chinchilla":
            a, b = self.allocation_exponents
            g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
            n_opt, d_opt = g * (c / 6) ** a, (c / 6) ** b / g
        else:
            n_opt, d_opt = np.array([_numeric_optimum(self, ci, flops) for ci in c]).T
        return n_opt, d_opt, self.predict(n_opt, d_opt)

    def predict_interval(self, n: Sequence[float] | float, d: Sequence[float] | float | None = None,
                         level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the predicted loss over the bootstrap replicates."""
        draws = np.array([self._replicate(t).predict(n, d) for t in self._need_replicates()])
        return _percentiles(draws, level)

    def compute_optimal_interval(self, c: Sequence[float] | float, level: float = 0.95,
                                 flops: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> dict:
        """Percentile intervals of ``N*``, ``D*`` and ``L*`` at compute ``c`` over the bootstrap replicates."""
        draws = [self._replicate(t).compute_optimal(c, flops) for t in self._need_replicates()]
        return {name: _percentiles(np.array([d[i] for d in draws]), level) for i, name in enumerate(("N", "D", "L"))}

    def _need_replicates(self) -> np.ndarray:
        if self.replicates is None:
            raise ValueError("no bootstrap replicates: fit with bootstrap=B (e.g. 1000) for intervals")
        return self.replicates

    def _replicate(self, theta: np.ndarray) -> "ScalingFit":
        return ScalingFit(self.form, FORMS[self.form].public(theta), np.nan, self.residuals, True, 0, 0,
                          self.huber_delta, tuple(theta))

    def summary(self) -> str:
        """One paragraph: the form, its parameters, the objective and convergence."""
        body = ", ".join(f"{k} = {v:.4g}" + (f" [{self.ci[k][0]:.4g}, {self.ci[k][1]:.4g}]" if k in self.ci else "")
                         for k, v in self.params.items())
        state = "converged" if self.converged else "NOT converged (best point returned)"
        return (f"{self.form} fit: {body}; Huber({self.huber_delta:g}) objective {self.objective:.6g} over "
                f"{len(self.residuals)} points, best of {self.starts} starts, {state}")

    def _need_chinchilla(self, what: str) -> None:
        if self.form != "chinchilla":
            raise ValueError(f"{what} needs the chinchilla form (two variables, N and D); this fit is {self.form!r}")


def _percentiles(draws: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = 50 * (1 - level)
    return np.percentile(draws, tail, axis=0), np.percentile(draws, 100 - tail, axis=0)


def _six_nd(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return 6 * n * d


def _numeric_optimum(fit: ScalingFit, c: float,
                     flops: Callable[[np.ndarray, np.ndarray], np.ndarray] | None) -> tuple[float, float]:
    """The fitted loss minimized over ``log N`` in ``[0, log C]`` on a grid of 401 points, zoomed three times onto the
    best cell (one vectorized prediction per level); ``D`` from ``flops(N, D) = C``: ``C / 6N`` for ``flops=None``,
    else by a vectorized bisection on ``log D``."""
    def data_for(n: np.ndarray) -> np.ndarray:
        if flops is None:
            return c / (6 * n)
        lo, hi = np.full_like(n, -50.0), np.full_like(n, 80.0)
        for _ in range(64):
            mid = (lo + hi) / 2
            below = flops(n, np.exp(mid)) < c
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return np.exp((lo + hi) / 2)

    lo, hi = 0.0, float(np.log(c))
    for _ in range(4):
        grid = np.linspace(lo, hi, 401)
        n = np.exp(grid)
        best = int(np.nanargmin(fit.predict(n, data_for(n))))
        lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, 400)]
    n = np.array([np.exp((lo + hi) / 2)])
    return float(n[0]), float(data_for(n)[0])


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber loss ``r^2/2`` for ``|r| <= delta``, ``delta (|r| - delta/2)`` beyond (``scipy.special.huber``)."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def fit_scaling_law(n: Sequence[float], d: Sequence[float] | None = None, loss: Sequence[float] | None = None, *,
                    form: str = "chinchilla", huber_delta: float = 1e-3, grid: np.ndarray | None = None,
                    drop_highest: int = 0, weights: Sequence[float] | None = None, max_iterations: int = 400,
                    tol: float = 1e-6, bootstrap: int = 0, seed: int = 0) -> ScalingFit:
    """Fit ``form`` to ``loss`` at ``n`` (and ``d``) by approach 3 (see the module docstring); ``grid``: the starts
    as rows of internal parameters (default the form's published grid); ``drop_highest``: leave out the k
    highest-loss points first; ``weights``: per-point weights of the Huber terms. The best start's optimum is
    returned; ``converged`` says whether its gradient fell below ``tol`` times the gradient scale of the data,
    ``sum_p w_p delta (1 + |log N_p| + |log D_p|)`` (the gradient if every residual sat in Huber's linear part).

    ``bootstrap=B``: B replicates resample the points with replacement (as multinomial counts on the weights) and
    refit, each from the full-data optimum and the three best distinct other optima of the grid (so a replicate can
    leave the full-data basin), all ``4 B`` starts in one batched problem; ``ci`` holds the 95% percentile interval
    of every parameter, and ``predict_interval`` / ``compute_optimal_interval`` those of predictions."""
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not a scaling-law form; allowed: {', '.join(FORMS)}")
    spec = FORMS[form]
    if loss is None:
        raise ValueError("loss is required: fit_scaling_law(n, d, loss) or fit_scaling_law(n, loss=...)")
    columns = {"n": n, "loss": loss} | ({"d": d} if spec.variables == 2 else {})
    if spec.variables == 2 and d is None:
        raise ValueError(f"form={form!r} needs d (data) as well as n (parameters)")
    arrays = {k: np.asarray(v, float).ravel() for k, v in columns.items()}
    lengths = {k: len(v) for k, v in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"n, d and loss must have the same length; got {lengths}")
    for k, v in arrays.items():
        if not np.all(np.isfinite(v)) or np.any(v <= 0):
            raise ValueError(f"{k} must be positive and finite everywhere (scaling laws are fitted in log space); "
                             f"bad values at positions {np.flatnonzero(~np.isfinite(v) | (v <= 0))[:5].tolist()}")
    w = np.ones(len(arrays["loss"])) if weights is None else np.asarray(weights, float).ravel()
    if len(w) != len(arrays["loss"]) or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError("weights must be one finite, non-negative number per point")
    keep = np.argsort(arrays["loss"])[: len(arrays["loss"]) - drop_highest] if drop_highest else slice(None)
    arrays, w = {k: v[keep] for k, v in arrays.items()}, w[keep]
    if len(w) < len(spec.internal):
        raise ValueError(f"{len(w)} points cannot identify the {len(spec.internal)} parameters of {form!r}")
    starts = spec.grid() if grid is None else np.atleast_2d(np.asarray(grid, float))
    if starts.shape[1] != len(spec.internal):
        raise ValueError(f"grid rows must hold the {len(spec.internal)} internal parameters {spec.internal}")

    log_n = torch.tensor(np.log(arrays["n"]), dtype=torch.float64)
    log_d = torch.tensor(np.log(arrays["d"]), dtype=torch.float64) if "d" in arrays else log_n
    log_l = torch.tensor(np.log(arrays["loss"]), dtype=torch.float64)
    wt = torch.tensor(w, dtype=torch.float64)

    if spec.terms is not None:
        derivatives = _lse_derivatives(spec.terms(log_n, log_d), log_l, huber_delta)
    else:
        derivatives = _autograd_derivatives(lambda theta: spec.log_model(theta, log_n, log_d) - log_l, huber_delta)
    gtol = tol * float((wt * huber_delta * (1 + log_n.abs() + (log_d.abs() if "d" in arrays else 0))).sum())
    theta, value, gnorm, iterations = _batched_lm(derivatives, torch.tensor(starts, dtype=torch.float64), wt,
                                                  max_iterations, gtol)
    best = int(torch.argmin(value))
    best_theta = theta[best]
    residuals = (spec.log_model(best_theta, log_n, log_d) - log_l).numpy()
    replicates, ci = None, {}
    _, _, curvature = derivatives(best_theta[None], wt[None])
    condition = float(np.linalg.cond(curvature[0].numpy()))
    if bootstrap:
        replicates = _bootstrap(derivatives, theta, value, w, bootstrap, seed, max_iterations, gtol)
        publics = [spec.public(t) for t in replicates]
        ci = {k: tuple(float(q) for q in np.percentile([p[k] for p in publics], [2.5, 97.5])) for k in publics[0]}
    params = spec.public(best_theta.numpy())
    notes = _identifiability(arrays, params, ci, condition)
    for note in notes:
        warnings.warn(note, ScalingFitWarning, stacklevel=2)
    return ScalingFit(form, params, float(value[best]), residuals, bool(gnorm[best] <= gtol), len(starts), iterations,
                      huber_delta, tuple(best_theta.tolist()), replicates, ci, condition, tuple(notes))


def _identifiability(arrays: dict[str, np.ndarray], params: dict[str, float], ci: dict[str, tuple[float, float]],
                     condition: float) -> list[str]:
    """Warnings: a variable spanning under ``_MIN_DECADES`` decades, a curvature condition number above
    ``_MAX_CONDITION``, a bootstrap interval of an exponent wider than the exponent."""
    notes = [f"{name} spans {span:.2g} decades (< {_MIN_DECADES:g}): its exponent is weakly identified"
             for name, span in ((k, np.log10(arrays[k].max() / arrays[k].min())) for k in ("n", "d") if k in arrays)
             if span < _MIN_DECADES]
    if not condition < _MAX_CONDITION:
        notes.append(f"the objective's curvature at the optimum is near-singular (condition number {condition:.2g} > "
                     f"{_MAX_CONDITION:.0e}): some parameter combinations are not determined by the data")
    notes += [f"the bootstrap interval of {k} [{ci[k][0]:.3g}, {ci[k][1]:.3g}] is wider than {k} = {v:.3g} itself"
              for k, v in params.items() if k.startswith(("alpha", "beta")) and k in ci and ci[k][1] - ci[k][0] > abs(v)]
    return notes


def _group_min(value: torch.Tensor, groups: torch.Tensor | None) -> torch.Tensor:
    """Each start's group minimum of ``value`` (the overall minimum without groups)."""
    if groups is None:
        return value.min()
    lowest = torch.full((int(groups.max()) + 1,), float("inf"), dtype=value.dtype)
    return lowest.scatter_reduce(0, groups, value, reduce="amin")[groups]


def _bootstrap(derivatives: Derivatives, theta: torch.Tensor, value: torch.Tensor, w: np.ndarray, replicates: int,
               seed: int, max_iterations: int, tol: float) -> np.ndarray:
    """Refit ``replicates`` resamples of the points (multinomial counts times the weights), each from the best of the
    grid's optima and up to ``_BOOTSTRAP_STARTS - 1`` other distinct ones, all in one batched problem; the best start
    of each replicate, as rows of internal parameters."""
    seeds: list[torch.Tensor] = []
    for i in torch.argsort(value).tolist():
        if len(seeds) == _BOOTSTRAP_STARTS or not torch.isfinite(value[i]):
            break
        if all(float((theta[i] - t).abs().max()) > 1e-3 for t in seeds):
            seeds.append(theta[i])
    counts = np.random.default_rng(seed).multinomial(len(w), np.full(len(w), 1 / len(w)), size=replicates)
    rows = torch.tensor(counts * w, dtype=torch.float64).repeat_interleave(len(seeds), dim=0)
    fits, values, _, _ = _batched_lm(derivatives, torch.stack(seeds).repeat(replicates, 1), rows, max_iterations, tol,
                                     groups=torch.arange(replicates).repeat_interleave(len(seeds)))
    pick = values.view(replicates, len(seeds)).argmin(dim=1)
    return fits.view(replicates, len(seeds), -1)[torch.arange(replicates), pick].numpy()


Derivatives = Callable[[torch.Tensor, torch.Tensor], tuple]  # (theta (starts, k), weights (starts, points)) ->
# (value, gradient, curvature) per start


def _huber_terms(r: torch.Tensor, jac: torch.Tensor, w: torch.Tensor, delta: float) -> tuple:
    """From residuals ``r`` (starts, points) and their Jacobians ``jac`` (starts, points, k): the objective
    ``sum w Huber(r)``, its gradient ``sum w psi'(r) grad r`` and the Gauss-Newton matrix of the Huber majorizer,
    ``sum w min(1, delta/|r|) grad r grad r^T`` (iteratively reweighted least squares): positive semi-definite, where
    the exact Hessian of a residual in Huber's linear part is indefinite."""
    value = (w * huber(r, delta)).sum(dim=1)
    g = torch.bmm((w * r.clamp(-delta, delta)).unsqueeze(1), jac).squeeze(1)
    weighted = jac * (w * (delta / r.abs().clamp(min=delta))).unsqueeze(2)
    return value, g, torch.bmm(weighted.transpose(1, 2), jac)


def _autograd_derivatives(residuals: Callable[[torch.Tensor], torch.Tensor], delta: float) -> Derivatives:
    """Any form: residuals and their Jacobians for every start by ``vmap`` of forward-mode autograd."""
    batched, jacobians = vmap(residuals), vmap(jacfwd(residuals))

    def derivatives(theta: torch.Tensor, w: torch.Tensor) -> tuple:
        return _huber_terms(batched(theta), jacobians(theta), w, delta)
    return derivatives


def _lse_derivatives(m: torch.Tensor, log_l: torch.Tensor, delta: float) -> Derivatives:
    """Forms whose log loss is ``LSE_t(m[p, t] . theta)`` (terms linear in theta), in closed form without forming the
    Jacobians: with ``s = softmax(z)``, ``grad r_p = sum_t s_pt m_pt``, so ``g = sum_t (w psi' s_t) @ m_t`` and the
    curvature of :func:`_huber_terms` is ``sum_{t,t'} (w omega s_t s_t') @ (m_t outer m_t')``: a few matrix products
    of (starts x points) by (points x the entries each pair of terms touches), where per-start products of tiny
    matrices would be slow."""
    points, terms, k = m.shape
    per_term = [m[:, t, :].T.contiguous() for t in range(terms)]  # (k, points): z_t = theta @ per_term[t]
    outer = torch.einsum("ptk,pul->tupkl", m, m).reshape(terms, terms, points, k * k)
    pairs = [(t, u) for t in range(terms) for u in range(t, terms)]  # the curvature's symmetric pairs of terms
    paired = {}  # per pair, only the curvature entries it touches (Chinchilla's terms each hold 1-2 parameters)
    for t, u in pairs:
        block = outer[t, u] + outer[u, t] if t != u else outer[t, t]
        cols = torch.nonzero(block.abs().amax(dim=0) > 0).flatten()
        paired[t, u] = (cols, block[:, cols].contiguous())

    def derivatives(theta: torch.Tensor, w: torch.Tensor) -> tuple:
        z = [theta @ mt for mt in per_term]  # each (starts, points): contiguous, no reductions over 2-3 terms
        top = functools.reduce(torch.maximum, z)
        soft = [torch.exp(zt - top) for zt in z]  # one pass for both the log-sum-exp and its softmax
        total = functools.reduce(torch.add, soft)
        r = torch.log(total).add_(top).sub_(log_l)
        total.reciprocal_()
        for e in soft:
            e.mul_(total)
        clipped = r.clamp(-delta, delta)
        slope = w * clipped  # w psi'(r)
        value = (slope * (r - 0.5 * clipped)).sum(dim=1)  # sum w Huber(r): clipped (r - clipped/2) is Huber
        omega = r.abs_().clamp_(min=delta).reciprocal_().mul_(w).mul_(delta)  # w min(1, delta/|r|)
        g = sum((slope * soft[t]) @ m[:, t, :] for t in range(terms))
        weighted = [omega * e for e in soft]
        h = torch.zeros(len(theta), k * k, dtype=theta.dtype)
        for t, u in pairs:
            cols, block = paired[t, u]
            h.index_add_(1, cols, (weighted[t] * soft[u]) @ block)
        return value, g, h.view(len(theta), k, k)
    return derivatives


def _batched_lm(derivatives: Derivatives, theta: torch.Tensor, weights: torch.Tensor, max_iterations: int,
                tol: float, groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Levenberg-Marquardt on every row of ``theta`` at once: ``(H + lam diag|H|) step = -g``; a start's step is kept
    only if its objective does not rise (then ``lam /= 3``, else ``lam *= 4``). A start stops when its gradient norm
    is below ``tol``, when an accepted step changed the objective by less than 1e-15 of it, when its damping
    saturates (no descent step left at double precision), or, after ``_PATIENCE`` iterations, when its objective is
    more than ``_FAR`` above the best start's of its group (``groups``: one problem per id, e.g. a bootstrap
    replicate; default one problem) (a slow valley: as scipy's loop stops each start on its own, without waiting for
    the worst)."""
    weights = weights.expand(len(theta), -1)  # one row of point weights per start
    value, g, h = derivatives(theta, weights)
    lam = torch.full((len(theta),), 1e-3, dtype=theta.dtype)
    active = torch.ones(len(theta), dtype=torch.bool)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        active &= (g.norm(dim=1) > tol) & (lam < 1e12)
        if iterations > _PATIENCE:  # a start still far above its group's best after this many steps: a slow valley
            active &= value <= _group_min(value, groups) * (1 + _FAR)
        if not active.any():
            break
        idx = torch.nonzero(active).flatten()
        hi, gi, li = h[idx], g[idx], lam[idx]
        diag = hi.diagonal(dim1=1, dim2=2).abs()
        scale = torch.maximum(diag, 1e-9 * diag.amax(dim=1, keepdim=True).clamp(min=1e-30))
        step = torch.linalg.solve(hi + li[:, None, None] * torch.diag_embed(scale), -gi.unsqueeze(2)).squeeze(2)
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        trial = theta[idx] + step
        trial_value, trial_g, trial_h = derivatives(trial, weights[idx])  # most steps are kept: derive them in the same pass
        better = torch.isfinite(trial_value) & (trial_value <= value[idx])
        stalled = better & (value[idx] - trial_value <= 1e-15 * value[idx].abs())
        accepted = idx[better]
        theta[accepted], value[accepted] = trial[better], trial_value[better]
        g[accepted], h[accepted] = trial_g[better], trial_h[better]
        lam[idx] = torch.where(better, li / 3, li * 4).clamp(min=1e-12)
        active[idx[stalled]] = False
    return theta, value, g.norm(dim=1), iterations


@dataclass(frozen=True)
class Extrapolation:
    """A fit on the small-compute points and its predictions of the held-out largest-compute ones: ``held_out``
    (indices into the inputs), ``predicted``, ``measured`` and ``relative_error`` (``predicted / measured - 1``)."""

    fit: ScalingFit
    held_out: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    relative_error: np.ndarray

    @property
    def worst(self) -> float:
        """The largest ``|relative error|`` over the held-out points."""
        return float(np.max(np.abs(self.relative_error)))


def leave_largest_out(n: Sequence[float], d: Sequence[float] | None, loss: Sequence[float], *,
                      held_out: int | float = 0.2, flops: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
                      fit: Callable[..., ScalingFit] = fit_scaling_law, **fit_kwargs) -> Extrapolation:
    """Refit without the largest-compute points (``held_out``: a count, or a fraction of the points; compute is
    ``flops(N, D)``, default ``6 N D``, or ``N`` alone for one-variable forms) and score the held-out predictions:
    the extrapolation error the replications report (REFERENCE 2.14 diagnostics)."""
    n = np.asarray(n, float)
    loss = np.asarray(loss, float)
    d_arr = None if d is None else np.asarray(d, float)
    compute = n if d_arr is None else (flops or _six_nd)(n, d_arr)
    count = int(round(held_out * len(n))) if isinstance(held_out, float) else int(held_out)
    if not 1 <= count <= len(n) - 2:
        raise ValueError(f"held_out={held_out!r} leaves {count} of {len(n)} points out; hold out at least one and "
                         "keep enough to fit")
    order = np.argsort(compute)
    kept, out = order[:-count], order[-count:]
    fitted = fit(n[kept], None if d_arr is None else d_arr[kept], loss[kept], **fit_kwargs)
    predicted = fitted.predict(n[out], None if d_arr is None else d_arr[out])
    return Extrapolation(fitted, out, predicted, loss[out], predicted / loss[out] - 1)

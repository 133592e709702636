"""Scaling-law fits: Hoffmann et al.'s approach 3, with every start of the initialization grid optimized at once.

Forms (REFERENCE 2.14; parameters named as in the form):

- ``chinchilla``: ``L = E + A/N^alpha + B/D^beta`` (Hoffmann et al. 2022, arXiv:2203.15556);
- ``power``: one variable, ``L = E + A x^-alpha``, or ``L = A x^-alpha`` with ``offset=False``.

Approach 3 (as replicated by Besiroglu et al. 2024, arXiv:2404.10102, epoch-research/analyzing-chinchilla):
with ``a = log A``, ``b = log B``, ``e = log E`` the model's log loss is a log-sum-exp,
``LSE(a - alpha log N, b - beta log D, e)``, and the fit minimizes ``sum_i w_i Huber_delta(log L_hat_i - log L_i)``
with ``delta = 1e-3`` from every point of a grid of starts (for Chinchilla 4500: ``alpha, beta in {0, .5, .., 2}``,
``e in {-1, -.5, .., 1}``, ``a, b in {0, 5, .., 25}``), keeping the best optimum. Where the replications loop
``scipy.optimize.minimize(method="L-BFGS-B")`` over the starts, here all starts advance together: a batched
Levenberg-Marquardt iteration on the exact gradient and Hessian (autograd, ``vmap`` over starts), each start with its
own damping, accepting a step only when its objective falls. The Huber loss has a zero second derivative beyond
``delta``; the damping keeps those steps bounded, as L-BFGS's line search does.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch.func import grad, hessian, vmap

_GRID_EXPONENTS = np.arange(0.0, 2.01, 0.5)
_GRID_OFFSETS = np.arange(-1.0, 1.01, 0.5)
_GRID_SCALES = np.arange(0.0, 25.1, 5.0)


@dataclass(frozen=True)
class _Form:
    """A scaling-law form: internal parameter names (log scales ``a, b, e`` and exponents), the public names, the
    number of variables, the model's log loss and the default grid of starts."""

    name: str
    internal: tuple[str, ...]
    variables: int
    log_model: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    grid: Callable[[], np.ndarray]
    terms: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # log L_hat = LSE_t (M[p, t] @ theta)

    def public(self, theta: np.ndarray) -> dict[str, float]:
        """``{"E": exp(e), "A": exp(a), ..., "alpha": ...}`` from the internal vector."""
        names = {"a": "A", "b": "B", "e": "E"}
        return {names.get(k, k): float(np.exp(v) if k in names else v) for k, v in zip(self.internal, theta)}


def _chinchilla(theta: torch.Tensor, log_n: torch.Tensor, log_d: torch.Tensor) -> torch.Tensor:
    a, b, e, alpha, beta = theta
    return torch.logsumexp(torch.stack([a - alpha * log_n, b - beta * log_d, e.expand_as(log_n)]), dim=0)


def _power(theta: torch.Tensor, log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    a, e, alpha = theta
    return torch.logaddexp(a - alpha * log_x, e.expand_as(log_x))


def _pure_power(theta: torch.Tensor, log_x: torch.Tensor, _: torch.Tensor) -> torch.Tensor:
    a, alpha = theta
    return a - alpha * log_x


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
    "chinchilla": _Form("chinchilla", ("a", "b", "e", "alpha", "beta"), 2, _chinchilla,
                        lambda: _product(_GRID_SCALES, _GRID_SCALES, _GRID_OFFSETS, _GRID_EXPONENTS, _GRID_EXPONENTS),
                        _chinchilla_terms),
    "power": _Form("power", ("a", "e", "alpha"), 1, _power,
                   lambda: _product(_GRID_SCALES, _GRID_OFFSETS, _GRID_EXPONENTS), _power_terms),
    "power-no-offset": _Form("power-no-offset", ("a", "alpha"), 1, _pure_power,
                             lambda: _product(_GRID_SCALES, _GRID_EXPONENTS), _pure_power_terms),
}


@dataclass(frozen=True)
class ScalingFit:
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

    def __getattr__(self, name: str) -> float:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(f"ScalingFit has no attribute {name!r}; parameters: {sorted(params)}")

    def predict(self, n: Sequence[float] | float, d: Sequence[float] | float | None = None) -> np.ndarray:
        """The fitted loss at ``n`` (and ``d`` for the two-variable forms)."""
        p = self.params
        n = np.asarray(n, float)
        if self.form == "chinchilla":
            if d is None:
                raise ValueError("the chinchilla form needs d (data) as well as n (parameters)")
            return p["E"] + p["A"] / n ** p["alpha"] + p["B"] / np.asarray(d, float) ** p["beta"]
        return p.get("E", 0.0) + p["A"] * n ** -p["alpha"]

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
        ``flops(N, D)`` (increasing in ``D``) by a bounded search over ``log N``, ``D`` solving ``flops(N, D) = C``."""
        self._need_chinchilla("compute_optimal")
        c = np.atleast_1d(np.asarray(c, float))
        p = self.params
        if flops is None:
            a, b = self.allocation_exponents
            g = (p["alpha"] * p["A"] / (p["beta"] * p["B"])) ** (1 / (p["alpha"] + p["beta"]))
            n_opt, d_opt = g * (c / 6) ** a, (c / 6) ** b / g
        else:
            n_opt, d_opt = np.array([_numeric_optimum(self, ci, flops) for ci in c]).T
        return n_opt, d_opt, self.predict(n_opt, d_opt)

    def summary(self) -> str:
        """One paragraph: the form, its parameters, the objective and convergence."""
        body = ", ".join(f"{k} = {v:.4g}" for k, v in self.params.items())
        state = "converged" if self.converged else "NOT converged (best point returned)"
        return (f"{self.form} fit: {body}; Huber({self.huber_delta:g}) objective {self.objective:.6g} over "
                f"{len(self.residuals)} points, best of {self.starts} starts, {state}")

    def _need_chinchilla(self, what: str) -> None:
        if self.form != "chinchilla":
            raise ValueError(f"{what} needs the chinchilla form (two variables, N and D); this fit is {self.form!r}")


def _numeric_optimum(fit: ScalingFit, c: float, flops: Callable) -> tuple[float, float]:
    """Golden-section search over ``log N`` on ``[log 1, log C]``, ``D`` from ``flops(N, D) = C`` by bisection."""
    def data_for(n: float) -> float:
        lo, hi = -50.0, 80.0  # log D
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if flops(np.float64(n), np.exp(mid)) < c else (lo, mid)
        return float(np.exp((lo + hi) / 2))

    def loss(log_n: float) -> float:
        n = float(np.exp(log_n))
        return float(fit.predict(n, data_for(n)))

    lo, hi, ratio = 0.0, float(np.log(c)), (np.sqrt(5) - 1) / 2
    for _ in range(200):
        x1, x2 = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        lo, hi = (lo, x2) if loss(x1) < loss(x2) else (x1, hi)
    n = float(np.exp((lo + hi) / 2))
    return n, data_for(n)


def huber(r: torch.Tensor, delta: float) -> torch.Tensor:
    """Huber loss ``r^2/2`` for ``|r| <= delta``, ``delta (|r| - delta/2)`` beyond (``scipy.special.huber``)."""
    a = r.abs()
    return torch.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def fit_scaling_law(n: Sequence[float], d: Sequence[float] | None = None, loss: Sequence[float] | None = None, *,
                    form: str = "chinchilla", huber_delta: float = 1e-3, grid: np.ndarray | None = None,
                    drop_highest: int = 0, weights: Sequence[float] | None = None, max_iterations: int = 400,
                    tol: float = 1e-6) -> ScalingFit:
    """Fit ``form`` to ``loss`` at ``n`` (and ``d``) by approach 3 (see the module docstring); ``grid``: the starts
    as rows of internal parameters (default the form's published grid); ``drop_highest``: leave out the k
    highest-loss points first; ``weights``: per-point weights of the Huber terms. The best start's optimum is
    returned; ``converged`` says whether its gradient fell below ``tol`` times the gradient scale of the data,
    ``sum_p w_p delta (1 + |log N_p| + |log D_p|)`` (the gradient if every residual sat in Huber's linear part)."""
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

    def objective(theta: torch.Tensor) -> torch.Tensor:
        return (wt * huber(spec.log_model(theta, log_n, log_d) - log_l, huber_delta)).sum()

    if spec.terms is not None:
        derivatives = _lse_derivatives(spec.terms(log_n, log_d), log_l, wt, huber_delta)
    else:
        derivatives = _autograd_derivatives(objective)
    gtol = tol * float((wt * huber_delta * (1 + log_n.abs() + (log_d.abs() if "d" in arrays else 0))).sum())
    theta, value, gnorm, iterations = _batched_lm(derivatives, torch.tensor(starts, dtype=torch.float64),
                                                  max_iterations, gtol)
    best = int(torch.argmin(value))
    best_theta = theta[best]
    residuals = (spec.log_model(best_theta, log_n, log_d) - log_l).numpy()
    return ScalingFit(form, spec.public(best_theta.numpy()), float(value[best]), residuals,
                      bool(gnorm[best] <= gtol), len(starts), iterations, huber_delta)


Derivatives = Callable[[torch.Tensor, bool], tuple]  # theta (starts, k) -> value, or (value, grad, hessian)


def _autograd_derivatives(objective: Callable[[torch.Tensor], torch.Tensor]) -> Derivatives:
    """Value, gradient and Hessian of ``objective`` for every start by ``vmap`` of autograd (any form)."""
    values, grads, hessians = vmap(objective), vmap(grad(objective)), vmap(hessian(objective))

    def derivatives(theta: torch.Tensor, full: bool) -> tuple:
        return (values(theta), grads(theta), hessians(theta)) if full else (values(theta),)
    return derivatives


def _lse_derivatives(m: torch.Tensor, log_l: torch.Tensor, w: torch.Tensor, delta: float) -> Derivatives:
    """Closed-form value, gradient and curvature of ``sum_p w_p Huber(LSE_t(m[p, t] . theta) - log L_p)`` for every
    start: with ``s = softmax(z)`` (the terms are linear in theta), ``grad r = sum_t s_t m_t``, ``g = sum w psi'(r)
    grad r``, and the Gauss-Newton matrix of the Huber majorizer, ``sum w min(1, delta/|r|) grad r grad r^T``
    (iteratively reweighted least squares): positive semi-definite, where the exact Hessian of a residual in Huber's
    linear part is indefinite."""
    def derivatives(theta: torch.Tensor, full: bool) -> tuple:
        z = torch.einsum("ptk,sk->spt", m, theta)
        r = torch.logsumexp(z, dim=2) - log_l
        value = (w * huber(r, delta)).sum(dim=1)
        if not full:
            return (value,)
        s = torch.softmax(z, dim=2)
        gr = torch.einsum("spt,ptk->spk", s, m)
        d1 = w * r.clamp(-delta, delta)
        g = torch.einsum("sp,spk->sk", d1, gr)
        # the Huber majorizer's curvature (IRLS weights psi'(r)/r = min(1, delta/|r|)) on the Gauss-Newton model
        irls = w * (delta / r.abs().clamp(min=delta))
        h = torch.einsum("sp,spk,spl->skl", irls, gr, gr)
        return value, g, h
    return derivatives


def _batched_lm(derivatives: Derivatives, theta: torch.Tensor, max_iterations: int,
                tol: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Levenberg-Marquardt on every row of ``theta`` at once: ``(H + lam diag|H|) step = -g``; a start's step is kept
    only if its objective does not rise (then ``lam /= 3``, else ``lam *= 4``). A start stops when its gradient norm
    is below ``tol``, when an accepted step changed the objective by less than 1e-15 of it, or when its damping
    saturates (no descent step left at double precision)."""
    value, g, h = derivatives(theta, True)
    lam = torch.full((len(theta),), 1e-3, dtype=theta.dtype)
    active = torch.ones(len(theta), dtype=torch.bool)
    iterations = 0
    for iterations in range(1, max_iterations + 1):
        active &= (g.norm(dim=1) > tol) & (lam < 1e12)
        if not active.any():
            break
        idx = torch.nonzero(active).flatten()
        hi, gi, li = h[idx], g[idx], lam[idx]
        diag = hi.diagonal(dim1=1, dim2=2).abs()
        scale = torch.maximum(diag, 1e-9 * diag.amax(dim=1, keepdim=True).clamp(min=1e-30))
        step = torch.linalg.solve(hi + li[:, None, None] * torch.diag_embed(scale), -gi.unsqueeze(2)).squeeze(2)
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        trial = theta[idx] + step
        (trial_value,) = derivatives(trial, False)
        better = torch.isfinite(trial_value) & (trial_value <= value[idx])
        stalled = better & (value[idx] - trial_value <= 1e-15 * value[idx].abs())
        accepted = idx[better]
        theta[accepted] = trial[better]
        if len(accepted):
            value[accepted], g[accepted], h[accepted] = derivatives(theta[accepted], True)
        lam[idx] = torch.where(better, li / 3, li * 4).clamp(min=1e-12)
        active[idx[stalled]] = False
    return theta, value, g.norm(dim=1), iterations

"""The central flow of full-batch gradient descent (Cohen, Damian, Talwalkar, Kolter & Lee 2025, arXiv:2410.24206).

GD with step ``eta`` at the edge of stability oscillates along the top Hessian eigenvectors ``u_i`` while its
*time average* ``w`` follows a smooth flow. Write an iterate as ``w + sum_i x_i u_i`` with ``E[x_i] = 0`` and
``Sigma = E[x x^T]`` (diagonal in the ``u_i`` here: ``sigma_i^2 = E[x_i^2]``). To second order in ``x``,

- ``E[grad L(w + x u)] = grad L(w) + 1/2 sum_i sigma_i^2 grad S_i(w)``, with ``S_i = u_i^T H(w) u_i`` and
  ``grad S_i = grad_w (u_i^T H(w) u_i)`` at fixed ``u_i`` (the third derivative ``D^3 L[u_i, u_i]``), so

      dw/dt = -eta [grad L(w) + 1/2 sum_i sigma_i^2 grad S_i(w)],   t in GD steps;

- ``E[L(w + x u)] = L(w) + 1/2 sum_i S_i sigma_i^2``, which at ``S_i = 2/eta`` is the time-averaged loss

      <L> = L(w) + tr(Sigma) / eta;

- ``E||grad L(w + x u)||^2 = ||grad L(w)||^2 + sum_i S_i^2 sigma_i^2 = ||grad L(w)||^2 + 4 tr(Sigma) / eta^2``
  (the cross term ``sigma^2 <grad L, grad S> = -sigma^4 ||grad S||^2 / 2`` on the active set is fourth order).

``Sigma`` is the smallest oscillation that keeps every ``S_i <= 2/eta`` (GD is unstable above): the complementarity
conditions ``sigma_i^2 >= 0``, ``2/eta - S_i >= 0``, ``sigma_i^2 (2/eta - S_i) = 0``, with ``dS_i/dt = 0`` on the
active set. For one direction this gives ``sigma^2 = max(0, 2 <-grad L, grad S> / ||grad S||^2)`` while
``S = 2/eta`` and ``sigma^2 = 0`` below: ``dw/dt`` is ``-eta grad L`` projected onto the tangent space of
``{S <= 2/eta}``. With several directions the paper solves a semidefinite complementarity problem for a full
``Sigma``; we keep ``Sigma`` diagonal in the Lanczos eigenbasis (exact for one direction), a linear
complementarity problem (LCP) of size ``k``.

Integrator (our own code; the authors' reference implementation also solves a one-step-ahead complementarity
problem): forward Euler in ``t`` with substep ``dt``. Each substep chooses ``sigma^2``
so that the *predicted* gaps after the substep, ``2/eta - S_i - dt <grad S_i, dw/dt>``, satisfy the complementarity
conditions. At ``S = 2/eta`` this is the formula above; an overshoot ``S - 2/eta = delta`` adds
``2 delta / (eta dt ||grad S||^2)`` to ``sigma^2``, a Newton correction along ``grad S`` that returns ``S`` to
``2/eta`` within one substep. The same integrator with ``sigma = 0`` is plain gradient flow. Each substep builds
one gradient graph at ``w``, shared by the gradient, the Lanczos products and the sharpness gradients (the
results are those of separate computations, bit for bit; 15% less time than one pass each).
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..observables._lanczos import EigenResult
from ..observables._params import FlatParams, LossFn, loss_of_params
from ..observables.hessian import HessianOperator
from ..observables.sharpness import top_eigenpairs

NEAR = 0.95  # grad S_i is computed only while S_i >= NEAR * 2/eta; farther below, the LCP gives sigma_i^2 = 0


def sharpness_gradient(loss: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                       u: torch.Tensor) -> torch.Tensor:
    """``grad_theta (u^T H(theta) u)`` for fixed ``u``: the third derivative ``D^3 L(theta)[u, u, .]``.

    For a unit top eigenvector ``u`` this is the gradient of the sharpness ``S = lambda_max(H)`` (the eigenvector's
    own variation does not enter, to first order). Three nested reverse-mode passes: ``g``, ``H u``, then the
    gradient of ``u . H u``.
    """
    with torch.enable_grad():
        t = theta.detach().requires_grad_(True)
        return _third_derivative(torch.autograd.grad(loss(t), t, create_graph=True)[0], t, u)


def _third_derivative(g: torch.Tensor, t: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``grad_t (u . H u)`` from a gradient ``g`` of the loss at ``t`` built with ``create_graph`` (kept for more
    products)."""
    with torch.enable_grad():
        hu = torch.autograd.grad(g, t, u, create_graph=True)[0]
        return torch.autograd.grad(torch.dot(u, hu), t, retain_graph=True)[0]


def solve_lcp(a: np.ndarray, m: np.ndarray, tol: float = 1e-12) -> np.ndarray:
    """The ``s >= 0`` with ``q = a + m s >= 0`` and ``s . q = 0`` (``m`` symmetric PSD, small), by enumerating
    active sets from the smallest: the minimizer of ``1/2 s^T m s + a^T s`` over ``s >= 0``."""
    a, m = np.asarray(a, float), np.asarray(m, float)
    k = len(a)
    scale = tol * max(np.abs(a).max(initial=0.0), np.abs(m).max(initial=0.0), 1.0)
    for size in range(k + 1):
        for active in itertools.combinations(range(k), size):
            s = np.zeros(k)
            idx = list(active)
            if idx:
                s[idx] = np.linalg.lstsq(m[np.ix_(idx, idx)], -a[idx], rcond=None)[0]
            q = a + m @ s
            if (s >= -scale).all() and (q >= -scale).all() and abs(s @ q) <= scale * max(1.0, np.abs(s).sum()):
                return np.maximum(s, 0.0)
    raise ValueError(f"the complementarity problem has no solution (a={a}, m={m}): the sharpness exceeds 2/eta "
                     "and its gradient vanishes; lower dt or check the loss")


@dataclass
class CentralFlowResult:
    """A flow sampled at ``times`` (in GD steps): ``loss = L(w(t))``, ``sharpness[:, i] = S_i(w(t))``,
    ``sigma2[:, i]`` (``sigma_i^2``, averaged over the substeps of the step that ends at each time; zero for
    gradient flow), ``grad_norm_sq = ||grad L(w(t))||^2``; ``eta`` and the final flat parameters ``params``."""

    times: np.ndarray
    loss: np.ndarray
    sharpness: np.ndarray
    sigma2: np.ndarray
    grad_norm_sq: np.ndarray
    eta: float
    params: torch.Tensor

    @property
    def time_averaged_loss(self) -> np.ndarray:
        """``L(w) + tr(Sigma) / eta``: GD's predicted loss averaged over its oscillation."""
        return self.loss + self.sigma2.sum(axis=1) / self.eta

    @property
    def time_averaged_grad_norm_sq(self) -> np.ndarray:
        """``||grad L(w)||^2 + 4 tr(Sigma) / eta^2``: GD's predicted squared gradient norm averaged over its
        oscillation (the second-order expansion at ``S_i = 2/eta``)."""
        return self.grad_norm_sq + 4 * self.sigma2.sum(axis=1) / self.eta ** 2


class _Point:
    """The loss at a flat ``w`` with its Hessian operator, whose gradient graph is built once and shared by the
    gradient, the eigen-solve's products and the sharpness gradients taken there (one forward and backward per
    substep)."""

    def __init__(self, loss: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> None:
        self.hessian = HessianOperator.at(loss, w.detach())
        self.theta, value, self.graph = self.hessian.gradient_graph()
        self.value, self.grad = float(value.detach()), self.graph.detach()

    def eigen(self, k: int, tol: float, warm: EigenResult | None) -> EigenResult:
        """Top ``k`` Hessian eigenpairs as :func:`~lmech.sharpness` computes them."""
        return top_eigenpairs(self.hessian.matvec, self.hessian, k, tol=tol, warm_start=warm)

    def sharpness_gradient(self, u: torch.Tensor) -> torch.Tensor:
        return _third_derivative(self.graph, self.theta, u)


def central_flow(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, eta: float, steps: int, *,
                 dt: float = 0.25, k: int = 1, record_every: int = 1, tol: float = 1e-4,
                 gradient_flow: bool = False) -> CentralFlowResult:
    """Integrate the central flow of GD with step ``eta`` on ``loss_fn(model(x), y)`` from ``model``'s parameters
    for ``steps`` GD steps (time ``t = steps``), in substeps ``dt``; record every ``record_every`` steps.

    ``k`` top eigenpairs (Lanczos, warm-started, relative tolerance ``tol``) may carry an oscillation.
    ``gradient_flow=True`` integrates ``dw/dt = -eta grad L`` with the same scheme (``sigma = 0``). ``model`` is
    not modified. See the module docstring for the equations and the integrator.
    """
    if not (eta > 0 and dt > 0 and steps >= 0 and record_every >= 1):
        raise ValueError(f"need eta > 0, dt > 0, steps >= 0, record_every >= 1; got {eta}, {dt}, {steps}, "
                         f"{record_every}")
    substeps = round(1 / dt)
    if abs(substeps * dt - 1) > 1e-9:
        raise ValueError(f"dt={dt} must be 1/n for an integer n, so that substeps land on GD steps")
    net = copy.deepcopy(model)
    flat = FlatParams(net)
    loss = loss_of_params(net, loss_fn, x, y, flat)
    threshold = 2.0 / eta
    w = flat.vector.clone()
    warm: EigenResult | None = None
    rows: list[tuple] = []
    sigma_sum = np.zeros(k)
    for step in range(steps + 1):
        record = step % record_every == 0 or step == steps
        if record:
            point = _Point(loss, w)
            warm = point.eigen(k, tol, warm)
            rows.append((step, point.value, warm.values.copy(), sigma_sum / substeps, float(point.grad @ point.grad)))
        if step == steps:
            break
        sigma_sum = np.zeros(k)
        for sub in range(substeps):
            fresh = record and sub == 0  # the point (gradient, eigenpairs) at w was just computed
            if gradient_flow:
                w = w - dt * eta * (point.grad if fresh else _gradient(loss, w))
                continue
            if not fresh:
                point = _Point(loss, w)
                warm = point.eigen(k, tol, warm)
            s2, drift = _oscillation(point, warm, threshold, eta, dt)
            sigma_sum += s2
            w = w - dt * eta * (point.grad + drift)
    times, losses, sharp, sigma2, gnorm = zip(*rows)
    return CentralFlowResult(np.array(times, float), np.array(losses), np.array(sharp), np.array(sigma2),
                             np.array(gnorm), float(eta), w)


def _gradient(loss: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``grad L(w)`` without a graph for higher derivatives (gradient flow's substeps)."""
    with torch.enable_grad():
        t = w.detach().requires_grad_(True)
        return torch.autograd.grad(loss(t), t)[0]


def _oscillation(point: _Point, eig: EigenResult, threshold: float, eta: float,
                 dt: float) -> tuple[np.ndarray, torch.Tensor]:
    """``(sigma^2, 1/2 sum_i sigma_i^2 grad S_i)`` for one substep: the LCP on the predicted gaps
    ``2/eta - S_i + dt eta <grad S_i, g> + (dt eta / 2) sum_j <grad S_i, grad S_j> sigma_j^2``."""
    s2, g = np.zeros(len(eig.values)), point.grad
    near = [i for i, s in enumerate(eig.values) if s >= NEAR * threshold]
    if not near:
        return s2, torch.zeros_like(g)
    grads = torch.stack([point.sharpness_gradient(eig.vectors[i]) for i in near])
    gram = (grads @ grads.T).double().cpu().numpy()
    a = threshold - eig.values[near] + dt * eta * (grads @ g).double().cpu().numpy()
    s2[near] = solve_lcp(a, 0.5 * dt * eta * gram)
    return s2, 0.5 * torch.as_tensor(s2[near], dtype=g.dtype, device=g.device) @ grads


def moving_average(steps: np.ndarray, values: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred moving average of a GD series measured at evenly spaced ``steps``, over ``window`` consecutive
    measurements: the time average that the central flow predicts. Returns ``(centre steps, averages)`` for the
    windows that fit."""
    steps, values = np.asarray(steps, float), np.asarray(values, float)
    if not 1 <= window <= len(values):
        raise ValueError(f"window={window} must be between 1 and the number of measurements ({len(values)})")
    kernel = np.ones(window) / window
    return np.convolve(steps, kernel, mode="valid"), np.convolve(values, kernel, mode="valid")

"""Hessian eigenvalue density by stochastic Lanczos quadrature (SLQ), with its moments and trace.

For a symmetric ``A`` on ``R^dim`` and a unit probe ``v0``, ``k`` Lanczos steps give the tridiagonal
``T = Y diag(theta) Y^T``; the Gauss quadrature ``sum_j tau_j f(theta_j)`` with ``tau_j = Y[0, j]^2`` (the
*first* row) equals ``v0^T f(A) v0`` for every polynomial ``f`` of degree ``<= 2k - 1`` (Golub & Meurant 2010,
Thm. 6.6). With normalized Rademacher probes ``E[v0^T f(A) v0] = tr f(A) / dim``, so the mean over probes of
``sum_j tau_j delta(lambda - theta_j)`` estimates the spectral density ``(1/dim) sum_i delta(lambda - lambda_i)``
(Ubaru, Chen & Saad 2017, SIAM J. Matrix Anal. Appl. 38:1075; Ghorbani, Krishnan & Xiao 2019, arXiv:1901.10159).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
from torch import nn

from ..systems._validate import positive_float, positive_int
from ._params import LossFn
from .hessian import HessianOperator
from ._lanczos import orthogonalize
from .trace import TraceEstimate, _rademacher


@dataclass(frozen=True)
class SpectralDensity:
    """SLQ quadrature rules, one per probe: ``nodes[i]`` (Ritz values, ascending) and ``weights[i]`` (summing to 1).

    ``dim`` is the operator's size and ``matvecs`` the products spent. A probe's rule has fewer than ``steps``
    nodes when its Krylov space became invariant (then the rule is exact for every ``f``).
    """

    nodes: list[np.ndarray]
    weights: list[np.ndarray]
    dim: int
    matvecs: int

    @property
    def probes(self) -> int:
        return len(self.nodes)

    def moment(self, p: int) -> float:
        """``mean_i sum_j tau_ij theta_ij^p``, an unbiased estimate of ``tr(A^p) / dim`` when ``2k - 1 >= p``."""
        return float(np.mean(self._probe_moments(p)))

    def trace(self) -> TraceEstimate:
        """``tr(A) ~ dim * moment(1)``: Hutchinson's estimator on the probes (normalized Rademacher), with the
        standard error of the mean over probes (``nan`` for one probe)."""
        samples = self.dim * self._probe_moments(1)
        stderr = float(samples.std(ddof=1) / math.sqrt(len(samples))) if len(samples) > 1 else float("nan")
        return TraceEstimate(float(samples.mean()), stderr, self.matvecs, "slq")

    def default_sigma(self) -> float:
        """Gaussian width ``(b - a) / ((k - 1) sqrt(8 ln 3))`` over the node range ``[a, b]`` with ``k`` nodes per
        probe (Papyan 2020, JMLR 21:252, App. D.2, kappa = 3): neighbouring nodes' bumps overlap."""
        lo, hi = self.support()
        k = max(len(n) for n in self.nodes)
        width = hi - lo if hi > lo else max(abs(hi), 1.0)
        return width / (max(k - 1, 1) * math.sqrt(8.0 * math.log(3.0)))

    def support(self) -> tuple[float, float]:
        """Smallest and largest node over all probes (Ritz values lie inside ``[lambda_min, lambda_max]``)."""
        return float(min(n[0] for n in self.nodes)), float(max(n[-1] for n in self.nodes))

    def grid(self, num: int = 1024, sigma: float | None = None) -> np.ndarray:
        """``num`` points spanning the nodes plus ``5 sigma`` on each side."""
        sigma = self.default_sigma() if sigma is None else sigma
        lo, hi = self.support()
        return np.linspace(lo - 5 * sigma, hi + 5 * sigma, num)

    def density(self, grid: Sequence[float] | np.ndarray, sigma: float | None = None, *,
                counts: bool = False) -> np.ndarray:
        """Smoothed density ``phi(x) = mean_i sum_j tau_ij N(x; theta_ij, sigma^2)`` at ``grid``.

        It integrates to 1 over the real line (``counts=True`` multiplies by ``dim``: eigenvalues per unit);
        ``sigma`` defaults to :meth:`default_sigma`.
        """
        sigma = self.default_sigma() if sigma is None else sigma
        positive_float("sigma", sigma)
        x = np.asarray(grid, dtype=np.float64)[:, None]
        total = np.zeros(x.shape[0])
        for theta, tau in zip(self.nodes, self.weights):
            total += np.exp(-0.5 * ((x - theta[None, :]) / sigma) ** 2) @ tau
        total /= self.probes * sigma * math.sqrt(2.0 * math.pi)
        return total * self.dim if counts else total

    def _probe_moments(self, p: int) -> np.ndarray:
        return np.array([float(np.sum(tau * theta ** p)) for theta, tau in zip(self.nodes, self.weights)])


def lanczos_tridiagonal(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor,
                        steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal ``alpha`` and off-diagonal ``beta`` (float64) of the Lanczos tridiagonal ``T`` from the unit vector
    ``v0`` (Lanczos 1950), with full reorthogonalization against the stored ``steps x dim`` basis; stops early
    when the Krylov space is invariant (``beta`` below ``sqrt(eps) ||A q_j||``), so ``len(alpha) <= steps``."""
    basis = torch.empty(steps, v0.numel(), dtype=v0.dtype, device=v0.device)
    basis[0] = v0
    alpha, beta = np.zeros(steps), np.zeros(steps - 1)
    drop = float(torch.finfo(v0.dtype).eps) ** 0.5
    for j in range(steps):
        w = matvec(basis[j])
        alpha[j] = float(basis[j] @ w)
        if j == steps - 1:
            break
        scale = float(w.norm())
        w = w - alpha[j] * basis[j] - (beta[j - 1] * basis[j - 1] if j else 0.0)
        w = orthogonalize(w, basis[: j + 1])
        beta[j] = float(w.norm())
        if not beta[j] > drop * scale:
            return alpha[: j + 1], beta[:j]
        basis[j + 1] = w / beta[j]
    return alpha, beta


def _quadrature(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule of ``T``: nodes ``theta`` (ascending) and weights ``tau_j = Y[0, j]^2`` (first row)."""
    theta, y = scipy.linalg.eigh_tridiagonal(alpha, beta)
    return theta, y[0] ** 2


def spectral_density(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, like: torch.Tensor, *,
                     probes: int = 10, steps: int = 64, seed: int = 0) -> SpectralDensity:
    """SLQ density of the symmetric operator ``matvec`` on ``R^dim``: ``probes`` normalized Rademacher vectors
    (from ``seed``), ``min(steps, dim)`` Lanczos steps each, ``probes * steps`` products at most.

    ``like`` fixes dtype and device of the Lanczos vectors; ``T`` is diagonalized in float64.
    """
    positive_int("probes", probes)
    positive_int("steps", steps)
    positive_int("dim", dim)
    gen = torch.Generator().manual_seed(seed)
    nodes, weights, used = [], [], 0
    for _ in range(probes):
        v0 = _rademacher(dim, 1, gen, like)[:, 0] / math.sqrt(dim)
        alpha, beta = lanczos_tridiagonal(matvec, v0, min(steps, dim))
        theta, tau = _quadrature(alpha, beta)
        nodes.append(theta)
        weights.append(tau)
        used += len(alpha)
    return SpectralDensity(nodes, weights, dim, used)


def hessian_density(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *, probes: int = 10,
                    steps: int = 64, seed: int = 0, params: Sequence[str] | None = None) -> SpectralDensity:
    """Eigenvalue density of the training-loss Hessian (or of its ``params`` diagonal block) by
    :func:`spectral_density` on Hessian-vector products; ``matvecs`` counts the products."""
    op = HessianOperator(model, loss_fn, x, y, params=params)
    return spectral_density(op.matvec, op.dim, op.flat.vector, probes=probes, steps=steps, seed=seed)

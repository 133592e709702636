"""Lanczos with full reorthogonalization for the top-k algebraic eigenpairs of a symmetric operator."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch


@dataclass
class EigenResult:
    """Top-k eigenpairs found by :func:`lanczos_top`, in descending order of eigenvalue.

    ``residuals[i] = ||A u_i - values[i] u_i||``. For symmetric ``A`` an eigenvalue lies within
    ``residuals[i]`` of ``values[i]`` (Bauer-Fike), so ``residual / |value|`` bounds the relative error.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    matvecs: int
    converged: bool

    def __float__(self) -> float:
        return float(self.values[0])

    def __repr__(self) -> str:
        vals = np.array2string(self.values, precision=6)
        return f"EigenResult(values={vals}, max_rel_residual={self.relative_residual:.1e}, matvecs={self.matvecs}, converged={self.converged})"

    @property
    def relative_residual(self) -> float:
        return float(np.max(self.residuals / np.maximum(np.abs(self.values), np.finfo(float).tiny)))


def lanczos_top(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, *, v0: torch.Tensor | None,
                tol: float, max_matvecs: int, dtype: torch.dtype, device: torch.device,
                generator: torch.Generator | None = None) -> EigenResult:
    """Top ``k`` eigenpairs of the symmetric operator ``matvec`` on ``R^dim``.

    Stops when every one of the top ``k`` Ritz pairs has relative residual ``<= tol`` (residual
    estimated as ``beta_j |e_j^T s_i|``), after ``max_matvecs`` products, or on an invariant subspace.
    ``v0`` (a vector, or rows to be summed) is the starting vector: pass previous eigenvectors to warm start.
    """
    if k < 1 or k > dim:
        raise ValueError(f"k={k} must be between 1 and the number of parameters ({dim})")
    max_matvecs = min(max_matvecs, dim)
    if v0 is None:
        q = torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
    else:
        q = (v0.reshape(-1, dim).sum(0) if v0.ndim > 1 else v0).to(device=device, dtype=dtype).clone()
    q = q / q.norm()
    basis = torch.empty(max_matvecs, dim, dtype=dtype, device=device)
    alphas: list[float] = []
    betas: list[float] = []
    theta = s = None
    residuals = np.full(k, np.inf)
    for j in range(max_matvecs):
        basis[j] = q
        w = matvec(q)
        alpha = torch.dot(q, w)
        w = w - alpha * q - (betas[-1] * basis[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # full reorthogonalization, twice is enough (Parlett's "twice is enough")
            w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta = float(w.norm())
        alphas.append(float(alpha))
        theta, s = _ritz(alphas, betas)
        top = min(k, j + 1)
        residuals = np.abs(beta * s[-1, :top])
        done = j + 1 >= k and np.all(residuals <= tol * np.abs(theta[:top]))
        if done or beta <= 1e-12 * max(abs(theta[0]), 1e-300) or j + 1 == max_matvecs:
            break
        betas.append(beta)
        q = w / beta
    top = min(k, len(alphas))
    vectors = torch.as_tensor(s[:, :top].T, dtype=dtype, device=device) @ basis[: len(alphas)]
    converged = bool(len(alphas) >= k and np.all(residuals <= tol * np.abs(theta[:top])))
    return EigenResult(theta[:top].copy(), vectors, residuals, len(alphas), converged)


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Eigenpairs of the Lanczos tridiagonal matrix, sorted by descending eigenvalue."""
    t = np.diag(alphas)
    if betas:
        off = np.array(betas[: len(alphas) - 1])
        t += np.diag(off, 1) + np.diag(off, -1)
    vals, vecs = np.linalg.eigh(t)
    order = np.argsort(vals)[::-1]
    return vals[order], vecs[:, order]

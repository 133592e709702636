"""Top-k algebraic eigenpairs of a symmetric operator: Lanczos with full reorthogonalization, warm-startable.

The method is Rayleigh-Ritz on a growing orthonormal basis ``Q`` whose products ``H Q`` are kept.
The basis starts from a random vector, or from the rows of ``v0`` (a *block*: for a warm start,
the previous top-``k`` Ritz vectors and a guard vector, the previous (k+1)-th Ritz vector). Each
step adds one direction, orthogonalized twice against ``Q`` (full reorthogonalization, Parlett's
"twice is enough"): ``H q_n`` while a random start builds its first vectors, then the residual
``H y - theta y`` of one Ritz pair. From a single start vector the two agree (every Ritz residual
of a Krylov space is parallel to the next Lanczos vector), so the basis is the Lanczos basis
(Lanczos 1950); from a block it is span(block) plus residual directions.

Error estimate, for the Ritz pairs ``(theta_i, y_i)`` in descending order with residual norms
``r_i = ||H y_i - theta_i y_i||`` (computed from the kept products, not estimated):

* ``theta_i <= lambda_i`` (Poincare separation / Cauchy interlacing: Ritz values from any subspace
  are lower bounds of the top eigenvalues), and some eigenvalue lies within ``r_i`` of ``theta_i``
  (Bauer-Fike for symmetric matrices).
* Kato-Temple (Kato 1949, J. Phys. Soc. Japan 4:334; Temple 1928, Proc. R. Soc. A 119:276): if
  ``lambda_i`` is the only eigenvalue of ``H`` in ``(a_i, theta_{i-1})`` (``theta_0 = inf``) and
  ``a_i < theta_i``, then ``0 <= lambda_i - theta_i <= r_i^2 / (theta_i - a_i)``.

Stopping rule: ``e_i <= tol * |theta_i|`` for the top ``k`` pairs, where ``e_i`` estimates the eigenvalue
error ``lambda_i - theta_i`` (rounding errors of the products are not included):

* ``e_i = r_i^2 / (theta_i - a_i)`` with ``a_i = theta_{i+1} + r_{i+1}`` (the next Ritz value plus its residual
  radius) when ``r_i < theta_i - a_i``, else ``r_i``; so ``e_i <= r_i``. By Kato-Temple it bounds
  ``lambda_i - theta_i`` provided no eigenvalue was missed above ``a_i`` (``lambda_{i+1} <= a_i``), which no Krylov
  method can certify. The eigenvalue error of a Ritz value is quadratic in its residual, so this stops when the
  eigenvalue is as accurate as asked: the residual rule ``r_i <= tol * |theta_i|`` alone (the bound that holds
  unconditionally, reported as :attr:`EigenResult.residuals`) would stop when the eigenvalue is already about
  ``tol * r_i / gap`` accurate, typically 100-1000x more accurate than asked, a few products later.
* Random start: the estimate is used once the basis has ARPACK's default size ``max(2k + 1, 20)`` (scipy's
  ``eigsh`` ``ncv``). No Krylov method can see an eigenvalue whose component in the start vector is too small to
  have been amplified yet: with a small gap above ``lambda_2`` an early Krylov space can hold a converged Ritz pair
  for ``lambda_2`` while ``lambda_1`` has not emerged. The minimum makes that rare. Measured (issue 18): with a
  minimum of 5 vectors, 1 of 5 random starts on a network whose top two eigenvalues are 1.3% apart (the edge of
  stability; bench/bench_sharpness.py) stopped after 9 products on ``lambda_2`` (error 1.45% at ``tol = 1e-3``),
  although 80 starts on 8 networks with gaps of 1.5-39% (bench/bench_sharpness_suite.py) all landed within
  5.4e-4; the Lanczos amplification of ``lambda_1`` over ``lambda_2`` after ``n`` steps, ``T_{n-1}(1 + 2 gap /
  spread)``, is about 3 at ``n = 9`` and 35 at ``n = 20`` for that network.
* Warm start from at least ``k + 1`` vectors (a previous result's :attr:`EigenResult.warm_block`): the estimate
  is used from the first vectors; the guard vector keeps ``theta_{k+1}`` on ``lambda_{k+1}``, so two nearly equal
  top eigenvalues that cross are both in the basis, but an eigenvalue that rises past the guard between two calls
  can be missed (as it can by any warm start).
* Any other start (fewer than ``k + 1`` vectors, no guard): ``e_i = r_i``.

Restarts: when a random start's Krylov space becomes invariant (``H q_n`` in the span to working precision) it holds
one vector per distinct eigenvalue that the start vector touches, so a repeated eigenvalue's other copies are
missing; a random vector is then added and Lanczos goes on from it. In a large operator the space does not become
invariant first and a single start vector sees one copy of a repeated eigenvalue (as in ARPACK); a block ``v0``
with several rows resolves multiplicities.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class EigenResult:
    """Top-k eigenpairs found by :func:`lanczos_top`, in descending order of eigenvalue.

    ``residuals[i] = ||A u_i - values[i] u_i||`` (computed, not estimated): some eigenvalue lies
    within it of ``values[i]`` (Bauer-Fike). ``errors[i]`` is the Kato-Temple error estimate that
    the stopping rule compares with ``tol * |values[i]|`` (see the module docstring; ``<= residuals``).
    ``values[i]`` is a lower bound of the i-th eigenvalue (interlacing, in exact arithmetic).
    ``guard_vectors`` hold the next Ritz vector (not converged), kept to warm-start the next call.
    """

    values: np.ndarray
    vectors: torch.Tensor
    residuals: np.ndarray
    matvecs: int
    converged: bool
    errors: np.ndarray
    guard_vectors: torch.Tensor = field(repr=False)

    def __float__(self) -> float:
        return float(self.values[0])

    def __repr__(self) -> str:
        vals = np.array2string(self.values, precision=6)
        return (f"EigenResult(values={vals}, max_rel_error={self.relative_error:.1e}, "
                f"max_rel_residual={self.relative_residual:.1e}, matvecs={self.matvecs}, converged={self.converged})")

    @property
    def relative_residual(self) -> float:
        return float(np.max(self.residuals / np.maximum(np.abs(self.values), np.finfo(float).tiny)))

    @property
    def relative_error(self) -> float:
        """Largest ``errors[i] / |values[i]|``: the estimated relative eigenvalue error."""
        return float(np.max(self.errors / np.maximum(np.abs(self.values), np.finfo(float).tiny)))

    @property
    def warm_block(self) -> torch.Tensor:
        """Rows to warm-start the next call: the top-k Ritz vectors, then the guard vectors."""
        return torch.cat([self.vectors, self.guard_vectors])


class _Rows:
    """A growable ``(n, dim)`` buffer of rows (capacity doubles, so stacking stays linear in n)."""

    def __init__(self, dim: int, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        self.data = torch.empty(max(capacity, 1), dim, dtype=dtype, device=device)
        self.n = 0

    def append(self, row: torch.Tensor) -> None:
        if self.n == len(self.data):
            grown = torch.empty(2 * len(self.data), self.data.shape[1], dtype=self.data.dtype, device=self.data.device)
            grown[: self.n] = self.data
            self.data = grown
        self.data[self.n] = row
        self.n += 1

    @property
    def rows(self) -> torch.Tensor:
        return self.data[: self.n]


def orthogonalize(w: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """``w`` less its components along the orthonormal rows of ``basis``: classical Gram-Schmidt, repeated once when
    the norm falls below 0.7 of its previous value ("twice is enough"; Daniel, Gragg, Kaufman & Stewart 1976,
    Math. Comp. 30:772)."""
    norm = w.norm()
    for _ in range(2):
        w = w - basis.T @ (basis @ w)
        new = w.norm()
        if new > 0.7 * norm:
            break
        norm = new
    return w


def _invariant(product: torch.Tensor, basis: torch.Tensor, tolerance: float) -> bool:
    """Whether ``product`` (``H q_n``) lies in span(``basis``) up to ``tolerance`` (absolute), i.e. the Krylov space
    is invariant under ``H`` to working precision (Lanczos breakdown)."""
    return float(orthogonalize(product, basis).norm()) <= tolerance


def error_estimates(theta: np.ndarray, res: np.ndarray, k: int, use_gap: bool) -> np.ndarray:
    """``e_i = r_i^2 / (theta_i - theta_{i+1} - r_{i+1})`` where that gap exceeds ``r_i``, else ``r_i`` (i < k).

    ``theta`` and ``res`` hold at least ``k + 1`` pairs when ``use_gap``; otherwise ``e_i = r_i``.
    """
    top = min(k, len(theta))
    if not use_gap or len(theta) <= top:
        return res[:top].copy()
    gap = theta[:top] - theta[1: top + 1] - res[1: top + 1]
    quad = res[:top] ** 2 / np.where(gap > 0, gap, np.inf)
    return np.where(res[:top] < gap, np.minimum(res[:top], quad), res[:top])


def lanczos_top(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, k: int, *, v0: torch.Tensor | None,
                tol: float, max_matvecs: int, dtype: torch.dtype, device: torch.device,
                generator: torch.Generator | None = None, guard: int = 1) -> EigenResult:
    """Top ``k`` eigenpairs of the symmetric operator ``matvec`` on ``R^dim`` (see the module docstring).

    Stops when every one of the top ``k`` Ritz pairs has estimated relative error
    ``errors[i] / |values[i]| <= tol``, after ``max_matvecs`` products, or on an invariant subspace.
    ``v0`` is a start vector, or a block of rows that all enter the basis first (one product each),
    typically :attr:`EigenResult.warm_block` of a previous call; ``None`` draws a random vector from
    ``generator``. ``guard`` Ritz pairs beyond ``k`` are tracked for the gap estimate and returned
    for warm starts.
    """
    if k < 1 or k > dim:
        raise ValueError(f"k={k} must be between 1 and the number of parameters ({dim})")
    if max_matvecs < 1:
        raise ValueError(f"max_matvecs={max_matvecs} must be at least 1")
    max_matvecs = min(max_matvecs, dim)
    def random_direction() -> torch.Tensor:  # drawn in float64, so that float32 and float64 runs start alike
        return torch.randn(dim, generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)

    if v0 is None:
        block = random_direction()[None]
    else:
        block = v0.reshape(-1, dim).to(device=device, dtype=dtype)[:max_matvecs]
    # The quadratic (gap) estimate needs a guard pair: a random start, or a warm-start block of at least k + 1 rows.
    use_gap = guard > 0 and (v0 is None or len(block) >= k + 1)
    m = min(k + guard, dim)  # Ritz pairs tracked
    # A random start builds ARPACK's default number of Lanczos vectors, max(2k + 1, 20), before it may stop
    # (see the module docstring).
    min_basis = min(max(2 * k + 1, 20), max_matvecs) if v0 is None else 1
    basis = _Rows(dim, min(max_matvecs, 32), dtype, device)
    products = _Rows(dim, min(max_matvecs, 32), dtype, device)
    t = np.zeros((0, 0))
    drop = float(torch.finfo(dtype).eps) ** 0.5  # a direction this much smaller after orthogonalization is rounding

    def add(w: torch.Tensor) -> bool:
        nonlocal t
        norm0 = float(w.norm())
        if basis.n:
            w = orthogonalize(w, basis.rows)
        norm = float(w.norm())
        if not np.isfinite(norm) or norm <= drop * norm0:
            return False
        basis.append(w / norm)
        products.append(matvec(basis.rows[-1]))
        j = basis.n - 1
        if j >= len(t):
            t = np.pad(t, (0, max(len(t), 8)))
        col = (basis.rows @ products.rows[j]).double().cpu().numpy()
        t[: j + 1, j] = col
        t[j, : j + 1] = col
        return True

    for row in block:
        add(row)
    if basis.n == 0:
        raise ValueError("v0 has no nonzero row to start from")
    floor = min_basis  # the basis size before which a random start may not stop (raised by a restart)
    while True:
        n = basis.n
        if n < floor and add(products.rows[-1]):
            continue  # plain Lanczos steps (from a single start vector, span{Q, H q_n} holds every Ritz residual)
        theta, s = np.linalg.eigh(t[:n, :n])
        order = np.argsort(theta)[::-1]
        theta, s = theta[order], s[:, order]
        mm = min(m, n)
        coef = torch.as_tensor(s[:, :mm].T.copy(), dtype=dtype, device=device)
        ritz = coef @ basis.rows
        resid = coef @ products.rows - torch.as_tensor(theta[:mm, None], dtype=dtype, device=device) * ritz
        res = resid.norm(dim=1).double().cpu().numpy()
        top = min(k, n)
        errors = error_estimates(theta[:mm], res, k, use_gap)
        scale = np.maximum(np.abs(theta[:top]), np.finfo(float).tiny)
        converged = bool(n >= k and np.all(errors <= tol * scale))
        if (converged and v0 is None and n < max_matvecs
                and _invariant(products.rows[-1], basis.rows, drop * np.abs(theta).max())):
            # A Krylov space that is invariant holds one vector per distinct eigenvalue that the start vector
            # touches: a repeated eigenvalue's other copies are missing. Restart from a random direction.
            if add(random_direction()):
                floor = min(basis.n + min_basis, max_matvecs)
                continue
        if (converged and n >= floor) or n >= max_matvecs:
            break
        # Expand with the residual of the top-k pair worst off; when its gap estimate is unusable and the
        # next pair's residual is the larger one, refine that pair instead (its residual sets the gap).
        i = int(np.argmax(errors / scale))
        if use_gap and i + 1 < mm and res[i] >= theta[i] - theta[i + 1] - res[i + 1] and res[i + 1] > res[i]:
            i += 1
        # If that residual lies in the basis to working precision, try the other pairs' residuals, then a
        # random direction (a restart: the basis may be an invariant subspace that misses eigenvectors).
        others = [j for j in np.argsort(res)[::-1] if j != i]
        candidates = [resid[i]] + [resid[j] for j in others]
        if not any(add(w) for w in candidates) and not add(random_direction()):
            break
    return EigenResult(theta[:top].copy(), ritz[:top].clone(), res[:top].copy(), basis.n, converged, errors.copy(),
                       ritz[top:mm].clone())

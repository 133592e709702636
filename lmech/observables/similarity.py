"""Representation similarity: CKA (biased and debiased, linear and RBF), kernel alignment and mutual k-NN.

Inputs are two representations ``X`` (n x p1) and ``Y`` (n x p2) of the same n inputs in the same order.

- Linear CKA (Kornblith et al. 2019, arXiv:1905.00414): ``HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K = X X^T``,
  ``L = Y Y^T``. Biased: ``HSIC_b = tr(K H L H) / (n - 1)^2`` (``H`` the centring matrix), equal to
  ``||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F)`` on centred columns. Debiased (Nguyen, Raghu & Kornblith
  2021, arXiv:2010.15327): Song et al.'s (2012) unbiased ``HSIC_u`` on the **raw** Gram matrices with zeroed
  diagonals, ``[tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2 / (n-2) 1'K~L~1] / (n (n-3))`` (n >= 4; it can be
  negative, so the debiased CKA can be too). The result is a similarity in [0, 1] (biased), not a distance.
- Both linear forms are computed in feature space when ``p1 p2 <= n (p1 + p2)`` (every term is a sum over samples of
  products of ``x_i``, ``y_i``, their norms and ``X^T Y``, so :class:`LinearCKA` also accumulates them over
  minibatches exactly) and from the ``n x n`` Gram matrices otherwise.
- RBF CKA: the same HSIC on Gaussian kernels ``exp(-||x - x'||^2 / (2 sigma^2))``, ``sigma`` = ``sigma_scale``
  times the median pairwise distance (Kornblith et al.'s choice).
- :func:`kernel_alignment`: ``<K1, K2>_F / (||K1||_F ||K2||_F)`` (Cristianini et al. 2002); centred, it is the
  biased CKA.
- :func:`mutual_knn` (Huh, Cheung, Wang & Isola 2024, arXiv:2405.07987): rows L2-normalized, each sample's ``k``
  nearest neighbours by inner product (itself excluded) in each space, the mean fraction shared.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._arrays import as_array


def _rows(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Two (samples x features) float64 matrices of the same samples."""
    x, y = as_array("X", x, 2, np.float64), as_array("Y", y, 2, np.float64)
    if len(x) != len(y):
        raise ValueError(f"X and Y must hold the same inputs in the same order; got {len(x)} and {len(y)} rows")
    return x, y


def _check_samples(n: int, debiased: bool) -> None:
    if n < (4 if debiased else 2):
        raise ValueError(f"{n} samples: the {'debiased' if debiased else 'biased'} CKA needs at least "
                         f"{4 if debiased else 2}")


def _pair(x: Any, y: Any, debiased: bool) -> tuple[np.ndarray, np.ndarray]:
    x, y = _rows(x, y)
    _check_samples(len(x), debiased)
    return x, y


def _hsic_from_grams(k: np.ndarray, l: np.ndarray, debiased: bool) -> float:
    n = len(k)
    if not debiased:
        kc = k - k.mean(0) - k.mean(1)[:, None] + k.mean()
        return float(np.sum(kc * l) / (n - 1) ** 2)
    kt, lt = k - np.diag(np.diag(k)), l - np.diag(np.diag(l))
    return _hsic_u(np.sum(kt * lt), kt.sum(), lt.sum(), kt.sum(1) @ lt.sum(1), n)


def _hsic_u(trace: float, k_sum: float, l_sum: float, row_products: float, n: int) -> float:
    """Song et al.'s unbiased HSIC from ``tr(K~L~)``, ``1'K~1``, ``1'L~1`` and ``1'K~L~1``."""
    return float((trace + k_sum * l_sum / ((n - 1) * (n - 2)) - 2 * row_products / (n - 2)) / (n * (n - 3)))


def _ratio(xy: float, xx: float, yy: float) -> float:
    if xx <= 0 or yy <= 0:
        return float("nan")  # a constant representation (or a negative unbiased self-HSIC): undefined
    return xy / np.sqrt(xx * yy)


class LinearCKA:
    """Streaming linear CKA: :meth:`update` with each minibatch of matching rows ``(X, Y)``, then :meth:`value`.
    Keeps ``X^T Y``, ``X^T X``, ``Y^T Y`` and a few sums (``O(p1 p2 + p1^2 + p2^2)`` memory), exact in float64."""

    def __init__(self) -> None:
        self.n = 0
        self._sums: dict[str, Any] = {}

    def update(self, x: Any, y: Any) -> None:
        x, y = _rows(x, y)
        nx, ny = (x ** 2).sum(1), (y ** 2).sum(1)
        terms = {"xy": x.T @ y, "xx": x.T @ x, "yy": y.T @ y, "sx": x.sum(0), "sy": y.sum(0),
                 "x_ny": x.T @ ny, "y_nx": y.T @ nx, "x_nx": x.T @ nx, "y_ny": y.T @ ny,
                 "nx": nx.sum(), "ny": ny.sum(), "nxny": nx @ ny, "nx2": nx @ nx, "ny2": ny @ ny}
        for key, value in terms.items():
            self._sums[key] = self._sums[key] + value if key in self._sums else value
        self.n += len(x)

    def _hsic(self, a: str, b: str, debiased: bool) -> float:
        """HSIC of the representations ``a`` and ``b`` (each ``"x"`` or ``"y"``) from the accumulated sums."""
        s, n = self._sums, self.n
        cross = s[a + b]  # sum_i a_i b_i^T (a + b is "xy", "xx" or "yy")
        sa, sb = s["s" + a], s["s" + b]
        if not debiased:  # tr(K H L H) = ||A_c^T B_c||_F^2, A_c^T B_c = A^T B - s_a s_b^T / n
            centred = cross - np.outer(sa, sb) / n
            return float(np.sum(centred ** 2) / (n - 1) ** 2)
        na, nb = s["n" + a], s["n" + b]  # sum_i ||a_i||^2
        diag = s["nxny"] if a != b else s["n" + a + "2"]  # sum_i ||a_i||^2 ||b_i||^2
        trace = np.sum(cross ** 2) - diag  # tr(K~L~) = ||A^T B||_F^2 - sum_i ||a_i||^2 ||b_i||^2
        k_sum, l_sum = sa @ sa - na, sb @ sb - nb  # 1'K~1 = ||sum a||^2 - sum ||a||^2
        # 1'K~L~1 = sum_i (a_i.s_a - ||a_i||^2)(b_i.s_b - ||b_i||^2)
        row_products = (sa @ cross @ sb - sa @ s[a + "_n" + b] - sb @ s[b + "_n" + a] + diag)
        return _hsic_u(trace, k_sum, l_sum, row_products, n)

    def value(self, debiased: bool = False) -> float:
        if self.n < (4 if debiased else 2):
            raise ValueError(f"{self.n} samples accumulated: the {'debiased' if debiased else 'biased'} CKA needs at "
                             f"least {4 if debiased else 2}")
        return _ratio(self._hsic("x", "y", debiased), self._hsic("x", "x", debiased), self._hsic("y", "y", debiased))


def _rbf(x: np.ndarray, scale: float) -> np.ndarray:
    sq = (x ** 2).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * x @ x.T, 0.0)
    sigma = scale * np.sqrt(np.median(d2[np.triu_indices(len(x), 1)]))
    return np.exp(-d2 / (2 * sigma ** 2)) if sigma > 0 else np.ones_like(d2)


def _grams(k: Any, l: Any, debiased: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two precomputed ``n x n`` Gram matrices of the same inputs."""
    k, l = as_array("K", k, 2, np.float64), as_array("L", l, 2, np.float64)
    if k.shape != l.shape or k.shape[0] != k.shape[1]:
        raise ValueError(f"kernel='precomputed' takes two square Gram matrices of one shape; got {k.shape} and "
                         f"{l.shape}")
    _check_samples(len(k), debiased)
    return k, l


def cka(x: Any, y: Any, *, debiased: bool = False, kernel: str = "linear", sigma_scale: float = 1.0) -> float:
    """Centred kernel alignment of ``X`` and ``Y`` (module docstring: estimators and conventions); ``kernel`` is
    ``"linear"``, ``"rbf"`` or ``"precomputed"`` (``X`` and ``Y`` are then the ``n x n`` Gram matrices ``K`` and
    ``L`` themselves, as in scikit-learn; e.g. two networks' readout kernels)."""
    if kernel not in ("linear", "rbf", "precomputed"):
        raise ValueError(f"kernel={kernel!r}: use 'linear', 'rbf' or 'precomputed'")
    if kernel == "precomputed":
        k, l = _grams(x, y, debiased)
    else:
        x, y = _pair(x, y, debiased)
        n, p1, p2 = len(x), x.shape[1], y.shape[1]
        if kernel == "linear" and p1 * p2 <= n * (p1 + p2):
            acc = LinearCKA()
            acc.update(x, y)
            return acc.value(debiased)
        k, l = (x @ x.T, y @ y.T) if kernel == "linear" else (_rbf(x, sigma_scale), _rbf(y, sigma_scale))
    return _ratio(_hsic_from_grams(k, l, debiased), _hsic_from_grams(k, k, debiased), _hsic_from_grams(l, l, debiased))


def kernel_alignment(k1: Any, k2: Any, *, centered: bool = False) -> float:
    """``<K1, K2>_F / (||K1||_F ||K2||_F)`` of two ``n x n`` kernel matrices (``centered``: of ``H K H``)."""
    a, b = as_array("K1", k1, 2, np.float64), as_array("K2", k2, 2, np.float64)
    if a.shape != b.shape or a.shape[0] != a.shape[1]:
        raise ValueError(f"K1 and K2 must be square and of one shape; got {a.shape} and {b.shape}")
    if centered:
        a, b = (m - m.mean(0) - m.mean(1)[:, None] + m.mean() for m in (a, b))
    return float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def mutual_knn(x: Any, y: Any, k: int = 10, *, kernel: str = "linear") -> float:
    """Mutual k-nearest-neighbour alignment (Huh et al. 2024): the mean over samples of the fraction of its ``k``
    nearest neighbours (inner product of L2-normalized rows, itself excluded) shared by the two spaces. With
    ``kernel="precomputed"``, ``X`` and ``Y`` are Gram matrices and the normalized inner products are
    ``K_ij / sqrt(K_ii K_jj)``."""
    if kernel not in ("linear", "precomputed"):
        raise ValueError(f"kernel={kernel!r}: use 'linear' or 'precomputed'")
    x, y = _grams(x, y, False) if kernel == "precomputed" else _pair(x, y, False)
    if not 1 <= k < len(x):
        raise ValueError(f"k={k} must be between 1 and the number of samples - 1 = {len(x) - 1}")

    def neighbours(m: np.ndarray) -> np.ndarray:
        if kernel == "precomputed":
            norms = np.sqrt(np.maximum(np.diag(m), np.finfo(float).tiny))
            sim = m / norms[:, None] / norms[None, :]
        else:
            unit = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), np.finfo(float).tiny)
            sim = unit @ unit.T
        np.fill_diagonal(sim, -np.inf)
        return np.argpartition(-sim, k - 1, axis=1)[:, :k]

    a, b = neighbours(x), neighbours(y)
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)
    return float(np.mean(shared) / k)

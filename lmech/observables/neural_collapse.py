"""Neural collapse NC1-NC4 of penultimate features (Papyan, Han & Donoho 2020, arXiv:2008.08186), streamed.

Conventions (REFERENCE 2.15): ``mu_G`` is the sample mean of all features (with imbalanced classes it is not the
mean of the class means); ``M = [mu_c - mu_G]_c``; ``Sigma_B = M M^T / C`` (classes weighted equally),
``Sigma_W = (1/N) sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T``.

- ``nc1 = tr(Sigma_W Sigma_B^+) / C``, computed in float64 from the SVD ``M / sqrt(C) = U S V^T`` truncated to its
  ``C - 1`` directions (relative cutoff ``1e-8``): ``tr(S^-1 U^T Sigma_W U S^-1) / C``, a sum of squares, so never
  negative (a float32 ``pinv`` of ``Sigma_B`` can make it so). ``nc1_weak = tr Sigma_W / (tr Sigma_W + tr Sigma_B)``.
- ``cdnv``: the mean over class pairs of ``(sigma_c^2 + sigma_c'^2) / (2 ||mu_c - mu_c'||^2)``, ``sigma_c^2`` the
  class's mean squared distance to its mean (Galanti, Gyorgy & Hutter 2022, arXiv:2112.15121).
- NC2, of the centred means (and of the classifier rows when given): equinorm ``std_c ||.|| / mean_c ||.||``;
  equiangularity ``std`` of the pairwise cosines (``c != c'``); maximal angle ``mean |cos + 1/(C-1)|``. Standard
  deviations are population ones (``ddof = 0``).
- ``nc3 = || W / ||W||_F - M^T / ||M||_F ||_F^2`` (squared, as Papyan et al. plot it).
- ``nc4``: the fraction of samples whose classifier decision ``argmax_c (w_c . h + b_c)`` (bias included) differs
  from the nearest class mean ``argmin_c ||h - mu_c||``.

Streaming: :class:`NeuralCollapseAccumulator` keeps per-class counts and means and the within-class scatter, merged
batch by batch with Chan, Golub & LeVeque's pairwise update (no ``sum h h^T - N mu mu^T`` cancellation), so memory is
``O(d^2 + C d)`` whatever the number of samples; NC4 needs the final means, hence a second pass
(:meth:`NeuralCollapseAccumulator.classify`). :func:`neural_collapse` does both passes over arrays in chunks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import as_array

_CUTOFF = 1e-8  # singular values of M / sqrt(C) below this fraction of the largest are dropped (rank <= C - 1)


@dataclass(frozen=True)
class NeuralCollapseMetrics:
    """NC1-NC4 and their variants (see the module docstring for each convention). Fields that need the classifier
    (``*_weights``, ``nc3``, ``nc4``) are ``None`` without it; ``nc4`` also needs the second pass over the
    features. Metrics that divide by the spread of the class means are NaN when the means coincide (e.g. dead
    features after a blow-up), never an exception mid-training."""

    nc1: float
    nc1_weak: float
    cdnv: float
    nc2_equinorm_means: float
    nc2_equiangular_means: float
    nc2_max_angle_means: float
    nc2_equinorm_weights: float | None
    nc2_equiangular_weights: float | None
    nc2_max_angle_weights: float | None
    nc3: float | None
    nc4: float | None
    n_classes: int
    n_samples: int


def _classifier(weight: Any, bias: Any, n_classes: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    w = as_array("weight", weight, 2, np.float64)
    if w.shape != (n_classes, dim):
        raise ValueError(f"weight must be (n_classes, dim) = {(n_classes, dim)}; got {w.shape}")
    b = np.zeros(n_classes) if bias is None else as_array("bias", bias, 1, np.float64)
    if b.shape != (n_classes,):
        raise ValueError(f"bias must have n_classes = {n_classes} entries; got {b.shape}")
    return w, b


def _nc2(rows: np.ndarray) -> tuple[float, float, float]:
    """Equinorm, equiangularity and maximal-angle deviation of the rows of ``rows`` (C x d)."""
    norms = np.linalg.norm(rows, axis=1)
    unit = rows / norms[:, None]
    c = len(rows)
    cos = (unit @ unit.T)[~np.eye(c, dtype=bool)]
    return float(norms.std() / norms.mean()), float(cos.std()), float(np.mean(np.abs(cos + 1 / (c - 1))))


class NeuralCollapseAccumulator:
    """Streaming NC statistics for ``n_classes`` classes of ``dim``-dimensional features: call :meth:`update` on
    every batch of ``(features, labels)``, then (for NC4) :meth:`classify` on every batch again with the classifier,
    then :meth:`result`. Sums are kept in float64 whatever the input dtype."""

    def __init__(self, n_classes: int, dim: int) -> None:
        if int(n_classes) < 2:
            raise ValueError(f"n_classes={n_classes} must be at least 2")
        if int(n_classes) > int(dim) + 1:
            raise ValueError(f"n_classes={n_classes} exceeds feature dimension + 1 = {int(dim) + 1}: the class means "
                             "cannot form a simplex (NC2 and NC1's C - 1 directions need dim >= C - 1)")
        self.n_classes, self.dim = int(n_classes), int(dim)
        self.counts = np.zeros(self.n_classes, dtype=np.int64)
        self.means = np.zeros((self.n_classes, self.dim))
        self.class_scatter = np.zeros(self.n_classes)  # sum_{i in c} ||h_i - mu_c||^2
        self.scatter = np.zeros((self.dim, self.dim))  # sum_i (h_i - mu_{y_i})(h_i - mu_{y_i})^T
        self.mismatches, self.classified = 0, 0

    def _features(self, features: Any) -> np.ndarray:
        h = as_array("features", features, 2, np.float64)
        if h.shape[1] != self.dim:
            raise ValueError(f"features have dimension {h.shape[1]}; the accumulator was made for {self.dim}")
        return h

    def _check(self, features: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
        h, y = self._features(features), as_array("labels", labels, 1)
        if len(h) != len(y):
            raise ValueError(f"features and labels have different lengths: {len(h)} and {len(y)}")
        if y.dtype.kind not in "iu" or (len(y) and (y.min() < 0 or y.max() >= self.n_classes)):
            raise ValueError(f"labels must be integers in [0, {self.n_classes}); got dtype {y.dtype}, range "
                             f"{(y.min(), y.max()) if len(y) else 'empty'}")
        return h, y.astype(np.int64)

    def update(self, features: Any, labels: Any) -> None:
        """Merge one batch: per class, its count, mean and centred scatter combine with the running ones (Chan et
        al. 1979): ``S = S_a + S_b + n_a n_b / (n_a + n_b) d d^T`` with ``d`` the difference of the means."""
        h, y = self._check(features, labels)
        order = np.argsort(y, kind="stable")
        h, y = h[order], y[order]
        classes, starts, sizes = np.unique(y, return_index=True, return_counts=True)
        for c, start, size in zip(classes, starts, sizes):
            block = h[start:start + size]
            mean = block.mean(axis=0)
            centred = block - mean
            n_a = self.counts[c]
            delta = mean - self.means[c]
            weight = n_a * size / (n_a + size)
            self.scatter += centred.T @ centred + weight * np.outer(delta, delta)
            self.class_scatter[c] += np.einsum("ij,ij->", centred, centred) + weight * delta @ delta
            self.means[c] += delta * size / (n_a + size)
            self.counts[c] = n_a + size

    def classify(self, features: Any, logits: Any) -> None:
        """Second pass (after every :meth:`update`): count the samples whose classifier decision ``argmax logits``
        (``logits = h W^T + b``, or a model's own outputs, which include any output multiplier) differs from the
        nearest class mean."""
        h, z = self._features(features), as_array("logits", logits, 2)
        if z.shape != (len(h), self.n_classes):
            raise ValueError(f"logits must be (samples, n_classes) = {(len(h), self.n_classes)}; got {z.shape}")
        distances = (h ** 2).sum(1)[:, None] - 2 * h @ self.means.T + (self.means ** 2).sum(1)[None, :]
        self.mismatches += int(np.sum(np.argmax(z, axis=1) != np.argmin(distances, axis=1)))
        self.classified += len(h)

    def result(self, weight: Any = None, bias: Any = None) -> NeuralCollapseMetrics:
        """NC1-NC4 from what was accumulated (see the module docstring); ``weight`` gives the classifier's NC2 and
        NC3, and NC4 is the mismatch rate of the :meth:`classify` pass (``None`` without one)."""
        few = np.flatnonzero(self.counts < 2)
        if len(few):
            raise ValueError(f"class(es) {few.tolist()} have fewer than 2 samples ({self.counts[few].tolist()}); NC "
                             "metrics need every class's mean and spread")
        c, n = self.n_classes, int(self.counts.sum())
        with np.errstate(divide="ignore", invalid="ignore"):  # coinciding means (dead features): NaN
            return self._metrics(c, n, weight, bias)

    def _metrics(self, c: int, n: int, weight: Any, bias: Any) -> NeuralCollapseMetrics:
        global_mean = self.counts @ self.means / n
        centred = self.means - global_mean  # rows: mu_c - mu_G
        sigma_w = self.scatter / n
        u, s, _ = np.linalg.svd(centred.T / np.sqrt(c), full_matrices=False)
        keep = (s > _CUTOFF * s[0]) & (s > 0)
        keep[c - 1:] = False  # at most C - 1 directions
        projected = u[:, keep].T @ sigma_w @ u[:, keep] / np.outer(s[keep], s[keep])
        nc1 = max(0.0, float(np.trace(projected)) / c) if keep.any() else float("nan")  # a sum of squares
        tr_w, tr_b = np.trace(sigma_w), (centred ** 2).sum() / c
        variances = self.class_scatter / self.counts
        i, j = np.triu_indices(c, k=1)
        cdnv = float(np.mean((variances[i] + variances[j]) / (2 * ((self.means[i] - self.means[j]) ** 2).sum(1))))
        means_nc2 = _nc2(centred)
        weights_nc2: tuple[float | None, ...] = (None, None, None)
        nc3 = nc4 = None
        if weight is not None:
            w, _ = _classifier(weight, bias, c, self.dim)
            weights_nc2 = _nc2(w)
            nc3 = float(((w / np.linalg.norm(w) - centred / np.linalg.norm(centred)) ** 2).sum())
        if self.classified:
            nc4 = self.mismatches / self.classified
        return NeuralCollapseMetrics(nc1, float(tr_w / (tr_w + tr_b)), cdnv, *means_nc2, *weights_nc2, nc3, nc4, c, n)


def neural_collapse(features: Any, labels: Any, weight: Any = None, bias: Any = None, *, n_classes: int | None = None,
                    chunk_size: int = 8192) -> NeuralCollapseMetrics:
    """NC1-NC4 of ``features`` (N x d; arrays or tensors) with integer ``labels``, and of the linear classifier
    ``weight`` (C x d) and ``bias`` (C) when given (Papyan, Han & Donoho 2020; conventions in the module docstring).
    ``n_classes`` defaults to ``max(labels) + 1``. Streams over ``chunk_size`` rows at a time (two passes when NC4 is
    asked for), in float64."""
    h = as_array("features", features, 2)
    y = as_array("labels", labels, 1)
    if len(h) != len(y):
        raise ValueError(f"features and labels have different lengths: {len(h)} and {len(y)}")
    if y.dtype.kind not in "iu" or len(y) == 0:
        raise ValueError(f"labels must be a non-empty array of integers; got dtype {y.dtype}, {len(y)} entries")
    acc = NeuralCollapseAccumulator(int(y.max()) + 1 if n_classes is None else n_classes, h.shape[1])
    chunks = [slice(k, k + chunk_size) for k in range(0, len(h), chunk_size)]
    for part in chunks:
        acc.update(h[part], y[part])
    if weight is not None:
        w, b = _classifier(weight, bias, acc.n_classes, acc.dim)
        for part in chunks:
            acc.classify(h[part], np.asarray(h[part], np.float64) @ w.T + b)
    return acc.result(weight, bias)

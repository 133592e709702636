"""Measurements on learning curves and weights for grokking and stepwise (saddle-to-saddle) learning.

- :func:`grokking_times`: the first logged step at which train and test accuracy reach a threshold, and the delay
  between them; a run whose test accuracy never does is "did not grok" (``grokked=False``), an outcome, not an error
  (Power et al. 2022, arXiv:2201.02177).
- :func:`fourier_sparsity`: the power of a modular task's embedding over the Fourier frequencies of the residues, and
  the share held by the ``k`` strongest (Nanda et al. 2023, arXiv:2301.05217: grokked networks use a few key
  frequencies).
- :func:`plateaus`: the drops that separate plateaus of a stepwise loss curve (Saxe et al. 2014, arXiv:1312.6120;
  Jacot et al. 2021, arXiv:2106.15933 for saddle-to-saddle dynamics): the number of plateaus and the escape times.
- :func:`weight_norm`: the global L2 norm of a model's parameters (the quantity weight decay shrinks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._arrays import as_array


def _curve(name: str, values: Any) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).ravel()  # NaN allowed: plateaus() names it; accuracies may hold it
    if out.size == 0:
        raise ValueError(f"{name} is empty")
    return out


@dataclass(frozen=True)
class GrokkingTimes:
    """``t_train`` and ``t_test``: the first logged steps with accuracy >= ``threshold`` (``None`` if never);
    ``grokked``: the test accuracy got there; ``delay = t_test - t_train`` (``None`` unless both did)."""

    t_train: int | None
    t_test: int | None
    grokked: bool
    delay: int | None
    threshold: float


def grokking_times(steps: Any, train_accuracy: Any, test_accuracy: Any, threshold: float = 0.95) -> GrokkingTimes:
    """Times to fit and to generalize from logged accuracy curves (see the module docstring)."""
    s, tr, te = _curve("steps", steps), _curve("train_accuracy", train_accuracy), _curve("test_accuracy", test_accuracy)
    if not (len(s) == len(tr) == len(te)):
        raise ValueError(f"steps, train_accuracy and test_accuracy must have one length; got {len(s)}, {len(tr)}, "
                         f"{len(te)}")
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold={threshold!r} must be an accuracy in (0, 1]")

    def first(acc: np.ndarray) -> int | None:
        hit = np.flatnonzero(acc >= threshold)
        return int(s[hit[0]]) if len(hit) else None

    t_train, t_test = first(tr), first(te)
    delay = t_test - t_train if t_train is not None and t_test is not None else None
    return GrokkingTimes(t_train, t_test, t_test is not None, delay, float(threshold))


@dataclass(frozen=True)
class FourierSparsity:
    """``power[f]``: the embedding's power at frequency ``f = 0 .. p // 2`` over the residues (summed over the
    embedding dimensions, the two signs of ``f`` folded); ``top``: the ``k`` frequencies of most power (``f >= 1``),
    strongest first; ``top_fraction``: their share of the power at ``f >= 1`` (1 for an embedding built from ``k``
    frequencies; about ``k / (p // 2)`` for a random one). ``dimension_peak``: per embedding dimension (a neuron's
    input weights), the share of its power at ``f >= 1`` in its own strongest frequency, averaged with weights
    proportional to that power: 1 when every neuron is a single cosine of the residues, as in the grokked MLPs of
    Gromov 2023 (arXiv:2301.02679) where different neurons use different frequencies and ``top_fraction`` stays
    low; a few times ``1 / (p // 2)`` for a random embedding."""

    power: np.ndarray
    top: np.ndarray
    top_fraction: float
    dimension_peak: float


def fourier_sparsity(embedding: Any, k: int = 5) -> FourierSparsity:
    """Fourier power of a ``p x d`` embedding of the residues ``0 .. p - 1`` (rows in residue order)."""
    e = as_array("embedding", embedding, 2, np.float64)
    if len(e) < 3:
        raise ValueError(f"embedding must be (residues p >= 3, dimensions); got shape {e.shape}")
    p = len(e)
    spectrum = np.abs(np.fft.rfft(e, axis=0)) ** 2  # (p // 2 + 1, d)
    spectrum[1:(p + 1) // 2] *= 2  # +f and -f, except f = p/2 for even p
    power = spectrum.sum(axis=1)
    if not 1 <= k <= len(power) - 1:
        raise ValueError(f"k={k} must be between 1 and the number of nonzero frequencies {len(power) - 1}")
    order = np.argsort(-power[1:], kind="stable")[:k] + 1
    total = power[1:].sum()
    per_dimension = spectrum[1:]  # (frequencies, d)
    peak = float(per_dimension.max(axis=0).sum() / total) if total > 0 else float("nan")  # sum_j w_j max/sum_j
    return FourierSparsity(power, order, float(power[order].sum() / total) if total > 0 else float("nan"), peak)


@dataclass(frozen=True)
class Plateaus:
    """A stepwise loss curve: ``escape_steps`` (where each drop is half done, in order), ``drops`` (each drop's
    relative size, ``1 - L_after / L_before``) and ``count`` (plateaus = drops + 1 when the curve ends on a
    plateau, the usual reading of saddle-to-saddle curves)."""

    count: int
    escape_steps: np.ndarray
    drops: np.ndarray


def plateaus(steps: Any, loss: Any, *, min_drop: float = 0.2, prominence: float = 0.05) -> Plateaus:
    """Find the drops between plateaus of ``loss`` logged at ``steps``: the peaks of the descent rate ``r = -d log L /
    d step`` (finite differences) after the first interval whose prominence is at least ``prominence`` times the
    largest rate; each drop runs between the rate minima on either side of its peak (the last one to the end of the
    log) and counts when it takes off at least ``min_drop`` of the loss. Its escape step is where the loss has come
    half-way down the drop, ``(L_before + L_after) / 2`` (interpolated): for one saddle mode of a linear network,
    where ``(s - m)^2 = s^2 / 2``. Log densely enough to resolve each drop (a few points across it)."""
    from scipy.signal import find_peaks

    s, l = _curve("steps", steps), _curve("loss", loss)
    if len(s) != len(l) or len(s) < 3:
        raise ValueError(f"steps and loss need one length >= 3; got {len(s)} and {len(l)}")
    if np.any(l <= 0) or not np.all(np.isfinite(l)) or np.any(np.diff(s) <= 0):
        raise ValueError("loss must be positive and finite, and steps increasing, to find plateaus (a diverged run "
                         "has none)")
    rate = -np.diff(np.log(l)) / np.diff(s)
    # a peak at the first interval has no plateau before it (the curve starts by descending): not a drop between
    # plateaus; one at the last interval is (the log ends mid-drop)
    peaks, _ = find_peaks(np.r_[rate, -np.inf], prominence=prominence * max(rate.max(), 0.0) or None)
    escapes, drops = [], []
    for k, peak in enumerate(peaks):
        lo = peaks[k - 1] + int(np.argmin(rate[peaks[k - 1]:peak + 1])) if k else 0
        hi = peak + int(np.argmin(rate[peak:peaks[k + 1] + 1])) + 1 if k + 1 < len(peaks) else len(l) - 1
        before, after = l[lo], l[hi]
        if 1 - after / before >= min_drop:
            half = 0.5 * (before + after)
            j = lo + int(np.argmax(l[lo:hi + 1] <= half))  # first logged point at or below half-way
            escapes.append(s[j - 1] + (l[j - 1] - half) * (s[j] - s[j - 1]) / (l[j - 1] - l[j]))
            drops.append(1 - after / before)
    return Plateaus(len(drops) + 1, np.array(escapes), np.array(drops))


def weight_norm(model: Any) -> float:
    """``sqrt(sum_theta theta^2)`` over the trainable parameters of a ``torch.nn.Module``."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    with torch.no_grad():
        return float(torch.sqrt(sum((p.double() ** 2).sum() for p in model.parameters() if p.requires_grad)))

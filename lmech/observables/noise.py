"""The gradient noise scale: per-example gradient statistics that set the critical batch size.

McCandlish, Kaplan, Amodei et al. 2018 (arXiv:1812.06162, Sec. 2 and App. A); Kaplan et al. 2020
(arXiv:2001.08361, Sec. 5.1). With ``G`` the gradient of the expected loss, ``Sigma`` the per-example
gradient covariance and ``H`` the Hessian, a batch of ``B`` examples has ``E ||G_B||^2 = ||G||^2 + tr Sigma / B``,
and the optimal step improves the loss by a fraction ``1 / (1 + B_noise / B)`` of its noiseless value:

    B_noise = tr(H Sigma) / (G^T H G),        B_simple = tr Sigma / ||G||^2  (H proportional to I).
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..systems._validate import positive_int
from ..systems.networks import Dense
from ._params import FlatParams, LossFn, loss_of_params
from .hessian import hvp_rows


@dataclass(frozen=True)
class NoiseScaleEstimate:
    """Unbiased estimates of the noise-scale components from ``n`` examples (see :func:`gradient_noise_scale`).

    ``b_noise``, ``trace_h_sigma`` and ``g_h_g`` are NaN when the Hessian was skipped; ``matvecs`` counts
    Hessian-vector products. ``b_simple_stderr`` is the jackknife standard error of ``b_simple``;
    ``trace_h_sigma_stderr`` the sampling error of the subsampled ``tr(H Sigma)``.
    """

    b_simple: float
    b_simple_stderr: float
    b_noise: float
    trace_sigma: float
    grad_sq: float
    trace_h_sigma: float
    trace_h_sigma_stderr: float
    g_h_g: float
    n: int
    matvecs: int


def _grad_chunks(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor,
                 chunk_size: int) -> Iterator[list[torch.Tensor]]:
    """Per-example gradients, ``chunk_size`` examples at a time, as one ``chunk x size`` block per trainable
    parameter (in :class:`FlatParams` order): ``vmap(grad)`` over examples, one batched backward pass per chunk
    and no Python loop per example. Kept per parameter: concatenating to flat rows costs more than the pass."""
    positive_int("chunk_size", chunk_size)
    flat = FlatParams(model)
    params = dict(zip(flat.names, flat.unflatten(flat.vector).values()))
    buffers = dict(model.named_buffers())

    def example_loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return loss_fn(functional_call(model, {**p, **buffers}, (xi[None],)), yi[None])

    per_example = vmap(grad(example_loss), in_dims=(None, 0, 0))
    for i in range(0, len(x), chunk_size):
        grads = per_example(params, x[i:i + chunk_size], y[i:i + chunk_size])
        yield [grads[n].reshape(len(grads[n]), -1) for n in flat.names]


def per_example_grads(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                      chunk_size: int = 64) -> torch.Tensor:
    """The ``n x P`` matrix of per-example gradients ``g_i = grad_theta loss_fn(model(x_i), y_i)`` over the flat
    trainable parameters (:class:`FlatParams` order), by ``vmap(grad)`` over chunks of ``chunk_size`` examples."""
    return torch.cat([torch.cat(blocks, 1) for blocks in _grad_chunks(model, loss_fn, x, y, chunk_size)])


def _affine_layers(model: nn.Module, flat: FlatParams) -> list[tuple[nn.Module, str | None, str | None, float]] | None:
    """``(module, weight name, bias name, multiplier)`` of the ``nn.Linear`` / lmech ``Dense`` layers when they hold
    every trainable parameter (then per-example gradient norms have a closed form), else ``None``."""
    layers, covered = [], set()
    for prefix, module in model.named_modules():
        if type(module).forward not in (nn.Linear.forward, Dense.forward):
            continue
        names = [f"{prefix}.{t}" if prefix else t for t in ("weight", "bias")]
        w, b = (n if n in flat.names else None for n in names)
        layers.append((module, w, b, float(getattr(module, "multiplier", 1.0))))
        covered |= {w, b} - {None}
    return layers if covered == set(flat.names) else None


def _affine_moments(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, flat: FlatParams,
                    parts: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(|g_i|^2, g_i . gbar)`` in closed form from one forward and one backward pass over all ``n`` examples, or
    ``None`` if a layer is not called exactly once on a ``(n, fan_in)`` input. For ``z_i = c W h_i + b`` the
    per-example weight gradient is ``c d_i h_i^T`` (``d_i = dloss_i/dz_i = n dL/dz_i`` for a mean loss), so
    ``|g_i|^2 = c^2 |d_i|^2 |h_i|^2 + |d_i|^2`` and ``g_i . gbar = c d_i^T Gbar_W h_i + d_i . gbar_b``
    (Goodfellow 2015, arXiv:1510.01799): O(n (fan_in + fan_out)) per layer, no per-example gradient stored."""
    layers = _affine_layers(model, flat)
    if layers is None:
        return None
    seen: dict[nn.Module, list] = {m: [] for m, *_ in layers}

    def keep(module, inputs, output):
        output.retain_grad()
        seen[module].append((inputs[0].detach(), output))

    hooks = [m.register_forward_hook(keep) for m in seen]
    try:
        with torch.enable_grad():
            loss = loss_fn(model(x), y) * len(x)
            if any(len(v) != 1 or v[0][0].shape != (len(x), v[0][0].shape[-1]) for v in seen.values()):
                return None
            outputs = [seen[m][0][1] for m, *_ in layers]
            grads = torch.autograd.grad(loss, outputs)
    finally:
        for h in hooks:
            h.remove()
    sq = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    dots = torch.zeros_like(sq)
    for (module, w, b, c), d in zip(layers, grads):
        h = seen[module][0][0]
        d_sq = d.pow(2).sum(1).double()
        if w is not None:
            sq += c ** 2 * d_sq * h.pow(2).sum(1).double()
            dots += c * ((d @ parts[w].view(d.shape[1], h.shape[1])) * h).sum(1).double()
        if b is not None:
            sq += d_sq
            dots += (d @ parts[b]).double()
    return sq, dots


def _centred_moments(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, chunk_size: int,
                     pick: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(gbar, |c_i|^2, gbar . c_i, c_pick)`` in float64 for ``c_i = g_i - gbar``. ``gbar`` is the full-batch
    gradient (one backward pass; the mean of the ``g_i`` for a mean loss); ``|c_i|^2 = |g_i|^2 - 2 g_i . gbar +
    |gbar|^2``; ``c_pick`` holds the rows ``pick``. For networks whose trainable parameters all sit in affine layers
    ``|g_i|^2`` and ``g_i . gbar`` have a closed form (:func:`_affine_moments`) and only the ``pick`` rows are
    materialized; otherwise per-example gradients stream over chunks (memory ``chunk_size x P``, never ``n x P``).
    Products are taken in the model's dtype and summed in float64: in float32 the cancellation in ``|c_i|^2`` costs
    ~1e-7 ``|g_i|^2 / |c_i|^2`` relative error (negligible unless ``|gbar| >> |c_i|``)."""
    flat = FlatParams(model)
    gbar = grad(loss_of_params(model, loss_fn, x, y, flat))(flat.vector)
    parts = gbar.split(flat.sizes)
    closed = _affine_moments(model, loss_fn, x, y, flat, dict(zip(flat.names, parts)))
    if closed is not None:
        sq, dots = closed
        rows = [torch.cat(b, 1).double() for b in _grad_chunks(model, loss_fn, x[pick], y[pick], chunk_size)] \
            if len(pick) else [torch.zeros(0, flat.dim, dtype=torch.float64, device=x.device)]
    else:
        sq, dots, rows = [], [], []
        for i, blocks in enumerate(_grad_chunks(model, loss_fn, x, y, chunk_size)):
            sq.append(sum(torch.linalg.vector_norm(b, dim=1).double() ** 2 for b in blocks))
            dots.append(sum((b @ part).double() for b, part in zip(blocks, parts)))
            local = pick[(pick >= i * chunk_size) & (pick < i * chunk_size + len(blocks[0]))] - i * chunk_size
            rows.append(torch.cat([b[local] for b in blocks], 1).double())
        sq, dots = torch.cat(sq), torch.cat(dots)
    gbar = gbar.double()
    gbar_sq = gbar @ gbar
    return gbar, sq - 2 * dots + gbar_sq, dots - gbar_sq, torch.cat(rows) - gbar


def _jackknife_b_simple(norms: torch.Tensor, dots: torch.Tensor, gbar_sq: float) -> float:
    """Jackknife standard error of ``B_simple`` from ``|c_i|^2`` and ``gbar . c_i`` (``c_i = g_i - gbar``).

    Leaving example ``i`` out moves the mean by ``-c_i / (n - 1)`` and the centred sum of squares to
    ``sum_j |c_j|^2 - n |c_i|^2 / (n - 1)``; both estimators are recomputed in O(n) from these."""
    n = len(norms)
    m = n - 1
    mean_sq = gbar_sq - 2 * dots / m + norms / m ** 2
    trace = (norms.sum() - n * norms / m) / (m - 1)
    b = trace / (mean_sq - trace / m)
    return float(((m / n) * (b - b.mean()).pow(2).sum()).sqrt())


def _mean_over_examples(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor) -> LossFn:
    """``loss_fn`` when ``loss_fn(model(x), y)`` is the mean of the per-example losses ``loss_fn(model(x_i), y_i)``,
    ``loss_fn / n`` when it is their sum (``reduction="sum"``); a ``ValueError`` for any other reduction (class
    weights, a mean over a different axis), which the noise-scale estimators cannot undo. One forward pass."""
    with torch.no_grad():
        out = model(x)
        full = float(loss_fn(out, y))
        per = vmap(lambda o, t: loss_fn(o[None], t[None]))(out, y)
    mean = float(per.double().mean())
    n = len(x)
    if not (math.isfinite(full) and math.isfinite(mean)):
        return loss_fn  # a diverged model: the estimates come out non-finite, as its loss does
    if abs(full - mean) <= 1e-4 * max(abs(mean), 1e-12) or (full == 0 and mean == 0):
        return loss_fn
    if abs(full - n * mean) <= 1e-4 * n * abs(mean):
        return lambda output, target: loss_fn(output, target) / len(output)
    raise ValueError(f"loss_fn(model(x), y) = {full:.6g} is neither the mean ({mean:.6g}) nor the sum of the {n} "
                     "per-example losses; the noise scale needs a loss that averages over examples: use "
                     "reduction='mean' (or 'sum') without class weights")


def gradient_noise_scale(model: nn.Module, loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                         hessian: bool = True, hessian_samples: int = 32, chunk_size: int = 64,
                         seed: int = 0) -> NoiseScaleEstimate:
    """``B_simple = tr Sigma / |G|^2`` and ``B_noise = tr(H Sigma) / (G^T H G)`` from the ``n`` examples ``(x, y)``.

    ``loss_fn`` is a mean over examples (a sum, ``reduction="sum"``, is detected and divided by ``n``; any other
    reduction is refused), so the full-batch gradient is the mean of the per-example gradients
    ``g_i`` (``vmap(grad)`` over chunks of ``chunk_size`` examples; memory ``chunk_size x P``). The examples are
    taken as i.i.d. draws from a data distribution; ``G`` is the gradient of the expected loss under it and
    ``Sigma`` the covariance of ``g_i``. The estimators are unbiased
    (McCandlish et al. 2018, arXiv:1812.06162, App. A, with ``B_small = 1``, ``B_big = n``):

    - ``tr Sigma = sum_i |g_i - gbar|^2 / (n - 1)`` (sample covariance);
    - ``|G|^2 = |gbar|^2 - tr Sigma / n``, since ``E |gbar|^2 = |G|^2 + tr Sigma / n``;
    - ``tr(H Sigma) = sum_i c_i^T H c_i / (n - 1)`` with ``c_i = g_i - gbar``, estimated from ``hessian_samples``
      ``c_i`` drawn without replacement and scaled by ``n / m`` (unbiased for the full sum);
    - ``G^T H G = gbar^T H gbar - tr(H Sigma) / n`` by the same identity with the metric ``H``.

    ``H`` is the full-batch Hessian on the same ``n`` examples, taken as fixed: its correlation with the
    gradients leaves an O(1/n) bias in the two ``H`` terms. The ratios are ratios of unbiased estimates (biased
    at O(1/n) by the ratio) and may be negative or infinite when ``|G|^2`` is below its noise ``tr Sigma / n``.
    If instead the ``n`` examples *are* the population (SGD on exactly this training set, sampling with
    replacement), the exact values are ``|G|^2 = |gbar|^2`` and ``tr Sigma = sum_i |c_i|^2 / n``: both are
    recovered from the returned fields as ``grad_sq + trace_sigma / n`` and ``trace_sigma (n - 1) / n``.
    """
    n = len(x)
    if n < 3 or len(y) != n:
        raise ValueError(f"x and y must hold the same number n >= 3 of examples (unbiased estimates and their "
                         f"jackknife error need n >= 3); got len(x)={n}, len(y)={len(y)}")
    positive_int("hessian_samples", hessian_samples, minimum=2)
    loss_fn = _mean_over_examples(model, loss_fn, x, y)
    m = min(hessian_samples, n) if hessian else 0
    pick = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m].sort().values
    gbar, norms, dots, centred = _centred_moments(model, loss_fn, x, y, chunk_size, pick)
    gbar_sq = float(gbar @ gbar)
    trace_sigma = float(norms.sum()) / (n - 1)
    grad_sq = gbar_sq - trace_sigma / n
    stderr = _jackknife_b_simple(norms, dots, gbar_sq)
    nan = float("nan")
    if not hessian:
        return NoiseScaleEstimate(trace_sigma / grad_sq, stderr, nan, trace_sigma, grad_sq, nan, nan, nan, n, 0)
    vectors = torch.cat([centred, gbar[None]]).to(x.dtype)
    flat = FlatParams(model)
    hv = hvp_rows(loss_of_params(model, loss_fn, x, y, flat), flat.vector, vectors).double()
    quad = (vectors.double() * hv).sum(1)
    q = quad[:m]
    trace_h_sigma = float(q.mean()) * n / (n - 1)
    fpc = (1 - m / n) if m < n else 0.0  # finite-population correction of subsampling without replacement
    trace_h_sigma_stderr = float(q.std() * (fpc / m) ** 0.5) * n / (n - 1)
    g_h_g = float(quad[m]) - trace_h_sigma / n
    return NoiseScaleEstimate(trace_sigma / grad_sq, stderr, trace_h_sigma / g_h_g, trace_sigma, grad_sq,
                              trace_h_sigma, trace_h_sigma_stderr, g_h_g, n, m + 1)

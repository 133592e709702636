"""Every instrument that takes a loss, on every standard PyTorch loss (mean and sum reductions, float32 and float64),
against an explicit Hessian and per-example gradients built by plain autograd loops on a small tanh network."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lmech
from lmech import HessianOperator

_N, _D, _H, _K = 12, 4, 6, 3  # examples, inputs, hidden units, outputs: 51 parameters


def _plain(output, target, reduction="mean"):
    per = ((output - target) ** 2).sum(1) / 2
    return per.mean() if reduction == "mean" else per.sum()


def _nll(output, target, reduction="mean"):
    return F.nll_loss(F.log_softmax(output, -1), target, reduction=reduction)


# name -> (loss for a reduction, target kind)
_LOSSES = {
    "nn.MSELoss": (lambda r: nn.MSELoss(reduction=r), "real"),
    "F.mse_loss": (lambda r: functools.partial(F.mse_loss, reduction=r), "real"),
    "nn.CrossEntropyLoss": (lambda r: nn.CrossEntropyLoss(reduction=r), "class"),
    "nn.CrossEntropyLoss(label_smoothing=0.1)": (lambda r: nn.CrossEntropyLoss(reduction=r, label_smoothing=0.1), "class"),
    "nn.HuberLoss": (lambda r: nn.HuberLoss(reduction=r, delta=0.5), "real"),
    "nn.L1Loss": (lambda r: nn.L1Loss(reduction=r), "real"),
    "nn.BCEWithLogitsLoss": (lambda r: nn.BCEWithLogitsLoss(reduction=r), "binary"),
    "F.nll_loss(log_softmax)": (lambda r: functools.partial(_nll, reduction=r), "class"),
    "a plain function": (lambda r: functools.partial(_plain, reduction=r), "real"),
}
_CASES = [(name, reduction, dtype) for name in _LOSSES for reduction in ("mean", "sum")
          for dtype in (torch.float32, torch.float64)]


def _problem(name: str, reduction: str, dtype: torch.dtype):
    make, kind = _LOSSES[name]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(_D, _H), nn.Tanh(), nn.Linear(_H, _K)).to(dtype)
    x = torch.randn(_N, _D, generator=gen, dtype=dtype)
    y = {"real": lambda: torch.randn(_N, _K, generator=gen, dtype=dtype),
         "class": lambda: torch.randint(0, _K, (_N,), generator=gen),
         "binary": lambda: torch.randint(0, 2, (_N, _K), generator=gen).to(dtype)}[kind]()
    return model, make(reduction), x, y


def _flat_grad(value: torch.Tensor, params: list[torch.Tensor], create_graph: bool = False) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(value, params, create_graph=create_graph)])


def _reference(model: nn.Module, loss_fn, x: torch.Tensor, y: torch.Tensor):
    """In float64, by plain autograd loops: the Hessian of ``loss_fn(model(x), y)``, the per-example gradients
    ``g_i`` of ``loss_fn(model(x_i), y_i)``, the Hessian of their mean and the full-batch gradient."""
    model = model.double()
    x = x.double()
    y = y.double() if y.is_floating_point() else y
    params = list(model.parameters())

    def hessian(value: torch.Tensor) -> torch.Tensor:
        g = _flat_grad(value, params, create_graph=True)
        return torch.stack([_flat_grad(g[i], params, create_graph=True).detach() for i in range(len(g))])

    full = hessian(loss_fn(model(x), y))
    full_grad = _flat_grad(loss_fn(model(x), y), params)
    per_example = torch.stack([_flat_grad(loss_fn(model(x[i:i + 1]), y[i:i + 1]), params) for i in range(len(x))])
    mean_loss = torch.stack([loss_fn(model(x[i:i + 1]), y[i:i + 1]) for i in range(len(x))]).mean()
    return full, per_example, hessian(mean_loss), full_grad


@pytest.mark.parametrize("name, reduction, dtype", _CASES)
def test_instruments_match_explicit_hessian_and_gradients(name, reduction, dtype):
    model, loss_fn, x, y = _problem(name, reduction, dtype)
    h, g, h_mean, full_grad = _reference(_problem(name, reduction, dtype)[0], loss_fn, x, y)
    eig = np.linalg.eigvalsh(h.numpy())[::-1]
    scale = float(np.abs(eig).max())
    tight = 1e-9 if dtype == torch.float64 else 2e-5  # relative to the largest |eigenvalue| (float32 rounding)
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(1), dtype=dtype)

    # Hessian-vector products, forward-over-reverse or (where forward AD is missing) reverse-over-reverse
    np.testing.assert_allclose(lmech.hvp(model, loss_fn, x, y, v).double(), h @ v.double(), atol=tight * scale * v.norm())
    op = HessianOperator(model, loss_fn, x, y, method="fwd-rev")
    np.testing.assert_allclose(op.dense().double(), h, atol=tight * scale)
    # top eigenvalues (Lanczos), the trace (Hutch++ with m/3 >= dim is exact) and the SLQ nodes (exact Krylov)
    top = lmech.sharpness(model, loss_fn, x, y, k=2, tol=1e-8 if dtype == torch.float64 else 1e-5, max_matvecs=51)
    np.testing.assert_allclose(top.values, eig[:2], atol=10 * tight * scale)
    trace = lmech.hessian_trace(model, loss_fn, x, y, matvecs=3 * h.shape[0])
    assert abs(trace.value - float(np.trace(h))) <= 10 * tight * scale * h.shape[0]
    density = lmech.hessian_density(model, loss_fn, x, y, probes=2, steps=h.shape[0])
    for nodes, weights in zip(density.nodes, density.weights):
        heavy = nodes[weights > 1e-6]
        assert np.abs(heavy[:, None] - eig[None, :]).min(axis=1).max() <= 100 * tight * scale
    # gradients: full batch and per example
    assert lmech.gradient_norm(model, loss_fn, x, y) == pytest.approx(float(full_grad.norm()), rel=10 * tight)
    np.testing.assert_allclose(lmech.per_example_grads(model, loss_fn, x, y).double(), g,
                               atol=tight * float(g.abs().max()) * 10)

    # the noise scale needs a mean over examples: a sum is divided by n, so both reductions give the same numbers
    est = lmech.gradient_noise_scale(model, loss_fn, x, y, hessian_samples=_N)
    gbar = g.mean(0)
    c = g - gbar
    trace_sigma = float((c ** 2).sum()) / (_N - 1)
    grad_sq = float(gbar @ gbar) - trace_sigma / _N
    trace_h_sigma = float(((c @ h_mean) * c).sum()) / (_N - 1)
    g_h_g = float(gbar @ h_mean @ gbar) - trace_h_sigma / _N
    rel = 1e-8 if dtype == torch.float64 else 2e-3
    assert est.trace_sigma == pytest.approx(trace_sigma, rel=rel)
    assert est.b_simple == pytest.approx(trace_sigma / grad_sq, rel=rel)
    assert est.trace_h_sigma == pytest.approx(trace_h_sigma, rel=rel, abs=rel * abs(trace_sigma) * scale)
    assert est.b_noise == pytest.approx(trace_h_sigma / g_h_g, rel=10 * rel)


def test_noise_scale_refuses_a_loss_that_is_neither_a_mean_nor_a_sum():
    model, _, x, y = _problem("nn.CrossEntropyLoss", "mean", torch.float64)
    weighted = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="neither the mean .* nor the sum .* reduction='mean'"):
        lmech.gradient_noise_scale(model, weighted, x, y)


def test_noise_scale_of_a_diverged_model_is_nan_not_an_error():
    model, loss_fn, x, y = _problem("nn.CrossEntropyLoss", "mean", torch.float64)
    with torch.no_grad():
        model[0].weight.fill_(float("nan"))
    est = lmech.gradient_noise_scale(model, loss_fn, x, y)
    assert np.isnan(est.b_simple) and np.isnan(est.trace_sigma)

"""Preconditioned sharpness, per-layer Hessian blocks and optimizer thresholds against closed forms (float64)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lmech import layer_blocks, preconditioner_diagonal, sharpness
from lmech.theory import stability_threshold
from lmech.observables import HessianOperator
from lmech.systems.task import half_mse


def _data(n=60, d=4, k=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5, 0.25], dtype=torch.float64)
    return x, torch.randn(n, k, generator=gen, dtype=torch.float64)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()


def test_linear_regression_sharpness_is_the_top_eigenvalue_of_the_input_covariance():
    # L = 1/(2n) sum ||W x + b - y||^2: H = I_k (x) C for [x, 1] with C = mean of [x,1][x,1]^T (closed form)
    x, y = _data()
    model = torch.nn.Linear(4, 2).double()
    xa = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    top = torch.linalg.eigvalsh(xa.T @ xa / len(x)).flip(0)
    res = sharpness(model, half_mse, x, y, k=2, tol=1e-10)
    # each eigenvalue of C appears twice (once per output); the weight block alone is I_k (x) mean(x x^T)
    assert res.values == pytest.approx([top[0].item()] * 2, rel=1e-8)
    block = sharpness(model, half_mse, x, y, tol=1e-10, params=["weight"])
    assert float(block) == pytest.approx(torch.linalg.eigvalsh(x.T @ x / len(x))[-1].item(), rel=1e-8)


def test_logistic_regression_hessian_is_x_diag_p_1_minus_p_x():
    x, _ = _data()
    labels = (x[:, 0] + 0.5 * torch.randn(len(x), generator=torch.Generator().manual_seed(1), dtype=x.dtype) > 0)
    model = torch.nn.Linear(4, 1, bias=False).double()

    def bce(out, target):
        return torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], target)

    y = labels.double()
    p = torch.sigmoid(x @ model.weight.detach()[0])
    hess = (x.T * (p * (1 - p))) @ x / len(x)
    assert torch.allclose(HessianOperator(model, bce, x, y).dense(), hess, rtol=1e-10, atol=1e-12)
    res = sharpness(model, bce, x, y, k=2, tol=1e-10)
    assert res.values == pytest.approx(torch.linalg.eigvalsh(hess).flip(0)[:2].numpy(), rel=1e-8)


def test_layer_blocks_give_the_diagonal_blocks_of_the_dense_hessian():
    x, y = _data()
    model = _mlp()
    blocks = layer_blocks(model)
    assert blocks == {"0": ["0.weight", "0.bias"], "2": ["2.weight", "2.bias"]}
    dense = HessianOperator(model, half_mse, x, y).dense().detach()
    start = 0
    for names in blocks.values():
        size = sum(dict(model.named_parameters())[n].numel() for n in names)
        want = torch.linalg.eigvalsh(dense[start:start + size, start:start + size]).flip(0)[:2]
        got = sharpness(model, half_mse, x, y, k=2, tol=1e-10, params=names)
        assert got.values == pytest.approx(want.numpy(), rel=1e-7)
        start += size


def _adam_by_hand(grads, betas, eps, amsgrad=False):
    """P = (1 - b1^t)(sqrt(v_t / (1 - b2^t)) + eps), the Adam recursion on recorded gradients."""
    b1, b2 = betas
    v = torch.zeros_like(grads[0])
    vmax = torch.zeros_like(v)
    for g in grads:
        v = b2 * v + (1 - b2) * g ** 2
        vmax = torch.maximum(vmax, v)
    t = len(grads)
    return (1 - b1 ** t) * (((vmax if amsgrad else v) / (1 - b2 ** t)).sqrt() + eps)


def _train(model, optimizer, x, y, steps):
    grads = []
    for _ in range(steps):
        optimizer.zero_grad()
        half_mse(model(x), y).backward()
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]).clone())
        optimizer.step()
    return grads


@pytest.mark.parametrize("cls, kwargs", [
    (torch.optim.Adam, {"lr": 0.01, "betas": (0.9, 0.99), "eps": 1e-3}),
    (torch.optim.Adam, {"lr": 0.01, "betas": (0.8, 0.9), "eps": 1e-6, "amsgrad": True}),
    (torch.optim.AdamW, {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-4}),
    (torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-3}),
    (torch.optim.RMSprop, {"lr": 0.01, "alpha": 0.9, "eps": 1e-3, "centered": True, "momentum": 0.5}),
])
def test_preconditioned_sharpness_matches_explicit_p_inverse_half_h_p_inverse_half(cls, kwargs):
    x, y = _data()
    model = _mlp()
    optimizer = cls(model.parameters(), **kwargs)
    grads = _train(model, optimizer, x, y, steps=4)
    if cls is torch.optim.RMSprop:
        a, eps = kwargs["alpha"], kwargs["eps"]
        v = sum((1 - a) * a ** (len(grads) - 1 - i) * g ** 2 for i, g in enumerate(grads))
        if kwargs.get("centered"):
            v = v - sum((1 - a) * a ** (len(grads) - 1 - i) * g for i, g in enumerate(grads)) ** 2
        p = v.sqrt() + eps
    else:
        p = _adam_by_hand(grads, kwargs["betas"], kwargs["eps"], kwargs.get("amsgrad", False))
    assert torch.allclose(preconditioner_diagonal(optimizer, model), p, rtol=1e-10)
    h = HessianOperator(model, half_mse, x, y).dense().detach()
    explicit = torch.linalg.eigvalsh(h / torch.outer(p.sqrt(), p.sqrt())).flip(0)[:2]
    got = sharpness(model, half_mse, x, y, k=2, tol=1e-10, optimizer=optimizer)
    assert got.values == pytest.approx(explicit.numpy(), rel=1e-7)
    # eigenvalues of P^-1 H: the same as those of the symmetric form
    assert float(got) == pytest.approx(max(np.linalg.eigvals((h / p[:, None]).numpy()).real), rel=1e-7)


def test_sgd_preconditioner_is_the_identity_and_bad_optimizers_are_named():
    x, y = _data()
    model = _mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=0.1)
    assert float(sharpness(model, half_mse, x, y, tol=1e-10, optimizer=sgd)) == pytest.approx(
        float(sharpness(model, half_mse, x, y, tol=1e-10)), rel=1e-10)
    with pytest.raises(ValueError, match="take at least one optimizer step"):
        sharpness(model, half_mse, x, y, optimizer=torch.optim.Adam(model.parameters()))
    with pytest.raises(ValueError, match="Adagrad"):
        sharpness(model, half_mse, x, y, optimizer=torch.optim.Adagrad(model.parameters()))
    with pytest.raises(ValueError, match="params="):
        sharpness(model, half_mse, x, y, params=["layers.9.weight"])


def _radius(matrix):
    return max(abs(np.linalg.eigvals(matrix)))


def _iteration(optimizer_name, lr, beta, s):
    """The linear iteration on a 1-d quadratic with curvature s (state: buffer, x), PyTorch conventions."""
    if optimizer_name == "nesterov":  # v' = b v + s x; x' = x - lr (s x + b v')
        return np.array([[beta, s], [-lr * beta ** 2, 1 - lr * s * (1 + beta)]])
    if optimizer_name == "heavy-ball":  # v' = b v + s x; x' = x - lr v'
        return np.array([[beta, s], [-lr * beta, 1 - lr * s]])
    # EMA with frozen P folded into s = lambda(P^-1 H): m' = b m + (1-b) s x; x' = x - lr m'
    return np.array([[beta, (1 - beta) * s], [-lr * beta, 1 - lr * (1 - beta) * s]])


@pytest.mark.parametrize("name, make", [
    ("heavy-ball", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
    ("nesterov", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    ("ema", lambda p: torch.optim.Adam(p, lr=0.05, betas=(0.9, 0.999))),
    ("heavy-ball", lambda p: torch.optim.RMSprop(p, lr=0.05, momentum=0.9)),
    ("plain", lambda p: torch.optim.SGD(p, lr=0.05)),
])
def test_stability_threshold_is_where_the_optimizers_linear_iteration_loses_stability(name, make):
    optimizer = make([torch.zeros(1, requires_grad=True)])
    threshold = stability_threshold(optimizer)
    if name == "plain":
        assert threshold == pytest.approx(2 / 0.05)
        return
    below, above = (_radius(_iteration(name, 0.05, 0.9, f * threshold)) for f in (0.99, 1.01))
    assert below < 1 < above
    with pytest.raises(ValueError, match="Adagrad"):
        stability_threshold(torch.optim.Adagrad([torch.zeros(1, requires_grad=True)]))

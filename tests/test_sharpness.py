"""Hessian-vector products and Lanczos sharpness against independent references (float64, small nets)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lmech.observables import HessianOperator, SharpnessTracker, sharpness
from lmech.observables._lanczos import lanczos_top
from lmech.systems.networks import MLPNet
from lmech.systems.task import half_mse

D_IN, WIDTH, D_OUT, N = 5, 12, 3, 40  # 111 parameters


def _problem(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    model = MLPNet([D_IN, WIDTH, D_OUT], "tanh", True, 1.0, False).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.8)
    x = torch.randn(N, D_IN, generator=gen, dtype=torch.float64)
    y = torch.randn(N, D_OUT, generator=gen, dtype=torch.float64)
    return model, x, y


def _flat(model) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _loss_by_hand(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The same network and loss written out on the flat vector (parameter order of ``named_parameters``)."""
    sizes = [WIDTH * D_IN, WIDTH, D_OUT * WIDTH, D_OUT]
    w1, b1, w2, b2 = theta.split(sizes)
    h = torch.tanh(x @ w1.view(WIDTH, D_IN).T + b1)
    out = h @ w2.view(D_OUT, WIDTH).T + b2
    return 0.5 * ((out - y) ** 2).sum(dim=1).mean()


@pytest.fixture(scope="module")
def reference():
    model, x, y = _problem()
    theta = _flat(model)
    hess = torch.func.hessian(lambda t: _loss_by_hand(t, x, y))(theta)
    evals, evecs = np.linalg.eigh(hess.numpy())
    return model, x, y, theta, hess, evals[::-1].copy(), evecs[:, ::-1].copy()


def test_hvp_matches_finite_differences_of_the_gradient():
    model, x, y = _problem(1)
    theta = _flat(model)
    op = HessianOperator(model, half_mse, x, y)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    eps = 1e-5
    grad = torch.func.grad(lambda t: _loss_by_hand(t, x, y))
    fd = (grad(theta + eps * v) - grad(theta - eps * v)) / (2 * eps)  # O(eps^2) ~ 1e-10 relative
    hv = op.matvec(v)
    assert float((hv - fd).norm() / fd.norm()) < 1e-7


@pytest.mark.parametrize("method", ["rev-rev", "fwd-rev"])
def test_hvp_matches_hand_written_hessian(reference, method):
    model, x, y, _, hess, _, _ = reference
    op = HessianOperator(model, half_mse, x, y, method=method)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        v = torch.randn(op.dim, generator=gen, dtype=torch.float64)
        expected = hess @ v
        assert float((op.matvec(v) - expected).norm() / expected.norm()) < 1e-12
    assert op.matvecs == 3


def test_rev_rev_and_fwd_rev_agree():
    model, x, y = _problem(4)
    rr = HessianOperator(model, half_mse, x, y, method="rev-rev")
    fr = HessianOperator(model, half_mse, x, y, method="fwd-rev")
    v = torch.randn(rr.dim, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    a, b = rr.matvec(v), fr.matvec(v)
    assert float((a - b).norm() / a.norm()) < 1e-12


def test_top_k_matches_eigvalsh(reference):
    model, x, y, _, _, evals, _ = reference
    res = sharpness(model, half_mse, x, y, k=3, tol=1e-10)
    assert res.converged
    np.testing.assert_allclose(res.values, evals[:3], rtol=1e-6)
    assert np.all(np.diff(res.values) <= 0)  # descending


def test_reported_residual_is_the_true_residual(reference):
    model, x, y, _, hess, evals, _ = reference
    res = sharpness(model, half_mse, x, y, k=2, tol=1e-2, max_matvecs=8)
    true = [float((hess @ u - lam * u).norm()) for u, lam in zip(res.vectors, res.values)]
    np.testing.assert_allclose(res.residuals, true, rtol=1e-6)
    np.testing.assert_allclose(res.vectors.norm(dim=1).numpy(), 1.0, atol=1e-12)
    # Bauer-Fike: some eigenvalue lies within each residual; interlacing: Ritz values are lower bounds.
    distance = np.abs(evals[None, :] - res.values[:, None]).min(axis=1)
    assert np.all(distance <= res.residuals)
    assert np.all(res.values <= evals[:2] + 1e-12)
    assert not res.converged and res.matvecs == 8


def test_warm_start_from_the_exact_eigenvector_takes_one_product(reference):
    model, x, y, _, _, evals, evecs = reference
    u1 = torch.as_tensor(evecs[:, 0])
    res = sharpness(model, half_mse, x, y, k=1, tol=1e-8, warm_start=u1)
    assert res.matvecs == 1 and res.converged
    assert abs(res.values[0] - evals[0]) < 1e-10 * evals[0]


def test_max_matvecs_cap_is_respected_and_reported():
    model, x, y = _problem(6)
    op = HessianOperator(model, half_mse, x, y)
    res = lanczos_top(op.matvec, op.dim, 2, v0=None, tol=1e-14, max_matvecs=5, dtype=torch.float64,
                      device=op.device, generator=torch.Generator().manual_seed(0))
    assert op.matvecs == res.matvecs == 5
    assert not res.converged
    assert res.relative_error > 1e-14


def test_warm_tracker_is_cheaper_and_stays_accurate(reference):
    model, x, y, theta, _, _, _ = reference
    tracker = SharpnessTracker(k=1, tol=1e-4)
    first = tracker(model, half_mse, x, y)
    assert first.guard_vectors is not None and first.warm_block.shape == (2, theta.numel())
    gen = torch.Generator().manual_seed(7)
    moved = theta + 1e-3 * torch.randn(theta.numel(), generator=gen, dtype=torch.float64)
    torch.nn.utils.vector_to_parameters(moved, model.parameters())
    try:
        second = tracker(model, half_mse, x, y)
        hess = torch.func.hessian(lambda t: _loss_by_hand(t, x, y))(moved)
        lam1 = float(np.linalg.eigvalsh(hess.numpy())[-1])
    finally:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
    assert second.converged and second.matvecs < first.matvecs
    assert 0 <= lam1 - second.values[0] <= max(second.errors[0], 1e-12) <= 1e-4 * lam1
    assert tracker.calls == 2 and tracker.matvecs == first.matvecs + second.matvecs


def test_dense_hessian_matches_hand_written_reference(reference):
    model, x, y, _, hess, *_ = reference
    torch.testing.assert_close(HessianOperator(model, half_mse, x, y).dense(), hess, rtol=1e-10, atol=1e-12)


def _rotated(spectrum: np.ndarray, seed: int) -> torch.Tensor:
    """``Q diag(spectrum) Q^T`` for a random orthogonal ``Q`` (float64)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(spectrum), len(spectrum))))
    return torch.from_numpy((q * spectrum) @ q.T)


@pytest.mark.parametrize("gap", [0.02, 0.1, 0.4])
def test_cold_start_stops_once_the_requested_accuracy_is_reached(gap):
    """A random start stops on the Kato-Temple estimate: within tol of lambda_1, the estimate bounding the true error;
    a tight tol is met as well, in more products."""
    rng = np.random.default_rng(1)
    spectrum = np.concatenate([[1.0, 1.0 - gap], rng.uniform(-0.3, 1.0 - gap - 0.05, 598)])
    a = _rotated(spectrum, seed=2)
    for seed in range(4):
        gen = torch.Generator().manual_seed(seed)
        res = lanczos_top(lambda v: a @ v, 600, 1, v0=None, tol=1e-3, max_matvecs=200, dtype=torch.float64,
                          device=torch.device("cpu"), generator=gen)
        err = 1.0 - res.values[0]
        assert res.converged and -1e-14 <= err <= res.errors[0] + 1e-14 <= 1e-3 * res.values[0]
        assert res.matvecs >= 20  # the minimum random-start basis for k = 1
        tight = lanczos_top(lambda v: a @ v, 600, 1, v0=None, tol=1e-10, max_matvecs=300, dtype=torch.float64,
                            device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed))
        assert tight.converged and 1.0 - tight.values[0] <= 1e-10 and tight.matvecs >= res.matvecs


def test_sharpness_through_a_pytorch_transformer_layer():
    """``nn.TransformerEncoderLayer`` uses a fused attention kernel without second derivatives; sharpness runs the
    math kernel and matches the dense Hessian's top eigenvalue."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Unflatten(1, (3, 4)),
                                torch.nn.TransformerEncoderLayer(4, 2, 8, dropout=0.0, batch_first=True),
                                torch.nn.Flatten(), torch.nn.Linear(12, 2)).double()
    x, y = torch.randn(16, 12, dtype=torch.float64), torch.randn(16, 2, dtype=torch.float64)
    res = sharpness(model, half_mse, x, y, k=2, tol=1e-10)
    op = HessianOperator(model, half_mse, x, y)
    theta = op.flat.vector
    grad = torch.func.grad(op._loss)
    eye = torch.eye(op.dim, dtype=torch.float64)
    fd = torch.stack([(grad(theta + 1e-6 * e) - grad(theta - 1e-6 * e)) / 2e-6 for e in eye])  # central differences
    np.testing.assert_allclose(res.values, np.linalg.eigvalsh(((fd + fd.T) / 2).numpy())[::-1][:2], rtol=1e-8)
    torch.testing.assert_close(op.dense(), fd, rtol=0, atol=1e-8)


def test_a_repeated_top_eigenvalue_is_found_twice_by_a_restart():
    """A Krylov space from one vector holds one vector per distinct eigenvalue; when it becomes invariant before
    k copies of a repeated eigenvalue are in it, a random restart finds the other copy. (In a large operator the
    space does not become invariant first, and a single start vector sees one copy: a documented limitation.)"""
    spectrum = np.concatenate([[1.0, 1.0, 0.8], np.linspace(-0.2, 0.5, 5)])
    a = _rotated(spectrum, seed=3)
    res = lanczos_top(lambda v: a @ v, len(spectrum), 2, v0=None, tol=1e-10, max_matvecs=200, dtype=torch.float64,
                      device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(res.values, [1.0, 1.0], rtol=1e-10)

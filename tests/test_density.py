"""SLQ spectral density against exact quadrature identities and the explicit spectrum of a small net."""
import math

import numpy as np
import pytest
import torch

from lmech import half_mse
from lmech.observables.density import hessian_density, spectral_density
from lmech.observables.hessian import HessianOperator
from lmech.report.density_figure import plot_density


def _small_net():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randn(40, 3, dtype=torch.float64)
    return model, x, y


@pytest.fixture(scope="module")
def net():
    model, x, y = _small_net()
    h = HessianOperator(model, half_mse, x, y).dense()
    lam, u = torch.linalg.eigh(h)
    return model, x, y, h.numpy(), lam.numpy(), u.numpy()


def test_gauss_quadrature_is_exact_for_moments_up_to_2k_minus_1():
    # v0^T D^p v0 = sum_i v0_i^2 d_i^p for a diagonal D; the k-node rule reproduces it for p <= 2k - 1
    d = torch.linspace(-1.0, 2.0, 60, dtype=torch.float64)
    first = []

    def matvec(v):
        if not first:
            first.append(v.clone())
        return d * v

    k = 8
    rule = spectral_density(matvec, 60, d, probes=1, steps=k, seed=3)
    theta, tau, v0 = rule.nodes[0], rule.weights[0], first[0].numpy()
    assert rule.matvecs == k and len(theta) == k and float(np.linalg.norm(v0)) == pytest.approx(1.0, abs=1e-14)
    for p in range(2 * k):
        exact = float(np.sum(v0 ** 2 * d.numpy() ** p))
        assert float(np.sum(tau * theta ** p)) == pytest.approx(exact, rel=1e-8, abs=1e-12), p
    # degree 2k is beyond the rule: it underestimates the even moment (Gauss remainder f^(2k) > 0)
    assert np.sum(tau * theta ** (2 * k)) < np.sum(v0 ** 2 * d.numpy() ** (2 * k)) * (1 - 1e-6)


def test_invariant_krylov_space_stops_early_and_is_exact():
    a = torch.diag(torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 5.0], dtype=torch.float64))
    rule = spectral_density(lambda v: a @ v, 6, a, probes=2, steps=6)
    assert rule.matvecs == 6  # 3 distinct eigenvalues: each probe's Krylov space is invariant after 3 steps
    for theta, tau in zip(rule.nodes, rule.weights):
        np.testing.assert_allclose(theta, [1.0, 2.0, 5.0], atol=1e-12)
        np.testing.assert_allclose(tau, [0.5, 1 / 3, 1 / 6], atol=1e-12)  # Rademacher: v0_i^2 = 1/6 per coordinate


def test_density_matches_the_smoothed_explicit_spectrum(net):
    model, x, y, h, lam, u = net
    probes, sigma = 60, 0.05 * (lam[-1] - lam[0])
    rule = hessian_density(model, half_mse, x, y, probes=probes, steps=25, seed=0)
    assert rule.dim == len(lam) == 75 and rule.matvecs == probes * 25
    for tau in rule.weights:
        assert tau.sum() == pytest.approx(1.0, abs=1e-12)
    grid = np.linspace(lam[0] - 6 * sigma, lam[-1] + 6 * sigma, 801)
    dx = grid[1] - grid[0]
    est = rule.density(grid, sigma)
    assert est.sum() * dx == pytest.approx(1.0, abs=1e-6)
    g = np.exp(-0.5 * ((grid[:, None] - lam[None, :]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))  # (grid, eig)
    exact = g.mean(1)
    # Independent expectation of the error: at each x the probes average v^T G v / dim with G = g(H - x I), whose
    # Rademacher variance is 2 (||G||_F^2 - sum_i G_ii^2) / dim^2 (Hutchinson); E|mean - truth| ~ sqrt(2 var / pi).
    diag = (u ** 2) @ g.T  # G_ii(x) = sum_k u_ik^2 g(lambda_k - x), shape (dim, grid)
    var = 2 * ((g ** 2).sum(1) - (diag ** 2).sum(0)) / len(lam) ** 2
    expected_l1 = np.sum(np.sqrt(2 * var / (math.pi * probes))) * dx
    l1 = np.abs(est - exact).sum() * dx
    assert l1 < 2.5 * expected_l1 and expected_l1 < 0.1
    assert rule.density(grid, sigma, counts=True) == pytest.approx(75 * est)


def test_moments_trace_and_top_node_match_the_explicit_spectrum(net):
    model, x, y, h, lam, _ = net
    probes = 60
    rule = hessian_density(model, half_mse, x, y, probes=probes, steps=25, seed=1)
    assert rule.support()[1] == pytest.approx(lam[-1], rel=1e-9)  # the top Ritz value has converged
    assert rule.support()[0] >= lam[0] - 1e-9  # Ritz values interlace: none below lambda_min
    assert rule.moment(0) == pytest.approx(1.0, abs=1e-12)
    # Hutchinson's standard error with Rademacher probes: sqrt(2 (||H||_F^2 - sum H_ii^2) / probes)
    hutch_se = math.sqrt(2 * (np.sum(h ** 2) - np.sum(np.diag(h) ** 2)) / probes)
    est = rule.trace()
    assert abs(est.value - lam.sum()) < 4 * hutch_se and 0.6 < est.stderr / hutch_se < 1.5
    assert est.matvecs == probes * 25 and est.method == "slq"
    for p in (2, 3):
        assert rule.moment(p) == pytest.approx(np.mean(lam ** p), rel=0.15)


def test_params_restricts_to_a_diagonal_block(net):
    model, x, y, h, _, _ = net
    probes = 40
    rule = hessian_density(model, half_mse, x, y, probes=probes, steps=12, params=["2.weight", "2.bias"])
    block = h[48:, 48:]  # the readout's 24 weights and 3 biases come last
    assert rule.dim == 27 and rule.matvecs == probes * 12
    # half-MSE readout block = (Phi^T Phi / n) kron I_3: 9 distinct eigenvalues, so 12 steps resolve the top one
    assert rule.support()[1] == pytest.approx(np.linalg.eigvalsh(block)[-1], rel=1e-9)
    hutch_se = math.sqrt(2 * (np.sum(block ** 2) - np.sum(np.diag(block) ** 2)) / probes)
    assert abs(rule.trace().value - np.trace(block)) < 4 * hutch_se


def test_plot_density_draws_the_density_and_the_nodes(net):
    model, x, y, _, _, _ = net
    rule = hessian_density(model, half_mse, x, y, probes=3, steps=20)
    ax = plot_density(rule)
    curve = ax.get_lines()[0]
    assert ax.get_yscale() == "log" and len(curve.get_xdata()) > 100 and np.all(np.isfinite(curve.get_ydata()))
    assert len(ax.collections) == 3  # one rug of node ticks per probe
    ax.figure.clf()


def test_bad_input_names_the_argument():
    a = torch.eye(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="steps"):
        spectral_density(lambda v: a @ v, 4, a, steps=0)
    with pytest.raises(ValueError, match="probes"):
        spectral_density(lambda v: a @ v, 4, a, probes=0)
    rule = spectral_density(lambda v: a @ v, 4, a, probes=1, steps=2)
    with pytest.raises(ValueError, match="sigma"):
        rule.density([0.0, 1.0], sigma=-1.0)

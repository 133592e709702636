"""Analytic NNGP/NTK against Monte Carlo of wide random networks, closed-form special cases and quadrature."""
import numpy as np
import pytest
import torch
from scipy.special import erf

from lmech.systems import ConfigError
from lmech.theory.kernels import nngp_ntk

RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 5))


def _random_network(x, width, depth, act, w_std, b_std, seed):
    """Readout-conditional NNGP and explicit-Jacobian NTK of one NTK-parameterized network (written here)."""
    g = torch.Generator().manual_seed(seed)
    dims = [x.shape[1]] + [width] * depth + [1]
    ws = [torch.randn(b, a, generator=g, dtype=torch.float64).requires_grad_() for a, b in zip(dims[:-1], dims[1:])]
    bs = [torch.randn(b, generator=g, dtype=torch.float64).requires_grad_() for b in dims[1:]]
    h = torch.as_tensor(x)
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = w_std / dims[i] ** 0.5 * h @ w.T + b_std * b
        if i == depth:
            break
        h = act(z)
    nngp = (w_std ** 2 * h @ h.T / width + b_std ** 2).detach().numpy()
    params = ws + bs if b_std > 0 else ws
    rows = [torch.cat([g_.reshape(-1) for g_ in torch.autograd.grad(z[i, 0], params, retain_graph=True)]) for i in range(len(x))]
    jac = torch.stack(rows)
    return nngp, (jac @ jac.T).numpy()


@pytest.mark.parametrize("act, torch_act, w_std, b_std", [("relu", torch.relu, 2 ** 0.5, 0.0), ("erf", torch.erf, 1.2, 0.3),
                                                          ("tanh", torch.tanh, 1.5, 0.2)])
def test_monte_carlo_of_wide_networks(act, torch_act, w_std, b_std):
    width, seeds = 2048, 4
    nngp, ntk = nngp_ntk(X, depth=2, activation=act, w_std=w_std, b_std=b_std)
    emp = [_random_network(X, width, 2, torch_act, w_std, b_std, s) for s in range(seeds)]
    mean_nngp, mean_ntk = np.mean([e[0] for e in emp], 0), np.mean([e[1] for e in emp], 0)
    # one network deviates by O(1/sqrt(width)) ~ 2%; the mean over 4 networks by ~1%: allow 4 sigma-ish
    assert np.abs(mean_nngp - nngp).max() / np.abs(nngp).max() < 0.03
    assert np.abs(mean_ntk - ntk).max() / np.abs(ntk).max() < 0.04


def test_closed_form_special_cases():
    q0 = np.sum(X * X, 1) / X.shape[1]
    nngp, ntk = nngp_ntk(X, depth=3, activation="relu", w_std=2 ** 0.5)
    # relu, w_std^2 = 2, no bias: every layer's variance is 2 q0, and each layer adds it to the NTK diagonal;
    # the arc-cosine angle of a pair with itself is ~1e-8 (sqrt of rounding), hence rtol 1e-7
    np.testing.assert_allclose(np.diag(nngp), 2 * q0, rtol=1e-7)
    np.testing.assert_allclose(np.diag(ntk), (3 + 1) * 2 * q0, rtol=1e-7)
    # orthogonal inputs: the first relu layer gives E[phi phi] = sqrt(q q')/(2 pi) (theta = pi/2)
    e = np.eye(4)
    nngp1, ntk1 = nngp_ntk(e, depth=1, activation="relu", w_std=1.0)
    q = 1 / 4
    np.testing.assert_allclose(nngp1[0, 1], q / (2 * np.pi), rtol=1e-12)
    np.testing.assert_allclose(ntk1[0, 1], q / (2 * np.pi) + 0 * q / 2, rtol=1e-12)  # Theta_1 = 0 off-diagonal
    lin = nngp_ntk(X, depth=2, activation="linear", w_std=1.0)
    np.testing.assert_allclose(lin[0], X @ X.T / 5, rtol=1e-12)
    np.testing.assert_allclose(lin[1], 3 * X @ X.T / 5, rtol=1e-12)
    for k in nngp_ntk(X, depth=2, activation="erf", w_std=1.3, b_std=0.1):
        np.testing.assert_allclose(k, k.T, rtol=1e-12)
        assert np.linalg.eigvalsh(k).min() > -1e-10


def test_quadrature_against_closed_forms():
    derf = lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)  # noqa: E731
    closed = nngp_ntk(X / 2, depth=2, activation="erf", w_std=1.1, b_std=0.1)
    quad = nngp_ntk(X / 2, depth=2, activation=erf, derivative=derf, w_std=1.1, b_std=0.1, quadrature_degree=40)
    for c, q in zip(closed, quad):
        assert np.abs(c - q).max() / np.abs(c).max() < 1e-10
    fd = nngp_ntk(X / 2, depth=2, activation=erf, w_std=1.1, b_std=0.1, quadrature_degree=40)  # finite-difference phi'
    assert np.abs(fd[1] - closed[1]).max() / np.abs(closed[1]).max() < 1e-8
    relu = nngp_ntk(X, depth=2, activation="relu", w_std=1.4)
    kink = nngp_ntk(X, depth=2, activation=lambda z: np.maximum(z, 0), derivative=lambda z: (z > 0) * 1.0, w_std=1.4,
                    quadrature_degree=40)
    for c, q in zip(relu, kink):  # a kink converges only algebraically
        assert np.abs(c - q).max() / np.abs(c).max() < 0.01


def test_standard_parameterization_ntk_grows_with_width():
    ntk_param = nngp_ntk(X, depth=2, activation="tanh", w_std=1.2, b_std=0.0)
    narrow = nngp_ntk(X, depth=2, activation="tanh", w_std=1.2, parameterization="standard", width=100)
    wide = nngp_ntk(X, depth=2, activation="tanh", w_std=1.2, parameterization="standard", width=1000)
    np.testing.assert_allclose(narrow[0], ntk_param[0], rtol=1e-12)  # same NNGP
    # the NTK's width-proportional part grows 10x; what is left (the first layer's x.x' term) does not
    slope = (wide[1] - narrow[1]) / 900
    np.testing.assert_allclose(narrow[1] - 100 * slope, wide[1] - 1000 * slope, rtol=1e-10)
    assert np.all(slope[np.diag_indices(6)] > 0)
    with pytest.raises(ConfigError, match="width="):
        nngp_ntk(X, depth=1, parameterization="standard")
    with pytest.raises(ConfigError, match="activation"):
        nngp_ntk(X, depth=1, activation="softplus")

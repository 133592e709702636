"""Analytic NNGP/NTK against Monte Carlo of wide random networks, hand-derived special cases and quadrature."""
import warnings

import numpy as np
import pytest
import torch
from scipy.special import erf

from lmech.systems import ConfigError
from lmech.theory import kernels
from lmech.theory.kernels import nngp_ntk

RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, 5))


def _random_network(x, width, depth, act, w_std, b_std, seed, standard=False):
    """Readout-conditional NNGP and explicit-Jacobian NTK of one random MLP, written here independently.

    NTK parameterization: ``z = w_std/sqrt(fan_in) W h + b_std b`` with ``W, b ~ N(0, 1)``; standard: the
    same forward pass, but the trainable weights are ``w_std/sqrt(fan_in) W`` and the biases ``b_std b``.
    NNGP: ``E[f(x) f(x') | last hidden layer] = w_std^2 h.h'/width + b_std^2``.
    """
    g = torch.Generator().manual_seed(seed)
    dims = [x.shape[1]] + [width] * depth + [1]
    raw_w = [torch.randn(b, a, generator=g, dtype=torch.float64) for a, b in zip(dims[:-1], dims[1:])]
    raw_b = [torch.randn(b, generator=g, dtype=torch.float64) for b in dims[1:]]
    if standard:
        ws = [(w_std / dims[i] ** 0.5 * w).requires_grad_() for i, w in enumerate(raw_w)]
        bs = [(b_std * b).requires_grad_() for b in raw_b]
    else:
        ws, bs = [w.requires_grad_() for w in raw_w], [b.requires_grad_() for b in raw_b]
    h = torch.as_tensor(x)
    for i, (w, b) in enumerate(zip(ws, bs)):
        z = h @ w.T + b if standard else w_std / dims[i] ** 0.5 * h @ w.T + b_std * b
        if i == depth:
            break
        h = act(z)
    nngp = (w_std ** 2 * h @ h.T / width + b_std ** 2).detach().numpy()
    params = ws + bs if b_std > 0 else ws
    rows = [torch.cat([p.reshape(-1) for p in torch.autograd.grad(z[i, 0], params, retain_graph=True)]) for i in range(len(x))]
    jac = torch.stack(rows)  # (n, P): the explicit Jacobian
    return nngp, (jac @ jac.T).numpy()


def _agrees_with_seeds(samples, theory, width, power):
    """Mean over seeds vs theory within 4 standard errors (estimated from the seeds) plus an O(1/width) bias.

    The standard error must be below ``power`` times the kernel's scale, so that the check can fail.
    """
    samples = np.asarray(samples)
    scale = np.abs(theory).max()
    se = samples.std(0, ddof=1).max() / np.sqrt(len(samples))
    err = np.abs(samples.mean(0) - theory).max()
    assert se < power * scale, f"Monte Carlo standard error {se / scale:.3f} of scale is too large to test"
    assert err < 4 * se + 4 / width * scale, f"error {err / scale:.4f} vs standard error {se / scale:.4f} (of scale)"


CASES = [("relu", torch.relu, 2 ** 0.5, 0.0), ("erf", torch.erf, 1.2, 0.3), ("tanh", torch.tanh, 1.5, 0.2)]


@pytest.mark.parametrize("act, torch_act, w_std, b_std", CASES)
def test_monte_carlo_of_one_wide_hidden_layer(act, torch_act, w_std, b_std):
    # one network deviates from the limit by ~3/sqrt(width) ~ 1.7% at width 32768; 8 seeds: SE ~0.6%
    width, seeds = 32768, 8
    nngp, ntk = nngp_ntk(X, depth=1, activation=act, w_std=w_std, b_std=b_std)
    emp = [_random_network(X, width, 1, torch_act, w_std, b_std, s) for s in range(seeds)]
    _agrees_with_seeds([e[0] for e in emp], nngp, width, power=0.01)
    _agrees_with_seeds([e[1] for e in emp], ntk, width, power=0.01)


@pytest.mark.parametrize("act, torch_act, w_std, b_std", CASES)
def test_monte_carlo_of_two_hidden_layers(act, torch_act, w_std, b_std):
    # width 2048 (4M weights, explicit Jacobians): one network deviates by ~6%, so 6 seeds resolve ~3%
    width, seeds = 2048, 6
    nngp, ntk = nngp_ntk(X, depth=2, activation=act, w_std=w_std, b_std=b_std)
    emp = [_random_network(X, width, 2, torch_act, w_std, b_std, 10 + s) for s in range(seeds)]
    _agrees_with_seeds([e[0] for e in emp], nngp, width, power=0.04)
    _agrees_with_seeds([e[1] for e in emp], ntk, width, power=0.04)


def test_standard_parameterization_against_monte_carlo_and_formula():
    width, seeds, w, b = 16384, 8, 1.3, 0.4
    nngp, ntk = nngp_ntk(X, depth=1, activation="relu", w_std=w, b_std=b, parameterization="standard", width=width)
    emp = [_random_network(X, width, 1, torch.relu, w, b, s, standard=True) for s in range(seeds)]
    _agrees_with_seeds([e[0] for e in emp], nngp, width, power=0.01)
    _agrees_with_seeds([e[1] for e in emp], ntk, width, power=0.01)
    assert np.abs(ntk).max() > 1000 * np.abs(nngp).max()  # the SP NTK is O(width)
    # depth 1, by hand: Theta_1 = d K_0 + 1 = x.x' + 1; K_1 = w^2 x.x'/d + b^2; after relu K_2, dot;
    # readout: Theta = width K_2 + 1 + w^2 (x.x' + 1) dot
    d = X.shape[1]
    k1 = w * w * X @ X.T / d + b * b
    norms = np.sqrt(np.outer(np.diag(k1), np.diag(k1)))
    angle = np.arccos(np.clip(k1 / norms, -1, 1))
    k2 = norms * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi)
    dot = (np.pi - angle) / (2 * np.pi)
    for m in (10, 1000):
        got_nngp, got_ntk = nngp_ntk(X, depth=1, activation="relu", w_std=w, b_std=b, parameterization="standard", width=m)
        np.testing.assert_allclose(got_nngp, w * w * k2 + b * b, rtol=1e-7)  # 1e-7: arccos vs arctan2 at a point with itself
        np.testing.assert_allclose(got_ntk, m * k2 + 1 + w * w * (X @ X.T + 1) * dot, rtol=1e-7)


def test_standard_parameterization_ntk_is_affine_in_width_and_nngp_is_unchanged():
    ntk_param = nngp_ntk(X, depth=2, activation="tanh", w_std=1.2, b_std=0.1, quadrature_degree=32)
    sp = {m: nngp_ntk(X, depth=2, activation="tanh", w_std=1.2, b_std=0.1, parameterization="standard", width=m,
                      quadrature_degree=32) for m in (100, 1000, 10000)}
    for m in sp:
        np.testing.assert_allclose(sp[m][0], ntk_param[0], rtol=1e-12)  # same NNGP
    slope = (sp[1000][1] - sp[100][1]) / 900
    np.testing.assert_allclose(sp[10000][1], sp[100][1] + 9900 * slope, rtol=1e-10)  # affine: width A + B
    assert np.all(np.diag(slope) > 0)
    # Theta_SP/width -> A: the width-independent part B (the first layer's x.x' and the biases) fades as 1/width
    assert np.all(np.abs(sp[10000][1] / 10000 - slope) < 1e-3 * np.abs(slope).max())


def test_relu_closed_form_special_cases():
    q0 = np.sum(X * X, 1) / X.shape[1]
    for depth in (1, 3):
        nngp, ntk = nngp_ntk(X, depth=depth, activation="relu", w_std=2 ** 0.5)
        # w^2 = 2, no bias: every pre-activation variance is 2 q0 (relu halves it, the dense layer doubles it),
        # and each of the depth + 1 dense layers adds it to the NTK diagonal: Theta(x, x) = 2 (depth + 1) q0
        np.testing.assert_allclose(np.diag(nngp), 2 * q0, rtol=1e-13)
        np.testing.assert_allclose(np.diag(ntk), 2 * (depth + 1) * q0, rtol=1e-13)
    # orthogonal inputs e_i in d = 4 (x.x'/d = 0, q = 1/4), w = 1, no bias, by hand:
    nngp1, ntk1 = nngp_ntk(np.eye(4), depth=1, activation="relu", w_std=1.0)
    # relu at theta = pi/2: E[phi phi] = sqrt(q q')/(2 pi); Theta_1 = K_1 = 0 off the diagonal, so Theta = K
    np.testing.assert_allclose(nngp1[0, 1], 0.25 / (2 * np.pi), rtol=1e-14)
    np.testing.assert_allclose(ntk1[0, 1], 0.25 / (2 * np.pi), rtol=1e-14)
    np.testing.assert_allclose(np.diag(ntk1), 0.25 / 2 + 0.25 / 2, rtol=1e-14)  # K_2 + Theta_1 * 1/2
    nngp2, ntk2 = nngp_ntk(np.eye(4), depth=2, activation="relu", w_std=1.0)
    q, c = 1 / 8, 1 / (8 * np.pi)  # second pre-activation: variance 1/8, covariance 1/(8 pi), correlation 1/pi
    angle = np.arccos(c / q)
    k3 = q * (np.sin(angle) + (np.pi - angle) * np.cos(angle)) / (2 * np.pi)
    np.testing.assert_allclose(nngp2[0, 1], k3, rtol=1e-14)
    np.testing.assert_allclose(ntk2[0, 1], k3 + c * (np.pi - angle) / (2 * np.pi), rtol=1e-14)
    lin = nngp_ntk(X, depth=2, activation="linear", w_std=1.0)
    np.testing.assert_allclose(lin[0], X @ X.T / 5, rtol=1e-12)
    np.testing.assert_allclose(lin[1], 3 * X @ X.T / 5, rtol=1e-12)


def test_erf_closed_form_against_a_direct_integral():
    # one hidden erf layer: NNGP = w^2 E[erf(u) erf(v)] + b^2 with (u, v) ~ N(0, K_1); integrate by brute force
    w, b = 1.3, 0.2
    x = X[:2]
    k1 = w * w * x @ x.T / 5 + b * b
    z, weight = np.polynomial.hermite_e.hermegauss(200)
    weight = weight / weight.sum()
    chol = np.linalg.cholesky(k1)
    u = chol[0, 0] * z[:, None]
    v = chol[1, 0] * z[:, None] + chol[1, 1] * z[None, :]
    mean = lambda f, g: np.sum(np.outer(weight, weight) * f(u) * g(v))  # noqa: E731
    derf = lambda t: 2 / np.sqrt(np.pi) * np.exp(-t * t)  # noqa: E731
    nngp, ntk = nngp_ntk(x, depth=1, activation="erf", w_std=w, b_std=b)
    np.testing.assert_allclose(nngp[0, 1], w * w * mean(erf, erf) + b * b, rtol=1e-9)
    np.testing.assert_allclose(ntk[0, 1], nngp[0, 1] + w * w * k1[0, 1] * mean(derf, derf), rtol=1e-9)


def test_quadrature_against_closed_forms():
    x = X / 2  # pre-activation variances <= ~0.6: degree 48 resolves erf to ~1e-12 (docstring table)
    derf = lambda z: 2 / np.sqrt(np.pi) * np.exp(-z * z)  # noqa: E731
    closed = nngp_ntk(x, depth=2, activation="erf", w_std=1.1, b_std=0.1)
    given = nngp_ntk(x, depth=2, activation=erf, derivative=derf, w_std=1.1, b_std=0.1, quadrature_degree=48)
    autograd = nngp_ntk(x, depth=2, activation=torch.erf, w_std=1.1, b_std=0.1, quadrature_degree=48)
    difference = nngp_ntk(x, depth=2, activation=erf, w_std=1.1, b_std=0.1, quadrature_degree=48)
    for c, g, a, f in zip(closed, given, autograd, difference):
        assert np.abs(c - g).max() / np.abs(c).max() < 1e-10
        assert np.abs(c - a).max() / np.abs(c).max() < 1e-10
        assert np.abs(c - f).max() / np.abs(c).max() < 1e-8  # the central difference of phi' errs ~1e-10
    # the default picks degrees by itself: ~1e-6 stated
    auto = nngp_ntk(X, depth=2, activation=erf, derivative=derf, w_std=1.5, b_std=0.1)
    exact = nngp_ntk(X, depth=2, activation="erf", w_std=1.5, b_std=0.1)
    for c, a in zip(exact, auto):
        assert np.abs(c - a).max() / np.abs(c).max() < 4e-6
    # a fixed low degree is as inaccurate as the table says at variance ~2 (3e-5 .. 1e-2 at degree 24)
    low = nngp_ntk(X, depth=2, activation=erf, derivative=derf, w_std=1.5, b_std=0.1, quadrature_degree=24)
    assert 1e-6 < max(np.abs(c - a).max() / np.abs(c).max() for c, a in zip(exact, low)) < 1e-1
    # a kink converges only algebraically; the automatic degree says so
    relu = nngp_ntk(X, depth=2, activation="relu", w_std=1.4)
    with pytest.warns(RuntimeWarning, match="not converged"):
        kink = nngp_ntk(X, depth=2, activation=lambda z: np.maximum(z, 0), derivative=lambda z: (z > 0) * 1.0, w_std=1.4)
    for c, q in zip(relu, kink):
        assert np.abs(c - q).max() / np.abs(c).max() < 0.01


def test_tanh_auto_degree_against_a_high_degree_reference():
    kw = dict(depth=2, activation="tanh", w_std=1.5, b_std=0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the automatic degree converges here
        auto = nngp_ntk(X, **kw)
    reference = nngp_ntk(X, quadrature_degree=400, **kw)
    for a, r in zip(auto, reference):
        assert np.abs(a - r).max() / np.abs(r).max() < 4e-6
    silu = nngp_ntk(X, depth=2, activation="silu", w_std=1.5)
    silu_torch = nngp_ntk(X, depth=2, activation=torch.nn.functional.silu, w_std=1.5)  # derivative by autograd
    for a, r in zip(silu, silu_torch):
        np.testing.assert_allclose(a, r, rtol=1e-12)


@pytest.mark.parametrize("act", ["relu", "erf", "tanh", "gelu", "linear"])
def test_symmetric_psd_and_blocked_evaluation(act, monkeypatch):
    x = RNG.standard_normal((40, 3))
    full = nngp_ntk(x, depth=3, activation=act, w_std=1.4, b_std=0.3, quadrature_degree=24)
    monkeypatch.setattr(kernels, "_BLOCK", 60 * (24 if act in ("tanh", "gelu") else 1))  # many small row blocks
    blocked = nngp_ntk(x, depth=3, activation=act, w_std=1.4, b_std=0.3, quadrature_degree=24)
    cross = nngp_ntk(x[:7], x, depth=3, activation=act, w_std=1.4, b_std=0.3, quadrature_degree=24)
    for f, b, c in zip(full, blocked, cross):
        assert f.shape == (40, 40) and f.dtype == np.float64
        np.testing.assert_array_equal(f, f.T)
        assert np.linalg.eigvalsh(f).min() > -1e-12 * np.abs(f).max()
        np.testing.assert_allclose(b, f, rtol=1e-13, atol=1e-15)
        # the cross kernel's pairs (i, j >= i) use the same evaluation order as the symmetric one's upper triangle
        upper = np.triu(np.ones((7, 40), dtype=bool))
        np.testing.assert_allclose(c[upper], f[:7][upper], rtol=1e-12)
        if act in ("relu", "erf", "linear"):
            np.testing.assert_allclose(c, f[:7], rtol=1e-12)


def test_many_points_are_vectorized():
    x = RNG.standard_normal((2000, 10))
    nngp, ntk = nngp_ntk(x, depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.1)  # 4M pairs: well under a second
    sub = nngp_ntk(x[1990:], x[:5], depth=3, activation="relu", w_std=2 ** 0.5, b_std=0.1)
    np.testing.assert_allclose(sub[0], nngp[1990:, :5], rtol=1e-12)
    np.testing.assert_allclose(sub[1], ntk[1990:, :5], rtol=1e-12)


def test_bad_input_is_a_config_error():
    with pytest.raises(ConfigError, match="width="):
        nngp_ntk(X, depth=1, parameterization="standard")
    with pytest.raises(ConfigError, match="activation"):
        nngp_ntk(X, depth=1, activation="softplus")
    with pytest.raises(ConfigError, match="same number of features"):
        nngp_ntk(X, X[:, :3], depth=1)
    with pytest.raises(ConfigError, match="depth"):
        nngp_ntk(X, depth=-1)
    with pytest.raises(ConfigError, match="quadrature_degree"):
        nngp_ntk(X, depth=1, activation="tanh", quadrature_degree=1)

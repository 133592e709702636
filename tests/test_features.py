"""Feature-learning observables: AGOP, Neural Feature Ansatz correlation, representation change, readout kernel."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import jacrev, vmap

from lmech.observables.features import (agop, matrix_correlation, neural_feature_matrix, nfa_correlation, nfa_scores,
                                        psd_power, readout_kernel, representation_change)
from lmech.observables.weights import snapshot
from lmech.systems._validate import ConfigError
from lmech.systems.networks import DeepLinearNet, MLPNet, _ACTIVATIONS

DT = torch.float64


def _mlp(dims, activation="tanh", bias=True, alpha=1.0, ntk=False, seed=0) -> MLPNet:
    torch.manual_seed(seed)
    net = MLPNet(dims, activation, bias, alpha, ntk).to(DT)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * (1.0 if ntk else 0.7))
    return net


def _explicit_agop(fn, inputs: torch.Tensor, centered: bool = False) -> torch.Tensor:
    jac = vmap(jacrev(fn))(inputs)  # (n, k, d)
    if centered:
        jac = jac - jac.mean(0, keepdim=True)
    return torch.einsum("nkd,nkD->dD", jac, jac) / len(inputs)


@pytest.mark.parametrize("outputs", [1, 3])
@pytest.mark.parametrize("centered", [False, True])
def test_agop_matches_jacrev(outputs, centered):
    net = _mlp([5, 7, 6, outputs], alpha=1.7, ntk=True)
    x = torch.randn(11, 5, dtype=DT)
    phi = _ACTIVATIONS[net.activation]

    def from_input(xi):
        return net(xi[None])[0]

    def from_hidden(hi):  # the sub-network above layers[1], written out by hand
        h2 = phi(net.layers[1](hi[None]))
        return net.alpha * net.layers[2](h2)[0]

    hidden = phi(net.layers[0](x)).detach()
    got_in = agop(net, x, centered=centered)
    got_hidden = agop(net, x, net.layers[1], centered=centered)
    torch.testing.assert_close(got_in, _explicit_agop(from_input, x, centered), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(got_hidden, _explicit_agop(from_hidden, hidden, centered), rtol=1e-12, atol=1e-13)
    assert got_hidden.shape == (7, 7) and all(p.grad is None for p in net.parameters())


def test_agop_of_linear_model_is_exact():
    """f = a^T W x: AGOP w.r.t. x is W^T a a^T W for any inputs; w.r.t. the hidden input it is a a^T."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 1, bias=False)).to(DT)
    w, a = net[0].weight.detach(), net[1].weight.detach()[0]
    x = torch.randn(9, 4, dtype=DT)
    torch.testing.assert_close(agop(net, x), torch.outer(w.T @ a, w.T @ a), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(agop(net, x, net[1]), torch.outer(a, a), rtol=1e-13, atol=1e-14)
    assert agop(net, x, centered=True).abs().max() < 1e-14  # constant Jacobian: nothing left after centering


def test_nfa_correlation_matches_numpy_reference():
    """NFM / AGOP^s / Pearson as in verify_deep_NFA.py (SVD square root, global-mean-removed cosine), in numpy."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(4, 6, bias=False), nn.Linear(6, 5, bias=False)).to(DT)  # full-rank AGOP
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(0.3 * torch.randn_like(w0))
    x = torch.randn(20, 4, dtype=DT)
    w, a, w0n = net[0].weight.detach().numpy(), net[1].weight.detach().numpy(), w0.numpy()
    nfm = (w - w0n).T @ (w - w0n) / len(w)
    g = w.T @ a.T @ a @ w  # AGOP of the linear net, independent of x
    u, s, vt = np.linalg.svd(g)
    for power in (0.5, 1.0):
        ref = np.corrcoef(nfm.ravel(), (u @ np.diag(s ** power) @ vt).ravel())[0, 1]
        got = nfa_correlation(net, x, net[0], init_weight=w0, power=power)
        assert got == pytest.approx(ref, abs=1e-10)
    np.testing.assert_allclose(neural_feature_matrix(net[0], w0).numpy(), nfm, rtol=1e-12)
    base = np.corrcoef(nfm.ravel(), (w0n.T @ w0n).ravel())[0, 1]
    scores = nfa_scores(net, x, net[0], init_weight=w0)
    assert set(scores) == {"s=0.5", "s=1", "init"} and scores["init"] == pytest.approx(base, abs=1e-10)
    assert scores["s=0.5"] == pytest.approx(nfa_correlation(net, x, net[0], init_weight=w0), abs=1e-12)


def test_matrix_correlation_is_pearson():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    assert matrix_correlation(torch.tensor(a), torch.tensor(b)) == pytest.approx(np.corrcoef(a.ravel(), b.ravel())[0, 1])
    assert matrix_correlation(torch.tensor(a), torch.tensor(3 * a + 1)) == pytest.approx(1.0)
    assert np.isnan(matrix_correlation(torch.ones(3, 3), torch.tensor(a[:3, :3])))
    g = torch.tensor(a @ a.T)
    torch.testing.assert_close(psd_power(g, 0.5) @ psd_power(g, 0.5), g, rtol=1e-10, atol=1e-10)


def test_nfa_exact_for_balanced_deep_linear_net():
    """Balanced two-layer linear net (W2^T W2 = W1 W1^T): AGOP = W1^T W2^T W2 W1 = (W1^T W1)^2, so
    W1^T W1 = AGOP^(1/2) exactly (correlation 1 at s = 1/2, below 1 at s = 1). NTK multipliers included."""
    rng = np.random.default_rng(4)
    d, m, k = 6, 3, 4
    u = np.linalg.qr(rng.standard_normal((m, m)))[0]
    v = np.linalg.qr(rng.standard_normal((d, m)))[0]
    q = np.linalg.qr(rng.standard_normal((k, m)))[0]
    s = np.diag([2.0, 1.0, 0.4])
    w1, w2 = u @ s @ v.T, q @ s @ u.T
    net = DeepLinearNet([d, m, k], ntk=True).to(DT)
    with torch.no_grad():  # raw weights so that multiplier * weight is the balanced pair
        net.layers[0].weight.copy_(torch.tensor(w1 / net.layers[0].multiplier))
        net.layers[1].weight.copy_(torch.tensor(w2 / net.layers[1].multiplier))
    x = torch.randn(7, d, dtype=DT)
    zero = torch.zeros(m, d, dtype=DT)
    assert nfa_correlation(net, x, net.layers[0]) == pytest.approx(1.0, abs=1e-12)
    assert nfa_correlation(net, x, net.layers[0], init_weight=zero) == pytest.approx(1.0, abs=1e-12)
    assert nfa_correlation(net, x, net.layers[0], power=1.0) < 0.99
    torch.testing.assert_close(psd_power(agop(net, x), 0.5), neural_feature_matrix(net.layers[0]) * m)


def test_nfa_bad_input():
    net = _mlp([3, 4, 1])
    x = torch.randn(5, 3, dtype=DT)
    with pytest.raises(ConfigError, match="power"):
        nfa_correlation(net, x, net.layers[0], power=0)
    with pytest.raises(ConfigError, match="init_weight"):
        nfa_correlation(net, x, net.layers[0], init_weight=torch.zeros(2, 2, dtype=DT))
    with pytest.raises(ConfigError, match="not called"):
        agop(net, x, nn.Linear(3, 3))


def test_representation_change_zero_at_init_and_hand_computed():
    net = _mlp([4, 6, 5, 2], activation="relu")
    init = snapshot(net)
    x = torch.randn(10, 4, dtype=DT)
    assert representation_change(net, init, x) == {"representation/0": 0.0, "representation/1": 0.0}
    with torch.no_grad():
        net.layers[1].weight[0, :] += 0.5
    h1 = torch.relu(net.layers[0](x)).detach()
    before = torch.relu(h1 @ init["layers.1.weight"].T + init["layers.1.bias"])
    after = torch.relu(net.layers[1](h1)).detach()
    got = representation_change(net, init, x)
    assert got["representation/0"] == 0.0
    assert got["representation/1"] == pytest.approx(float((after - before).norm() / before.norm()), rel=1e-12)
    assert torch.equal(net.layers[1].weight.detach()[0], init["layers.1.weight"][0] + 0.5)  # model untouched


def test_representation_change_generic_layers():
    torch.manual_seed(5)
    seq = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    init = snapshot(seq)
    x = torch.randn(6, 3, dtype=DT)
    with torch.no_grad():
        seq[0].weight.mul_(2.0)
    h0 = torch.tanh(x @ init["0.weight"].T + init["0.bias"])
    ht = torch.tanh(seq[0](x)).detach()
    got = representation_change(seq, init, x, layers=[seq[2]])
    assert got["representation/0"] == pytest.approx(float((ht - h0).norm() / h0.norm()), rel=1e-12)
    with pytest.raises(ConfigError, match="layers"):
        representation_change(seq, init, x)
    with pytest.raises(ConfigError, match="init_state"):
        representation_change(seq, {"nope": torch.zeros(1)}, x, layers=[seq[2]])


def test_readout_kernel():
    net = _mlp([3, 8, 2], activation="relu", ntk=True)
    x = torch.randn(5, 3, dtype=DT)
    h = torch.relu(net.layers[0](x)).detach()
    torch.testing.assert_close(readout_kernel(net, x), h @ h.T / 8)

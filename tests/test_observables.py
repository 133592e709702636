import math

import pytest
import torch
from torch import nn

from lmech import (balancedness, end_to_end_map, end_to_end_singular_values, gradient_norm, half_mse,
                   neuron_balance, relative_drift, weight_change)
from lmech.observables.weights import snapshot
from lmech.systems.networks import DeepLinearNet, MLPNet

torch.manual_seed(0)


def _randomize(model, std=0.5):
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model


def _gd_step(model, x, y, lr):
    grads = torch.autograd.grad(half_mse(model(x), y), list(model.parameters()))
    with torch.no_grad():
        for p, g in zip(model.parameters(), grads):
            p -= lr * g
    return dict(zip([n for n, _ in model.named_parameters()], grads))


def test_end_to_end_map_is_the_weight_product():
    net = _randomize(DeepLinearNet([5, 7, 6, 3], ntk=False).double())
    w = [layer.weight for layer in net.layers]
    product = w[2] @ w[1] @ w[0]
    torch.testing.assert_close(end_to_end_map(net, 5), product.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(end_to_end_singular_values(net, 5), torch.linalg.svdvals(product.detach()))
    # works on any affine module, e.g. a plain nn.Linear with a bias
    lin = nn.Linear(4, 2).double()
    torch.testing.assert_close(end_to_end_map(lin, 4), lin.weight.detach())


def test_balancedness_changes_by_exactly_eta_squared_gradient_terms():
    net = _randomize(DeepLinearNet([4, 6, 5, 3], ntk=False).double())
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    before = balancedness(net)
    lr = 0.03
    g = _gd_step(net, x, y, lr)
    after = balancedness(net)
    gs = [g[f"layers.{i}.weight"] for i in range(3)]
    for k in range(2):
        expected = lr ** 2 * (gs[k + 1].T @ gs[k + 1] - gs[k] @ gs[k].T)
        torch.testing.assert_close(after[k] - before[k], expected, rtol=1e-9, atol=1e-13)


def test_neuron_balance_changes_by_exactly_eta_squared_gradient_terms():
    net = _randomize(MLPNet([3, 10, 10, 2], "relu", True, 1.0, ntk=False).double())
    x, y = torch.randn(30, 3, dtype=torch.float64), torch.randn(30, 2, dtype=torch.float64)
    before = neuron_balance(net)
    lr = 0.05
    g = _gd_step(net, x, y, lr)
    after = neuron_balance(net)
    for k in range(2):
        g_in = g[f"layers.{k}.weight"].pow(2).sum(1) + g[f"layers.{k}.bias"].pow(2)
        g_out = g[f"layers.{k + 1}.weight"].pow(2).sum(0)
        torch.testing.assert_close(after[k] - before[k], lr ** 2 * (g_in - g_out), rtol=1e-9, atol=1e-14)


def test_neuron_balance_is_invariant_under_the_symmetry_it_comes_from():
    net = _randomize(MLPNet([3, 8, 2], "relu", True, 1.0, ntk=False).double())
    x = torch.randn(10, 3, dtype=torch.float64)
    out = net(x)
    c = torch.rand(8, dtype=torch.float64) + 0.5
    with torch.no_grad():  # rescale each unit: the function is unchanged
        net.layers[0].weight *= c[:, None]
        net.layers[0].bias *= c
        net.layers[1].weight /= c[None, :]
    torch.testing.assert_close(net(x), out)
    assert relative_drift([torch.ones(3)], [torch.ones(3)]) == 0.0
    with pytest.raises(ValueError, match="balanced init"):
        relative_drift([torch.ones(3)], [torch.zeros(3)])


def test_gradient_norm_and_weight_change():
    net = _randomize(MLPNet([3, 4, 2], "tanh", True, 1.0, ntk=False).double())
    x, y = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    grads = torch.autograd.grad(half_mse(net(x), y), list(net.parameters()))
    assert gradient_norm(net, half_mse, x, y) == pytest.approx(math.sqrt(sum(float(g.pow(2).sum()) for g in grads)))
    init = snapshot(net)
    with torch.no_grad():
        net.layers[0].weight.mul_(1.1)
    wc = weight_change(net, init)
    assert wc["relative/layers.0.weight"] == pytest.approx(0.1)
    assert wc["relative/layers.1.weight"] == 0.0
    assert wc["distance"] == pytest.approx(0.1 * float(init["layers.0.weight"].norm()))

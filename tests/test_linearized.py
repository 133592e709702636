"""Linearized GD and kernel regression against explicitly training the linearized network (torch.func.jvp)."""
import numpy as np
import pytest
import scipy.linalg
import torch
from torch.func import functional_call, jacrev, jvp

from lmech.systems import ConfigError
from lmech.theory.linearized import kernel_regression, linearized_gd


def _net(k):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 16), torch.nn.Tanh(),
                               torch.nn.Linear(16, k)).double()


def _jacobian(model, params, x):
    """(n, k, P) Jacobian of the outputs, by jacrev over the parameter dict (independent of lmech's eNTK)."""
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)
    return torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac.values()], dim=2)


def _train_linearized(model, x, y, xt, lr, record, mean_over_outputs):
    """GD on the Taylor model f0 + J (theta - theta0), written with jvp; outputs at each step in ``record``."""
    params0 = {n: p.detach() for n, p in model.named_parameters()}
    delta = {n: torch.zeros_like(p) for n, p in params0.items()}
    scale = y.numel() if mean_over_outputs else y.shape[0]

    def f_lin(d, inputs):
        out, tangent = jvp(lambda p: functional_call(model, p, (inputs,)), (params0,), (d,))
        return out + tangent

    train, test = [], []
    for step in range(max(record) + 1):
        if step in record:
            train.append(f_lin(delta, x).detach().numpy())
            test.append(f_lin(delta, xt).detach().numpy())
        d = {n: v.clone().requires_grad_(True) for n, v in delta.items()}
        loss = 0.5 * ((f_lin(d, x) - y) ** 2).sum() / scale
        grads = torch.autograd.grad(loss, list(d.values()))
        delta = {n: v - lr * g for (n, v), g in zip(delta.items(), grads)}
    return np.array(train), np.array(test)


def _function_space_gd(ntk, cross, y, f0, g0, s, steps):
    """The GD recursion in function space, iterated: f <- f - s Theta (f - Y), f(x) <- f(x) - s Theta(x, X)(f - Y)."""
    f, g = f0.copy(), g0.copy()
    for _ in range(steps):
        residual = f - y
        f, g = f - s * ntk @ residual, g - s * cross @ residual
    return f, g


@pytest.mark.parametrize("k, reduction, stretch", [(1, "sum", 0.5), (1, "sum", 1.6), (2, "sum", 0.5), (2, "mean", 1.2)])
def test_linearized_gd_matches_training_the_taylor_model(k, reduction, stretch):
    """``stretch`` = lr lam_max/n(k): above 1 the top modes oscillate (1 < s lam < 2, negative base)."""
    torch.manual_seed(1)
    x, xt = torch.randn(20, 4, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64)
    y = torch.randn(20, k, dtype=torch.float64)
    model = _net(k)
    params = {n: p.detach() for n, p in model.named_parameters()}
    assert 300 < sum(p.numel() for p in params.values()) < 500
    j, jt = _jacobian(model, params, x).numpy(), _jacobian(model, params, xt).numpy()
    ntk, ntk_test = np.einsum("iap,jbp->ijab", j, j), np.einsum("iap,jbp->ijab", jt, j)
    with torch.no_grad():
        f0, g0 = model(x).numpy(), model(xt).numpy()
    norm = 20 * k if reduction == "mean" else 20
    lr = stretch * norm / np.linalg.eigvalsh(ntk.transpose(0, 2, 1, 3).reshape(20 * k, 20 * k))[-1]
    record = [0, 1, 7, 40]
    want_train, want_test = _train_linearized(model, x, y, xt, lr, record, reduction == "mean")
    kernel, cross = (ntk[:, :, 0, 0], ntk_test[:, :, 0, 0]) if k == 1 else (ntk, ntk_test)
    targets, init, init_test = (y.numpy()[:, 0], f0[:, 0], g0[:, 0]) if k == 1 else (y.numpy(), f0, g0)
    got_train, got_test = linearized_gd(kernel, targets, init, lr=lr, steps=np.array(record), ntk_test_train=cross,
                                        f0_test=init_test, reduction=reduction)
    assert got_train.shape == (4,) + targets.shape and got_test.shape == (4,) + init_test.shape
    np.testing.assert_allclose(got_train, want_train.reshape(got_train.shape), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got_test, want_test.reshape(got_test.shape), rtol=1e-10, atol=1e-12)
    one_train, one_test = linearized_gd(kernel, targets, init, lr=lr, steps=40, ntk_test_train=cross, f0_test=init_test,
                                        reduction=reduction)  # a scalar step count: no time axis
    np.testing.assert_allclose(one_test, got_test[-1], rtol=1e-12, atol=1e-14)
    assert one_train.shape == targets.shape


def test_shared_kernel_is_its_kronecker_form():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((12, 30))
    ntk, cross = a @ a.T / 30, rng.standard_normal((5, 30)) @ a.T / 30
    y, f0, g0 = rng.standard_normal((12, 3)), rng.standard_normal((12, 3)), rng.standard_normal((5, 3))
    for reduction in ("sum", "mean"):
        shared = linearized_gd(ntk, y, f0, lr=0.5, steps=[3, 7], ntk_test_train=cross, f0_test=g0, reduction=reduction)
        full = linearized_gd(np.einsum("ij,ab->ijab", ntk, np.eye(3)), y, f0, lr=0.5, steps=[3, 7], reduction=reduction,
                             ntk_test_train=np.einsum("ij,ab->ijab", cross, np.eye(3)), f0_test=g0)
        for s, f in zip(shared, full):
            np.testing.assert_allclose(s, f, rtol=1e-12, atol=1e-13)
        s = 0.5 / (12 * 3 if reduction == "mean" else 12)
        want = _function_space_gd(ntk, cross, y, f0, g0, s, 7)
        np.testing.assert_allclose(shared[0][1], want[0], rtol=1e-12)
        np.testing.assert_allclose(shared[1][1], want[1], rtol=1e-12)


def test_gradient_flow_is_the_matrix_exponential_and_the_small_step_limit():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((15, 40))
    ntk, cross = a @ a.T / 40, rng.standard_normal((6, 40)) @ a.T / 40
    y, f0, g0 = rng.standard_normal(15), rng.standard_normal(15), rng.standard_normal(6)
    lr, time = 2.0, 3.0
    flow = linearized_gd(ntk, y, f0, lr=lr, steps=time, ntk_test_train=cross, f0_test=g0, flow=True)
    decay = scipy.linalg.expm(-lr * time / 15 * ntk)
    np.testing.assert_allclose(flow[0], y + decay @ (f0 - y), rtol=1e-10)
    np.testing.assert_allclose(flow[1], g0 + cross @ np.linalg.solve(ntk, (np.eye(15) - decay) @ (y - f0)), rtol=1e-8)
    # discrete GD with lr/N for N T steps approaches the flow at first order: the error halves as N doubles
    errors = []
    for n_sub in (500, 1000, 2000):
        fine = linearized_gd(ntk, y, f0, lr=lr / n_sub, steps=int(time * n_sub), ntk_test_train=cross, f0_test=g0)
        errors.append(np.abs(fine[1] - flow[1]).max())
    assert errors[0] < 1e-2 * np.abs(flow[1]).max()
    np.testing.assert_allclose(errors[0] / errors[1], 2.0, rtol=0.02)
    np.testing.assert_allclose(errors[1] / errors[2], 2.0, rtol=0.02)


def test_kernel_regression_is_the_infinite_time_limit():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 40))
    ntk, cross = a @ a.T / 40, rng.standard_normal((4, 40)) @ a.T / 40
    y, f0, g0 = rng.standard_normal((10, 2)), rng.standard_normal((10, 2)), rng.standard_normal((4, 2))
    fit, pred = kernel_regression(ntk, y, cross, f0_train=f0, f0_test=g0)
    np.testing.assert_allclose(fit, y, rtol=1e-10)  # interpolation
    np.testing.assert_allclose(pred, g0 + cross @ np.linalg.solve(ntk, y - f0), rtol=1e-10)
    lr = 10 / np.linalg.eigvalsh(ntk)[-1]  # s lam_max = 1: a stable step
    limit = linearized_gd(ntk, y, f0, lr=lr, steps=10 ** 7, ntk_test_train=cross, f0_test=g0)
    np.testing.assert_allclose(limit[0], y, rtol=1e-9)
    np.testing.assert_allclose(limit[1], pred, rtol=1e-8)
    flow = linearized_gd(ntk, y, f0, lr=lr, steps=1e9, ntk_test_train=cross, f0_test=g0, flow=True)
    np.testing.assert_allclose(flow[1], pred, rtol=1e-8)
    # ridge, added as is; a full (n, n, k, k) kernel with identity output blocks gives the same
    ridge_fit, ridge_pred = kernel_regression(ntk, y, cross, ridge=0.3)
    np.testing.assert_allclose(ridge_pred, cross @ np.linalg.solve(ntk + 0.3 * np.eye(10), y), rtol=1e-12)
    np.testing.assert_allclose(ridge_fit, ntk @ np.linalg.solve(ntk + 0.3 * np.eye(10), y), rtol=1e-12)
    full_fit, full_pred = kernel_regression(np.einsum("ij,ab->ijab", ntk, np.eye(2)), y,
                                            np.einsum("ij,ab->ijab", cross, np.eye(2)), ridge=0.3)
    np.testing.assert_allclose(full_pred, ridge_pred, rtol=1e-12)
    np.testing.assert_allclose(full_fit, ridge_fit, rtol=1e-12)
    assert kernel_regression(ntk, y[:, 0])[1] is None and kernel_regression(ntk, y[:, 0])[0].shape == (10,)


def test_singular_kernels():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((8, 3))
    low = a @ a.T  # rank 3 of 8
    cross = rng.standard_normal((4, 8))  # not in the kernel's row space: null modes move test outputs too
    y, f0, g0 = rng.standard_normal(8), rng.standard_normal(8), rng.standard_normal(4)
    lr = 8 / np.linalg.eigvalsh(low)[-1]
    for steps in (1, 13, 200):
        got = linearized_gd(low, y, f0, lr=lr, steps=steps, ntk_test_train=cross, f0_test=g0)
        want = _function_space_gd(low, cross, y, f0, g0, lr / 8, steps)  # null modes: gain exactly s T
        np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-9, atol=1e-10)
    # ridge-less regression on a singular kernel: the minimum-norm interpolant, pinv(K)
    fit, pred = kernel_regression(low, y, low[:4])
    np.testing.assert_allclose(pred, low[:4] @ np.linalg.pinv(low) @ y, rtol=1e-8, atol=1e-10)


def test_bad_input_is_a_config_error():
    ntk = np.diag([1.0, 30.0])
    with pytest.raises(ConfigError, match=r"lr=1 is unstable .* use lr < 0\.133333"):
        linearized_gd(ntk, np.zeros(2), np.ones(2), lr=1.0, steps=5)
    linearized_gd(ntk, np.zeros(2), np.ones(2), lr=0.1333, steps=5)  # just below 2 n/lam_max = 4/30: fine
    linearized_gd(ntk, np.zeros(2), np.ones(2), lr=1.0, steps=5, flow=True)  # the flow has no step-size limit
    with pytest.raises(ConfigError, match=r"use lr < 0\.266667"):  # mean over k = 2 outputs: 2 n k/lam_max
        linearized_gd(ntk, np.zeros((2, 2)), np.ones((2, 2)), lr=1.0, steps=5, reduction="mean")
    with pytest.raises(ConfigError, match=r"ntk_train has shape \(3, 3\)"):
        linearized_gd(np.eye(3), np.zeros(2), np.ones(2), lr=0.1, steps=5)
    with pytest.raises(ConfigError, match="f0_train"):
        linearized_gd(np.eye(2), np.zeros((2, 2)), np.ones((2, 3)), lr=0.1, steps=5)
    with pytest.raises(ConfigError, match="f0_test is required"):
        linearized_gd(np.eye(2), np.zeros(2), np.ones(2), lr=0.1, steps=5, ntk_test_train=np.ones((1, 2)))
    with pytest.raises(ConfigError, match="same form"):
        linearized_gd(np.eye(2), np.zeros((2, 2)), np.ones((2, 2)), lr=0.1, steps=5, ntk_test_train=np.ones((1, 2, 2, 2)),
                      f0_test=np.ones((1, 2)))
    for steps in (-1, 2.5, [[1, 2]], True, np.inf):
        with pytest.raises(ConfigError, match="steps"):
            linearized_gd(np.eye(2), np.zeros(2), np.ones(2), lr=0.1, steps=steps)
    with pytest.raises(ConfigError, match="lr"):
        linearized_gd(np.eye(2), np.zeros(2), np.ones(2), lr=-0.1, steps=5)
    with pytest.raises(ConfigError, match="not symmetric"):
        linearized_gd(np.array([[1.0, 0.5], [0.0, 1.0]]), np.zeros(2), np.ones(2), lr=0.1, steps=5)
    with pytest.raises(ConfigError, match="positive semidefinite"):
        linearized_gd(np.diag([1.0, -1.0]), np.zeros(2), np.ones(2), lr=0.1, steps=5)
    with pytest.raises(ConfigError, match="ridge"):
        kernel_regression(np.eye(2), np.zeros(2), ridge=-1.0)
    with pytest.raises(ConfigError, match="f0_test is required"):
        kernel_regression(np.eye(2), np.zeros(2), np.ones((1, 2)), f0_train=np.ones(2))

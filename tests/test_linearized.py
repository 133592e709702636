"""Linearized GD and kernel regression against explicitly training the linearized network (torch.func.jvp)."""
import numpy as np
import pytest
import torch
from torch.func import functional_call, jacrev, jvp

from lmech.systems import ConfigError
from lmech.theory.linearized import kernel_regression, linearized_gd


def _net(k):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, k)).double()


def _jacobian(model, params, x):
    """(n, k, P) Jacobian of the outputs, by jacrev over the parameter dict (independent of lmech's eNTK)."""
    jac = jacrev(lambda p: functional_call(model, p, (x,)))(params)
    return torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac.values()], dim=2)


def _train_linearized(model, x, y, xt, lr, steps, mean_over_outputs):
    """GD on the Taylor model f0 + J (theta - theta0), written with jvp, returning outputs after ``steps``."""
    params0 = {n: p.detach() for n, p in model.named_parameters()}
    delta = {n: torch.zeros_like(p) for n, p in params0.items()}
    scale = y.numel() if mean_over_outputs else y.shape[0]

    def f_lin(d, inputs):
        out, tangent = jvp(lambda p: functional_call(model, p, (inputs,)), (params0,), (d,))
        return out + tangent

    for _ in range(steps):
        d = {n: v.clone().requires_grad_(True) for n, v in delta.items()}
        loss = 0.5 * ((f_lin(d, x) - y) ** 2).sum() / scale
        grads = torch.autograd.grad(loss, list(d.values()))
        delta = {n: v - lr * g for (n, v), g in zip(delta.items(), grads)}
    return f_lin(delta, x).detach().numpy(), f_lin(delta, xt).detach().numpy()


@pytest.mark.parametrize("k, reduction", [(1, "sum"), (2, "sum"), (2, "mean")])
def test_linearized_gd_matches_training_the_taylor_model(k, reduction):
    torch.manual_seed(1)
    x, xt = torch.randn(20, 3, dtype=torch.float64), torch.randn(10, 3, dtype=torch.float64)
    y = torch.randn(20, k, dtype=torch.float64)
    model = _net(k)
    params = {n: p.detach() for n, p in model.named_parameters()}
    j, jt = _jacobian(model, params, x).numpy(), _jacobian(model, params, xt).numpy()
    ntk = np.einsum("iap,jbp->ijab", j, j)
    ntk_test = np.einsum("iap,jbp->ijab", jt, j)
    with torch.no_grad():
        f0, g0 = model(x).numpy(), model(xt).numpy()
    lr, steps = 0.3, 40
    want_train, want_test = _train_linearized(model, x, y, xt, lr, steps, reduction == "mean")
    got_train, got_test = linearized_gd(ntk, y.numpy(), f0, lr=lr, steps=steps, ntk_test_train=ntk_test, f0_test=g0,
                                        reduction=reduction)
    np.testing.assert_allclose(got_train, want_train, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(got_test, want_test, rtol=1e-9, atol=1e-10)
    # a vector of steps gives the trajectory; step 0 is the init
    traj_train, traj_test = linearized_gd(ntk, y.numpy(), f0, lr=lr, steps=np.array([0, steps]), ntk_test_train=ntk_test,
                                          f0_test=g0, reduction=reduction)
    np.testing.assert_allclose(traj_train[0], f0, atol=1e-12)
    np.testing.assert_allclose(traj_test[0], g0, atol=1e-12)
    np.testing.assert_allclose(traj_test[1], want_test, rtol=1e-9, atol=1e-10)


def test_shared_kernel_equals_its_kronecker_form_and_flow_is_the_small_step_limit():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((12, 30))
    ntk, cross = a @ a.T / 30, rng.standard_normal((5, 30)) @ a.T / 30
    y, f0, g0 = rng.standard_normal((12, 2)), rng.standard_normal((12, 2)), rng.standard_normal((5, 2))
    shared = linearized_gd(ntk, y, f0, lr=0.5, steps=7, ntk_test_train=cross, f0_test=g0)
    full = linearized_gd(np.einsum("ij,ab->ijab", ntk, np.eye(2)), y, f0, lr=0.5, steps=7,
                         ntk_test_train=np.einsum("ij,ab->ijab", cross, np.eye(2)), f0_test=g0)
    np.testing.assert_allclose(shared[1], full[1], rtol=1e-12)
    flow = linearized_gd(ntk, y, f0, lr=2.0, steps=3, ntk_test_train=cross, f0_test=g0, flow=True)
    fine = linearized_gd(ntk, y, f0, lr=2.0 / 3000, steps=3 * 3000, ntk_test_train=cross, f0_test=g0)
    np.testing.assert_allclose(flow[1], fine[1], rtol=1e-3)


def test_infinite_time_limit_is_kernel_regression_even_for_singular_kernels():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((10, 40))
    ntk, cross = a @ a.T / 40, rng.standard_normal((4, 40)) @ a.T / 40
    y, f0, g0 = rng.standard_normal(10), rng.standard_normal(10), rng.standard_normal(4)
    limit = linearized_gd(ntk, y, f0, lr=1.0, steps=10 ** 7, ntk_test_train=cross, f0_test=g0)
    fit, pred = kernel_regression(ntk, y, cross, f0_train=f0, f0_test=g0)
    np.testing.assert_allclose(limit[0], y, atol=1e-8)
    np.testing.assert_allclose(pred, g0 + cross @ np.linalg.solve(ntk, y - f0), rtol=1e-8)
    np.testing.assert_allclose(limit[1], pred, rtol=1e-6)
    ridge_fit, ridge_pred = kernel_regression(ntk, y, cross, ridge=0.3)
    np.testing.assert_allclose(ridge_pred, cross @ np.linalg.solve(ntk + 0.3 * np.eye(10), y), rtol=1e-12)
    # rank-deficient kernel: a zero mode gains exactly lr * T / n in the test prediction, never NaN
    low = a[:, :3] @ a[:, :3].T
    out = linearized_gd(low, y, f0, lr=0.1, steps=50, ntk_test_train=cross, f0_test=g0)[1]
    assert np.all(np.isfinite(out))


def test_unstable_step_and_bad_shapes_are_config_errors():
    ntk = np.diag([1.0, 30.0])
    with pytest.raises(ConfigError, match="lr=1 is unstable"):
        linearized_gd(ntk, np.zeros(2), np.ones(2), lr=1.0, steps=5)
    with pytest.raises(ConfigError, match="kernel of shape"):
        linearized_gd(np.eye(3), np.zeros(2), np.ones(2), lr=0.1, steps=5)
    with pytest.raises(ConfigError, match="f0_test is required"):
        linearized_gd(np.eye(2), np.zeros(2), np.ones(2), lr=0.1, steps=5, ntk_test_train=np.ones((1, 2)))

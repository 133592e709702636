"""The central flow (lmech.theory.central_flow) against hand-derived solutions, finite differences and GD; the
central-flow law at quick scale and on a distorted measurement."""
import numpy as np
import pytest
import torch
from conftest import distorted
from torch import nn

from lmech.laws import FAIL, LAWS, PASS
from lmech.observables._params import FlatParams, loss_of_params
from lmech.systems import MLP, Digits, Task, build_model
from lmech.theory.central_flow import central_flow, moving_average, sharpness_gradient, solve_lcp


@pytest.fixture(autouse=True)
def _one_thread():
    """The flow takes many small tensor steps, where a second thread only adds synchronization (3x slower)."""
    torch.set_num_threads(1)


def _digits_net(n: int, width: int, init_scale: float = 1.0):
    data, task = Digits(n_train=n, n_test=0).load(), Task("mse")
    model = build_model(MLP(width=width, depth=1, activation="tanh"), data, init="normal", init_scale=init_scale, seed=0,
                        dtype=torch.float64)
    x = torch.as_tensor(data.x_train)
    return model, task.loss_fn, x, task.targets(torch.as_tensor(data.y_train), 10, torch.float64)


class Toy(nn.Module):
    """``L(a, b) = 1/2 b a^2 + V(b)``: at ``a = 0`` the Hessian is ``diag(b, V''(b))`` and ``S = b`` (``b > V''``)."""

    def __init__(self, a: float, b: float, potential) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor([a], dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor([b], dtype=torch.float64))
        self.potential = potential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.b * self.a ** 2 + self.potential(self.b)


def _toy_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return output.sum()


NONE = torch.zeros(1, 1, dtype=torch.float64)


def _gd(model: nn.Module, loss_fn, x, y, eta: float, steps: int) -> tuple[np.ndarray, torch.Tensor]:
    """Plain GD on the flat parameters: the loss before each step and after the last, and the final parameters."""
    flat = FlatParams(model)
    loss, w, out = loss_of_params(model, loss_fn, x, y, flat), flat.vector.clone(), []
    for _ in range(steps + 1):
        w = w.detach().requires_grad_(True)
        value = loss(w)
        out.append(float(value.detach()))
        w = w - eta * torch.autograd.grad(value, w)[0]
    return np.array(out), w.detach()


def test_below_threshold_central_flow_is_gradient_flow_and_gd_differs_at_first_order_in_eta():
    model, loss_fn, x, y = _digits_net(50, 8, init_scale=0.5)
    gaps = []
    for eta, steps in ((0.02, 25), (0.01, 50)):  # the same flow time eta * steps = 0.5
        cf = central_flow(model, loss_fn, x, y, eta, steps, dt=0.5)
        gf = central_flow(model, loss_fn, x, y, eta, steps, dt=0.5, gradient_flow=True)
        assert cf.sharpness.max() < 0.8 * 2 / eta and (cf.sigma2 == 0).all()
        np.testing.assert_allclose(cf.loss, gf.loss, rtol=1e-6)
        np.testing.assert_allclose(cf.time_averaged_loss, gf.loss, rtol=1e-6)
        gaps.append(np.max(np.abs(_gd(model, loss_fn, x, y, eta, steps)[0] - gf.loss)))
    assert gaps[1] < 0.005 * gf.loss[-1]
    assert gaps[0] / gaps[1] == pytest.approx(2.0, rel=0.15)  # O(eta): halving eta halves the gap


def test_approaching_but_not_reaching_the_threshold_adds_no_oscillation():
    """``V = kappa/2 (b - c)^2``: S = b relaxes to c = 0.98 x 2/eta; grad S is computed (S > 0.95 x 2/eta) but the
    complementarity problem keeps sigma^2 = 0, so the central flow is gradient flow: b(t) = c + (b0 - c) e^{-eta kappa t}."""
    eta, kappa, c = 0.2, 0.5, 0.98 * 10
    model = Toy(0.0, 5.0, lambda b: 0.5 * kappa * (b - c) ** 2)
    cf = central_flow(model, _toy_loss, NONE, NONE, eta, 100, dt=0.125)
    gf = central_flow(model, _toy_loss, NONE, NONE, eta, 100, dt=0.125, gradient_flow=True)
    assert cf.sharpness[-1, 0] > 0.97 * 2 / eta and (cf.sigma2 == 0).all()
    np.testing.assert_allclose(cf.sharpness, gf.sharpness, rtol=1e-9)
    # Euler with dt = 1/8 on b' = -eta kappa (b - c): factor (1 - eta kappa / 8)^8 per step
    b = c + (5.0 - c) * (1 - eta * kappa / 8) ** (8 * cf.times)
    np.testing.assert_allclose(cf.sharpness[:, 0], b, rtol=1e-4)
    np.testing.assert_allclose(b, c + (5.0 - c) * np.exp(-eta * kappa * cf.times), rtol=2e-3)


def test_sharpness_gradient_matches_a_finite_difference_of_the_top_eigenvalue():
    model, loss_fn, x, y = _digits_net(40, 4)
    flat = FlatParams(model)
    loss, w = loss_of_params(model, loss_fn, x, y, flat), flat.vector

    def top(theta):
        values, vectors = torch.linalg.eigh(torch.func.hessian(loss)(theta))
        return float(values[-1]), vectors[:, -1]

    s0, u = top(w)
    v = torch.randn(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype)
    h = 1e-4
    finite = (top(w + h * v)[0] - top(w - h * v)[0]) / (2 * h)
    assert float(sharpness_gradient(loss, w, u) @ v) == pytest.approx(finite, rel=1e-5)


def test_the_flows_shared_point_gives_sharpness_and_its_gradient_exactly():
    """One gradient graph per substep serves the gradient, the eigen-solve and the sharpness gradient: each equals
    its stand-alone computation (lmech.sharpness from the same warm start, autograd's gradient, sharpness_gradient)."""
    from lmech.observables.sharpness import sharpness
    from lmech.theory.central_flow import _Point

    model, loss_fn, x, y = _digits_net(40, 4)
    flat = FlatParams(model)
    loss, w = loss_of_params(model, loss_fn, x, y, flat), flat.vector
    point = _Point(loss, w)
    cold, alone = point.eigen(2, 1e-6, None), sharpness(model, loss_fn, x, y, 2, tol=1e-6)
    warm = point.eigen(2, 1e-6, cold)
    assert torch.equal(torch.as_tensor(cold.values), torch.as_tensor(alone.values)) and cold.matvecs == alone.matvecs
    assert torch.equal(torch.as_tensor(warm.values), torch.as_tensor(sharpness(model, loss_fn, x, y, 2, tol=1e-6,
                                                                               warm_start=cold).values))
    with torch.enable_grad():
        t = w.detach().requires_grad_(True)
        assert torch.equal(point.grad, torch.autograd.grad(loss(t), t)[0])
    u = cold.vectors[0]
    assert torch.equal(point.sharpness_gradient(u), sharpness_gradient(loss, w, u))
    assert torch.equal(point.sharpness_gradient(u), point.sharpness_gradient(u))  # the graph is kept for reuse


def test_toy_central_flow_holds_the_threshold_with_the_hand_derived_oscillation():
    """``V = kappa/2 (b - c)^2`` with ``c > 2/eta``, ``a = 0``: gradient flow sharpens, b = c + (b0 - c) e^{-eta kappa t},
    and crosses 2/eta at t* = ln((c - b0) / (c - 2/eta)) / (eta kappa). Then grad S = (0, 1) and
    sigma^2 = 2 <-grad L, grad S> / ||grad S||^2 = -2 V'(2/eta) = 2 kappa (c - 2/eta) cancels the drift: b = 2/eta, and
    the time-averaged loss is V(2/eta) + sigma^2 / eta."""
    eta, kappa, c, b0 = 0.2, 0.5, 12.0, 6.0
    model = Toy(0.0, b0, lambda b: 0.5 * kappa * (b - c) ** 2)
    cf = central_flow(model, _toy_loss, NONE, NONE, eta, 40)
    t_star = np.log((c - b0) / (c - 2 / eta)) / (eta * kappa)  # 10.99 steps
    sigma2 = 2 * kappa * (c - 2 / eta)  # = 2
    before, after = cf.times < t_star, cf.times > t_star + 1
    b = c + (b0 - c) * (1 - eta * kappa / 4) ** (4 * cf.times[before])  # Euler, dt = 1/4
    np.testing.assert_allclose(cf.sharpness[before, 0], b, rtol=1e-6)
    np.testing.assert_allclose(b, c + (b0 - c) * np.exp(-eta * kappa * cf.times[before]), rtol=5e-3)
    np.testing.assert_allclose(cf.sigma2[before, 0], 0.0, atol=1e-9)
    np.testing.assert_allclose(cf.sharpness[after, 0], 2 / eta, rtol=1e-6)
    np.testing.assert_allclose(cf.sigma2[after, 0], sigma2, rtol=1e-6)
    np.testing.assert_allclose(cf.time_averaged_loss[after], 0.5 * kappa * (2 / eta - c) ** 2 + sigma2 / eta, rtol=1e-6)
    # ||grad L(w)||^2 = V'(2/eta)^2 at a = 0, plus S^2 sigma^2 = 4 sigma^2 / eta^2
    np.testing.assert_allclose(cf.time_averaged_grad_norm_sq[after], (kappa * (2 / eta - c)) ** 2 + 4 * sigma2 / eta ** 2,
                               rtol=1e-6)
    # two tracked directions: the second eigenvalue (kappa) stays far below 2/eta and carries no oscillation
    two = central_flow(model, _toy_loss, NONE, NONE, eta, 40, k=2)
    np.testing.assert_allclose(two.sigma2, np.stack([cf.sigma2[:, 0], 0 * cf.times], axis=1), atol=1e-9)
    np.testing.assert_allclose(two.sharpness[:, 1], kappa, rtol=1e-9)
    # GD from a small a settles on the period-2 orbit b = 2/eta, a = +-sqrt(sigma^2): the flow's oscillation and loss
    losses, w = _gd(Toy(1e-3, b0, lambda b: 0.5 * kappa * (b - c) ** 2), _toy_loss, NONE, NONE, eta, 2000)
    assert float(w[0] ** 2) == pytest.approx(sigma2, rel=1e-6) and float(w[1]) == pytest.approx(2 / eta, rel=1e-6)
    assert np.mean(losses[-100:]) == pytest.approx(cf.time_averaged_loss[-1], rel=1e-6)


def test_solve_lcp_and_moving_average_by_hand():
    np.testing.assert_allclose(solve_lcp(np.array([-1.0]), np.array([[0.5]])), [2.0])
    np.testing.assert_allclose(solve_lcp(np.array([1.0]), np.array([[0.5]])), [0.0])
    # two coupled directions, one active: s = (1, 0) gives q = (0, 2 - 0.5) >= 0
    np.testing.assert_allclose(solve_lcp(np.array([-1.0, 2.0]), np.array([[1.0, -0.5], [-0.5, 1.0]])), [1.0, 0.0])
    centre, mean = moving_average(np.arange(6), np.array([0, 2, 0, 2, 0, 2.0]), 2)
    np.testing.assert_allclose(centre, [0.5, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(mean, 1.0)


def test_central_flow_law_passes_at_quick_scale_and_fails_on_a_distorted_loss(quick_runs):
    import lmech.laws.central_flow  # noqa: F401  (registration)

    law = LAWS["central-flow"]
    runs = quick_runs[law.id]
    verdict = law.evaluate(runs, "quick")
    assert verdict.status == PASS, verdict.summary
    checks = {c.name: c.value for c in verdict.checks}
    assert checks["eta=0.2: gradient flow max S_GF / (2/eta)"] > 1.5  # gradient flow sharpens far past 2/eta
    assert law.evaluate(distorted(runs, "loss/train", lambda key, v: 1.3 * v), "quick").status == FAIL

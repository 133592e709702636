"""The GD-trained infinite ensemble against closed forms (t = 0, one training point, t = inf as a GP posterior), an
exact second algorithm (the mean and covariance propagated step by step through the linear GD map), weight-space
Laplace, and its error messages."""
import numpy as np
import pytest

from lmech.systems import ConfigError
from lmech.theory import ensemble_predict, linearized_laplace_variance, nngp_ntk, ntk_predict


def _kernels(n=12, m=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n + m, 4))
    nngp, ntk = nngp_ntk(x, depth=2, b_std=0.1)
    split = lambda k: ({"train": k[:n, :n], "cross": k[n:, :n], "test": k[n:, n:]})  # noqa: E731
    return split(nngp), split(ntk), rng.standard_normal(n), x[:n], x[n:]


def _kernel_args(nngp, ntk):
    return ({"nngp": nngp["train"], "ntk": ntk["train"]}, {"nngp": nngp["cross"], "ntk": ntk["cross"]},
            {"nngp": nngp["test"], "ntk": ntk["test"]})


@pytest.mark.parametrize("get", ["nngp", "ntk", "ntkgp"])
def test_at_t_zero_the_ensemble_is_the_prior(get):
    nngp, ntk, y, _, _ = _kernels()
    train, cross, test = _kernel_args(nngp, ntk)
    p = ensemble_predict(train, y, cross, test, t=0.0, get=get)
    np.testing.assert_allclose(p.mean, 0.0, atol=1e-14)
    np.testing.assert_allclose(p.cov, (ntk if get == "ntkgp" else nngp)["test"], atol=1e-12)


def test_one_training_point_closed_form():
    theta, kappa, y, lr, t = 2.0, 1.5, 0.7, 0.3, 4.0
    theta_x, kappa_x, kappa_xx = np.array([[0.8], [1.1]]), np.array([[0.6], [0.9]]), np.array([[1.2, 0.5],
                                                                                               [0.5, 1.4]])
    p = ensemble_predict({"nngp": [[kappa]], "ntk": [[theta]]}, [y], {"nngp": kappa_x, "ntk": theta_x},
                         {"nngp": kappa_xx}, t=t, learning_rate=lr)
    a = -np.expm1(-theta * t * lr) / theta  # N = 1
    np.testing.assert_allclose(p.mean, theta_x[:, 0] * a * y, rtol=1e-14)
    expected = kappa_xx + a ** 2 * kappa * theta_x @ theta_x.T - a * (theta_x @ kappa_x.T + kappa_x @ theta_x.T)
    np.testing.assert_allclose(p.cov, expected, rtol=1e-13)


def test_infinite_time_is_the_gp_posterior():
    nngp, ntk, y, _, _ = _kernels()
    train, cross, test = _kernel_args(nngp, ntk)
    K, T = nngp["train"], ntk["train"]
    for get, prior, dyn in (("nngp", nngp, K), ("ntkgp", ntk, T)):
        p = ensemble_predict(train, y, cross, test, t=np.inf, get=get)
        c = prior["cross"]
        np.testing.assert_allclose(p.mean, c @ np.linalg.solve(dyn, y), rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(p.cov, prior["test"] - c @ np.linalg.solve(dyn, c.T), atol=1e-8)
    p = ensemble_predict(train, y, cross, test, t=np.inf, get="ntk")
    a = np.linalg.solve(T, ntk["cross"].T)  # Theta^-1 Theta_Xx
    np.testing.assert_allclose(p.mean, ntk["cross"] @ np.linalg.solve(T, y), rtol=1e-7, atol=1e-9)
    expected = nngp["test"] + a.T @ K @ a - a.T @ nngp["cross"].T - nngp["cross"] @ a
    np.testing.assert_allclose(p.cov, expected, atol=1e-7)


@pytest.mark.parametrize("get", ["nngp", "ntk", "ntkgp"])
def test_discrete_steps_match_the_mean_and_covariance_propagated_through_gd(get):
    """Second algorithm: z = (f(X), f(x)) starts as GP(0, prior) and each GD step is the affine map
    f(X) -= s Theta (f(X) - Y), f(x) -= s Theta_xX (f(X) - Y); mean and covariance follow it exactly."""
    nngp, ntk, y, _, _ = _kernels()
    n, m = len(y), len(nngp["test"])
    dyn = nngp if get == "nngp" else ntk
    prior = ntk if get == "ntkgp" else nngp
    joint = np.block([[prior["train"], prior["cross"].T], [prior["cross"], prior["test"]]])
    lr, steps = 0.9, np.arange(0, 31, 5)
    s = lr / n
    step = np.eye(n + m)
    step[:, :n] -= s * np.vstack([dyn["train"], dyn["cross"]])
    shift = s * np.concatenate([dyn["train"] @ y, dyn["cross"] @ y])
    mean, cov, means, covs = np.zeros(n + m), joint, [], []
    for i in range(steps[-1] + 1):
        if i in steps:
            means.append(mean[n:])
            covs.append(cov[n:, n:])
        mean, cov = step @ mean + shift, step @ cov @ step.T
    train, cross, test = _kernel_args(nngp, ntk)
    p = ensemble_predict(train, y, cross, test, t=steps, learning_rate=lr, get=get, flow=False)
    np.testing.assert_allclose(p.mean, np.array(means), atol=1e-10)
    np.testing.assert_allclose(p.cov, np.array(covs), atol=1e-10)


def test_outputs_share_the_kernel_and_the_mean_normalization_divides_by_outputs():
    nngp, ntk, _, _, _ = _kernels()
    y = np.random.default_rng(3).standard_normal((12, 3))
    train, cross, test = _kernel_args(nngp, ntk)
    p = ensemble_predict(train, y, cross, test, t=[7.0], learning_rate=0.5)
    for j in range(3):  # one output at a third of the rate: the same time scale
        one = ensemble_predict(train, y[:, j], cross, test, t=[7.0], learning_rate=0.5 / 3)
        np.testing.assert_allclose(p.mean[..., j], one.mean, rtol=1e-12)
        np.testing.assert_allclose(p.cov, one.cov, rtol=1e-12)
    summed = ensemble_predict(train, y, cross, None, t=[7.0], learning_rate=0.5 / 3, reduction="sum")
    np.testing.assert_allclose(summed.mean, p.mean, rtol=1e-12)


def test_relative_diag_reg_scales_with_the_mean_trace_and_flow_is_the_small_step_limit():
    nngp, ntk, y, _, _ = _kernels()
    train, cross, test = _kernel_args(nngp, ntk)
    scale = np.trace(ntk["train"]) / len(y)
    rel = ensemble_predict(train, y, cross, test, t=np.inf, diag_reg=0.1)
    absolute = ensemble_predict(train, y, cross, test, t=np.inf, diag_reg=0.1 * scale, diag_reg_absolute_scale=True)
    np.testing.assert_allclose(rel.cov, absolute.cov, rtol=1e-12)
    flow = ensemble_predict(train, y, cross, test, t=2000.0, learning_rate=0.01)
    steps = ensemble_predict(train, y, cross, test, t=2000.0, learning_rate=0.01, flow=False)
    np.testing.assert_allclose(steps.mean, flow.mean, rtol=2e-3, atol=1e-6)


def test_ntk_predict_uses_the_analytic_kernels():
    nngp, ntk, y, x, xt = _kernels()
    p = ntk_predict(x, y, xt, t=[3.0, np.inf], depth=2, b_std=0.1)
    train, cross, test = _kernel_args(nngp, ntk)
    q = ensemble_predict(train, y, cross, test, t=[3.0, np.inf])
    np.testing.assert_allclose(p.mean, q.mean, rtol=1e-12)
    np.testing.assert_allclose(p.cov, q.cov, rtol=1e-12, atol=1e-14)
    assert ntk_predict(x, y, xt, t=1.0, depth=2, compute_cov=False).cov is None


def test_linearized_laplace_equals_the_weight_space_posterior():
    rng = np.random.default_rng(4)
    n, m, p, delta, noise = 15, 6, 40, 2.0, 0.3
    jac = rng.standard_normal((n + m, p))
    theta = jac @ jac.T
    var = linearized_laplace_variance(theta[:n, :n], theta[n:, :n], theta[n:, n:], prior_precision=delta,
                                      noise_variance=noise)
    posterior = np.linalg.inv(jac[:n].T @ jac[:n] / noise + delta * np.eye(p))  # GGN posterior over weights
    np.testing.assert_allclose(var, np.diag(jac[n:] @ posterior @ jac[n:].T), rtol=1e-9)


@pytest.mark.parametrize("change, message", [
    (lambda a: a | {"t": -1.0}, "t=-1.0"),
    (lambda a: a | {"t": 2.5, "flow": False}, "whole numbers"),
    (lambda a: a | {"t": 1.0, "flow": False, "learning_rate": 1e6}, "unstable"),
    (lambda a: a | {"get": "gp"}, "get="),
    (lambda a: a | {"k_train_train": {"nngp": a["k_train_train"]["nngp"]}}, "ntk kernel"),
    (lambda a: a | {"k_train_train": {"nngp": np.triu(a["k_train_train"]["nngp"]),
                                      "ntk": a["k_train_train"]["ntk"]}}, "not symmetric"),
    (lambda a: a | {"k_train_train": {"nngp": a["k_train_train"]["nngp"], "ntk": -a["k_train_train"]["ntk"]}},
     "not positive semidefinite"),
    (lambda a: a | {"k_test_train": {"nngp": a["k_test_train"]["nngp"][:, :3], "ntk": a["k_test_train"]["ntk"]}},
     "expected"),
    (lambda a: a | {"y_train": np.zeros(5)}, "y_train"),
])
def test_bad_input_names_the_problem(change, message):
    nngp, ntk, y, _, _ = _kernels()
    train, cross, test = _kernel_args(nngp, ntk)
    args = change({"k_train_train": train, "y_train": y, "k_test_train": cross, "k_test_test": test, "t": 1.0})
    with pytest.raises(ConfigError, match=message):
        ensemble_predict(**args)

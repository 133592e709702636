"""Gradient noise scale: unbiased against closed forms (linear regression), exact against a dense-Hessian loop."""
import numpy as np
import pytest
import torch
from torch import nn

from lmech.observables import NoiseScale, gradient_noise_scale, per_example_grads
from lmech.observables._params import FlatParams
from lmech.observables.noise import _affine_moments
from lmech.systems.networks import MLPNet


def _half_sq(out, y):
    return 0.5 * (out - y).pow(2).sum(1).mean()


def _linear_population(d: int, sigma: float, seed: int = 0):
    """x ~ N(0, C), y = x.w* + sigma eps, model w: residual r = x.delta - sigma eps, g = x r. By Isserlis,
    G = C delta, Sigma = (delta^T C delta + sigma^2) C + C delta delta^T C, H = C."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((d, d)) / np.sqrt(d)
    cov = a @ a.T + 0.2 * np.eye(d)
    w_star, w = rng.standard_normal(d), rng.standard_normal(d)
    delta = w - w_star
    g = cov @ delta
    sigma_mat = (delta @ cov @ delta + sigma ** 2) * cov + np.outer(g, g)
    return cov, w_star, w, {"grad_sq": g @ g, "trace_sigma": np.trace(sigma_mat),
                            "trace_h_sigma": np.trace(cov @ sigma_mat), "g_h_g": g @ cov @ g}


def _linear_draws(d, n, draws, sigma, seed=1):
    cov, w_star, w, truth = _linear_population(d, sigma)
    model = nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(w)[None])
    chol = np.linalg.cholesky(cov)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(draws):
        x = rng.standard_normal((n, d)) @ chol.T
        y = x @ w_star + sigma * rng.standard_normal(n)
        out.append((model, torch.as_tensor(x), torch.as_tensor(y)[:, None]))
    return truth, out


def test_unbiased_on_linear_regression_where_the_plug_in_is_biased():
    truth, draws = _linear_draws(d=8, n=10, draws=400, sigma=0.5)
    ests = [gradient_noise_scale(m, _half_sq, x, y, hessian=False) for m, x, y in draws]
    for name in ("trace_sigma", "grad_sq"):
        vals = np.array([getattr(e, name) for e in ests])
        se = vals.std() / np.sqrt(len(vals))
        assert abs(vals.mean() - truth[name]) < 4 * se, name
    # the plug-in |gbar|^2 is off by tr Sigma / n: over 4 standard errors at n = 10
    plug_in = np.array([e.grad_sq + e.trace_sigma / e.n for e in ests])
    assert plug_in.mean() - truth["grad_sq"] > 4 * plug_in.std() / np.sqrt(len(plug_in))
    assert plug_in.mean() - truth["grad_sq"] == pytest.approx(truth["trace_sigma"] / 10, rel=0.3)


def test_hessian_terms_on_linear_regression_and_b_simple_at_large_n():
    truth, draws = _linear_draws(d=8, n=400, draws=40, sigma=0.5, seed=2)
    ests = [gradient_noise_scale(m, _half_sq, x, y, hessian_samples=64) for m, x, y in draws]
    for name in ("trace_h_sigma", "g_h_g"):  # H is the sample Hessian on the same examples: bias O(1/n), ~1% here
        vals = np.array([getattr(e, name) for e in ests])
        se = vals.std() / np.sqrt(len(vals))
        assert abs(vals.mean() - truth[name]) < 4 * se + 0.02 * truth[name], name
    truth, draws = _linear_draws(d=50, n=10_000, draws=3, sigma=0.5, seed=3)
    b_true = truth["trace_sigma"] / truth["grad_sq"]
    for m, x, y in draws:
        est = gradient_noise_scale(m, _half_sq, x, y, hessian=False)
        assert est.b_simple == pytest.approx(b_true, rel=0.05)
        assert abs(est.b_simple - b_true) < 4 * est.b_simple_stderr


def _mlp_problem(n=12, seed=0, kind="linear"):
    """``linear``: nn.Linear layers; ``dense``: lmech's NTK-parameterized MLP with an output multiplier (both take the
    closed-form per-example norms); ``layernorm``: a trainable LayerNorm forces the vmap path."""
    torch.manual_seed(seed)
    if kind == "dense":
        model = MLPNet([5, 7, 3], "tanh", True, 0.7, True).double()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_()
    else:
        norm = [nn.LayerNorm(7)] if kind == "layernorm" else []
        model = nn.Sequential(nn.Linear(5, 7), *norm, nn.Tanh(), nn.Linear(7, 3)).double()
    return model, torch.randn(n, 5, dtype=torch.float64), torch.randn(n, 3, dtype=torch.float64)


def _loop_grads(model, x, y):
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        _half_sq(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    return torch.stack(rows)


def _dense_hessian(model, x, y):
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in params])

    def loss(theta):
        chunks = dict(zip(names, [c.view(p.shape) for c, p in zip(theta.split([p.numel() for p in params]), params)]))
        return _half_sq(torch.func.functional_call(model, chunks, (x,)), y)

    return torch.autograd.functional.hessian(loss, flat)


def test_vmap_per_example_grads_equal_a_backward_loop():
    model, x, y = _mlp_problem()
    torch.testing.assert_close(per_example_grads(model, _half_sq, x, y, chunk_size=5), _loop_grads(model, x, y),
                               rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["linear", "dense", "layernorm"])
def test_components_equal_a_dense_hessian_loop_on_an_mlp(kind):
    model, x, y = _mlp_problem(kind=kind)
    flat = FlatParams(model)
    closed = _affine_moments(model, _half_sq, x, y, flat, dict(zip(flat.names, torch.zeros_like(flat.vector).split(flat.sizes))))
    assert (closed is None) == (kind == "layernorm")  # which path is exercised
    n = len(x)
    g = _loop_grads(model, x, y)
    h = _dense_hessian(model, x, y)
    gbar = g.mean(0)
    c = g - gbar
    trace_sigma = float((c * c).sum()) / (n - 1)
    trace_h_sigma = float(torch.einsum("ip,pq,iq->", c, h, c)) / (n - 1)
    expected = {"trace_sigma": trace_sigma, "grad_sq": float(gbar @ gbar) - trace_sigma / n,
                "trace_h_sigma": trace_h_sigma, "g_h_g": float(gbar @ h @ gbar) - trace_h_sigma / n}
    est = gradient_noise_scale(model, _half_sq, x, y, hessian_samples=n)
    for name, value in expected.items():
        assert getattr(est, name) == pytest.approx(value, rel=1e-8), name
    assert est.b_simple == pytest.approx(expected["trace_sigma"] / expected["grad_sq"], rel=1e-8)
    assert est.b_noise == pytest.approx(expected["trace_h_sigma"] / expected["g_h_g"], rel=1e-8)
    assert est.matvecs == n + 1 and est.trace_h_sigma_stderr == 0.0
    # jackknife by explicit leave-one-out recomputation
    loo = []
    for i in range(n):
        rest = torch.cat([g[:i], g[i + 1:]])
        ts = float((rest - rest.mean(0)).pow(2).sum()) / (n - 2)
        loo.append(ts / (float(rest.mean(0) @ rest.mean(0)) - ts / (n - 1)))
    loo = np.array(loo)
    assert est.b_simple_stderr == pytest.approx(np.sqrt((n - 1) / n * ((loo - loo.mean()) ** 2).sum()), rel=1e-8)


def test_subsampled_trace_h_sigma_is_unbiased_over_subsamples():
    model, x, y = _mlp_problem(n=20, seed=1)
    exact = gradient_noise_scale(model, _half_sq, x, y, hessian_samples=20).trace_h_sigma
    subs = [gradient_noise_scale(model, _half_sq, x, y, hessian_samples=5, seed=s) for s in range(40)]
    vals = np.array([e.trace_h_sigma for e in subs])
    assert abs(vals.mean() - exact) < 4 * vals.std() / np.sqrt(len(vals))
    assert np.median([e.trace_h_sigma_stderr for e in subs]) == pytest.approx(vals.std(), rel=0.5)


def test_bad_inputs_name_the_argument():
    model, x, y = _mlp_problem()
    with pytest.raises(ValueError, match="n >= 3"):
        gradient_noise_scale(model, _half_sq, x[:2], y[:2])
    with pytest.raises(ValueError, match="len\\(y\\)"):
        gradient_noise_scale(model, _half_sq, x, y[:5])
    with pytest.raises(ValueError, match="hessian_samples"):
        gradient_noise_scale(model, _half_sq, x, y, hessian_samples=1)
    with pytest.raises(ValueError, match="chunk_size"):
        per_example_grads(model, _half_sq, x, y, chunk_size=0)
    with pytest.raises(ValueError, match="probe.points"):
        NoiseScale(points=2)

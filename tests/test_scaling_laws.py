"""The scaling-law family (issue 14 §2): kernel-scaling-exponent's spectra and measurement against second algorithms,
and the law failing under a wrong exponent."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS, PASS
from lmech.systems import CircleFourier, MultitaskParity
from lmech.theory import circle_eigensystem, kernel_eigensystem, spectral_exponents
from lmech.theory.kernels import nngp_ntk


def _circle(m):
    t = 2 * np.pi * np.arange(m) / m
    return t, np.stack([np.cos(t), np.sin(t)], 1)


def test_circle_eigensystem_equals_the_dense_eigendecomposition():
    t, x = _circle(384)
    _, k = nngp_ntk(x, depth=2, activation="relu", w_std=2 ** 0.5, b_std=0.5)
    y = CircleFourier(decay=1.2, harmonics=150, seed=2).function(t)
    lam, v = circle_eigensystem(k[0], y)
    lam_dense, v_dense = kernel_eigensystem(k, y)
    np.testing.assert_allclose(lam, lam_dense, atol=1e-13)
    # modes within a degree are degenerate: compare the target power per eigenvalue, not per eigenvector
    for value in np.unique(np.round(lam[:60], 10)):
        pick, dense = np.abs(lam - value) < 1e-9, np.abs(lam_dense - value) < 1e-9
        assert (v[pick] ** 2).sum() == pytest.approx((v_dense[dense] ** 2).sum(), abs=1e-12)


def test_spectral_exponents_of_exact_power_laws():
    i = np.arange(1, 2001)
    fit = spectral_exponents(i ** -2.5, np.sqrt(i ** -3.2), (10, 500))
    assert fit.rho == pytest.approx(2.5, abs=1e-12) and fit.r == pytest.approx(3.2, abs=1e-12)
    assert fit.exponent == pytest.approx(2.2) and fit.limited_by == "target"
    assert fit.time_exponent == pytest.approx(2.2 / 2.5)
    steep = spectral_exponents(i ** -1.0, np.sqrt(i ** -5.0), (10, 500))
    assert steep.exponent == pytest.approx(2.0) and steep.limited_by == "kernel"
    # the tail sum_{j >= i} j^-3 ~ (i - 1/2)^-2 / 2: slope -2 up to the discreteness at small i
    tail = spectral_exponents(i ** -1.0, np.sqrt(i ** -3.0), (20, 200), tail=True)
    assert tail.r == pytest.approx(3.0, abs=0.02)


def test_kernel_lookup_regression_equals_direct_kernel_evaluation():
    """The law's lookup of kernel entries in one row equals nngp_ntk evaluated on the drawn angles."""
    from lmech.laws import kernel_scaling_exponent as law

    s = law.Setting((16,), 1, 256)
    target = CircleFourier(decay=1.0, harmonics=100, n_train=1, n_test=0)
    measured = law.measured_curves(s, {1.0: target}, seed=5)[1.0][0, 0]
    rng = np.random.default_rng(5)
    t = 2 * np.pi * rng.choice(256 * law._FINE, 16, replace=False) / (256 * law._FINE)
    grid, x_grid = _circle(256)
    x = np.stack([np.cos(t), np.sin(t)], 1)
    _, k = nngp_ntk(x, **law._KERNEL)
    _, k_test = nngp_ntk(x_grid, x, **law._KERNEL)
    k[np.diag_indices(16)] += law._JITTER * k[0, 0]
    direct = np.mean((k_test @ np.linalg.solve(k, target.function(t)) - target.function(grid)) ** 2)
    assert measured == pytest.approx(direct, rel=1e-8)


def test_kernel_scaling_exponent_fails_with_the_exponent_off_by_one(monkeypatch):
    """(Its quick pass is tests/test_laws.py's.)"""
    from lmech.laws import kernel_scaling_exponent as module

    law = LAWS["kernel-scaling-exponent"]
    monkeypatch.setattr(module, "predicted_exponent", lambda e: min(e.r, 2 * e.rho))  # r instead of r - 1
    assert law.evaluate({}, "quick").status == FAIL


def test_random_feature_readouts_equal_a_direct_ridge_solve():
    """The law's eigendecomposition serving every ridge at once equals solving (P^T P/D + ridge I) a = P^T y/D."""
    from lmech.laws import scaling_extrapolation as law

    s = law.Setting((8, 32), (16,), 1, 0)
    target = CircleFourier(decay=1.0, harmonics=law._GRID // 2 - 1, n_train=1, n_test=0)
    measured = law.random_feature_losses(s, target)[:, 0, 0]
    rng = np.random.default_rng([0, 17])
    w = rng.standard_normal((32, 3))
    t = rng.uniform(0, 2 * np.pi, 16 + law._VALIDATION)
    y = target.function(t) + law._NOISE * rng.standard_normal(len(t))
    grid = 2 * np.pi * np.arange(law._GRID) / law._GRID
    for row, n in enumerate((8, 32)):
        p, val, test = (law._features(a, w)[:, :n] / np.sqrt(n) for a in (t[:16], t[16:], grid))
        solves = [np.linalg.solve(p.T @ p / 16 + r * np.eye(n), p.T @ y[:16] / 16) for r in law._RIDGES]
        best = solves[int(np.argmin([np.mean((val @ a - y[16:]) ** 2) for a in solves]))]
        direct = 0.5 * np.mean((test @ best - target.function(grid)) ** 2) + 0.5 * law._NOISE ** 2
        assert measured[row] == pytest.approx(direct, rel=1e-6)


def test_iso_compute_optimum_is_the_parabola_vertex():
    from lmech.laws.scaling_extrapolation import _iso_optimum

    n = 2.0 ** np.arange(3, 9)
    loss = np.exp(0.3 * (np.log(n) - np.log(40.0)) ** 2)
    optimum, interior = _iso_optimum(n, loss)
    assert interior and optimum == pytest.approx(40.0, rel=1e-9)
    assert _iso_optimum(n, loss[::-1] * 0 + n) == (8.0, False)  # increasing: the minimum sits on the edge


def test_scaling_extrapolation_fails_with_a_wrong_exponent(monkeypatch):
    """The fit and its replicates with alpha + 0.3 miss the compute-optimal size (its quick pass is
    tests/test_laws.py's)."""
    from dataclasses import replace

    from lmech.laws import scaling_extrapolation as module
    from lmech.theory.scaling import FORMS

    law = LAWS["scaling-extrapolation"]
    real = module.fit_scaling_law

    def steeper(*args, **kwargs):  # the fit and every bootstrap replicate with alpha + 0.3
        fit = real(*args, **kwargs)
        shift = np.eye(5)[FORMS["chinchilla"].internal.index("alpha")] * 0.3
        theta = np.array(fit.theta) + shift
        return replace(fit, theta=tuple(theta), params=FORMS["chinchilla"].public(theta),
                       replicates=fit.replicates + shift)
    monkeypatch.setattr(module, "fit_scaling_law", steeper)
    wrong = law.evaluate({}, "quick")
    assert wrong.status == FAIL
    assert [c.ok for c in wrong.checks if c.headline].count(False) >= 1


def _ideal_quanta_runs(alpha_n, alpha_d, setting):
    """Runs whose test loss has the exponents exactly: width w's curve is 0.35 (N_w/N_8)^-alpha_n (t/T)^-alpha_d,
    capped at log 2 (chance), so its final loss falls as N^-alpha_n and every curve as t^-alpha_d; seeds differ by 1%."""
    from lmech.laws import Runs
    from lmech.laws import quanta_multitask_parity as law
    from lmech.store.result import RunResult

    steps = np.unique(np.r_[0, np.geomspace(1, setting.steps, 30).astype(int)])
    smallest = law.parameters(setting, setting.widths[0])
    pairs = []
    for w in setting.widths:
        size = (law.parameters(setting, w) / smallest) ** -alpha_n
        for seed in range(setting.seeds):
            loss = np.minimum(np.log(2), 0.35 * size * (np.maximum(steps, 1) / setting.steps) ** -alpha_d)
            run = RunResult(f"ideal-{w}-{seed}", law._system(setting, w, seed), [],
                            [(int(t), "loss/test", float(v) * (1 + 0.01 * seed)) for t, v in zip(steps, loss)])
            pairs.append(({"width": w, "seed": seed}, run))
    return Runs(pairs)


def test_quanta_law_passes_ideal_quanta_curves_and_fails_wrong_exponents():
    """No training: curves with the predicted exponents pass; curves with one exponent 0.2 off fail that check only;
    a law whose parameter exponent is alpha/(1+alpha) fails on the ideal curves."""
    from lmech.laws import quanta_multitask_parity as module

    law = LAWS["quanta-multitask-parity"]
    s = law.settings["quick"]
    ideal = law.judge(_ideal_quanta_runs(0.5, 0.5 / 1.5, s), s)
    assert ideal.status == PASS, [c for c in ideal.checks if not c.ok]
    failing = {c.name.split(":")[0] for c in law.judge(_ideal_quanta_runs(0.7, 0.5 / 1.5, s), s).checks if not c.ok}
    assert "parameter exponent" in failing and "data exponent in steps" not in failing
    failing = {c.name.split(":")[0] for c in law.judge(_ideal_quanta_runs(0.5, 0.55, s), s).checks if not c.ok}
    assert "data exponent in steps" in failing and "parameter exponent" not in failing
    original = module.parameter_exponent
    try:
        module.parameter_exponent = module.data_exponent  # the two exponents swapped
        assert law.judge(_ideal_quanta_runs(0.5, 0.5 / 1.5, s), s).status == FAIL
    finally:
        module.parameter_exponent = original


def test_multitask_parity_labels_and_frequencies():
    data = MultitaskParity(n_tasks=16, n_bits=8, alpha=0.5, n_train=40000, n_test=100, seed=3)
    loaded = data.load()
    task = loaded.info["task_train"]
    np.testing.assert_array_equal(loaded.x_train[:, :16].argmax(1), task)
    assert np.all(loaded.x_train[:, :16].sum(1) == 1)
    bits = (loaded.x_train[:, 16:] > 0).astype(int)
    subsets = loaded.info["subsets"]
    np.testing.assert_array_equal(loaded.y_train, bits[np.arange(len(task))[:, None], subsets[task]].sum(1) % 2)
    p = data.frequencies()
    assert p == pytest.approx(np.arange(1, 17) ** -1.5 / np.sum(np.arange(1, 17) ** -1.5))
    counts = np.bincount(task, minlength=16)
    chi2 = np.sum((counts - 40000 * p) ** 2 / (40000 * p))
    assert chi2 < 40  # 15 degrees of freedom: 99.9% quantile ~37.7


def test_quanta_inversion_recovers_the_number_of_learned_tasks():
    from lmech.laws.quanta_multitask_parity import quanta_learned

    p = MultitaskParity(n_tasks=64, alpha=0.5).frequencies()
    for k in (0, 1, 5, 20, 63):
        assert quanta_learned(np.array([np.log(2) * p[k:].sum()]), p)[0] == pytest.approx(k, abs=1e-9)


# scaling-collapse -------------------------------------------------------------------------------------------------

def test_power_law_features_have_the_stated_covariance_and_unseen_power():
    from lmech.systems import PowerLawFeatures
    from scipy.special import zeta

    config = PowerLawFeatures(features=8, spectrum=1.5, source=1.5, n_train=200000, n_test=10, seed=3)
    d = config.load()
    lam = np.arange(1, 9) ** -1.5
    np.testing.assert_allclose(np.var(d.x_train, axis=0), lam, rtol=0.02)
    # the best linear predictor on the seen modes is beta and leaves exactly the unseen power sum_{i > 8} i^-1.5
    coef, *_ = np.linalg.lstsq(d.x_train, d.y_train[:, 0], rcond=None)
    np.testing.assert_allclose(coef, np.arange(1, 9) ** 0.0, atol=0.03)  # spectrum = source: beta_i = 1
    residual = np.mean((d.y_train[:, 0] - d.x_train @ coef) ** 2)
    assert residual == pytest.approx(zeta(1.5) - np.sum(np.arange(1, 9) ** -1.5), rel=0.01)
    with pytest.raises(ValueError, match="data.source"):
        PowerLawFeatures(features=4, source=1.0)


def test_power_law_features_loss_equals_autograd_descent_on_the_population_loss():
    """A second algorithm: gradient descent by autograd on L(w) = ((w - beta)^T diag(lambda) (w - beta) + tail) / 2."""
    import torch
    from scipy.special import zeta
    from lmech.theory.collapse import power_law_features_loss

    p, rates = 12, 0.9 * (1 - np.arange(60) / 60)
    lam = torch.tensor(np.arange(1, p + 1) ** -1.2)
    beta = torch.tensor(np.arange(1, p + 1) ** ((1.2 - 1.7) / 2))
    w = torch.zeros(p, dtype=torch.float64, requires_grad=True)
    direct = []
    for t in range(61):
        loss = 0.5 * (((w - beta) ** 2 * lam).sum() + zeta(1.7, p + 1))
        direct.append(loss.item())
        if t < 60:
            (g,) = torch.autograd.grad(loss, w)
            w = (w - rates[t] * g).detach().requires_grad_(True)
    theory = power_law_features_loss(p, 1.2, 1.7, rates, np.arange(61))
    np.testing.assert_allclose(theory, direct, rtol=1e-12)


def test_compute_optimal_horizons_match_a_brute_force_frontier_and_the_continuum_exponent():
    from scipy.special import zeta
    from lmech.theory.collapse import compute_optimal_horizons

    h = compute_optimal_horizons(1.5, 1.5, lr=0.5, lr_mean=0.5, sizes=(64, 2048))
    assert h.gamma == pytest.approx(1.5, abs=0.03)  # continuum: t* ~ p^spectrum
    # one budget by brute force over every integer size: the frontier's size is the minimizer (to its grid spacing)
    c = h.frontier_sizes[5] * h.frontier_steps[5]
    sizes = np.arange(16, 2048)
    lam, power = np.arange(1, 2048) ** -1.5, np.arange(1, 2048) ** -1.5
    final = [power[:p] @ np.exp(-0.5 * c / p * lam[:p]) + zeta(1.5, p + 1) for p in sizes]
    assert h.frontier_sizes[5] == pytest.approx(sizes[int(np.argmin(final))], rel=0.05)


def test_collapse_statistics_on_an_exact_scaling_form_with_seed_factors():
    from lmech.theory.collapse import collapse_statistics

    x = np.linspace(0.1, 1, 10)
    shape = 1 + x ** -0.5
    factors = np.array([0.9, 1.0, 1.1])  # each seed scales its whole curve
    loss = np.array([[f * p ** -0.5 * shape for f in factors] for p in (16, 64)])
    stats = collapse_statistics(loss)
    np.testing.assert_allclose(stats.curves, np.broadcast_to(shape / shape[-1], loss.shape))
    np.testing.assert_allclose(stats.deviation, 0, atol=1e-12)  # normalizing removes the seed factor
    np.testing.assert_allclose(stats.noise_floor, np.std(factors, ddof=1) / factors.mean())
    tilted = loss.copy()
    tilted[1] *= (x / x[-1]) ** 0.1  # one size's curve bends away from the other
    assert collapse_statistics(tilted).deviation[0] > 0.05


def test_scaling_collapse_fails_with_a_wrong_horizon_exponent(monkeypatch):
    """Horizons t ~ p^(gamma + 0.3) (the largest size's unchanged) put each size at a different point of its curve."""
    from lmech.laws import scaling_collapse as module
    from lmech.runner import run_experiments
    from lmech.theory.collapse import Horizons

    law = LAWS["scaling-collapse"]
    s = law.setting("quick")
    right = module.horizons(s)
    top = max(s.sizes)
    wrong = Horizons(right.gamma + 0.3, right.prefactor * top ** -0.3, right.frontier_sizes, right.frontier_steps)
    assert wrong.steps(top) == pytest.approx(right.steps(top), abs=1)
    monkeypatch.setattr(module, "horizons", lambda s: wrong)
    verdict = law.evaluate(run_experiments(law.experiments("quick")), "quick")
    assert verdict.status == FAIL
    (collapse_check,) = [c for c in verdict.checks if c.name.startswith("collapse")]
    assert not collapse_check.ok and collapse_check.value > 1, collapse_check.value


# kernel-scaling-exponent's lazy network (full scale) ---------------------------------------------------------------

def _network_setting(width=256, n=64, steps=1500):
    from dataclasses import replace

    return replace(LAWS["kernel-scaling-exponent"].setting("quick"), network=(width, n, steps))


def test_network_kernel_row_matches_the_closed_form_ntk_of_its_parameterization():
    """The one-hidden-layer ReLU network in NTK parameterization with zero biases at init, on the unit circle, has
    Theta(theta) = g^2 k1(theta) + g^2 k0(theta) (cos theta + 1) + 1 with g^2 = 2 and the arc-cosine kernels
    k1 = (sin theta + (pi - theta) cos theta) / 2 pi, k0 = (pi - theta) / 2 pi (Cho & Saul 2009): readout weights,
    hidden weights and biases, output bias."""
    from lmech.laws import kernel_scaling_exponent as module

    s = _network_setting(width=8192, n=8, steps=10)
    row = module.network_kernel_row(module._network_system(s, 1.0))
    theta = 2 * np.pi * np.arange(len(row)) / len(row)
    theta = np.minimum(theta, 2 * np.pi - theta)
    k1 = (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)
    k0 = (np.pi - theta) / (2 * np.pi)
    closed = 2 * k1 + 2 * k0 * (np.cos(theta) + 1) + 1
    assert np.abs(row - closed).max() < 0.15  # finite width 8192: ~2% of the diagonal 4
    assert np.abs(row - (k1 + k0 * (np.cos(theta) + 1) + 1)).max() > 1  # a wrong gain is far off


def test_eigenmode_descent_loss_equals_dense_function_space_descent():
    """Second algorithm: f <- f - lr (K / M)(f - y) on all M grid points with the dense kernel matrix."""
    from lmech.laws.kernel_scaling_exponent import _embed
    from lmech.theory import eigenmode_descent_loss

    m = 64
    grid = 2 * np.pi * np.arange(m) / m
    kernel, _ = nngp_ntk(_embed(grid), _embed(grid), depth=1, activation="relu", w_std=2 ** 0.5, b_std=1.0)
    y = CircleFourier(decay=1.0, harmonics=m // 2 - 1, n_train=1, n_test=0).function(grid)
    lam, v = circle_eigensystem(kernel[0], y)
    f, direct = np.zeros(m), []
    for _ in range(41):
        direct.append(0.5 * np.mean((f - y) ** 2))
        f = f - 0.5 * kernel @ (f - y) / m
    np.testing.assert_allclose(eigenmode_descent_loss(lam, v ** 2, np.full(40, 0.5), np.arange(41)), direct,
                               rtol=1e-9)


def test_network_part_passes_its_kernel_curve_and_fails_a_wrong_exponent():
    """No training: test losses equal to gradient descent on the network's kernel pass; the same curves raised to the
    power 1.3 (every time exponent 30% steeper) fail the network checks."""
    from lmech.laws import Runs
    from lmech.laws import kernel_scaling_exponent as module
    from lmech.store.result import RunResult
    from lmech.theory import eigenmode_descent_loss

    law = LAWS["kernel-scaling-exponent"]
    s = _network_setting()
    grid = 2 * np.pi * np.arange(module._NET_GRID) / module._NET_GRID
    row = module.network_kernel_row(module._network_system(s, module._SCORED[0]))
    steps = np.unique(np.r_[0, np.geomspace(1, 1500, 30).astype(int)])

    def runs(power):
        pairs = []
        for d in module._SCORED:
            lam, v = circle_eigensystem(row, CircleFourier(decay=d, harmonics=module._NET_GRID // 2 - 1, n_train=1,
                                                           n_test=0).function(grid))
            loss = eigenmode_descent_loss(lam, v ** 2, np.full(1500, module._NET_LR), steps) ** power
            pairs.append(({"decay": d}, RunResult(f"net-{d}", module._network_system(s, d), [],
                                                  [(int(t), "loss/test", float(x)) for t, x in zip(steps, loss)])))
        return Runs(pairs)

    def network_checks(verdict):
        return [c for c in verdict.checks if c.headline and c.name.startswith("network")]

    ideal = law.judge(runs(1.0), s)
    assert len(network_checks(ideal)) == 2 and all(c.ok and c.value < 0.01 for c in network_checks(ideal))
    assert ideal.status == PASS
    wrong = law.judge(runs(1.3), s)
    assert not any(c.ok for c in network_checks(wrong)) and wrong.status == FAIL

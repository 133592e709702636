"""Heavy-tailed spectra: the power-law fit against Pareto samples, a loop over x_min, Gaussian matrices and MP."""
import numpy as np
import pytest

from lmech import powerlaw_fit, weight_spectrum


def _pareto(alpha, n, xmin=1.0, seed=0):
    """p(x) ~ x^-alpha for x >= xmin: numpy's pareto(a) is a Lomax law, so a = alpha - 1 and x = xmin (1 + draw)."""
    return xmin * (1 + np.random.default_rng(seed).pareto(alpha - 1, n))


def _loop_fit(x):
    """Second implementation: a plain loop over candidate x_min with the same estimator and KS distance."""
    x = np.sort(x)
    best = None
    for xmin in np.unique(x)[:-1]:
        tail = x[x >= xmin]
        alpha = 1 + len(tail) / np.sum(np.log(tail / xmin))
        d = np.max(np.abs(1 - (tail / xmin) ** (1 - alpha) - np.arange(len(tail)) / len(tail)))
        if best is None or d < best[0]:
            best = (d, alpha, xmin)
    return best


def test_pareto_samples_recover_alpha_and_xmin():
    # REFERENCE 2.16: alpha within +-0.1, xmin within a factor 1.5 (2000 draws at alpha = 2.5); below xmin, uniform
    # points the fit must cut away
    x = np.r_[_pareto(2.5, 2000, xmin=2.0), np.random.default_rng(1).uniform(0.1, 2.0, 500)]
    fit = powerlaw_fit(x)
    assert fit.alpha == pytest.approx(2.5, abs=0.1)
    assert 2.0 / 1.5 <= fit.xmin <= 2.0 * 1.5
    assert fit.status == "heavy-tailed" and fit.sigma == pytest.approx((fit.alpha - 1) / np.sqrt(fit.n_tail))
    assert fit.comparisons["exponential"].R > 0 and fit.comparisons["exponential"].p < 0.01  # not exponential


def test_the_vectorized_search_equals_a_loop_over_xmin():
    x = _pareto(3.0, 700, seed=2) * np.random.default_rng(3).lognormal(0, 0.3, 700)
    d, alpha, xmin = _loop_fit(x)
    fit = powerlaw_fit(x, compare=False)
    assert fit.alpha == pytest.approx(alpha, rel=1e-12) and fit.xmin == xmin and fit.D == pytest.approx(d, rel=1e-9)


def test_an_exponential_tail_is_preferred_to_a_power_law():
    x = np.random.default_rng(4).exponential(1.0, 3000) + 1.0
    fit = powerlaw_fit(x, xmin=1.0)
    assert fit.comparisons["exponential"].R < 0 and fit.comparisons["exponential"].p < 0.01


def test_a_gaussian_matrix_is_not_heavy_tailed_and_fills_the_marchenko_pastur_bulk():
    import torch

    model = torch.nn.Linear(500, 1000, bias=False)
    torch.nn.init.normal_(model.weight, std=0.1, generator=torch.Generator().manual_seed(0))
    (layer,) = weight_spectrum(model)
    assert layer.fit.status == "not heavy-tailed" and layer.fit.alpha > 6
    assert layer.eigenvalues.max() == pytest.approx(layer.mp_edge, rel=0.05)  # lambda_+ = N s^2 (1 + sqrt(M/N))^2
    assert layer.eigenvalues.min() == pytest.approx(1000 * 0.01 * (1 - np.sqrt(0.5)) ** 2, rel=0.1)
    assert layer.shape == (1000, 500) and layer.n_above_edge <= 3
    square = torch.nn.Linear(256, 256, bias=False)
    bulks = []
    for seed in range(8):
        torch.nn.init.normal_(square.weight, generator=torch.Generator().manual_seed(seed))
        bulks += weight_spectrum(square)
    assert min(b.fit.alpha for b in bulks) < 6  # the top of a square Gaussian's bulk can fit a "heavy" power law ...
    assert all(b.n_above_edge == 0 and b.status == "not heavy-tailed" for b in bulks)  # ... the MP edge overrules


def test_too_few_eigenvalues_and_bad_values():
    assert powerlaw_fit(np.arange(1.0, 10.0)).status == "too few eigenvalues"
    with pytest.raises(ValueError, match="NaN or inf"):
        powerlaw_fit(np.r_[np.ones(20), np.nan])
    with pytest.raises(ValueError, match="non-negative"):
        powerlaw_fit(-np.ones(20))


def test_the_weight_spectrum_probe_records_each_layers_fit_over_training():
    """In the engine: the probe's values at the last step equal weight_spectrum on the same weights, and a Gaussian
    init is not heavy-tailed."""
    from lmech import MLP, LearningRule, Schedule, System, Task, train
    from lmech.probes import WeightSpectrum
    from lmech.systems import Digits
    from lmech.engine.trainer import initial_state

    system = System(MLP(width=128, depth=2), Digits(n_train=200, n_test=10), Task("cross_entropy"),
                    LearningRule(lr=1e-3, steps=0, optimizer="adam"))
    result = train(system, [WeightSpectrum(Schedule(every=1))])
    layers = weight_spectrum(initial_state(system, "cpu").model)
    assert [k for k in result.names() if k.endswith("/alpha")] == [f"esd/{i}/alpha" for i in range(3)]
    for i, layer in enumerate(layers):
        alpha = result.last(f"esd/{i}/alpha")
        assert alpha == pytest.approx(layer.fit.alpha, rel=1e-9, nan_ok=True)
    assert result.last("esd/1/heavy_tailed") == 0.0  # the 128 x 128 hidden layer at a Gaussian init

"""Grokking times, Fourier sparsity, plateau detection and weight norms against constructed curves and closed forms."""
import numpy as np
import pytest

from lmech import fourier_sparsity, grokking_times, plateaus, weight_norm
from lmech.theory import learning_time, saxe_mode


def test_grokking_times_and_did_not_grok():
    steps = np.arange(0, 1000, 10)
    train = np.clip(steps / 100, 0, 1)
    test = np.where(steps >= 700, 0.99, 0.1)
    g = grokking_times(steps, train, test, threshold=0.95)
    assert (g.t_train, g.t_test, g.delay, g.grokked) == (100, 700, 600, True)
    never = grokking_times(steps, train, np.full(len(steps), 0.5))
    assert not never.grokked and never.t_test is None and never.delay is None
    with pytest.raises(ValueError, match="one length"):
        grokking_times(steps, train[:-1], test)


def test_fourier_sparsity_finds_the_frequencies_an_embedding_is_built_from():
    p, rng = 59, np.random.default_rng(0)
    residues = np.arange(p)
    keys = (3, 14, 25)
    columns = [f(2 * np.pi * k * residues / p + rng.uniform(0, 6)) for k in keys for f in (np.cos, np.sin)]
    embedding = np.stack(columns, 1) @ rng.standard_normal((6, 32))
    sparse = fourier_sparsity(embedding, k=3)
    assert set(sparse.top.tolist()) == set(keys) and sparse.top_fraction == pytest.approx(1.0, abs=1e-12)
    dense = fourier_sparsity(rng.standard_normal((p, 32)), k=3)
    assert dense.top_fraction < 0.3  # ~3/29 for white noise
    assert dense.dimension_peak < 0.3
    # Gromov's grokked MLP: every neuron one cosine, neurons spread over all frequencies
    neurons = np.stack([np.cos(2 * np.pi * (1 + j % 29) * residues / p + rng.uniform(0, 6)) * rng.uniform(0.5, 2)
                        for j in range(64)], 1)
    spread = fourier_sparsity(neurons, k=3)
    assert spread.dimension_peak == pytest.approx(1.0, abs=1e-12) and spread.top_fraction < 0.3
    # Parseval: the folded power sums to p times the squared entries
    assert sparse.power.sum() == pytest.approx(p * np.sum(embedding ** 2), rel=1e-10)


def test_plateaus_of_a_saddle_to_saddle_curve_sit_at_the_modes_learning_times():
    """Two-layer linear network from small init (Saxe et al. 2014): modes 4, 2, 1 are learned one after another; the
    detector finds three drops, four plateaus, each half done when (s - m)^2 = s^2 / 2, i.e. at Saxe's learning time
    to the fraction 1 - 1/sqrt(2), at any logging density."""
    s, m0 = (4.0, 2.0, 1.0), 1e-6
    for dt in (0.01, 0.2):
        t = np.arange(0, 12, dt)
        loss = 0.5 * sum((si - saxe_mode(t, si, m0)) ** 2 for si in s) + 1e-3
        found = plateaus(t, loss)
        assert found.count == 4 and np.all(found.drops > 0.5)
        for escape, si in zip(found.escape_steps, s):
            assert escape == pytest.approx(learning_time(si, m0, 2, fraction=1 - 2 ** -0.5), rel=0.02 + dt / 2)
    smooth = np.arange(0, 20, 0.05)
    assert plateaus(smooth, 1 / (1 + smooth)).count == 1  # a power-law decay has no drop between plateaus
    with pytest.raises(ValueError, match="positive and finite"):
        plateaus(t, np.r_[loss[:-1], np.nan])


def test_weight_norm_is_the_global_parameter_norm():
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    flat = torch.nn.utils.parameters_to_vector(model.parameters()).detach().double()
    assert weight_norm(model) == pytest.approx(float(flat.norm()), rel=1e-12)

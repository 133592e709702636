"""Neural collapse metrics against closed forms (a simplex ETF, scaled noise) and a direct second implementation."""
import numpy as np
import pytest

from lmech import neural_collapse
from lmech.observables.neural_collapse import NeuralCollapseAccumulator


def _etf(c=5, d=8, seed=0):
    """Centred simplex ETF means (rows, unit norm) in a random c-dimensional subspace of R^d, and a global offset."""
    rng = np.random.default_rng(seed)
    simplex = (np.eye(c) - 1 / c) * np.sqrt(c / (c - 1))
    basis, _ = np.linalg.qr(rng.standard_normal((d, c)))
    return simplex @ basis.T, rng.standard_normal(d)


def _direct(h, y, w=None, b=None):
    """A second implementation by the definitions: explicit class loops and a float64 pinv of Sigma_B."""
    c = y.max() + 1
    mu_g = h.mean(0)
    mu = np.array([h[y == k].mean(0) for k in range(c)])
    m = mu - mu_g
    sigma_b = m.T @ m / c
    sigma_w = sum(np.outer(x - mu[k], x - mu[k]) for x, k in zip(h, y)) / len(h)
    out = {"nc1": np.trace(sigma_w @ np.linalg.pinv(sigma_b, rcond=1e-10)) / c,
           "nc1_weak": np.trace(sigma_w) / (np.trace(sigma_w) + np.trace(sigma_b))}
    var = np.array([np.mean(((h[y == k] - mu[k]) ** 2).sum(1)) for k in range(c)])
    out["cdnv"] = np.mean([(var[i] + var[j]) / (2 * np.sum((mu[i] - mu[j]) ** 2))
                           for i in range(c) for j in range(i + 1, c)])
    norms = np.linalg.norm(m, axis=1)
    cos = [m[i] @ m[j] / norms[i] / norms[j] for i in range(c) for j in range(c) if i != j]
    out.update(nc2_equinorm_means=norms.std() / norms.mean(), nc2_equiangular_means=np.std(cos),
               nc2_max_angle_means=np.mean(np.abs(np.array(cos) + 1 / (c - 1))))
    if w is not None:
        out["nc3"] = np.linalg.norm(w / np.linalg.norm(w) - m / np.linalg.norm(m)) ** 2
        ncc = [np.argmin([np.linalg.norm(x - mu[k]) for k in range(c)]) for x in h]
        out["nc4"] = np.mean(np.argmax(h @ w.T + b, axis=1) != np.array(ncc))
    return out


def test_an_exact_simplex_etf_gives_every_metric_zero():
    means, offset = _etf()
    y = np.repeat(np.arange(5), 3)
    h = means[y] + offset
    r = neural_collapse(h, y, weight=means, bias=-means @ offset)  # the bias cancels the global mean (NC4 uses it)
    for name in ("nc1", "nc1_weak", "cdnv", "nc2_equinorm_means", "nc2_equiangular_means", "nc2_max_angle_means",
                 "nc2_equinorm_weights", "nc2_equiangular_weights", "nc2_max_angle_weights", "nc3", "nc4"):
        assert abs(getattr(r, name)) < 1e-12, name
    unit = means / np.linalg.norm(means, axis=1)[:, None]
    np.testing.assert_allclose((unit @ unit.T)[~np.eye(5, dtype=bool)], -1 / 4, atol=1e-12)


def test_nc1_scales_as_the_noise_squared():
    means, offset = _etf(c=4, d=16, seed=1)
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(4), 50)
    eps = rng.standard_normal((200, 16))
    centred = eps - np.array([eps[y == k].mean(0) for k in range(4)])[y]  # class means stay exactly on the ETF
    base = neural_collapse(means[y] + offset + centred, y).nc1
    for s in (1e-6, 1e-3, 0.3):
        assert neural_collapse(means[y] + offset + s * centred, y).nc1 == pytest.approx(s ** 2 * base, rel=1e-8)
    scales = np.geomspace(1e-3, 1e-1, 5)  # raw noise (means move too): REFERENCE 2.15's slope 2 +- 0.05
    nc1 = [neural_collapse(means[y] + offset + s * eps, y).nc1 for s in scales]
    assert np.polyfit(np.log(scales), np.log(nc1), 1)[0] == pytest.approx(2.0, abs=0.05)


def test_streamed_float32_features_near_collapse_give_the_float64_value_and_never_a_negative_nc1():
    means, offset = _etf(c=10, d=64, seed=3)
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(10), 40)
    eps = rng.standard_normal((400, 64))
    eps -= np.array([eps[y == k].mean(0) for k in range(10)])[y]
    exact = 1e-8 * neural_collapse(means[y] + 100 * offset + eps, y).nc1  # scaling law above, in float64
    h32 = (means[y] + 100 * offset + 1e-4 * eps).astype(np.float32)  # the offset dwarfs the spread
    streamed = neural_collapse(h32, y, chunk_size=7).nc1
    assert streamed >= 0
    assert streamed == pytest.approx(exact, rel=0.05)  # float32 storage of the features limits the agreement


def test_imbalanced_classes_and_the_classifier_match_the_definitions():
    rng = np.random.default_rng(5)
    counts = np.array([5, 30, 12, 8])
    y = np.repeat(np.arange(4), counts)
    h = rng.standard_normal((len(y), 6)) + 3 * rng.standard_normal((4, 6))[y]
    w, b = rng.standard_normal((4, 6)), rng.standard_normal(4)
    r = neural_collapse(h, y, w, b, chunk_size=9)
    expected = _direct(h, y, w, b)
    for name, value in expected.items():
        assert getattr(r, name) == pytest.approx(value, rel=1e-10, abs=1e-14), name
    assert 0 < r.nc4 < 1 and r.n_samples == len(y)


def test_the_accumulator_merges_batches_as_one_pass_does():
    rng = np.random.default_rng(6)
    y = rng.integers(0, 3, 300)
    h = rng.standard_normal((300, 5)) + rng.standard_normal((3, 5))[y]
    acc = NeuralCollapseAccumulator(3, 5)
    for part in np.array_split(np.arange(300), 11):
        acc.update(h[part], y[part])
    whole = neural_collapse(h, y)
    assert acc.result().nc1 == pytest.approx(whole.nc1, rel=1e-12)
    assert acc.result().cdnv == pytest.approx(whole.cdnv, rel=1e-12)


@pytest.mark.parametrize("features, labels, message", [
    (np.zeros((4, 3)), np.array([0, 1, 1]), "different lengths"),
    (np.ones((5, 3)), np.array([0, 0, 1, 1, 2]), "fewer than 2 samples"),
    (np.full((4, 3), np.nan), np.array([0, 0, 1, 1]), "NaN or inf"),
    (np.ones((6, 2)), np.array([0, 0, 1, 1, 3, 3]), "exceeds feature dimension"),
    (np.ones((4, 3)), np.array([0.0, 0.0, 1.0, 1.0]), "integers"),
])
def test_bad_input_says_what_is_wrong(features, labels, message):
    with pytest.raises(ValueError, match=message):
        neural_collapse(features, labels)


def test_the_probe_records_the_metrics_of_the_readout_features_in_a_users_loop():
    """Through Tracker: the probe's last record equals neural_collapse on the trained model's readout inputs, with
    the model's outputs as the classifier's decisions (NC4 checked by brute-force nearest means)."""
    import torch

    import lmech
    from lmech.observables.features import _layer_inputs
    from lmech.probes import NeuralCollapse
    from lmech.systems import MLP, Digits, build_model

    data = Digits(n_train=300, n_test=50).load()
    model = build_model(MLP(width=32, depth=2), data, init="normal", init_scale=1.0, seed=0, dtype=torch.float32)
    x, y = torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.functional.cross_entropy
    tracker = lmech.Tracker(model, loss_fn, x, y, optimizer=opt, every=10, probes=[NeuralCollapse()])
    for _ in range(30):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
        tracker.step()
    tracker.close()
    with torch.no_grad():
        (h,), logits = _layer_inputs(model, x, [model.layers[-1]])
    h = h.numpy()
    direct = neural_collapse(h, data.y_train, model.layers[-1].weight.detach().numpy())
    result = tracker.result
    assert result.last("nc/1") == pytest.approx(direct.nc1, rel=1e-6)
    assert result.last("nc/3") == pytest.approx(direct.nc3, rel=1e-6)
    assert result.last("nc/cdnv") == pytest.approx(direct.cdnv, rel=1e-6)
    means = np.array([h[data.y_train == k].mean(0) for k in range(10)])
    nearest = np.argmin(((h[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert result.last("nc/4") == pytest.approx(np.mean(logits.argmax(1).numpy() != nearest), abs=1e-12)
    assert len(result.series("nc/1")[0]) == 4  # after updates 0, 10, 20, 30
    assert result.series("nc/1")[1][-1] < result.series("nc/1")[1][0]  # training separates the classes


def test_coinciding_class_means_give_nan_not_an_exception():
    y = np.repeat(np.arange(3), 4)
    r = neural_collapse(np.zeros((12, 5)), y, weight=np.ones((3, 5)))  # dead ReLU features
    assert np.isnan(r.nc1) and np.isnan(r.nc1_weak) and np.isnan(r.nc3) and np.isnan(r.nc2_equinorm_means)

"""Representation similarity against closed forms, a brute-force U-statistic and between its own two code paths."""
from itertools import permutations

import numpy as np
import pytest

from lmech import LinearCKA, cka, kernel_alignment, mutual_knn


def _hsic_u_by_definition(k, l):
    """Song et al. (2012) unbiased HSIC as the U-statistic over ordered distinct quadruples (i, j, q, r):
    the mean of k_ij l_ij + k_ij l_qr - 2 k_ij l_iq, symmetrized over the 24 orders."""
    n, total, count = len(k), 0.0, 0
    for quad in permutations(range(n), 4):
        h = 0.0
        for i, j, q, r in permutations(quad):
            h += k[i, j] * l[i, j] + k[i, j] * l[q, r] - 2 * k[i, j] * l[i, q]
        total += h / 24
        count += 1
    return total / count


def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 8))
    q, _ = np.linalg.qr(rng.standard_normal((8, 8)))
    for debiased in (False, True):
        assert cka(x, 3.7 * x @ q, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
        y = rng.standard_normal((50, 5)) + x[:, :5]
        assert cka(x @ q * 0.2, y, debiased=debiased) == pytest.approx(cka(x, y, debiased=debiased), abs=1e-10)


def test_the_debiased_hsic_is_song_et_als_u_statistic():
    from lmech.observables.similarity import _hsic_from_grams

    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((7, 4))
    k, l = x @ x.T, y @ y.T
    assert _hsic_from_grams(k, l, True) == pytest.approx(_hsic_u_by_definition(k, l), rel=1e-10)


def test_feature_space_gram_space_and_streaming_agree():
    from lmech.observables.similarity import _hsic_from_grams, _ratio

    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 6))
    y = x @ rng.standard_normal((6, 9)) + rng.standard_normal((120, 9))
    acc = LinearCKA()
    for part in np.array_split(np.arange(120), 7):
        acc.update(x[part], y[part])
    for debiased in (False, True):
        k, l = x @ x.T, y @ y.T
        gram = _ratio(_hsic_from_grams(k, l, debiased), _hsic_from_grams(k, k, debiased),
                      _hsic_from_grams(l, l, debiased))
        assert cka(x, y, debiased=debiased) == pytest.approx(gram, rel=1e-10)  # feature space here
        assert acc.value(debiased) == pytest.approx(gram, rel=1e-10)
    xc, yc = x - x.mean(0), y - y.mean(0)
    closed = np.sum((yc.T @ xc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert cka(x, y) == pytest.approx(closed, rel=1e-12)
    assert kernel_alignment(x @ x.T, y @ y.T, centered=True) == pytest.approx(closed, rel=1e-10)


def test_independent_features_debiased_near_zero_while_biased_is_inflated():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((1000, 200)), rng.standard_normal((1000, 200))
    assert abs(cka(x, y, debiased=True)) < 0.05  # REFERENCE 2.17
    assert cka(x, y) > 0.1  # p/n = 0.2 inflates the biased estimator


def test_rbf_cka_and_mutual_knn():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((80, 5))
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    assert cka(x, 2 * x @ q, kernel="rbf") == pytest.approx(1.0, abs=1e-10)  # distances scale; sigma follows
    assert cka(x, rng.standard_normal((80, 5)), kernel="rbf") < 0.3
    assert mutual_knn(x, 5 * x @ q, k=10) == pytest.approx(1.0)
    chance = mutual_knn(x, rng.standard_normal((80, 5)), k=10)
    assert chance < 0.35  # ~k/(n-1) = 0.13 expected by chance


def test_precomputed_grams_give_the_feature_space_values():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((60, 90))  # p > n: the Gram-space path of the features too
    y = np.tanh(x[:, :40] @ rng.standard_normal((40, 30))) + 0.3 * rng.standard_normal((60, 30))
    for debiased in (False, True):
        assert cka(x @ x.T, y @ y.T, kernel="precomputed", debiased=debiased) == pytest.approx(
            cka(x, y, debiased=debiased), rel=1e-10)
    assert mutual_knn(x @ x.T, y @ y.T, k=7, kernel="precomputed") == mutual_knn(x, y, k=7)


@pytest.mark.parametrize("call, message", [
    (lambda: cka(np.eye(5), np.eye(4), kernel="precomputed"), "square Gram matrices of one shape"),
    (lambda: cka(np.eye(3), np.eye(3), kernel="precomputed", debiased=True), "at least 4"),
    (lambda: mutual_knn(np.eye(5), np.eye(5), kernel="rbf"), "kernel="),
    (lambda: cka(np.ones((5, 2)), np.ones((4, 2))), "same inputs"),
    (lambda: cka(np.ones((3, 2)), np.ones((3, 2)), debiased=True), "at least 4"),
    (lambda: cka(np.full((5, 2), np.nan), np.ones((5, 2))), "NaN or inf"),
    (lambda: cka(np.ones((5, 2)), np.ones((5, 2)), kernel="poly"), "kernel="),
    (lambda: mutual_knn(np.ones((5, 2)), np.ones((5, 2)), k=5), "k=5"),
])
def test_bad_input_says_what_is_wrong(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_representation_similarity_probe_is_cka_against_the_init_features():
    """In a user's loop through Tracker: 1 at init, then the debiased CKA of a copy of the init network's hidden
    features against the trained one's, computed here by hand."""
    import copy

    import torch

    import lmech
    from lmech.probes import RepresentationSimilarity

    torch.manual_seed(0)
    x, y = torch.randn(64, 5), torch.randn(64, 1)
    model = lmech.build_model(lmech.MLP(width=32, depth=2), lmech.Dataset(x.numpy(), y.numpy(), x.numpy()[:0],
                                                                          y.numpy()[:0]),
                              init="normal", init_scale=1.0, seed=0, dtype=torch.float32)
    init = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    tracker = lmech.Tracker(model, lmech.half_mse, x, y, optimizer=opt, every=10,
                            probes=[RepresentationSimilarity(points=48)])
    for _ in range(20):
        opt.zero_grad()
        lmech.half_mse(model(x), y).backward()
        opt.step()
        tracker.step()
    run = tracker.close()
    assert run.series("similarity/0")[1][0] == pytest.approx(1.0, abs=1e-12)

    def features(m):  # input of the second hidden layer and of the readout
        h1 = torch.relu(m.layers[0](x[:48]))
        return [h1, torch.relu(m.layers[1](h1))]

    with torch.no_grad():
        for i, (h, h0) in enumerate(zip(features(model), features(init))):
            expected = cka(h.double().numpy(), h0.double().numpy(), debiased=True)
            assert run.last(f"similarity/{i}") == pytest.approx(expected, rel=1e-6)  # float32 features
            assert expected < 0.999  # the features moved

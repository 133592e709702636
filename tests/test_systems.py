import json
import subprocess
import sys

import numpy as np
import pytest

from lmech import MLP, MNIST1D, CircleFourier, DeepLinear, Digits, LearningRule, MultiIndex, System, Task, TeacherStudent, WhitenedLinear
from lmech.systems import ConfigError


def _system(**rule):
    return System(MLP(width=8), Digits(n_train=50, n_test=10), Task("mse"), LearningRule(lr=0.1, steps=5, **rule))


@pytest.mark.parametrize("make, field", [
    (lambda: MLP(width=0), "architecture.width"),
    (lambda: MLP(width=-3), "architecture.width"),
    (lambda: MLP(width=8, activation="swish"), "architecture.activation"),
    (lambda: MLP(width=8, parameterization="mup"), "architecture.parameterization"),
    (lambda: LearningRule(lr=0, steps=10), "rule.lr"),
    (lambda: LearningRule(lr=-1e-3, steps=10), "rule.lr"),
    (lambda: LearningRule(lr=float("nan"), steps=10), "rule.lr"),
    (lambda: LearningRule(lr=0.1, steps=10, optimizer="lbfgs"), "rule.optimizer"),
    (lambda: LearningRule(lr=0.1, steps=10, optimizer="sgd"), "rule.batch_size"),
    (lambda: LearningRule(lr=0.1, steps=10, dtype="float16"), "rule.dtype"),
    (lambda: Digits(n_train=1800, n_test=0), "data.n_train + data.n_test"),
    (lambda: Digits(n_train=1000, n_test=900), "data.n_train + data.n_test"),
    (lambda: MNIST1D(n_train=5000), "data.n_train"),
    (lambda: WhitenedLinear(d_in=4, d_out=4, singular_values=(1, 2, 3, 4, 5)), "data.singular_values"),
    (lambda: Task("hinge"), "task.loss"),
])
def test_invalid_config_names_field(make, field):
    with pytest.raises(ValueError) as exc:
        make()
    assert field in str(exc.value)


def test_unknown_dataset_lists_allowed_kinds():
    d = _system().to_dict()
    d["data"]["kind"] = "cifar10"
    with pytest.raises(ConfigError, match=r"data.kind='cifar10'.*'digits'"):
        System.from_dict(d)


def test_unknown_field_is_named():
    d = _system().to_dict()
    d["rule"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="learning_rate"):
        System.from_dict(d)


def test_cross_section_checks():
    with pytest.raises(ConfigError, match="rule.batch_size=100 exceeds data.n_train=50"):
        _system(optimizer="sgd", batch_size=100)
    with pytest.raises(ConfigError, match="rule.init='aligned'"):
        _system(init="aligned")
    with pytest.raises(ConfigError, match="task.loss='cross_entropy'"):
        System(MLP(width=8), TeacherStudent(n_train=10, n_test=0), Task("cross_entropy"), LearningRule(lr=0.1, steps=1))


def test_round_trip_and_stable_id():
    s = System(DeepLinear(depth=3, width=8), WhitenedLinear(d_in=4, d_out=3, singular_values=(3, 1), n_train=16),
               Task("mse"), LearningRule(lr=1e-2, steps=10, init="aligned", init_scale=0.1, dtype="float64"))
    d = json.loads(json.dumps(s.to_dict()))
    assert System.from_dict(d) == s
    assert System.from_dict(d).id == s.id
    assert s.replace(rule=LearningRule(lr=2e-2, steps=10, init="aligned", init_scale=0.1, dtype="float64")).id != s.id
    # the id is a content hash: another interpreter computes the same value
    code = ("import json,sys; from lmech import System; "
            "print(System.from_dict(json.loads(sys.argv[1])).id)")
    other = subprocess.run([sys.executable, "-c", code, json.dumps(d)], capture_output=True, text=True, check=True)
    assert other.stdout.strip() == s.id


def test_whitened_linear_is_exactly_whitened_with_designed_spectrum():
    data = WhitenedLinear(d_in=6, d_out=4, singular_values=(4, 2, 1, 0.5), n_train=40, n_test=5).load()
    x, y = data.x_train, data.y_train
    np.testing.assert_allclose(x.T @ x / len(x), np.eye(6), atol=1e-12)
    sigma_yx = y.T @ x / len(x)
    np.testing.assert_allclose(np.linalg.svd(sigma_yx, compute_uv=False), [4, 2, 1, 0.5], rtol=1e-12)


def test_real_data_shapes_and_splits():
    d = Digits(n_train=100, n_test=50, seed=3).load()
    assert d.x_train.shape == (100, 64) and d.x_test.shape == (50, 64) and d.n_classes == 10
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0
    other = Digits(n_train=100, n_test=50, seed=4).load()
    assert not np.array_equal(d.x_train, other.x_train)
    m = MNIST1D(n_train=200, n_test=100).load()
    assert m.x_train.shape == (200, 40) and m.x_test.shape == (100, 40)
    assert set(np.unique(m.y_train)) <= set(range(10))


def test_teacher_student_labels_follow_teacher():
    d = TeacherStudent(d_in=2, teacher_width=3, n_train=20, n_test=0).load()
    w, a = d.info["teacher_w"], d.info["teacher_a"]
    np.testing.assert_allclose(d.y_train[:, 0], np.maximum(d.x_train @ w.T, 0) @ a, rtol=1e-12)


def test_digits_parity_and_multi_index_targets():
    from sklearn.datasets import load_digits

    d = Digits(n_train=300, n_test=100, target="parity").load()
    assert d.n_classes is None and d.y_train.shape == (300, 1) and set(np.unique(d.y_train)) == {-1.0, 1.0}
    labels = {tuple(x): t for x, t in zip(load_digits().data / 16.0, load_digits().target)}
    expected = [1.0 if labels[tuple(x)] % 2 == 0 else -1.0 for x in d.x_train[:50]]
    np.testing.assert_array_equal(d.y_train[:50, 0], expected)
    m = MultiIndex(d_in=10, target="z1*z2+z1^2", n_train=200, n_test=10).load()
    z = m.x_train @ m.info["U"]
    np.testing.assert_allclose(m.info["U"].T @ m.info["U"], np.eye(2), atol=1e-12)
    np.testing.assert_allclose(m.y_train[:, 0], z[:, 0] * z[:, 1] + z[:, 0] ** 2, rtol=1e-12)
    with pytest.raises(ValueError, match="data.target"):
        MultiIndex(target="z3")


def test_circle_fourier_has_the_designed_power_law_spectrum():
    data = CircleFourier(decay=1.5, harmonics=40, n_train=64, n_test=16, seed=3)
    loaded = data.load()
    np.testing.assert_allclose(loaded.x_train, np.stack([np.cos(loaded.info["t_train"]), np.sin(loaded.info["t_train"])], 1))
    np.testing.assert_allclose(loaded.y_train[:, 0], data.function(loaded.info["t_train"]), atol=1e-12)
    grid = 2 * np.pi * np.arange(256) / 256
    amplitude = 2 * np.abs(np.fft.rfft(data.function(grid))) / 256  # |c_k| of sum_k c_k cos(k t + phi_k)
    k = np.arange(1, 41)
    np.testing.assert_allclose(amplitude[1:41], k ** -1.5, rtol=1e-10)
    assert np.abs(amplitude[41:]).max() < 1e-12 and abs(amplitude[0]) < 1e-12
    np.testing.assert_allclose(data.on_grid(256), data.function(grid), atol=1e-12)
    assert not np.allclose(CircleFourier(seed=4).function(grid), CircleFourier(seed=3).function(grid))
    with pytest.raises(ConfigError, match="data.decay"):
        CircleFourier(decay=-1.0)


def test_symmetric_init_starts_at_zero_output_and_keeps_weight_statistics():
    import torch

    from lmech.systems.networks import build_model

    data = TeacherStudent(n_train=50, n_test=0).load()
    arch = MLP(width=40, depth=2, activation="relu", bias=True)
    sym = build_model(arch, data, init="symmetric", init_scale=1.0, seed=3, dtype=torch.float64)
    normal = build_model(arch, data, init="normal", init_scale=1.0, seed=3, dtype=torch.float64)
    with torch.no_grad():
        out, out_normal = sym(torch.as_tensor(data.x_train)), normal(torch.as_tensor(data.x_train))
    assert float(out.abs().max()) < 1e-12 and float(out_normal.abs().max()) > 0.1
    torch.testing.assert_close(sym.layers[0].weight, normal.layers[0].weight)  # only the last two layers are paired
    torch.testing.assert_close(sym.layers[1].weight[20:], sym.layers[1].weight[:20])
    with pytest.raises(ValueError, match="even architecture.width"):
        build_model(MLP(width=7), data, init="symmetric", init_scale=1.0, seed=0, dtype=torch.float64)


def test_modular_arithmetic_one_hot_encodes_both_residues_for_an_mlp():
    from lmech import ModularArithmetic, Transformer

    data = ModularArithmetic(p=7, n_train=30, n_test=19, encoding="one_hot")
    d, tokens = data.load(), ModularArithmetic(p=7, n_train=30, n_test=19).load()
    assert d.x_train.shape == (30, 14) and np.all(d.x_train.sum(1) == 2)
    a, b = d.x_train[:, :7].argmax(1), d.x_train[:, 7:].argmax(1)
    np.testing.assert_array_equal(np.stack([a, b], 1), tokens.x_train)  # the same seeded split
    np.testing.assert_array_equal(d.y_train, (a + b) % 7)
    System(MLP(width=8), data, Task("cross_entropy"), LearningRule(lr=0.1, steps=1))
    with pytest.raises(ConfigError, match="encoding='one_hot'"):
        System(MLP(width=8), ModularArithmetic(p=7, n_train=30, n_test=19), Task("cross_entropy"),
               LearningRule(lr=0.1, steps=1))
    with pytest.raises(ConfigError, match="encoding 'tokens'"):
        System(Transformer(width=8, depth=1, heads=2, base_width=8), data, Task("cross_entropy"), LearningRule(lr=0.1, steps=1))
    with pytest.raises(ConfigError, match="data.encoding"):
        ModularArithmetic(p=7, n_train=30, n_test=19, encoding="binary")

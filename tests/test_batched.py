"""Batched training equals training each model alone with torch.optim (engine-style loop), to float64 rounding, on
both gradient paths: the hand-written chain (nn.Sequential of Linear and activations, lmech MLPNet) and vmap."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from lmech.engine.loop import minibatches
from lmech.engine import train_stacked
from lmech.engine.batched import _chain
from lmech.observables.metrics import accuracy, loss
from lmech.systems.networks import MLPNet
from lmech.systems.task import cross_entropy, half_mse


class _Residual(nn.Module):
    """Not a chain: trained through vmap."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(6, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.inp(x))
        return self.out(h + torch.tanh(self.mid(h)))


def _model(kind: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    if kind == "tanh":
        return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    if kind == "gelu-sigmoid":  # GELU through autograd, bias-free layers
        return nn.Sequential(nn.Linear(6, 16, bias=False), nn.GELU(), nn.Linear(16, 16), nn.Sigmoid(),
                             nn.Linear(16, 3, bias=False)).double()
    if kind == "mlpnet-relu":  # NTK multipliers, output scale alpha, fused bias + relu
        model = MLPNet([6, 16, 16, 3], "relu", True, alpha=2.0, ntk=True).double()
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.7)
        return model
    return _Residual().double()


KINDS = ["tanh", "gelu-sigmoid", "mlpnet-relu", "general"]


def _data(n=32, labels=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (n,), generator=gen) if labels else torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, y


def _sequential(model, x, y, lr, steps, optimizer, batch_size, scale=None, loss_fn=half_mse, record=None,
                test=None, seed=0):
    """lmech's engine loop with torch.optim (param groups from ``scale``): records at ``record`` steps (all by
    default), stops at a non-finite minibatch loss; returns the records and the diverged step (-1)."""
    groups = [{"params": [p], "lr": lr * (scale or {}).get(n, 1.0)} for n, p in model.named_parameters()]
    opt = (torch.optim.Adam(groups, lr=lr) if optimizer == "adam"
           else torch.optim.SGD(groups, lr=lr, momentum=0.9 if optimizer == "momentum" else 0.0))
    next_batch = minibatches(len(x), batch_size, seed)
    rec = {"loss": [], "accuracy": [], "test_loss": [], "test_accuracy": []}
    for step in range(steps + 1):
        if record is None or step in record:
            rec["loss"].append(loss(model, loss_fn, x, y))
            if not y.is_floating_point():
                rec["accuracy"].append(accuracy(model, x, y))
            if test is not None:
                rec["test_loss"].append(loss(model, loss_fn, *test))
                rec["test_accuracy"].append(accuracy(model, *test))
        if step == steps:
            break
        idx = next_batch()
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad()
        batch_loss = loss_fn(model(xb), yb)
        if not math.isfinite(float(batch_loss.detach())):
            return rec, step
        batch_loss.backward()
        opt.step()
    return rec, -1


def _assert_params_equal(a, b):
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_the_chain_path_is_taken_for_chains_only():
    assert all(_chain(_model(kind, 0)) is not None for kind in KINDS[:3])
    assert _chain(_model("general", 0)) is None
    assert _chain(nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Linear(16, 3))) is None
    assert _chain(nn.Sequential(nn.Linear(6, 16), nn.Softmax(dim=1))) is None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("optimizer, batch_size", [("sgd", None), ("momentum", 8), ("adam", 8)])
def test_stacked_training_equals_sequential_training(kind, optimizer, batch_size):
    x, y = _data()
    lrs = [0.01, 0.03, 0.1, 0.3] if optimizer != "adam" else [1e-3, 3e-3, 1e-2, 3e-2]
    stacked, alone = [_model(kind, s) for s in range(4)], [_model(kind, s) for s in range(4)]
    run = train_stacked(stacked, half_mse, x, y, lr=lrs, steps=20, batch_size=batch_size,
                        optimizer="adam" if optimizer == "adam" else "sgd",
                        momentum=0.9 if optimizer == "momentum" else 0.0)
    np.testing.assert_array_equal(run.steps, np.arange(21))
    assert run.test_loss is None and run.accuracy is None and run.test_accuracy is None
    np.testing.assert_array_equal(run.diverged_step, [-1] * 4)
    for i, (a, b) in enumerate(zip(stacked, alone)):
        rec, diverged = _sequential(b, x, y, lrs[i], 20, optimizer, batch_size)
        assert diverged == -1
        np.testing.assert_allclose(run.loss[:, i], rec["loss"], rtol=1e-10)
        _assert_params_equal(a, b)


@pytest.mark.parametrize("kind", ["tanh", "mlpnet-relu", "general"])
@pytest.mark.parametrize("loss_fn, labels", [(half_mse, False), (cross_entropy, True)])
def test_per_model_seeds_draw_each_models_own_minibatches(kind, loss_fn, labels):
    """Seeds that differ in the batch order as well as the init (lmech's seed sets both) still train as one stack."""
    x, y = _data(labels=labels)
    seeds, lrs = [3, 1, 4, 1], [1e-3, 3e-3, 1e-2, 3e-2]
    stacked, alone = [_model(kind, s) for s in seeds], [_model(kind, s) for s in seeds]
    run = train_stacked(stacked, loss_fn, x, y, lr=lrs, steps=12, batch_size=8, optimizer="adam", seed=seeds)
    for i, (a, b) in enumerate(zip(stacked, alone)):
        rec, _ = _sequential(b, x, y, lrs[i], 12, "adam", 8, loss_fn=loss_fn, seed=seeds[i])
        np.testing.assert_allclose(run.loss[:, i], rec["loss"], rtol=1e-10)
        _assert_params_equal(a, b)
    shared = train_stacked([_model(kind, s) for s in seeds], loss_fn, x, y, lr=lrs, steps=12, batch_size=8,
                           optimizer="adam", seed=3)
    assert not np.allclose(shared.loss[1:, 1], run.loss[1:, 1])  # seed 1's own order differs from seed 3's
    with pytest.raises(ValueError, match="seed has 2 values for 4 models"):
        train_stacked(stacked, loss_fn, x, y, lr=lrs, steps=1, batch_size=8, seed=[0, 1])


@pytest.mark.parametrize("kind", ["tanh", "general"])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_lr_scale_equals_optimizer_param_groups(kind, optimizer):
    x, y = _data()
    names = [n for n, _ in _model(kind, 0).named_parameters()]
    scale = {names[0]: 0.5, names[2]: 3.0, names[-1]: 0.1}  # names[1] is missing: scale 1
    lrs = [0.01, 0.05] if optimizer == "momentum" else [1e-3, 1e-2]
    stacked, alone = [_model(kind, s) for s in range(2)], [_model(kind, s) for s in range(2)]
    run = train_stacked(stacked, half_mse, x, y, lr=lrs, steps=15, batch_size=8, lr_scale=scale,
                        optimizer="adam" if optimizer == "adam" else "sgd",
                        momentum=0.9 if optimizer == "momentum" else 0.0)
    for i, (a, b) in enumerate(zip(stacked, alone)):
        rec, _ = _sequential(b, x, y, lrs[i], 15, optimizer, 8, scale=scale)
        np.testing.assert_allclose(run.loss[:, i], rec["loss"], rtol=1e-10)
        _assert_params_equal(a, b)


@pytest.mark.parametrize("kind", ["tanh", "mlpnet-relu", "general"])
def test_test_set_accuracy_and_record_steps_equal_sequential_measurements(kind):
    x, y = _data(40, labels=True)
    x_test, y_test = _data(24, labels=True, seed=1)
    lrs, record = [0.05, 0.2, 0.5], [0, 5, 12]
    stacked, alone = [_model(kind, s) for s in range(3)], [_model(kind, s) for s in range(3)]
    run = train_stacked(stacked, cross_entropy, x, y, lr=lrs, steps=12, batch_size=8, record_steps=[12, 0, 5],
                        x_test=x_test, y_test=y_test, optimizer="sgd", momentum=0.9)
    np.testing.assert_array_equal(run.steps, record)
    for i, b in enumerate(alone):
        rec, _ = _sequential(b, x, y, lrs[i], 12, "momentum", 8, loss_fn=cross_entropy, record=record,
                             test=(x_test, y_test))
        for name in ("loss", "test_loss"):
            np.testing.assert_allclose(getattr(run, name)[:, i], rec[name], rtol=1e-10)
        for name in ("accuracy", "test_accuracy"):
            np.testing.assert_array_equal(getattr(run, name)[:, i], rec[name])
    assert run.accuracy[-1].max() > run.accuracy[0].min()  # it learned something: the accuracies are not constant


@pytest.mark.parametrize("kind", ["mlpnet-relu", "general"])
def test_a_diverging_model_stops_alone_at_the_engines_step(kind):
    x, y = _data()
    lrs = [0.01, 0.05, 1e10, 0.1]  # model 2 blows up (at step 3 or 15)
    stacked, alone = [_model(kind, s) for s in range(4)], [_model(kind, s) for s in range(4)]
    run = train_stacked(stacked, half_mse, x, y, lr=lrs, steps=25, batch_size=8, optimizer="sgd", momentum=0.9)
    for i, (a, b) in enumerate(zip(stacked, alone)):
        rec, diverged = _sequential(b, x, y, lrs[i], 25, "momentum", 8)
        assert run.diverged_step[i] == diverged
        if i == 2:
            assert 0 < diverged < 25
            np.testing.assert_allclose(run.loss[:diverged + 1, i], rec["loss"], rtol=1e-10)
            assert np.isnan(run.loss[diverged + 1:, i]).all()
        else:
            assert diverged == -1
            np.testing.assert_allclose(run.loss[:, i], rec["loss"], rtol=1e-10)
        _assert_params_equal(a, b)  # the diverged model keeps its parameters from the step it diverged at


def test_test_records_only_equal_the_sequential_test_losses_and_still_catch_divergence():
    """``train_records=False`` skips the training-set pass at record steps: the test records are the sequential
    engine's, the training loss is absent, and a diverging model (lr 1e10) stops at the sequential engine's step with
    NaN records after it."""
    x, y = _data(40)
    test = _data(24, seed=1)
    lrs, record = [0.05, 0.2, 1e10], [0, 4, 9, 15]
    stacked, alone = [_model("mlpnet-relu", s) for s in range(3)], [_model("mlpnet-relu", s) for s in range(3)]
    run = train_stacked(stacked, half_mse, x, y, lr=lrs, steps=15, batch_size=8, record_steps=record, x_test=test[0],
                        y_test=test[1], train_records=False)
    assert run.loss is None and run.test_loss.shape == (4, 3)
    for i in range(3):
        rec, diverged = _sequential(alone[i], x, y, lrs[i], 15, "sgd", 8, record=record, test=test)
        assert run.diverged_step[i] == diverged and (diverged > 0) == (i == 2)
        kept = np.array(record) <= (diverged if diverged >= 0 else 15)
        np.testing.assert_allclose(run.test_loss[kept, i], rec["test_loss"], rtol=1e-10)
        assert np.isnan(run.test_loss[~kept, i]).all()
    with pytest.raises(ValueError, match="needs a test set"):
        train_stacked([_model("tanh", 0)], half_mse, x, y, lr=0.1, steps=1, train_records=False)


def test_closed_form_cross_entropy_equals_autograd_through_vmap():
    """The stacked chain's closed-form softmax cross-entropy (loss and output gradient) against autograd of
    torch's own cross_entropy, per model, for labels shared by the models and for one label set per model."""
    from lmech.engine.batched import _loss_and_grad

    gen = torch.Generator().manual_seed(3)
    out = torch.randn(4, 9, 5, generator=gen, dtype=torch.float64) * 3
    closed = _loss_and_grad(cross_entropy)
    for labels, per_model in ((torch.randint(0, 5, (9,), generator=gen), False),
                              (torch.randint(0, 5, (4, 9), generator=gen), True)):
        losses, grad = closed(out.mT.contiguous().mT, labels, per_model)  # a transposed layout, as the chain's
        for i in range(4):
            o = out[i].clone().requires_grad_()
            ref = torch.nn.functional.cross_entropy(o, labels[i] if per_model else labels)
            (ref_grad,) = torch.autograd.grad(ref, o)
            torch.testing.assert_close(losses[i], ref.detach(), rtol=1e-14, atol=0)
            torch.testing.assert_close(grad[i], ref_grad, rtol=1e-12, atol=1e-15)


def test_the_chains_tanh_is_within_float_rounding_of_the_exact_tanh():
    """The chain's ``2 sigmoid(2h) - 1`` against float64 ``torch.tanh`` (the exact value to 1e-16): within 2.5e-7
    absolute in float32 (a few units in the last place near +-1) and 1e-15 in float64, odd, saturating at +-1, and
    written into the buffer given."""
    from lmech.engine.batched import _tanh

    h = torch.cat([torch.linspace(-20, 20, 40001, dtype=torch.float64), torch.tensor([0.0, 1e-30, -1e-8, 1e-3])])
    exact = torch.tanh(h)
    assert (_tanh(h) - exact).abs().max() <= 1e-15
    single = _tanh(h.float()).double()
    assert (single - exact).abs().max() <= 2.5e-7
    assert (_tanh(-h.float()).double() + single).abs().max() <= 2.5e-7
    assert _tanh(torch.tensor([-100.0, 100.0])).tolist() == [-1.0, 1.0]
    buffer = torch.empty(3)
    assert _tanh(torch.tensor([0.5, -0.5, 2.0]), buffer) is buffer


def test_mixed_shapes_and_bad_arguments_are_refused():
    models = [_model("tanh", 0), nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()]
    x, y = _data(4)
    with pytest.raises(ValueError, match="one architecture"):
        train_stacked(models, half_mse, x, y, lr=0.1, steps=1)
    one = [_model("tanh", 0)]
    for kwargs, match in [({"optimizer": "lbfgs"}, "optimizer"), ({"lr_scale": {"1.weight": 2.0}}, "lr_scale"),
                          ({"record_steps": [0, 2]}, "record_steps"), ({"x_test": x}, "x_test"),
                          ({"lr": [0.1, 0.2]}, "one per model")]:
        with pytest.raises(ValueError, match=match):
            train_stacked(one, half_mse, x, y, **{"lr": 0.1, "steps": 1, **kwargs})

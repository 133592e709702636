"""Coordinate check: the probe against hand computations, closed-form first Adam steps, and muP vs SP exponents on
an MLP and a transformer."""
import pytest
import torch
from torch import nn

import lmech
from lmech.observables.state import TrainState
from lmech.observables.probes import CoordinateSizes, probe_from_dict, probe_types
from lmech.systems import ModularArithmetic
from lmech.systems.networks import TransformerNet
from lmech.systems.task import cross_entropy, half_mse

WIDTHS = [64, 128, 256, 512]


def _readout_only(width):
    torch.manual_seed(width)
    model = nn.Sequential(nn.Linear(20, width), nn.Tanh(), nn.Linear(width, 3))
    model[0].requires_grad_(False)  # only the readout trains
    return model


@pytest.mark.parametrize("scheme, exponent", [("sp", 1.0), ("mup", 0.0)])
def test_first_adam_step_on_the_readout_is_sign_descent(scheme, exponent):
    # one example: g_ij = d_i h_j, Adam's first step is -lr sign(g) (eps negligible), so the readout output moves by
    # lr_group * ||h||_1 + lr (the bias) in every coordinate: lr_group = lr under SP, lr / width_mult under muP
    x, y = torch.randn(1, 20), torch.randn(1, 3)
    lr = 1e-3
    cc = lmech.coord_check(_readout_only, WIDTHS, x, y, half_mse, scheme=scheme, steps=1, lr=lr)
    for i, width in enumerate(WIDTHS):
        model = _readout_only(width)
        lmech.parametrize(model, scheme, base_width=WIDTHS[0], lr=lr)  # the same init as inside coord_check
        h = torch.tanh(model[0](x))
        group_lr = lr if scheme == "sp" else lr * WIDTHS[0] / width
        assert cc.update["2"][i, 1] == pytest.approx(group_lr * float(h.abs().sum()) + lr, rel=1e-4)  # + the bias step
    assert cc.update_exponents()["2"] == pytest.approx(exponent, abs=0.1)


def _mlp(width):
    return nn.Sequential(nn.Linear(40, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def test_mup_keeps_every_layer_flat_and_sp_grows_hidden_and_output_updates():
    torch.manual_seed(0)
    x, y = torch.randn(64, 40), torch.randn(64, 10)
    mup = lmech.coord_check(_mlp, WIDTHS, x, y, half_mse, scheme="mup", steps=3, seeds=(0, 1))
    sp = lmech.coord_check(_mlp, WIDTHS, x, y, half_mse, scheme="sp", steps=3, seeds=(0, 1))
    assert mup.roles == {"0": "input", "2": "hidden", "4": "output"}
    for step in (1, 2, 3):  # REFERENCE 2.13: slope < 0.1 under muP, > 0.4 for hidden layers under SP
        up, act = mup.update_exponents(step), mup.activation_exponents(step)
        assert all(abs(e) < 0.15 for e in up.values()) and all(abs(e) < 0.15 for e in act.values()), (step, up, act)
    first = sp.update_exponents(1)
    assert first["2"] > 0.6 and first["4"] > 0.6 and abs(first["0"]) < 0.15, first
    assert sp.predicted == {"0": 0.0, "2": 1.0, "4": 1.0} and set(mup.predicted.values()) == {0.0}
    with pytest.raises(ValueError, match="two widths"):
        lmech.coord_check(_mlp, [64], x, y, half_mse)


def test_probe_records_mean_output_size_and_its_change_since_the_first_measurement():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2), nn.LayerNorm(2))
    x = torch.randn(8, 3)
    state = TrainState(0, model, half_mse, x, torch.zeros(8, 2), x[:0], x[:0], False, {})
    probe = CoordinateSizes(points=4)
    first = probe.measure(state)
    assert set(first) == ({f"coords/{n}/{k}" for n in ("0", "2", "3") for k in ("size", "update")}
                          | {f"coords/{n}/update_{k}" for n in ("0", "2") for k in ("weight", "input")})
    h = model[0](x[:4]).detach()
    assert first["coords/0/size"] == pytest.approx(float(h.abs().mean()), rel=1e-6)
    assert first["coords/2/size"] == pytest.approx(float(model[2](torch.relu(h)).detach().abs().mean()), rel=1e-6)
    assert first["coords/0/update"] == first["coords/2/update"] == 0.0
    w = model[2].weight.detach().clone()
    with torch.no_grad():
        model[2].weight.mul_(3.0)  # h_2 = 3 W r + b, so h_2 - h_2(0) = 2 W r
    second = probe.measure(state)
    assert second["coords/2/update"] == pytest.approx(float((2 * torch.relu(h) @ w.T).abs().mean()), rel=1e-6)
    assert second["coords/0/update"] == 0.0
    fresh = TrainState(0, model, half_mse, x, torch.zeros(8, 2), x[:0], x[:0], False, {})  # a new run: its own h_0
    assert probe.measure(fresh)["coords/2/update"] == 0.0
    assert probe.measure(state)["coords/2/update"] > 0  # the first run keeps its reference
    assert probe_from_dict(probe.to_dict()) == probe and probe_types()["coords"] is CoordinateSizes


def test_probe_splits_an_affine_update_into_its_own_step_and_its_moved_input():
    """h - h_0 = (W - W_0) x + W_0 (x - x_0) for a bias-free layer; Dense's multiplier is part of W."""
    from lmech.systems.networks import Dense

    torch.manual_seed(0)
    first_layer, readout = Dense(3, 6, bias=False, multiplier=0.5), Dense(6, 2, bias=False, multiplier=0.25)
    for layer in (first_layer, readout):
        nn.init.normal_(layer.weight)
    model = nn.Sequential(first_layer, nn.Tanh(), readout)
    x = torch.randn(8, 3)
    state = TrainState(0, model, half_mse, x, torch.zeros(8, 2), x[:0], x[:0], False, {})
    probe = CoordinateSizes(points=8)
    probe.measure(state)
    r0, w0 = torch.tanh(first_layer(x)).detach(), 0.25 * readout.weight.detach().clone()
    with torch.no_grad():
        first_layer.weight.add_(0.3 * torch.randn(6, 3))
        readout.weight.add_(0.2 * torch.randn(2, 6))
    got = probe.measure(state)
    r, w = torch.tanh(first_layer(x)).detach(), 0.25 * readout.weight.detach()
    own, moved = r @ (w - w0).T, (r - r0) @ w0.T
    assert got["coords/2/update_weight"] == pytest.approx(float(own.abs().mean()), rel=1e-6)
    assert got["coords/2/update_input"] == pytest.approx(float(moved.abs().mean()), rel=1e-6)
    assert got["coords/2/update"] == pytest.approx(float((own + moved).abs().mean()), rel=1e-6)
    assert got["coords/0/update_input"] == 0.0  # the data do not move
    assert "coords/2/update_input_target" not in got  # no class labels: no split by logit
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    labelled = TrainState(0, model, half_mse, x, labels, x[:0], labels[:0], True, {})
    probe.measure(labelled)  # its own reference: the current weights
    with torch.no_grad():
        first_layer.weight.add_(0.3 * torch.randn(6, 3))
    r2 = torch.tanh(first_layer(x)).detach()
    split = probe.measure(labelled)
    moved2 = (r2 - r) @ w.T
    at_label = moved2[torch.arange(8), labels]
    assert split["coords/2/update_input_target"] == pytest.approx(float(at_label.abs().mean()), rel=1e-6)
    assert split["coords/2/update_input_other"] == pytest.approx(float(moved2[torch.arange(8), 1 - labels].abs().mean()),
                                                                 rel=1e-6)
    assert "coords/0/update_input_target" not in split  # only the readout (the last affine layer) is split


def test_probe_reads_token_inputs_and_every_called_layer_of_a_transformer():
    torch.manual_seed(0)
    model = TransformerNet(vocab=11, seq_len=2, width=8, depth=1, heads=2, mlp_ratio=4, d_out=11)
    tokens = torch.randint(0, 11, (6, 2))
    state = TrainState(0, model, cross_entropy, tokens, tokens[:, 0], tokens[:0], tokens[:0, 0], True, {})
    out = CoordinateSizes(points=6).measure(state)
    assert out["coords/embed/size"] == pytest.approx(float(model.embed(tokens).detach().abs().mean()), rel=1e-6)
    layers = {"embed", "norm", "readout"} | {f"blocks.0.{n}" for n in ("ln1", "ln2", "attn.q", "attn.k", "attn.v",
                                                                      "attn.o", "mlp.0", "mlp.2")}
    assert {k.split("/")[1] for k in out} == layers  # the position table is read as a tensor, never called


TF_WIDTHS = [32, 64, 128, 256]


def _transformer(width, readout_only=False):
    torch.manual_seed(0)
    model = TransformerNet(vocab=97, seq_len=2, width=width, depth=2, heads=2, mlp_ratio=4, d_out=97)
    if readout_only:
        model.requires_grad_(False)
        model.readout.requires_grad_(True)
    return model


@pytest.mark.parametrize("scheme, exponent", [("sp", 1.0), ("mup", 0.0)])
def test_first_adam_step_on_a_transformer_readout_is_sign_descent(scheme, exponent):
    # one sequence: the readout's gradient is d x^T with x the final LayerNorm output, so Adam's first step moves
    # every logit by lr_group ||x||_1 + lr (the bias): lr_group = lr under SP, lr / width_mult under muP
    tokens, label = torch.tensor([[3, 5]]), torch.tensor([8])
    lr = 1e-3
    cc = lmech.coord_check(lambda w: _transformer(w, True), TF_WIDTHS, tokens, label, cross_entropy, scheme=scheme,
                           steps=1, lr=lr)
    assert cc.roles["readout"] == "output" and cc.roles["embed"] == "frozen" and cc.roles["norm"] == "norm"
    for i, width in enumerate(TF_WIDTHS):
        model = _transformer(width, True)
        lmech.parametrize(model, scheme, base_width=TF_WIDTHS[0], lr=lr)  # only the readout is re-initialized
        x = model.norm(model.blocks[1](model.blocks[0](model.embed(tokens) + model.position.weight)))[:, -1]
        group_lr = lr if scheme == "sp" else lr * TF_WIDTHS[0] / width
        expected = group_lr * float(x.abs().sum()) + lr
        assert cc.update["readout"][i, 1] == pytest.approx(expected, rel=1e-4)
    assert cc.update_exponents()["readout"] == pytest.approx(exponent, abs=0.1)


def test_transformer_mup_layers_keep_their_size_and_sp_updates_grow_with_width():
    data = ModularArithmetic(p=97, n_train=1, n_test=0).load()
    tokens, labels = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    mup = lmech.coord_check(_transformer, TF_WIDTHS, tokens, labels, cross_entropy, scheme="mup", steps=3,
                            seeds=(0, 1))
    roles = {"embed": "embedding", "blocks.0.attn.q": "query", "blocks.1.attn.k": "hidden", "blocks.1.mlp.0": "hidden",
             "blocks.1.ln2": "norm", "readout": "output"}
    assert {n: mup.roles[n] for n in roles} == roles and "position" not in mup.roles
    # the query output carries the folded attention scale (base/width)^(1/2); every other layer is Theta(1)
    assert mup.predicted["blocks.0.attn.q"] == -0.5 and mup.predicted["blocks.1.mlp.0"] == 0.0
    for step in (1, 3):
        for sizes in (mup.activation_exponents(step), mup.update_exponents(step)):
            # the readout's update mixes its own Theta(1) step with W_0 dx ~ width^-1/2 (test_mup_coord_check_law)
            off = {n: e for n, e in sizes.items() if n != "readout" and abs(e - mup.predicted[n]) > 0.15}
            assert not off, (step, off)
    # SP at lr x width <= 0.1 (the first step's linear response): sign descent moves width-fed layers ~ width
    sp = lmech.coord_check(_transformer, TF_WIDTHS, tokens, labels, cross_entropy, scheme="sp", steps=1, lr=3e-4)
    first = sp.update_exponents(1)
    hidden = [n for n, r in sp.roles.items() if r in ("hidden", "query")]
    assert len(hidden) == 12 and min(first[n] for n in hidden) > 0.8, first
    assert 0.9 <= first["readout"] <= 1.6 and abs(first["embed"]) < 0.05  # embedding rows move by exactly lr
    assert sp.predicted["blocks.0.attn.q"] == 1.0 and "norm" not in sp.predicted

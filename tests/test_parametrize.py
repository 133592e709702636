"""lmech.parametrize on ordinary PyTorch models: roles, init variances and learning rates against the table."""
import copy
import io

import pytest
import torch
from torch import nn

import lmech
from lmech.systems.networks import MLPNet, TransformerNet

BASE = 64


class ResidualMLP(nn.Module):
    """A user-defined residual MLP with pre-norm blocks (no lmech classes)."""

    def __init__(self, width, depth=2, d_in=40, d_out=10):
        super().__init__()
        self.embed = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU())
                                    for _ in range(depth))
        self.readout = nn.Linear(width, d_out)

    def forward(self, x):
        h = self.embed(x)
        for block in self.blocks:
            h = h + block(h)
        return self.readout(h)


def test_roles_from_the_module_structure():
    p = lmech.parametrize(ResidualMLP(256), "mup", base_width=BASE)
    assert p.width == 256
    assert p.roles["embed.weight"] == "input" and p.roles["readout.weight"] == "output"
    assert p.roles["blocks.0.1.weight"] == "hidden" and p.roles["blocks.1.0.weight"] == "norm"
    assert p.roles["embed.bias"] == p.roles["readout.bias"] == "bias"
    q = lmech.parametrize(MLPNet([40, 128, 128, 10], "relu", True, 1.0, False), "mup", base_width=BASE)
    assert [q.roles[f"layers.{i}.weight"] for i in range(3)] == ["input", "hidden", "output"]


@pytest.mark.parametrize("scheme, var_exp", [("sp", {"input": 0, "hidden": -1, "output": -1}),
                                             ("mup", {"input": 0, "hidden": -1, "output": -2})])
def test_init_variance_and_adam_lrs_follow_the_table(scheme, var_exp):
    lr, width = 1e-2, 1024
    model = ResidualMLP(width, depth=1)
    p = lmech.parametrize(model, scheme, base_width=BASE, lr=lr, optimizer="adam")
    params = dict(model.named_parameters())
    mult = width / BASE
    for name, fan_in in (("embed.weight", 40), ("blocks.0.1.weight", width), ("readout.weight", width)):
        role = p.roles[name]
        # expected variance: the SP value 1/fan_in at the base width times (width / base)^exponent relative to SP
        base_fan_in = fan_in if role == "input" else BASE
        expected = (1 / base_fan_in) * mult ** var_exp[role]
        assert params[name].var().item() == pytest.approx(expected, rel=0.05), name
    lrs = {g["name"]: g["lr"] for g in p.groups}
    if scheme == "mup":  # Adam: hidden and output lr / width_mult, input and vectors unchanged
        assert lrs["blocks.0.1.weight"] == pytest.approx(lr / mult) and lrs["readout.weight"] == pytest.approx(lr / mult)
        assert lrs["embed.weight"] == pytest.approx(lr) and lrs["blocks.0.0.weight"] == pytest.approx(lr)
    else:
        assert set(lrs.values()) == {lr}
    assert params["blocks.0.0.weight"].eq(1).all() and params["readout.bias"].eq(0).all()


def test_sgd_rules_ntk_folding_and_weight_decay():
    lr, width = 0.1, 512
    mult = width / BASE
    sgd = {g["name"]: g for g in lmech.parametrize(ResidualMLP(width, 1), "mup", base_width=BASE, lr=lr,
                                                     optimizer="sgd", weight_decay=1e-4).groups}
    assert sgd["embed.weight"]["lr"] == pytest.approx(lr * mult)          # input: fan_out
    assert sgd["blocks.0.1.weight"]["lr"] == pytest.approx(lr)            # hidden: 1
    assert sgd["readout.weight"]["lr"] == pytest.approx(lr / mult)        # output: 1/fan_in
    assert sgd["blocks.0.1.bias"]["lr"] == pytest.approx(lr * mult)       # vector: fan_out
    for g in sgd.values():  # decoupled decay per step lr * wd is width-independent
        assert g["lr"] * g["weight_decay"] == pytest.approx(lr * 1e-4)
    # NTK: W = w / sqrt(fan_in) with w ~ N(0, 1) trained at lr; on the stored W that is lr / fan_in for SGD,
    # relative to the base width: base_fan_in / fan_in
    ntk = {g["name"]: g["lr"] for g in lmech.parametrize(ResidualMLP(width, 1), "ntk", base_width=BASE, lr=lr,
                                                         optimizer="sgd").groups}
    assert ntk["blocks.0.1.weight"] == pytest.approx(lr / mult) and ntk["embed.weight"] == pytest.approx(lr)


def test_mup_is_sp_at_the_base_width_and_state_dict_round_trips():
    a, b = ResidualMLP(BASE), ResidualMLP(BASE)
    pa = lmech.parametrize(a, "mup", base_width=BASE, seed=3)
    pb = lmech.parametrize(b, "sp", base_width=BASE, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert [g["lr"] for g in pa.groups] == [g["lr"] for g in pb.groups]
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    fresh = ResidualMLP(BASE)
    fresh.load_state_dict(torch.load(buffer))  # same keys: no parametrization wrappers, no extra attributes
    x = torch.randn(5, 40)
    assert torch.equal(fresh(x), a(x))
    torch.optim.Adam(pa.groups).step()  # the groups are valid optimizer groups


def test_unsupported_layers_and_bad_arguments_are_named():
    model = nn.Sequential(nn.Linear(40, 128), nn.Conv1d(1, 1, 3), nn.Linear(128, 10))
    with pytest.raises(ValueError, match=r"module 1 \(Conv1d\)"):
        lmech.parametrize(model, "mup", base_width=BASE)
    with pytest.raises(ValueError, match="base_depth="):
        lmech.parametrize(ResidualMLP(128), "depth-mup", base_width=BASE)
    with pytest.raises(ValueError, match="no residual blocks"):
        lmech.parametrize(MLPNet([40, 128, 10], "relu", True, 1.0, False), "depth-mup", base_width=BASE, base_depth=2)
    with pytest.raises(ValueError, match="base_width"):
        lmech.parametrize(ResidualMLP(128), "mup", base_width=0)
    attention = nn.Sequential(nn.Linear(40, 128), nn.MultiheadAttention(128, 2), nn.Linear(128, 10))
    with pytest.raises(ValueError, match=r"module 1 \(MultiheadAttention\).*separate nn.Linear q/k/v"):
        lmech.parametrize(attention, "mup", base_width=BASE)


def _transformer(width, depth=2):
    return TransformerNet(vocab=23, seq_len=2, width=width, depth=depth, heads=2, mlp_ratio=4, d_out=23).double()


def test_transformer_roles_width_and_query_scale():
    lr, width = 1e-2, 4 * BASE
    model = _transformer(width)
    p = lmech.parametrize(model, "mup", base_width=BASE, lr=lr)
    assert p.width == width  # d_model, not the 4 d_model MLP size
    roles = p.roles
    assert roles["embed.weight"] == roles["position.weight"] == "embedding"
    assert roles["blocks.0.attn.q.weight"] == "query" and roles["blocks.1.attn.k.weight"] == "hidden"
    assert roles["blocks.0.attn.o.weight"] == roles["blocks.0.mlp.0.weight"] == roles["blocks.0.mlp.2.weight"] == "hidden"
    assert roles["blocks.0.ln1.weight"] == "norm" and roles["blocks.0.mlp.0.bias"] == "bias"
    assert roles["readout.weight"] == "output"
    lrs = {g["name"]: g["lr"] for g in p.groups}
    # Adam: hidden lr / m; the query also carries the 1/d_head attention scale c = m^-1/2 (lr * c)
    assert lrs["blocks.0.attn.k.weight"] == pytest.approx(lr / 4) and lrs["embed.weight"] == pytest.approx(lr)
    assert lrs["blocks.0.attn.q.weight"] == pytest.approx(lr / 4 / 2)
    params = dict(model.named_parameters())
    assert params["blocks.0.attn.q.weight"].abs().max() == 0  # muP zero-inits the queries
    assert params["embed.weight"].var().item() == pytest.approx(1.0, rel=0.1)  # one-hot inputs: N(0, 1)
    assert params["blocks.0.mlp.2.weight"].var().item() == pytest.approx(1 / (4 * width), rel=0.05)
    sp = lmech.parametrize(_transformer(width), "sp", base_width=BASE, lr=lr)
    assert {g["lr"] for g in sp.groups} == {lr}
    zeroed, sp_model = _transformer(width), _transformer(width)
    lmech.parametrize(zeroed, "mup", base_width=BASE, readout_zero_init=True)
    lmech.parametrize(sp_model, "sp", base_width=BASE, readout_zero_init=True)  # SP's table has no zero readout
    assert zeroed.readout.weight.abs().max() == 0 and sp_model.readout.weight.var().item() == pytest.approx(1 / width, rel=0.1)


def _with_forward_multipliers(model, p, folded):
    """The reference implementation of a folded multiplier: the same model with each ``folded`` module's stored
    tensors divided by its factor ``c``, its output multiplied by ``c`` in the forward pass (a hook), and its learning
    rate divided by ``c`` (Adam), so that the effective weights and their updates are the folded model's."""
    ref = copy.deepcopy(model)
    modules = dict(ref.named_modules())
    lrs = {g["name"]: g["lr"] for g in p.groups}
    for name, c in folded.items():
        modules[name].register_forward_hook(lambda mod, inp, out, c=c: out * c)
        with torch.no_grad():
            for tensor in modules[name].parameters():
                tensor /= c
        for key in [k for k in lrs if k.rsplit(".", 1)[0] == name]:
            lrs[key] /= c
    return ref, [{"params": [t], "lr": lrs[n]} for n, t in ref.named_parameters()]


def _adam_outputs(model, groups, x, y, steps=4):
    opt = torch.optim.Adam(groups, eps=1e-30)  # Adam's eps is the one term that breaks the folding symmetry
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        return model(x)


def test_folded_query_scale_and_branch_multipliers_equal_forward_multipliers():
    """Folding c into the stored tensor (init c w, Adam lr c eta) trains the same function as an explicit forward
    multiplier c: checked for muP's attention scale on the queries and depth-muP's branch multipliers."""
    width, base_depth = 4 * BASE, 1
    model = _transformer(width, depth=4)
    p = lmech.parametrize(model, "depth-mup", base_width=BASE, base_depth=2 * base_depth, lr=3e-3, seed=1)
    assert p.depth == 8 and p.branches[:2] == ["blocks.0.attn.o", "blocks.0.mlp.2"]
    m = (2 * base_depth / 8) ** 0.5
    assert p.branch_multiplier == pytest.approx(m)
    folded = {b: m for b in p.branches} | {f"blocks.{i}.attn.q": 0.5 for i in range(4)}  # c = (width/base)^-1/2
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 23, (64, 2), generator=gen), torch.randint(0, 23, (64,), generator=gen)
    ref, ref_groups = _with_forward_multipliers(model, p, folded)
    torch.testing.assert_close(_adam_outputs(model, p.groups, x, y), _adam_outputs(ref, ref_groups, x, y),
                               rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("optimizer, exponent", [("adam", 0.5), ("sgd", 0.5), ("adam", 1.0), ("sgd", 1.0)])
def test_depth_learning_rates_follow_the_branch_table(optimizer, exponent):
    """In-branch lr factor (L/L0)^(2a-1) (SGD) or (L/L0)^(a-1) (Adam); the branch output layer also carries the
    folded multiplier (L0/L)^a (SGD: squared); layers outside the residual stack are untouched."""
    lr, depth, base_depth = 0.1, 8, 2
    ratio = depth / base_depth
    deep = {g["name"]: g["lr"] for g in lmech.parametrize(ResidualMLP(BASE, depth), "depth-mup", base_width=BASE,
                                                           base_depth=base_depth, depth_exponent=exponent,
                                                           optimizer=optimizer, lr=lr).groups}
    plain = {g["name"]: g["lr"] for g in lmech.parametrize(ResidualMLP(BASE, depth), "mup", base_width=BASE,
                                                            optimizer=optimizer, lr=lr).groups}
    in_branch = ratio ** ((2 * exponent - 1) if optimizer == "sgd" else (exponent - 1))
    fold = ratio ** (-exponent * (2 if optimizer == "sgd" else 1))
    assert deep["embed.weight"] == plain["embed.weight"] and deep["readout.weight"] == plain["readout.weight"]
    assert deep["blocks.3.0.weight"] == pytest.approx(plain["blocks.3.0.weight"] * in_branch)  # the block's norm
    assert deep["blocks.3.1.weight"] == pytest.approx(plain["blocks.3.1.weight"] * in_branch * fold)
    with pytest.raises(ValueError, match="exponent"):
        lmech.parametrize(ResidualMLP(BASE, depth), "depth-mup", base_width=BASE, base_depth=2, depth_exponent=2.0)


def test_transformer_state_dict_round_trip():
    model = _transformer(2 * BASE)
    lmech.parametrize(model, "depth-mup", base_width=BASE, base_depth=2, seed=5)
    fresh = _transformer(2 * BASE)
    fresh.load_state_dict(model.state_dict())
    tokens = torch.randint(0, 23, (7, 2))
    assert torch.equal(fresh(tokens), model(tokens))

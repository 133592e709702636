"""lmech.parametrize on ordinary PyTorch models: roles, init variances and learning rates against the table."""
import io

import pytest
import torch
from torch import nn

import lmech
from lmech.systems.networks import MLPNet

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
    assert p.roles["blocks.0.1.weight"] == "hidden" and p.roles["blocks.1.0.weight"] == "vector"
    assert p.roles["embed.bias"] == p.roles["readout.bias"] == "vector"
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
    with pytest.raises(ValueError, match="depth-mup"):
        lmech.parametrize(ResidualMLP(128), "depth-mup", base_width=BASE)
    with pytest.raises(ValueError, match="base_width"):
        lmech.parametrize(ResidualMLP(128), "mup", base_width=0)

"""Coordinate check: a closed-form first Adam step, and muP vs SP exponents on an MLP."""
import pytest
import torch
from torch import nn

import lmech
from lmech.systems.task import half_mse

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

"""The SP / NTK / muP scaling table against Tensor Programs V (Table 3), the abc form and mup's base-shape rule."""
import numpy as np
import pytest

from lmech.theory.parameterization import ROLES, layer_scaling

BASE, D_IN, D_OUT = 64, 40, 10
WIDTHS = np.array([64, 128, 256, 512, 1024])


def _shape(role, n):
    """(fan_in, fan_out, base_fan_in, base_fan_out) of a parameter with this role in an MLP of width n."""
    return {"input": (D_IN, n, D_IN, BASE), "hidden": (n, n, BASE, BASE), "output": (n, D_OUT, BASE, D_OUT),
            "vector": (n, n, BASE, BASE)}[role]


def _exponents(scheme, role, optimizer):
    """Fitted exponents in n of (init variance, effective lr), the lr on the stored tensor times multiplier^2."""
    rows = []
    for n in WIDTHS:
        fi, fo, bfi, bfo = _shape(role, n)
        s = layer_scaling(scheme, role, fan_in=fi, fan_out=fo, base_fan_in=bfi, base_fan_out=bfo, optimizer=optimizer)
        rows.append(((s.init_std * s.multiplier) ** 2, s.lr_mult))
    var, lr = np.array(rows).T
    slope = [np.polyfit(np.log(WIDTHS), np.log(v), 1)[0] if np.all(v > 0) else None for v in (var, lr)]
    return tuple(None if e is None else round(e, 6) for e in slope)


# Tensor Programs V Table 3 (exponents of the width n), muP and SP; vector init is zero (lmech's biases)
TABLE = {
    ("mup", "sgd"): {"input": (0, 1), "hidden": (-1, 0), "output": (-2, -1), "vector": (None, 1)},
    ("mup", "adam"): {"input": (0, 0), "hidden": (-1, -1), "output": (-2, -1), "vector": (None, 0)},
    ("sp", "sgd"): {"input": (0, 0), "hidden": (-1, 0), "output": (-1, 0), "vector": (None, 0)},
    ("sp", "adam"): {"input": (0, 0), "hidden": (-1, 0), "output": (-1, 0), "vector": (None, 0)},
}


@pytest.mark.parametrize("scheme, optimizer", list(TABLE))
def test_width_exponents_match_tensor_programs_v_table_3(scheme, optimizer):
    for role in ROLES:
        assert _exponents(scheme, role, optimizer) == TABLE[scheme, optimizer][role], role


def test_mup_with_sgd_is_the_abc_parameterization():
    # a = (-1/2, 0, 1/2) for (input, hidden, output), b = 1/2, c = 0: init variance n^(-2a-2b), SGD lr n^(-2a-c)
    for role, a in (("input", -0.5), ("hidden", 0.0), ("output", 0.5)):
        var, lr = _exponents("mup", role, "sgd")
        assert (var, lr) == (-2 * a - 2 * 0.5, -2 * a)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_mup_equals_sp_at_the_base_width_and_ntk_moves_the_scale_into_the_multiplier(optimizer):
    for role in ROLES:
        fi, fo, bfi, bfo = _shape(role, BASE)
        kw = dict(fan_in=fi, fan_out=fo, base_fan_in=bfi, base_fan_out=bfo, optimizer=optimizer)
        assert layer_scaling("mup", role, **kw) == layer_scaling("sp", role, **kw)
        sp, ntk = layer_scaling("sp", role, **kw), layer_scaling("ntk", role, **kw)
        assert ntk.init_std * ntk.multiplier == pytest.approx(sp.init_std * sp.multiplier)
    with pytest.raises(ValueError, match="scheme"):
        layer_scaling("mu", "hidden", fan_in=1, fan_out=1, base_fan_in=1, base_fan_out=1)
    with pytest.raises(ValueError, match="fan_in"):
        layer_scaling("mup", "hidden", fan_in=0, fan_out=1, base_fan_in=1, base_fan_out=1)

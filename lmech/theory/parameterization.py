"""Width scaling of init, learning rate and forward multiplier per layer role: SP, NTK and muP (the abc table).

A weight ``W = n^-a w`` with ``w ~ N(0, n^-2b)`` trained at learning rate ``eta n^-c`` (Yang & Hu 2021,
arXiv:2011.14522). lmech states the schemes *relative to a base shape*, as microsoft/mup does: with
``width_mult = fan_in / base_fan_in`` (and ``fan_out_mult`` likewise) every scheme equals the base model at the base
width, so hyperparameters tuned there keep their meaning. Without forward multipliers (Tensor Programs V,
Yang et al. 2022, arXiv:2203.03466, Table 3; SP values where they differ in parentheses):

============  ======================  =============  ======================
role          init variance           SGD lr         Adam lr
============  ======================  =============  ======================
input         1/fan_in                fan_out (1)    1
hidden        1/fan_in                1              1/fan_in (1)
output        1/fan_in^2 (1/fan_in)   1/fan_in (1)   1/fan_in (1)
vector        (biases, norm gains)    fan_out (1)    1
============  ======================  =============  ======================

``"input"`` weights map a finite dimension (data) to a width-like one, ``"hidden"`` width to width, ``"output"``
width to a finite one; ``"vector"`` parameters have one width-like dimension. NTK parameterization keeps
``w ~ N(0, 1)`` with the forward multiplier ``1/sqrt(fan_in)`` (Jacot et al. 2018) and the base learning rate.

Depth (:func:`branch_scaling`): a residual stack ``h <- h + L^-alpha f_l(h)`` of ``L`` branches keeps every branch's
feature update ``Theta(1/L)`` per step when the branch weights' learning rate is scaled by ``L^(2 alpha - 1)`` (SGD)
or ``L^(alpha - 1)`` (Adam): alpha = 1/2 is Depth-muP (Yang, Yu, Zhu & Hayou 2023, arXiv:2310.02244; Bordelon et al.
2023, arXiv:2309.16620), alpha = 1 is CompleteP (Dey et al. 2025, "Don't be lazy: CompleteP enables compute-efficient deep transformers").
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

ROLES = ("input", "hidden", "output", "vector")
SCHEMES = ("sp", "ntk", "mup")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class LayerScaling:
    """How one parameter is initialized and trained: ``init_std`` of the stored tensor (before the gain), the forward
    ``multiplier`` applied to it, and ``lr_mult``, the factor on the base learning rate for its optimizer group."""

    init_std: float
    multiplier: float
    lr_mult: float


@dataclass(frozen=True)
class BranchScaling:
    """Depth scaling of a residual branch relative to the base depth: the forward ``multiplier`` on the branch's
    output and ``lr_mult``, the factor on the learning rate of every parameter inside the branch."""

    multiplier: float
    lr_mult: float


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed values: {', '.join(allowed)}")


def layer_scaling(scheme: str, role: str, *, fan_in: int, fan_out: int, base_fan_in: int, base_fan_out: int,
                  optimizer: str = "adam") -> LayerScaling:
    """The :class:`LayerScaling` of a parameter with role ``role`` under ``scheme`` for ``optimizer``, relative to the
    base shape ``(base_fan_out, base_fan_in)`` (see the module table). ``"vector"`` parameters take ``init_std=0``
    (lmech's biases start at zero; norm gains are set to one by their module, not by this table)."""
    _check("scheme", scheme, SCHEMES)
    _check("role", role, ROLES)
    _check("optimizer", optimizer, OPTIMIZERS)
    for name, value in (("fan_in", fan_in), ("fan_out", fan_out), ("base_fan_in", base_fan_in),
                        ("base_fan_out", base_fan_out)):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"{name}={value!r} must be a positive integer")
    std = 0.0 if role == "vector" else fan_in ** -0.5
    if scheme == "sp":
        return LayerScaling(std, 1.0, 1.0)
    if scheme == "ntk":
        return LayerScaling(0.0 if role == "vector" else 1.0, 1.0 if role == "vector" else std, 1.0)
    width_mult, fan_out_mult = fan_in / base_fan_in, fan_out / base_fan_out
    if role == "output":
        return LayerScaling(std / width_mult ** 0.5, 1.0, 1.0 / width_mult)  # variance 1/(fan_in width_mult)
    if optimizer == "adam":
        return LayerScaling(std, 1.0, 1.0 / width_mult if role == "hidden" else 1.0)
    return LayerScaling(std, 1.0, fan_out_mult if role in ("input", "vector") else 1.0)


def branch_scaling(depth: int, base_depth: int, *, exponent: float = 0.5, optimizer: str = "adam") -> BranchScaling:
    """Residual-branch multiplier ``(base_depth/depth)^exponent`` and in-branch learning-rate factor
    ``(depth/base_depth)^(2 exponent - 1)`` for SGD or ``(depth/base_depth)^(exponent - 1)`` for Adam.

    A branch's contribution to the residual stream moves by ``multiplier^2 * lr`` per SGD step (its gradient carries the
    multiplier too) and by ``multiplier * lr`` per Adam step (Adam normalizes the gradient), and ``depth`` such moves
    must add up to ``Theta(1)``; ``exponent=0.5`` is Depth-muP, ``exponent=1`` CompleteP (see the module docstring).
    """
    _check("optimizer", optimizer, OPTIMIZERS)
    for name, value in (("depth", depth), ("base_depth", base_depth)):
        if not (isinstance(value, numbers.Integral) and value >= 1):
            raise ValueError(f"{name}={value!r} must be a positive integer (the number of residual branches)")
    if not 0.5 <= exponent <= 1.0:
        raise ValueError(f"exponent={exponent!r} must lie in [0.5, 1] (0.5: Depth-muP, 1: CompleteP)")
    ratio = depth / base_depth
    return BranchScaling(ratio ** -exponent, ratio ** ((2 * exponent - 1) if optimizer == "sgd" else (exponent - 1)))

"""Architectures: the network and its parameterization (how init and gradients scale with width)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._validate import ConfigError, one_of, positive_float, positive_int

ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "erf", "linear")
PARAMETERIZATIONS = ("sp", "ntk")


@dataclass(frozen=True)
class MLP:
    """Fully connected network: ``depth`` hidden layers of ``width`` units, then a linear readout.

    The output is ``alpha * readout(h)`` (output multiplier; Chizat et al. 2019, arXiv:1812.07956).
    ``parameterization``:

    - ``"sp"`` (standard): ``z = W h + b`` with ``W ~ N(0, g^2 / fan_in)``;
    - ``"ntk"``: ``z = (g / sqrt(fan_in)) W h + b`` with ``W ~ N(0, 1)`` (Jacot et al. 2018,
      arXiv:1806.07572; neural-tangents' convention, so ``w_std = g``). Same function at init as SP;
      gradients differ by the width.

    ``g`` is the learning rule's ``init_scale`` times the activation gain (sqrt(2) for relu, 1 else).
    Biases start at zero.
    """

    width: int
    depth: int = 1
    activation: str = "relu"
    bias: bool = True
    alpha: float = 1.0
    parameterization: str = "sp"
    kind: ClassVar[str] = "mlp"

    def __post_init__(self) -> None:
        positive_int("architecture.width", self.width)
        positive_int("architecture.depth", self.depth)
        one_of("architecture.activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"architecture.bias={self.bias!r} must be True or False")
        positive_float("architecture.alpha", self.alpha)
        one_of("architecture.parameterization", self.parameterization, PARAMETERIZATIONS)


@dataclass(frozen=True)
class DeepLinear:
    """Deep linear network ``f(x) = W_L ... W_1 x`` with ``depth`` weight matrices (no biases).

    Hidden layers have ``width`` units. Saxe et al. (2014, arXiv:1312.6120) count layers of units,
    so their "N_l layers" is ``depth = N_l - 1`` here.
    """

    depth: int
    width: int
    parameterization: str = "sp"
    kind: ClassVar[str] = "deep_linear"

    def __post_init__(self) -> None:
        positive_int("architecture.depth", self.depth)
        positive_int("architecture.width", self.width)
        one_of("architecture.parameterization", self.parameterization, PARAMETERIZATIONS)


ARCHITECTURES = {cls.kind: cls for cls in (MLP, DeepLinear)}

"""Architectures: the network and its parameterization (how init and gradients scale with width)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._validate import ConfigError, check_types, one_of, positive_float, positive_int

ACTIVATIONS = ("relu", "tanh", "gelu", "silu", "erf", "linear")
PARAMETERIZATIONS = ("sp", "ntk")
WIDTH_SCHEMES = ("sp", "ntk", "mup")  # lmech.parametrize schemes of MLPs
DEPTH_SCHEMES = ("sp", "mup", "depth-mup")  # of residual networks: depth-mup scales the residual branches


def _check_scaling(arch) -> None:
    """``base_width`` (and ``base_depth`` for depth-mup) are required where the scheme is relative to a base shape."""
    if arch.base_width is not None:
        positive_int("architecture.base_width", arch.base_width)
    if arch.parameterization in ("mup", "depth-mup") and arch.base_width is None:
        raise ConfigError(f"architecture.parameterization={arch.parameterization!r} needs architecture.base_width "
                          "(the width the learning rate is tuned at)")
    if getattr(arch, "base_depth", None) is not None:
        positive_int("architecture.base_depth", arch.base_depth)
    if arch.parameterization == "depth-mup":
        if arch.base_depth is None:
            raise ConfigError("architecture.parameterization='depth-mup' needs architecture.base_depth (the number of "
                              "residual blocks the learning rate is tuned at)")
        if not 0.5 <= arch.depth_exponent <= 1.0:
            raise ConfigError(f"architecture.depth_exponent={arch.depth_exponent!r} must lie in [0.5, 1] "
                              "(0.5: branches scaled by 1/sqrt(L), 1: by 1/L)")


@dataclass(frozen=True)
class MLP:
    """Fully connected network: ``depth`` hidden layers of ``width`` units, then a linear readout.

    The output is ``alpha * readout(h)`` (output multiplier; Chizat et al. 2019, arXiv:1812.07956).
    ``parameterization``:

    - ``"sp"`` (standard): ``z = W h + b`` with ``W ~ N(0, g^2 / fan_in)``;
    - ``"ntk"``: ``z = (g / sqrt(fan_in)) W h + b`` with ``W ~ N(0, 1)`` (Jacot et al. 2018,
      arXiv:1806.07572; neural-tangents' convention, so ``w_std = g``). Same function at init as SP;
      gradients differ by the width.
    - ``"mup"``: maximal-update parameterization relative to ``base_width`` (:func:`lmech.parametrize`: init
      variances and per-layer learning rates; equal to SP at ``width == base_width``).

    ``g`` is the learning rule's ``init_scale`` times the activation gain (sqrt(2) for relu, 1 else).
    Biases start at zero.
    """

    width: int
    depth: int = 1
    activation: str = "relu"
    bias: bool = True
    alpha: float = 1.0
    parameterization: str = "sp"
    base_width: int | None = None
    kind: ClassVar[str] = "mlp"

    def __post_init__(self) -> None:
        check_types(self, "architecture")
        positive_int("architecture.width", self.width)
        positive_int("architecture.depth", self.depth)
        one_of("architecture.activation", self.activation, ACTIVATIONS)
        if not isinstance(self.bias, bool):
            raise ConfigError(f"architecture.bias={self.bias!r} must be True or False")
        positive_float("architecture.alpha", self.alpha)
        one_of("architecture.parameterization", self.parameterization, WIDTH_SCHEMES)
        _check_scaling(self)


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
        check_types(self, "architecture")
        positive_int("architecture.depth", self.depth)
        positive_int("architecture.width", self.width)
        one_of("architecture.parameterization", self.parameterization, PARAMETERIZATIONS)


@dataclass(frozen=True)
class ResidualMLP:
    """Residual MLP: ``h_0 = W_in x``, ``h_l = h_(l-1) + W_l phi(LayerNorm(h_(l-1)))`` for ``l = 1..depth`` (pre-norm
    one-layer branches, no norm gains), ``f = W_out h_depth``; all layers with biases.

    ``parameterization`` (:func:`lmech.parametrize`, relative to ``base_width``): ``"sp"``; ``"mup"`` (width only:
    the unscaled residual network); ``"depth-mup"``, muP with each branch scaled by ``(base_depth / depth)^
    depth_exponent`` and the branch learning rates by the matching factor (0.5: Depth-muP, Yang et al. 2023,
    arXiv:2310.02244, Bordelon et al. 2023, arXiv:2309.16620; 1: CompleteP, Dey et al. 2025).
    """

    width: int
    depth: int = 4
    activation: str = "relu"
    parameterization: str = "mup"
    base_width: int | None = None
    base_depth: int | None = None
    depth_exponent: float = 0.5
    kind: ClassVar[str] = "residual_mlp"

    def __post_init__(self) -> None:
        check_types(self, "architecture")
        positive_int("architecture.width", self.width)
        positive_int("architecture.depth", self.depth)
        one_of("architecture.activation", self.activation, ACTIVATIONS)
        one_of("architecture.parameterization", self.parameterization, DEPTH_SCHEMES)
        _check_scaling(self)


@dataclass(frozen=True)
class Transformer:
    """Pre-norm transformer on token sequences: token and position embeddings of size ``width`` (d_model), ``depth``
    blocks ``h += Attn(LN(h)); h += MLP(LN(h))`` (``heads`` heads with separate bias-free q/k/v/out projections,
    softmax(q k^T / sqrt(d_head)), no mask; MLP ``width -> mlp_ratio * width -> width`` with GELU), a final
    LayerNorm and a linear readout of the last position.

    ``parameterization`` as :class:`ResidualMLP`; under ``"mup"``/``"depth-mup"`` the attention scale becomes
    ``1/d_head`` relative to the base width and the queries start at zero (:func:`lmech.parametrize`), and so does
    the readout when ``readout_zero_init`` (microsoft/mup's advice for transformers); the number of heads is fixed,
    so ``d_head`` grows with the width. For depth-mup every block holds two residual branches, and ``base_depth``
    counts blocks.
    """

    width: int
    depth: int = 2
    heads: int = 2
    mlp_ratio: int = 4
    parameterization: str = "mup"
    base_width: int | None = None
    base_depth: int | None = None
    depth_exponent: float = 0.5
    readout_zero_init: bool = True
    kind: ClassVar[str] = "transformer"

    def __post_init__(self) -> None:
        check_types(self, "architecture")
        positive_int("architecture.width", self.width)
        positive_int("architecture.depth", self.depth)
        positive_int("architecture.heads", self.heads)
        positive_int("architecture.mlp_ratio", self.mlp_ratio)
        if not isinstance(self.readout_zero_init, bool):
            raise ConfigError(f"architecture.readout_zero_init={self.readout_zero_init!r} must be True or False")
        if self.width % self.heads:
            raise ConfigError(f"architecture.width={self.width} must be a multiple of architecture.heads={self.heads}")
        one_of("architecture.parameterization", self.parameterization, DEPTH_SCHEMES)
        _check_scaling(self)


ARCHITECTURES = {cls.kind: cls for cls in (MLP, DeepLinear, ResidualMLP, Transformer)}

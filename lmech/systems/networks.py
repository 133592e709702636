"""PyTorch modules for the architectures, and their initialization from a system's learning rule."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._validate import ConfigError
from .architecture import MLP, DeepLinear, ResidualMLP, Transformer
from .data import Dataset, _orthonormal_columns

_ACTIVATIONS = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
    "erf": torch.erf,
    "linear": lambda z: z,
}


def activation_gain(activation: str) -> float:
    """Init gain multiplying every weight's standard deviation: sqrt(2) for relu (He et al. 2015), else 1."""
    return math.sqrt(2.0) if activation == "relu" else 1.0


class Dense(nn.Module):
    """Affine layer ``z = multiplier * W h + b``; ``multiplier = 1/sqrt(fan_in)`` in NTK parameterization."""

    def __init__(self, fan_in: int, fan_out: int, bias: bool = True, multiplier: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(fan_out)) if bias else None
        self.multiplier = multiplier

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.multiplier == 1.0:
            return F.linear(h, self.weight, self.bias)
        if h.numel() < self.weight.numel():  # (m h) W^T = m (h W^T): scale the smaller operand (a wide layer's
            return F.linear(h * self.multiplier, self.weight, self.bias)  # weights dwarf a batch of inputs)
        return F.linear(h, self.weight * self.multiplier, self.bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]} -> {self.weight.shape[0]}, bias={self.bias is not None}, multiplier={self.multiplier:g}"


class MLPNet(nn.Module):
    """``f(x) = alpha * Dense_L(phi(... phi(Dense_1(x))))``."""

    def __init__(self, dims: list[int], activation: str, bias: bool, alpha: float, ntk: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Dense(a, b, bias, 1.0 / math.sqrt(a) if ntk else 1.0) for a, b in zip(dims[:-1], dims[1:])
        )
        self.activation = activation
        self.alpha = alpha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phi = _ACTIVATIONS[self.activation]
        for layer in self.layers[:-1]:
            x = phi(layer(x))
        out = self.layers[-1](x)
        return out if self.alpha == 1.0 else self.alpha * out


class DeepLinearNet(nn.Module):
    """``f(x) = W_L ... W_1 x`` as a chain of bias-free :class:`Dense` layers."""

    def __init__(self, dims: list[int], ntk: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Dense(a, b, False, 1.0 / math.sqrt(a) if ntk else 1.0) for a, b in zip(dims[:-1], dims[1:])
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class ResidualMLPNet(nn.Module):
    """``W_out h_L`` with ``h_l = h_(l-1) + W_l phi(LayerNorm(h_(l-1)))``, ``h_0 = W_in x``: one residual branch per
    block, each block an ``nn.Sequential(LayerNorm, activation, Linear)``."""

    def __init__(self, d_in: int, width: int, depth: int, d_out: int, activation: str) -> None:
        super().__init__()
        act = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "linear": nn.Identity}
        if activation not in act:
            raise ConfigError(f"architecture.activation={activation!r} is not available for residual_mlp; "
                              f"allowed: {', '.join(act)}")
        self.embed = nn.Linear(d_in, width)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width, elementwise_affine=False), act[activation](),
                                                  nn.Linear(width, width)) for _ in range(depth))
        self.readout = nn.Linear(width, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        for block in self.blocks:
            h = h + block(h)
        return self.readout(h)


class SelfAttention(nn.Module):
    """Multi-head self-attention ``softmax(q k^T / sqrt(d_head)) v`` with separate bias-free projections, no mask."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(width, width, bias=False) for _ in range(4))
        self.heads = heads

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, t, d = h.shape

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.q(h)), split(self.k(h)), split(self.v(h))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // self.heads), dim=-1)
        return self.o((weights @ v).transpose(1, 2).reshape(b, t, d))


class TransformerBlock(nn.Module):
    """Pre-norm block: ``h + Attn(LN(h))``, then ``h + MLP(LN(h))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1, self.attn = nn.LayerNorm(width), SelfAttention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h + self.attn(self.ln1(h))
        return h + self.mlp(self.ln2(h))


class TransformerNet(nn.Module):
    """Token + position embeddings, pre-norm blocks, final LayerNorm, readout of the last position."""

    def __init__(self, vocab: int, seq_len: int, width: int, depth: int, heads: int, mlp_ratio: int,
                 d_out: int) -> None:
        super().__init__()
        self.embed, self.position = nn.Embedding(vocab, width), nn.Embedding(seq_len, width)
        self.blocks = nn.ModuleList(TransformerBlock(width, heads, mlp_ratio) for _ in range(depth))
        self.norm, self.readout = nn.LayerNorm(width), nn.Linear(width, d_out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens) + self.position.weight[: tokens.shape[1]]
        for block in self.blocks:
            h = block(h)
        return self.readout(self.norm(h[:, -1]))


def _aligned_weights(dims: list[int], data: Dataset, scale: float, seed: int) -> list[np.ndarray]:
    """Balanced, decoupled init: ``W_l = scale * P_l P_{l-1}^T`` with ``P_0 = V``, ``P_L = U`` of ``Sigma_yx``.

    Every mode then starts at strength ``m_0 = scale ** L`` and evolves independently
    (Saxe et al. 2014, arXiv:1312.6120, Sec. 2).
    """
    u, v = data.info["U"], data.info["V"]
    rank = u.shape[1]
    if min(dims[1:-1], default=rank) < rank:
        raise ConfigError(f"architecture.width={min(dims[1:-1])} is below the target rank {rank}; rule.init='aligned' needs width >= rank")
    rng = np.random.default_rng(seed)
    bases = [v] + [_orthonormal_columns(rng, n, rank) for n in dims[1:-1]] + [u]
    return [scale * b_out @ b_in.T for b_in, b_out in zip(bases[:-1], bases[1:])]


def build_model(architecture: MLP | DeepLinear | ResidualMLP | Transformer, data: Dataset, *, init: str,
                init_scale: float, seed: int, dtype: torch.dtype) -> nn.Module:
    """Instantiate and initialize the network for ``architecture`` on ``data`` (deterministic in ``seed``).

    Architectures whose parameterization is applied by :func:`lmech.parametrize` (muP MLPs, residual MLPs,
    transformers) come back with PyTorch's default init; the engine then parametrizes them (it also needs the
    learning rates)."""
    if isinstance(architecture, (ResidualMLP, Transformer)):
        if init != "normal":
            raise ConfigError(f"rule.init={init!r} is defined for MLP and deep linear architectures; use 'normal'")
        if isinstance(architecture, ResidualMLP):
            return ResidualMLPNet(data.input_dim, architecture.width, architecture.depth, data.output_dim,
                                  architecture.activation).to(dtype)
        if "vocab" not in data.info:
            raise ConfigError("architecture 'transformer' needs token data (e.g. modular_arithmetic)")
        return TransformerNet(data.info["vocab"], data.input_dim, architecture.width, architecture.depth,
                              architecture.heads, architecture.mlp_ratio, data.output_dim).to(dtype)
    ntk = architecture.parameterization == "ntk"
    if architecture.parameterization == "mup" and init != "normal":
        raise ConfigError(f"rule.init={init!r} is not defined under architecture.parameterization='mup'; use 'normal'")
    if isinstance(architecture, MLP):
        dims = [data.input_dim] + [architecture.width] * architecture.depth + [data.output_dim]
        model: nn.Module = MLPNet(dims, architecture.activation, architecture.bias, architecture.alpha, ntk)
        gain = init_scale * activation_gain(architecture.activation)
    else:
        dims = [data.input_dim] + [architecture.width] * (architecture.depth - 1) + [data.output_dim]
        model = DeepLinearNet(dims, ntk)
        gain = init_scale
    model = model.to(dtype)
    if init == "aligned":
        if ntk:
            raise ConfigError("rule.init='aligned' is defined for architecture.parameterization='sp'")
        with torch.no_grad():
            for layer, w in zip(model.layers, _aligned_weights(dims, data, init_scale, seed)):
                layer.weight.copy_(torch.as_tensor(w, dtype=dtype))
        return model
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in model.layers:
            fan_in = layer.weight.shape[1]
            if ntk:  # neural-tangents convention: W ~ N(0, 1), the gain lives in the multiplier g / sqrt(fan_in)
                layer.multiplier, std = gain / math.sqrt(fan_in), 1.0
            else:
                std = gain / math.sqrt(fan_in)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator, dtype=torch.float64) * std)
        if init == "symmetric":
            _symmetrize(model, architecture)
    return model


def _symmetrize(model: nn.Module, architecture: MLP | DeepLinear) -> None:
    """Make hidden unit ``i + m/2`` a copy of unit ``i`` of the last hidden layer with negated readout: f_0 = 0."""
    if not isinstance(architecture, MLP) or architecture.width % 2:
        raise ConfigError("rule.init='symmetric' needs an MLP architecture with an even architecture.width")
    last, readout = model.layers[-2], model.layers[-1]
    half = architecture.width // 2
    last.weight[half:] = last.weight[:half]
    if last.bias is not None:
        last.bias[half:] = last.bias[:half]
    readout.weight[:, half:] = -readout.weight[:, :half]

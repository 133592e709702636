"""``parametrize``: put an ordinary PyTorch model in SP, NTK or muP by re-initializing it and returning optimizer
parameter groups, without changing its module classes or its ``state_dict`` keys.

Every scheme is expressed on the *stored* tensors: the effective weight is the tensor itself (no forward
multiplier), and a scheme's multiplier ``c`` is folded into the init and the learning rate (SGD moves ``c w`` by
``eta c^2``, Adam by ``eta c``), so the result is plain SP-looking modules plus per-group learning rates, which
DDP, FSDP and checkpoints keep (microsoft/mup stores its shapes on ``nn.Parameter`` attributes, which they drop).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..systems.networks import Dense
from ..theory.parameterization import OPTIMIZERS, SCHEMES, LayerScaling, layer_scaling

_WEIGHTS = (nn.Linear, Dense)
_VECTORS = (nn.LayerNorm,)


@dataclass
class Parametrization:
    """What :func:`parametrize` did: each trainable parameter's ``roles[name]`` and ``scalings[name]``, the model's
    ``width`` and ``base_width``, and ``groups``: optimizer parameter groups (``params``, ``lr``, ``weight_decay``,
    plus ``name``/``role`` for reading), one per parameter, ready for ``torch.optim.Adam(p.groups)``."""

    scheme: str
    optimizer: str
    width: int
    base_width: int
    roles: dict[str, str] = field(default_factory=dict)
    scalings: dict[str, LayerScaling] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)


def _infer_width(model: nn.Module) -> int:
    """The hidden size: the largest ``out_features`` of an affine layer that is also another layer's ``in_features``."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHTS)]
    outs = {m.weight.shape[0] for m in layers}
    shared = outs & {m.weight.shape[1] for m in layers}
    if not shared:
        raise ValueError("cannot infer the width: no affine layer's output size is another's input size; pass width=")
    return max(shared)


def _width_like(dim: int, width: int) -> bool:
    """Width-like dimensions are multiples of the width (e.g. ``4 d_model``); a data dimension that happens to be
    a multiple of the width is misread as width-like, so pick widths that are not divisors of the data sizes."""
    return dim % width == 0


def _role(weight_shape: torch.Size, width: int) -> str:
    out_wide, in_wide = (_width_like(d, width) for d in weight_shape)
    if out_wide and in_wide:
        return "hidden"
    if out_wide:
        return "input"
    if in_wide:
        return "output"
    raise ValueError(f"weight of shape {tuple(weight_shape)} has no dimension that scales with width {width}")


def parametrize(model: nn.Module, scheme: str, *, base_width: int, optimizer: str = "adam", lr: float = 1e-3,
                weight_decay: float = 0.0, width: int | None = None, gain: float = 1.0,
                seed: int | None = 0) -> Parametrization:
    """Re-initialize ``model`` in ``scheme`` (``"sp"``, ``"ntk"``, ``"mup"``) relative to ``base_width`` and return its
    :class:`Parametrization` with per-parameter optimizer groups for ``optimizer`` (``"adam"`` or ``"sgd"``).

    Roles come from the module structure (:func:`lmech.theory.layer_scaling` has the table): an ``nn.Linear`` /
    lmech ``Dense`` weight is ``input``, ``hidden`` or ``output`` by which of its dimensions scale with the width
    (multiples of ``width``, inferred as the hidden size unless given); biases and ``LayerNorm`` parameters are
    ``vector``. Weights are drawn ``N(0, (gain * init_std * multiplier)^2)``, biases zeroed, norm gains set to one.
    Group learning rates are ``lr * lr_mult * c^2`` (SGD) or ``lr * lr_mult * c`` (Adam) with ``c`` the scheme's
    multiplier relative to the base width, so NTK parameterization is honoured without a forward multiplier;
    ``weight_decay`` is divided by the same factor, so that the decoupled decay per step ``lr * weight_decay``
    (AdamW) does not change with width (microsoft/mup's MuAdamW convention). At ``width == base_width`` muP is SP.
    Any other module with trainable parameters raises a ``ValueError`` naming it.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not supported; allowed values: {', '.join(SCHEMES)} "
                         "('depth-mup' needs residual branch multipliers: not available yet)")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not supported; allowed values: {', '.join(OPTIMIZERS)}")
    if not (isinstance(base_width, int) and base_width >= 1):
        raise ValueError(f"base_width={base_width!r} must be a positive integer (the width the learning rate was tuned at)")
    width = width or _infer_width(model)
    mult = width / base_width
    out = Parametrization(scheme, optimizer, width, base_width)
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for prefix, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        if not isinstance(module, _WEIGHTS + _VECTORS):
            raise ValueError(f"module {prefix or '<root>'} ({type(module).__name__}) has trainable parameters that "
                             "parametrize cannot classify; supported: nn.Linear, lmech Dense, nn.LayerNorm "
                             "(freeze it with requires_grad_(False) or wrap its computation in these layers)")
        for name, param in own:
            full = f"{prefix}.{name}" if prefix else name
            weight = isinstance(module, _WEIGHTS) and name == "weight"
            if weight:
                fan_out, fan_in = param.shape
                role = _role(param.shape, width)
                base_in = round(fan_in / mult) if role in ("hidden", "output") else fan_in
                base_out = round(fan_out / mult) if role in ("hidden", "input") else fan_out
            else:
                fan_in = fan_out = param.shape[0]
                role = "vector"
                base_in = base_out = round(fan_out / mult) if _width_like(fan_out, width) else fan_out
            s = layer_scaling(scheme, role, fan_in=fan_in, fan_out=fan_out, base_fan_in=base_in,
                              base_fan_out=base_out, optimizer=optimizer)
            base = layer_scaling(scheme, role, fan_in=base_in, fan_out=base_out, base_fan_in=base_in,
                                 base_fan_out=base_out, optimizer=optimizer)
            c = s.multiplier / base.multiplier
            factor = s.lr_mult * (c ** 2 if optimizer == "sgd" else c)
            with torch.no_grad():
                if weight:
                    param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param)
                                * gain * s.init_std * s.multiplier)
                elif isinstance(module, _VECTORS) and name == "weight":
                    param.fill_(1.0)
                else:
                    param.zero_()
            out.roles[full], out.scalings[full] = role, s
            out.groups.append({"params": [param], "lr": lr * factor, "weight_decay": weight_decay / factor,
                               "name": full, "role": role})
    return out

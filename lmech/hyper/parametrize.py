"""``parametrize``: put an ordinary PyTorch model in SP, NTK, muP or depth-muP by re-initializing it and returning
optimizer parameter groups, without changing its module classes or its ``state_dict`` keys.

Every scheme is expressed on the *stored* tensors: the effective weight is the tensor itself (no forward
multiplier), and a scheme's multiplier ``c`` is folded into the init and the learning rate (SGD moves ``c w`` by
``eta c^2``, Adam by ``eta c``, up to Adam's ``eps``), so the result is plain SP-looking modules plus per-group
learning rates, which DDP, FSDP and checkpoints keep (microsoft/mup stores its shapes on ``nn.Parameter`` attributes,
which they drop). The same folding carries muP's ``1/d_head`` attention scale (into the query projection) and
depth-muP's residual-branch multiplier (into each branch's output layer).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn

from ..systems.networks import Dense
from ..theory.parameterization import OPTIMIZERS, SCHEMES, LayerScaling, branch_scaling, layer_scaling

_WEIGHTS = (nn.Linear, Dense)
_VECTORS = (nn.LayerNorm,)
_EMBEDDINGS = (nn.Embedding,)
ALL_SCHEMES = SCHEMES + ("depth-mup",)
# module names (last component) read as attention query projections; pass queries= for other names
QUERY_NAMES = ("q", "query", "q_proj", "wq", "to_q")
# reported role -> row of the abc table in lmech.theory.layer_scaling
_TABLE_ROW = {"input": "input", "embedding": "input", "hidden": "hidden", "query": "hidden", "output": "output",
              "bias": "vector", "norm": "vector"}


@dataclass
class Parametrization:
    """What :func:`parametrize` did.

    ``roles[name]`` is each trainable parameter's role (``input``, ``embedding``, ``hidden``, ``query``, ``output``,
    ``bias``, ``norm``) and ``scalings[name]`` its :class:`~lmech.theory.LayerScaling` row; ``groups`` are optimizer
    parameter groups (``params``, ``lr``, ``weight_decay``, plus ``name``/``role`` for reading), one per parameter,
    ready for ``torch.optim.Adam(p.groups)``. For depth-muP, ``depth``/``base_depth`` count residual branches,
    ``branches`` names their output layers and ``branch_multiplier`` is the factor folded into them.
    """

    scheme: str
    optimizer: str
    width: int
    base_width: int
    roles: dict[str, str] = field(default_factory=dict)
    scalings: dict[str, LayerScaling] = field(default_factory=dict)
    groups: list[dict] = field(default_factory=list)
    depth: int | None = None
    base_depth: int | None = None
    branches: list[str] = field(default_factory=list)
    branch_multiplier: float = 1.0

    @property
    def lr_scale(self) -> dict[str, float]:
        """Each parameter's learning rate relative to the base ``lr`` (for :func:`lmech.hyper.train_stacked`)."""
        return {g["name"]: g["lr_scale"] for g in self.groups}


def _infer_width(model: nn.Module) -> int:
    """The hidden size: the smallest output size of an affine or embedding layer that is also an affine layer's
    input size (a transformer's ``d_model``, not its ``4 d_model`` MLP size)."""
    layers = [m for m in model.modules() if isinstance(m, _WEIGHTS)]
    outs = {m.weight.shape[0] for m in layers} | {m.weight.shape[1] for m in model.modules() if isinstance(m, _EMBEDDINGS)}
    shared = outs & {m.weight.shape[1] for m in layers}
    if not shared:
        raise ValueError("cannot infer the width: no affine layer's output size is another's input size; pass width=")
    return min(shared)


def _width_like(dim: int, width: int) -> bool:
    """Width-like dimensions are multiples of the width (e.g. ``4 d_model``); a data dimension that happens to be
    a multiple of the width is misread as width-like, so pick widths that are not divisors of the data sizes."""
    return dim % width == 0


def _weight_role(weight_shape: torch.Size, width: int, name: str) -> str:
    out_wide, in_wide = (_width_like(d, width) for d in weight_shape)
    if out_wide and in_wide:
        return "hidden"
    if out_wide:
        return "input"
    if in_wide:
        return "output"
    raise ValueError(f"weight {name} of shape {tuple(weight_shape)} has no dimension that scales with width {width}; "
                     "pass width= (the hidden size)")


def _residual_branches(model: nn.Module) -> list[str]:
    """Output layers of the residual branches: in the longest ``nn.ModuleList``/``nn.Sequential`` of at least two
    same-type blocks holding affine layers, each block's last affine layer when the block holds affine layers
    directly (one branch per block, e.g. ``Sequential(LayerNorm, ReLU, Linear)``), else the last affine layer of each
    of its children that holds any (e.g. a pre-norm transformer block's attention and MLP)."""
    def last_affine(module: nn.Module, prefix: str) -> str | None:
        names = [f"{prefix}.{n}" if n else prefix for n, m in module.named_modules() if isinstance(m, _WEIGHTS)]
        return names[-1] if names else None

    best: list[str] = []
    for prefix, container in model.named_modules():
        if not isinstance(container, (nn.ModuleList, nn.Sequential)) or len(container) < 2:
            continue
        blocks = list(container.named_children())
        if len({type(b) for _, b in blocks}) != 1 or isinstance(blocks[0][1], _WEIGHTS):
            continue
        found = []
        for name, block in blocks:
            path = f"{prefix}.{name}" if prefix else name
            if any(isinstance(c, _WEIGHTS) for c in block.children()):
                found.append(last_affine(block, path))
            else:
                found += [last_affine(c, f"{path}.{n}") for n, c in block.named_children()]
        found = [f for f in found if f]
        if len(found) > len(best):
            best = found
    return best


def parametrize(model: nn.Module, scheme: str, *, base_width: int, optimizer: str = "adam", lr: float = 1e-3,
                weight_decay: float = 0.0, width: int | None = None, gain: float = 1.0, seed: int | None = 0,
                base_depth: int | None = None, depth_exponent: float = 0.5, branches: Sequence[str] | None = None,
                queries: Sequence[str] | None = None, readout_zero_init: bool = False) -> Parametrization:
    """Re-initialize ``model`` in ``scheme`` (``"sp"``, ``"ntk"``, ``"mup"``, ``"depth-mup"``) relative to
    ``base_width`` (and ``base_depth``) and return its :class:`Parametrization` with per-parameter optimizer groups
    for ``optimizer`` (``"adam"`` or ``"sgd"``).

    Roles come from the module structure (:func:`lmech.theory.layer_scaling` has the table): an ``nn.Linear`` /
    lmech ``Dense`` weight is ``input``, ``hidden`` or ``output`` by which of its dimensions scale with the width
    (multiples of ``width``, inferred as the hidden size unless given); an ``nn.Embedding`` is ``embedding`` (an input
    weight on one-hot inputs: init ``N(0, gain^2)``); biases are ``bias`` and ``LayerNorm`` parameters ``norm``
    (vector-like). Linear weights are drawn ``N(0, (gain * init_std * multiplier)^2)``, biases zeroed, norm gains set
    to one. Group learning rates are ``lr * lr_mult * c^2`` (SGD) or ``lr * lr_mult * c`` (Adam) with ``c`` the
    scheme's multiplier relative to the base width, so NTK parameterization is honoured without a forward multiplier;
    ``weight_decay`` is divided by the same factor, so that the decoupled decay per step ``lr * weight_decay``
    (AdamW) does not change with width (microsoft/mup's MuAdamW convention). At ``width == base_width`` muP is SP.

    muP and depth-muP also zero-initialize attention query projections (modules named as in ``QUERY_NAMES``, or
    ``queries``) and fold the ``1/d_head`` attention scale into them: the model's own ``1/sqrt(d_head)`` times
    ``c = sqrt(base_width / width)`` (heads of width ``d_model / n_heads``; Yang et al. 2022, arXiv:2203.03466, Sec. 4).
    ``readout_zero_init`` starts muP's output weights at zero instead of variance ``1/(fan_in width_mult)`` (Table 3
    allows either; microsoft/mup recommends zero for transformers): the init readout's term in the output's change,
    which decays only like ``width^-1/2``, is then absent at finite width.
    ``"depth-mup"`` adds residual-branch scaling (:func:`lmech.theory.branch_scaling`, exponent ``depth_exponent``:
    0.5 is Depth-muP, 1 CompleteP) relative to ``base_depth`` branches: the multiplier is folded into each branch's
    output layer (``branches``, found from the module structure by default) and every parameter inside the residual
    blocks gets the depth learning-rate factor. Any other module with trainable parameters raises a ``ValueError``
    naming it.
    """
    if scheme not in ALL_SCHEMES:
        raise ValueError(f"scheme={scheme!r} is not supported; allowed values: {', '.join(ALL_SCHEMES)}")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not supported; allowed values: {', '.join(OPTIMIZERS)}")
    if not (isinstance(base_width, int) and base_width >= 1):
        raise ValueError(f"base_width={base_width!r} must be a positive integer (the width the learning rate was tuned at)")
    table_scheme = "mup" if scheme == "depth-mup" else scheme
    width = width or _infer_width(model)
    mult = width / base_width
    out = Parametrization(scheme, optimizer, width, base_width)
    depth_factor: dict[str, tuple[float, float]] = {}  # parameter name -> (init factor, lr factor) from depth
    if scheme == "depth-mup":
        depth_factor = _depth_factors(model, out, base_depth, depth_exponent, branches, optimizer)
    query_names = set(queries) if queries is not None else None
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for prefix, module in model.named_modules():
        own = [(n, p) for n, p in module.named_parameters(recurse=False) if p.requires_grad]
        if not own:
            continue
        _check_supported(module, prefix)
        is_query = (prefix in query_names if query_names is not None else prefix.rsplit(".", 1)[-1] in QUERY_NAMES)
        for name, param in own:
            full = f"{prefix}.{name}" if prefix else name
            role, fans = _role_and_fans(module, name, param, width, mult, full)
            if role == "hidden" and is_query:
                role = "query"
            s = layer_scaling(table_scheme, _TABLE_ROW[role], optimizer=optimizer, **fans)
            base = layer_scaling(table_scheme, _TABLE_ROW[role], fan_in=fans["base_fan_in"],
                                 fan_out=fans["base_fan_out"], optimizer=optimizer, base_fan_in=fans["base_fan_in"],
                                 base_fan_out=fans["base_fan_out"])
            c = s.multiplier / base.multiplier
            if role == "query" and table_scheme == "mup":
                c *= mult ** -0.5
            init_factor, lr_factor = depth_factor.get(full, (1.0, 1.0))
            c *= init_factor
            factor = s.lr_mult * lr_factor * (c ** 2 if optimizer == "sgd" else c)
            with torch.no_grad():
                if role == "embedding":
                    param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param) * gain)
                elif role in ("input", "hidden", "output", "query"):
                    zero = table_scheme == "mup" and (role == "query" or (role == "output" and readout_zero_init))
                    std = 0.0 if zero else gain * s.init_std * s.multiplier * init_factor
                    param.copy_(torch.randn(param.shape, generator=gen, dtype=torch.float64).to(param) * std)
                elif role == "norm" and name == "weight":
                    param.fill_(1.0)
                else:
                    param.zero_()
            out.roles[full], out.scalings[full] = role, s
            out.groups.append({"params": [param], "lr": lr * factor, "weight_decay": weight_decay / factor,
                               "name": full, "role": role, "lr_scale": factor})
    return out


def _check_supported(module: nn.Module, prefix: str) -> None:
    if isinstance(module, _WEIGHTS + _VECTORS + _EMBEDDINGS):
        return
    hint = ("nn.MultiheadAttention packs the query, key and value projections into one in_proj_weight, so the query "
            "cannot get its own init and learning rate; write attention with separate nn.Linear q/k/v/out "
            "projections (as lmech's Transformer does)" if isinstance(module, nn.MultiheadAttention) else
            "freeze it with requires_grad_(False) or express its computation with these layers")
    raise ValueError(f"module {prefix or '<root>'} ({type(module).__name__}) has trainable parameters that parametrize "
                     f"cannot classify; supported: nn.Linear, lmech Dense, nn.Embedding, nn.LayerNorm. {hint}")


def _role_and_fans(module: nn.Module, name: str, param: torch.Tensor, width: int, mult: float,
                   full: str) -> tuple[str, dict[str, int]]:
    """A parameter's role and its ``fan_in``, ``fan_out`` and their base-width values."""
    if isinstance(module, _EMBEDDINGS):  # (num_embeddings, dim): one-hot input of size num_embeddings
        fan_in, fan_out = param.shape
        base_out = round(fan_out / mult) if _width_like(fan_out, width) else fan_out
        return "embedding", dict(fan_in=fan_in, fan_out=fan_out, base_fan_in=fan_in, base_fan_out=base_out)
    if isinstance(module, _WEIGHTS) and name == "weight":
        fan_out, fan_in = param.shape
        role = _weight_role(param.shape, width, full)
        base_in = round(fan_in / mult) if role in ("hidden", "output") else fan_in
        base_out = round(fan_out / mult) if role in ("hidden", "input") else fan_out
        return role, dict(fan_in=fan_in, fan_out=fan_out, base_fan_in=base_in, base_fan_out=base_out)
    size = param.shape[0]
    base = round(size / mult) if _width_like(size, width) else size
    return ("norm" if isinstance(module, _VECTORS) else "bias"), dict(fan_in=size, fan_out=size, base_fan_in=base,
                                                                       base_fan_out=base)


def _depth_factors(model: nn.Module, out: Parametrization, base_depth: int | None, exponent: float,
                   branches: Sequence[str] | None, optimizer: str) -> dict[str, tuple[float, float]]:
    """Per-parameter ``(init factor, lr factor)`` of depth-muP: the branch multiplier on each branch output layer's
    parameters (init and, folded, lr) and the in-branch lr factor on every parameter of the residual blocks."""
    found = list(branches) if branches is not None else _residual_branches(model)
    modules = dict(model.named_modules())
    missing = [b for b in found if b not in modules or not isinstance(modules[b], _WEIGHTS)]
    if missing:
        raise ValueError(f"branches={missing!r}: not affine layers of the model; name each residual branch's output "
                         "nn.Linear")
    if not found:
        raise ValueError("scheme='depth-mup' found no residual blocks (an nn.ModuleList or nn.Sequential of at least "
                         "two same-type blocks holding nn.Linear layers); pass branches= (each residual branch's "
                         "output nn.Linear)")
    if base_depth is None:
        raise ValueError("scheme='depth-mup' needs base_depth= (the number of residual branches the learning rate was "
                         f"tuned at; this model has {len(found)})")
    s = branch_scaling(len(found), base_depth, exponent=exponent, optimizer=optimizer)
    out.depth, out.base_depth, out.branches, out.branch_multiplier = len(found), base_depth, found, s.multiplier
    # the residual stack: the deepest module holding every branch (e.g. the ModuleList of blocks)
    paths = [b.split(".") for b in found]
    stack = []
    for parts in zip(*[p[:-1] for p in paths]):
        if len(set(parts)) > 1:
            break
        stack.append(parts[0])
    inside = ".".join(stack) + "." if stack else ""
    factors = {}
    for name, _ in model.named_parameters():
        if name.rsplit(".", 1)[0] in found:
            factors[name] = (s.multiplier, s.lr_mult)
        elif name.startswith(inside):
            factors[name] = (1.0, s.lr_mult)
    return factors

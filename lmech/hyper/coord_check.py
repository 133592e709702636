"""Coordinate check: per-layer activation and update sizes against width under a parameterization.

Under muP every layer's activations and their changes during training stay Theta(1) per coordinate as the width
grows; under SP with Adam the hidden and output layers' updates grow like the width (Yang et al. 2022,
arXiv:2203.03466, Fig. 5 and App. D.1; microsoft/mup ``coord_check.py`` records the mean ``|x|`` of each module's
output over the first steps). Here each affine/norm layer's output ``h_t`` on a fixed batch is recorded after
``t = 0 .. steps`` updates as ``mean |h_t|`` (activation size) and ``mean |h_t - h_0|`` (update size), and a
power law in the width is fitted per layer and step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..observables._params import LossFn
from .parametrize import _VECTORS, _WEIGHTS, parametrize

# Predicted width exponents of the update size at a fixed step, by (scheme, optimizer) and layer role: muP keeps every
# layer Theta(1); SP with Adam moves a layer by lr per weight entry, so a layer fed by width-many coordinates moves
# by lr x width (Adam's first step is sign descent: exactly linear in the width for the readout).
PREDICTED_UPDATE_EXPONENTS = {
    ("mup", "adam"): {"input": 0.0, "hidden": 0.0, "output": 0.0},
    ("mup", "sgd"): {"input": 0.0, "hidden": 0.0, "output": 0.0},
    ("sp", "adam"): {"input": 0.0, "hidden": 1.0, "output": 1.0},
}


@dataclass
class CoordCheck:
    """Sizes ``activation[layer]`` and ``update[layer]`` of shape ``(len(widths), steps + 1)`` (mean over seeds),
    the layers' ``roles``, fitted width exponents per layer and step (:meth:`activation_exponents`,
    :meth:`update_exponents`); ``predicted`` holds the scheme's update exponents by layer where the theory states them."""

    scheme: str
    optimizer: str
    widths: np.ndarray
    roles: dict[str, str]
    activation: dict[str, np.ndarray] = field(default_factory=dict)
    update: dict[str, np.ndarray] = field(default_factory=dict)

    def _slope(self, sizes: dict[str, np.ndarray], step: int) -> dict[str, float]:
        return {name: float(np.polyfit(np.log(self.widths), np.log(s[:, step]), 1)[0]) for name, s in sizes.items()
                if np.all(s[:, step] > 0)}

    def activation_exponents(self, step: int = -1) -> dict[str, float]:
        """Fitted width exponent of ``mean |h_t|`` per layer at ``step`` (default the last)."""
        return self._slope(self.activation, step)

    def update_exponents(self, step: int = 1) -> dict[str, float]:
        """Fitted width exponent of ``mean |h_t - h_0|`` per layer at ``step``: by default the first update, where
        the predictions are sharpest (Adam's first step is sign descent); later steps mix in the loss's feedback
        (e.g. SP's outsized readout step is undone as the fit corrects it)."""
        return self._slope(self.update, step)

    @property
    def predicted(self) -> dict[str, float]:
        table = PREDICTED_UPDATE_EXPONENTS.get((self.scheme, self.optimizer), {})
        return {name: table[role] for name, role in self.roles.items() if role in table}


def _layer_role(module: nn.Module, roles: dict[str, str], name: str) -> str:
    key = f"{name}.weight" if name else "weight"
    return roles.get(key, "vector") if isinstance(module, _WEIGHTS) else "vector"


def coord_check(build_model: Callable[[int], nn.Module], widths: list[int], x: torch.Tensor, y: torch.Tensor,
                loss_fn: LossFn, *, scheme: str = "mup", steps: int = 3, optimizer: str = "adam", lr: float = 1e-2,
                seeds: tuple[int, ...] = (0,), base_width: int | None = None) -> CoordCheck:
    """Train ``build_model(width)`` (parametrized by :func:`lmech.parametrize` in ``scheme`` with ``base_width``,
    default the smallest width) for ``steps`` full-batch steps of ``optimizer`` on ``(x, y)`` and record every
    affine/norm layer's output sizes; see :class:`CoordCheck`."""
    if len(widths) < 2:
        raise ValueError(f"widths={widths!r}: need at least two widths to fit exponents")
    widths = sorted(widths)
    base_width = base_width or widths[0]
    out: CoordCheck | None = None
    for wi, width in enumerate(widths):
        for seed in seeds:
            model = build_model(width)
            p = parametrize(model, scheme, base_width=base_width, optimizer=optimizer, lr=lr, seed=seed)
            opt = (torch.optim.Adam if optimizer == "adam" else torch.optim.SGD)(p.groups)
            layers = {n: m for n, m in model.named_modules() if isinstance(m, _WEIGHTS + _VECTORS)}
            if out is None:
                out = CoordCheck(scheme, optimizer, np.array(widths, float),
                                 {n: _layer_role(m, p.roles, n) for n, m in layers.items()})
                for n in layers:
                    out.activation[n] = np.zeros((len(widths), steps + 1))
                    out.update[n] = np.zeros((len(widths), steps + 1))
            seen: dict[str, torch.Tensor] = {}
            hooks = [m.register_forward_hook(lambda mod, i, o, n=n: seen.__setitem__(n, o.detach()))
                     for n, m in layers.items()]
            first: dict[str, torch.Tensor] = {}
            for t in range(steps + 1):
                opt.zero_grad()
                loss = loss_fn(model(x), y)
                for n, h in seen.items():
                    first.setdefault(n, h)
                    out.activation[n][wi, t] += float(h.abs().mean()) / len(seeds)
                    out.update[n][wi, t] += float((h - first[n]).abs().mean()) / len(seeds)
                if t < steps:
                    loss.backward()
                    opt.step()
            for h in hooks:
                h.remove()
    return out

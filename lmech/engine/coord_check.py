"""Coordinate check: per-layer activation and update sizes against width under a parameterization.

Under muP every layer's activations and their changes during training stay Theta(1) per coordinate as the width
grows; under SP with Adam the hidden and output layers' updates grow like the width (Yang et al. 2022,
arXiv:2203.03466, Fig. 5 and App. D.1; microsoft/mup ``coord_check.py`` records the mean ``|x|`` of each module's
output over the first steps). Here the output ``h_t`` of each affine, embedding and norm layer on a fixed batch is
recorded after ``t = 0 .. steps`` updates as ``mean |h_t|`` (activation size) and ``mean |h_t - h_0|`` (update
size), and a power law in the width is fitted per layer and step. The engine probe
:class:`lmech.observables.probes.CoordinateSizes` records the same sizes during a run (:meth:`CoordCheck.from_runs`
reads them back).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..hyper.parametrize import _VECTORS, parametrize
from ..observables._params import LossFn
from ..observables.coordinates import COORD_LAYERS
from ..observables.probes import CoordinateSizes
from ..observables.schedule import Schedule
from ..observables.state import TrainState
from ..observables.weights import snapshot
from ..store.result import RunResult
from .loop import build_optimizer
from .trainer import train_model

# Predicted width exponents of the update size mean |h_t - h_0| at a fixed step, by (scheme, optimizer) and layer role
# (roles of lmech.parametrize; an embedding is an input layer on one-hot inputs, a query a hidden layer). muP keeps
# every layer Theta(1), except that the recorded query output carries the 1/d_head attention scale lmech.parametrize
# folds into the query weights, (base/width)^(1/2) times the Theta(1) muP query. SP with Adam moves every weight entry
# by ~lr, so a layer fed by width-many coordinates moves by lr x width (Adam's first step is sign descent: exactly
# linear in the width for the readout's own step), one fed by a fixed number of inputs (input, embedding) by O(1);
# SP's norm layers have no stated exponent (they renormalize whatever the residual stream does).
_MUP = {"input": 0.0, "embedding": 0.0, "hidden": 0.0, "query": -0.5, "output": 0.0, "norm": 0.0}
PREDICTED_UPDATE_EXPONENTS = {
    ("mup", "adam"): _MUP,
    ("mup", "sgd"): _MUP,
    ("sp", "adam"): {"input": 0.0, "embedding": 0.0, "hidden": 1.0, "query": 1.0, "output": 1.0},
}


def module_roles(model: nn.Module, roles: dict[str, str]) -> dict[str, str]:
    """The role of each coordinate layer of ``model`` from the parameter ``roles`` of a
    :class:`~lmech.hyper.Parametrization`: its weight's role (``input``, ``embedding``, ``hidden``, ``query``,
    ``output``), ``norm`` for a LayerNorm and ``frozen`` for a layer without trainable weight."""
    return {name: "norm" if isinstance(m, _VECTORS) else roles.get(f"{name}.weight" if name else "weight", "frozen")
            for name, m in model.named_modules() if isinstance(m, COORD_LAYERS)}


@dataclass
class CoordCheck:
    """Sizes ``activation[layer]`` and ``update[layer]`` of shape ``(len(widths), steps + 1)`` (mean over seeds), for
    affine layers the update's parts ``update_weight[layer]`` (mean ``|(W_t - W_0) x_t|``) and ``update_input[layer]``
    (mean ``|W_0 (x_t - x_0)|``), the layers' ``roles``, fitted width exponents per layer and step (:meth:`activation_exponents`,
    :meth:`update_exponents`); ``predicted`` holds the scheme's update exponents by layer where the theory states them."""

    scheme: str
    optimizer: str
    widths: np.ndarray
    roles: dict[str, str]
    activation: dict[str, np.ndarray] = field(default_factory=dict)
    update: dict[str, np.ndarray] = field(default_factory=dict)
    update_weight: dict[str, np.ndarray] = field(default_factory=dict)
    update_input: dict[str, np.ndarray] = field(default_factory=dict)
    update_input_target: dict[str, np.ndarray] = field(default_factory=dict)
    update_input_other: dict[str, np.ndarray] = field(default_factory=dict)

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

    def update_part_exponents(self, step: int = 1) -> dict[str, dict[str, float]]:
        """Fitted width exponents of an affine layer's update parts at ``step``: ``{"weight": {layer: exponent of
        mean |(W_t - W_0) x_t|}, "input": {layer: exponent of mean |W_0 (x_t - x_0)|}, "input_target"/"input_other":
        the readout's label logit / other logits of the latter}``."""
        return {"weight": self._slope(self.update_weight, step), "input": self._slope(self.update_input, step),
                "input_target": self._slope(self.update_input_target, step),
                "input_other": self._slope(self.update_input_other, step)}

    @property
    def predicted(self) -> dict[str, float]:
        table = PREDICTED_UPDATE_EXPONENTS.get((self.scheme, self.optimizer), {})
        return {name: table[role] for name, role in self.roles.items() if role in table}

    @classmethod
    def from_runs(cls, runs: Sequence[Sequence[RunResult]], widths: Sequence[int], roles: dict[str, str], *,
                  scheme: str, optimizer: str = "adam") -> "CoordCheck":
        """The coordinate check of engine runs measured by the ``CoordinateSizes`` probe: ``runs[i]`` are the seeds
        at ``widths[i]`` (sizes averaged over them), each recording ``coords/<layer>/size`` and ``.../update`` at
        steps ``0 .. steps``; ``roles`` as :func:`module_roles`."""
        out = cls(scheme, optimizer, np.asarray(widths, float), {})
        for wi, seeds in enumerate(runs):
            for run in seeds:
                for metric in run.names():
                    head, _, kind = metric.rpartition("/")
                    if not head.startswith("coords/"):
                        continue
                    steps, values = run.series(metric)
                    if not np.array_equal(steps, np.arange(len(steps))):
                        raise ValueError(f"run {run.run_id}: {metric} is not measured at every step")
                    store = {"size": out.activation, "update": out.update, "update_weight": out.update_weight,
                             "update_input": out.update_input, "update_input_target": out.update_input_target,
                             "update_input_other": out.update_input_other}[kind]
                    store.setdefault(head[len("coords/"):], np.zeros((len(widths), len(steps))))[wi] += values / len(seeds)
        out.roles = {name: roles[name] for name in out.activation}
        return out


def coord_check(build_model: Callable[[int], nn.Module], widths: list[int], x: torch.Tensor, y: torch.Tensor,
                loss_fn: LossFn, *, scheme: str = "mup", steps: int = 3, optimizer: str = "adam", lr: float = 1e-2,
                seeds: tuple[int, ...] = (0,), base_width: int | None = None) -> CoordCheck:
    """Train ``build_model(width)`` (parametrized by :func:`lmech.parametrize` in ``scheme`` with ``base_width``,
    default the smallest width) for ``steps`` full-batch steps of ``optimizer`` on ``(x, y)`` and record every
    affine/embedding/norm layer's output sizes; see :class:`CoordCheck`. ``x`` may hold integer tokens
    (e.g. for :class:`lmech.systems.networks.TransformerNet`)."""
    if len(widths) < 2:
        raise ValueError(f"widths={widths!r}: need at least two widths to fit exponents")
    widths = sorted(widths)
    base_width = base_width or widths[0]
    probe = CoordinateSizes(Schedule(every=1), points=len(x))
    runs, roles = [], {}
    for width in widths:
        seeds_runs = []
        for seed in seeds:
            model = build_model(width)
            p = parametrize(model, scheme, base_width=base_width, optimizer=optimizer, lr=lr, seed=seed)
            roles = roles or module_roles(model, p.roles)
            state = TrainState(0, model, loss_fn, x, y, x[:0], y[:0], False, snapshot(model),
                               build_optimizer(optimizer, p.groups, lr=lr))
            seeds_runs.append(train_model(state, [probe], RunResult(f"coord-check w={width} seed={seed}", None, []),
                                          steps))
        runs.append(seeds_runs)
    return CoordCheck.from_runs(runs, widths, roles, scheme=scheme, optimizer=optimizer)

"""Coordinate sizes: the mean absolute output of every layer and its change since a reference, the measurement of
the coordinate check (Yang et al. 2022, arXiv:2203.03466, App. D.1; :func:`lmech.coord_check`, the
``CoordinateSizes`` probe)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from ..systems.networks import Dense

COORD_LAYERS = (nn.Linear, Dense, nn.Embedding, nn.LayerNorm)


def _effective_weight(module: nn.Module) -> torch.Tensor | None:
    """The matrix an affine layer multiplies its input by (``Dense``'s multiplier included); None for other layers."""
    if isinstance(module, Dense):
        return module.weight.detach() * module.multiplier
    return module.weight.detach() if isinstance(module, nn.Linear) else None


@contextmanager
def coordinate_sizes(model: nn.Module, first: dict[str, torch.Tensor],
                     labels: torch.Tensor | None = None) -> Iterator[dict[str, dict[str, float]]]:
    """Record the output ``h`` of every ``nn.Linear``, lmech ``Dense``, ``nn.Embedding`` and ``nn.LayerNorm`` module
    of ``model`` during the forward passes inside the ``with`` block (the last call of each module counts; a module
    never called, e.g. an embedding read through its ``.weight``, is absent). On exit the yielded dict holds, per module
    name, ``size`` = mean ``|h|`` and ``update`` = mean ``|h - h_0|``, with ``h_0`` taken from ``first``, where a
    module's first recorded output (and an affine layer's first input ``x_0`` and weight ``W_0``) is stored, so
    ``first`` carries the reference from one measurement to the next. An affine layer ``h = W x + b`` also gets the
    two parts of its update ``h - h_0 = (W - W_0) x + W_0 (x - x_0) + (b - b_0)``: ``update_weight`` = mean
    ``|(W - W_0) x|`` (its own step) and ``update_input`` = mean ``|W_0 (x - x_0)|`` (its moved input read through the
    initial weights); Yang et al. 2022 (arXiv:2203.03466) App. D.1 and Sec. 5 count them separately. With the
    batch's class ``labels``, the readout (the last affine layer called, output ``(rows, classes)``) also splits
    ``W_0 (x - x_0)`` by output coordinate: ``update_input_target`` (each row's label logit, the coordinate the
    cross-entropy's backward signal points along at init) and ``update_input_other`` (the other logits)."""
    seen: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]] = {}
    layers = {n: m for n, m in model.named_modules() if isinstance(m, COORD_LAYERS)}

    readout = ""  # the last affine layer called

    def record(name: str, module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        nonlocal readout
        seen[name] = (out.detach(), inputs[0].detach(), _effective_weight(module))
        if seen[name][2] is not None:
            readout = name

    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: record(n, mod, i, o)) for n, m in layers.items()]
    sizes: dict[str, dict[str, float]] = {}
    try:
        yield sizes
    finally:
        for h in hooks:
            h.remove()
    for name, (h, x, w) in seen.items():
        h0 = first.setdefault(name, h)
        sizes[name] = {"size": float(h.abs().mean()), "update": float((h - h0).abs().mean())}
        if w is not None:
            x0, w0 = first.setdefault(f"{name}/input", x), first.setdefault(f"{name}/weight", w.clone())
            sizes[name]["update_weight"] = float(((x @ (w - w0).T)).abs().mean())
            moved = (x - x0) @ w0.T
            sizes[name]["update_input"] = float(moved.abs().mean())
            if labels is not None and name == readout and moved.shape == h.shape and h.dim() == 2:
                target = torch.zeros_like(moved, dtype=torch.bool)
                target[torch.arange(len(labels)), labels] = True
                sizes[name]["update_input_target"] = float(moved[target].abs().mean())
                sizes[name]["update_input_other"] = float(moved[~target].abs().mean())

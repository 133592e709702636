"""What an observable sees at a measurement step."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ._params import LossFn


@dataclass
class TrainState:
    """The model at ``step`` with its training data (targets as the loss consumes them) and init snapshot;
    ``param_groups`` are the optimizer groups (per-layer learning rates) when the model was parametrized
    (:func:`lmech.parametrize`), else ``None``."""

    step: int
    model: nn.Module
    loss_fn: LossFn
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    labelled: bool
    init: dict[str, torch.Tensor]
    optimizer: torch.optim.Optimizer | None = None
    param_groups: list[dict] | None = None

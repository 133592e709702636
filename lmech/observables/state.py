"""What an observable sees at a measurement step."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ._params import LossFn


@dataclass(frozen=True)
class StepPass:
    """The full-batch training loss at ``step`` (the graph-free value), the outputs it came from, and whether its
    gradients are in the parameters' ``.grad`` (a non-finite loss is not backpropagated)."""

    step: int
    loss: torch.Tensor
    outputs: torch.Tensor
    backward: bool


@dataclass
class TrainState:
    """The model at ``step`` with its training data (targets as the loss consumes them) and init snapshot;
    ``param_groups`` are the optimizer groups (per-layer learning rates) when the model was parametrized
    (:func:`lmech.parametrize`), else ``None``; ``memory`` holds the probes' per-run state (:meth:`memo`).
    ``step_pass`` is the training step's own full-batch pass at ``step`` when the engine ran it before the probes
    (full-batch training): :class:`~lmech.Loss` on the training set and :class:`~lmech.GradNorm` read it instead
    of a forward and a backward pass of their own."""

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
    memory: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)
    step_pass: StepPass | None = field(default=None, repr=False)

    def shared_pass(self) -> StepPass | None:
        """The engine's full-batch pass at the current step, if it ran one (see ``step_pass``)."""
        return self.step_pass if self.step_pass is not None and self.step_pass.step == self.step else None

    def memo(self, probe: object) -> dict[str, Any]:
        """What ``probe`` keeps between its measurements in this run (a warm start, its first measurement): probes are
        immutable configuration, so their per-run state lives here and a new run starts empty."""
        return self.memory.setdefault(id(probe), {})

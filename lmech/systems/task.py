"""Tasks: the loss actually differentiated, with its reduction stated."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from ._validate import check_types, one_of

LOSSES = ("mse", "cross_entropy")


def half_mse(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L = (1 / 2n) sum_i ||f(x_i) - y_i||^2``: half squared error summed over outputs, mean over examples.

    This is the convention of the edge-of-stability literature (Cohen et al. 2021) and of
    Saxe et al. (2014) with a mean over examples; with it, GD on a quadratic is stable iff S < 2/eta.
    """
    diff = (output - target).reshape(output.shape[0], -1)
    return 0.5 * diff.pow(2).sum(dim=1).mean()


def cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy, mean over examples; ``target`` holds integer labels."""
    return F.cross_entropy(output, target)


@dataclass(frozen=True)
class Task:
    """The training loss: ``"mse"`` (:func:`half_mse`; one-hot targets for labelled data) or ``"cross_entropy"``."""

    loss: str = "mse"

    def __post_init__(self) -> None:
        check_types(self, "task")
        one_of("task.loss", self.loss, LOSSES)

    @property
    def loss_fn(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        return half_mse if self.loss == "mse" else cross_entropy

    def targets(self, y: torch.Tensor, n_classes: int | None, dtype: torch.dtype) -> torch.Tensor:
        """Targets the loss consumes: one-hot rows for MSE on labels, labels for cross-entropy."""
        if n_classes is None:
            if self.loss == "cross_entropy":
                raise ValueError("task.loss='cross_entropy' needs a labelled dataset (mnist1d, digits); use task.loss='mse'")
            return y
        if self.loss == "mse":
            return F.one_hot(y, n_classes).to(dtype)
        return y

"""Learning rules: optimizer, hyperparameters, step budget, init and numerics."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._validate import ConfigError, check_types, in_unit_interval, one_of, positive_float, positive_int

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")
INITS = ("normal", "aligned", "symmetric")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class LearningRule:
    """How the parameters move.

    - ``"gd"``: full-batch gradient descent ``theta -= lr * g``;
    - ``"sgd"``: the same on minibatches of ``batch_size`` drawn without replacement each epoch;
    - ``"momentum"``: heavy ball in PyTorch's convention ``v = momentum v + g; theta -= lr v``;
    - ``"adam"``: Adam with ``betas`` and ``eps``.

    ``batch_size=None`` means full batch. ``init="aligned"`` (deep linear networks only) starts every
    layer with singular value ``init_scale`` along the singular modes of ``Sigma_yx``: the balanced,
    decoupled initial condition of Saxe et al. (2014). ``init="symmetric"`` (MLPs, even width) pairs
    the second half of the last hidden layer with the first and negates its readout, so ``f(x; theta_0) = 0``
    exactly (Chizat, Oyallon & Bach 2019, arXiv:1812.07956). ``steps=0`` measures the init only.
    """

    lr: float
    steps: int
    optimizer: str = "gd"
    batch_size: int | None = None
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    init: str = "normal"
    init_scale: float = 1.0
    seed: int = 0
    dtype: str = "float32"

    def __post_init__(self) -> None:
        check_types(self, "rule")
        positive_float("rule.lr", self.lr)
        positive_int("rule.steps", self.steps, minimum=0)
        one_of("rule.optimizer", self.optimizer, OPTIMIZERS)
        if self.batch_size is not None:
            positive_int("rule.batch_size", self.batch_size)
        if self.optimizer == "sgd" and self.batch_size is None:
            raise ConfigError("rule.batch_size is required for rule.optimizer='sgd'; use 'gd' for full batch")
        if self.optimizer == "gd" and self.batch_size is not None:
            raise ConfigError("rule.optimizer='gd' is full batch; set rule.batch_size=None or use 'sgd'")
        in_unit_interval("rule.momentum", self.momentum)
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if len(self.betas) != 2:
            raise ConfigError(f"rule.betas={self.betas!r} must be two numbers (beta1, beta2)")
        for b in self.betas:
            in_unit_interval("rule.betas[i]", b)
        positive_float("rule.eps", self.eps, allow_zero=True)
        one_of("rule.init", self.init, INITS)
        positive_float("rule.init_scale", self.init_scale)
        positive_int("rule.seed", self.seed, minimum=0)
        one_of("rule.dtype", self.dtype, tuple(DTYPES))

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

"""Learning rules: optimizer, hyperparameters, step budget, init and numerics."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ._validate import ConfigError, check_types, in_unit_interval, one_of, positive_float, positive_int

OPTIMIZERS = ("gd", "sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "linear", "wsd")
INITS = ("normal", "aligned", "symmetric")
TRAINED = ("all", "readout")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class LearningRule:
    """How the parameters move.

    - ``"gd"``: full-batch gradient descent ``theta -= lr * g``;
    - ``"sgd"``: the same on minibatches of ``batch_size`` drawn without replacement each epoch;
    - ``"momentum"``: heavy ball in PyTorch's convention ``v = momentum v + g; theta -= lr v``;
    - ``"adam"``: Adam with ``betas`` and ``eps``;
    - ``"adamw"``: Adam with decoupled weight decay ``theta -= lr * weight_decay * theta`` (Loshchilov & Hutter 2019,
      arXiv:1711.05101).

    ``weight_decay`` is that decoupled decay for ``"adamw"`` and an L2 term ``weight_decay * theta`` added to the
    gradient for the others (PyTorch's ``weight_decay``).

    ``schedule`` multiplies ``lr`` at update ``t`` of ``steps`` (after ``warmup`` updates rising linearly, ``(t + 1) /
    warmup``): ``"constant"`` 1; ``"cosine"`` ``(1 + cos(pi u)) / 2`` and ``"linear"`` ``1 - u`` with ``u`` the
    fraction of the post-warm-up updates done; ``"wsd"`` (warmup-stable-decay) 1, then linearly to 0 over the last
    ``decay_fraction`` of the updates. Per-group rates (muP) are scaled alike.

    ``batch_size=None`` means full batch. ``init="aligned"`` (deep linear networks only) starts every
    layer with singular value ``init_scale`` along the singular modes of ``Sigma_yx``: the balanced,
    decoupled initial condition of Saxe et al. (2014). ``init="symmetric"`` (MLPs, even width) pairs
    the second half of the last hidden layer with the first and negates its readout, so ``f(x; theta_0) = 0``
    exactly (Chizat, Oyallon & Bach 2019, arXiv:1812.07956). ``steps=0`` measures the init only.
    ``train="readout"`` trains the last layer only (the others stay at their init: random features, whose infinite
    ensemble trained to convergence is the NNGP posterior; Lee et al. 2019, arXiv:1902.06720).
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
    schedule: str = "constant"
    warmup: int = 0
    decay_fraction: float = 0.2
    weight_decay: float = 0.0
    train: str = "all"

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
        one_of("rule.train", self.train, TRAINED)
        positive_float("rule.init_scale", self.init_scale)
        positive_int("rule.seed", self.seed, minimum=0)
        one_of("rule.dtype", self.dtype, tuple(DTYPES))
        one_of("rule.schedule", self.schedule, SCHEDULES)
        positive_int("rule.warmup", self.warmup, minimum=0)
        if self.warmup and self.warmup >= self.steps:
            raise ConfigError(f"rule.warmup={self.warmup} must be below rule.steps={self.steps}")
        positive_float("rule.weight_decay", self.weight_decay, allow_zero=True)
        positive_float("rule.decay_fraction", self.decay_fraction)
        if self.decay_fraction > 1:
            raise ConfigError(f"rule.decay_fraction={self.decay_fraction!r} must be in (0, 1]: the fraction of the "
                              "updates that decay under schedule='wsd'")

    def lr_factor(self, update: int) -> float:
        """The schedule's multiplier of ``lr`` at ``update`` (0-based; see the class docstring)."""
        if update < self.warmup:
            return (update + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "wsd":
            decay = max(1, round(self.decay_fraction * self.steps))
            return min(1.0, (self.steps - update) / decay)
        done = (update - self.warmup) / max(1, self.steps - self.warmup)
        return 0.5 * (1 + math.cos(math.pi * done)) if self.schedule == "cosine" else 1 - done

    def learning_rates(self) -> np.ndarray:
        """The rate of every update ``0 .. steps - 1`` (``lr`` times :meth:`lr_factor`): the schedule that
        :func:`lmech.fit_multi_power_law` takes, whose entry ``t - 1`` is the rate of step ``t``."""
        return self.lr * np.array([self.lr_factor(t) for t in range(self.steps)])

    @property
    def scheduled(self) -> bool:
        """Whether the learning rate changes during training (a schedule or a warm-up)."""
        return self.schedule != "constant" or self.warmup > 0

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

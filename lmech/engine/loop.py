"""The one training core: the step loop, the divergence rule, the optimizer and the minibatch order.

Every trainer runs :func:`run_steps`: at each step ``s = 0 .. steps`` it first measures what is due (the parameters
after ``s`` updates), then computes the minibatch loss and its gradients, applies the divergence rule to that loss,
and takes the optimizer step. :func:`lmech.train` (one model), :func:`lmech.engine.train_stacked` (many same-shape
models at once, one loss per model) and :func:`lmech.coord_check` all use it; :class:`lmech.Tracker` applies the
same rule and the same probes to a user's own loop. The optimizer of a learning rule is built by
:func:`build_optimizer` alone (the stacked trainer reproduces the same update on flat buffers).
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np
import torch

from ..observables.probes import Probe
from ..observables.state import TrainState
from ..store.result import COMPLETED, DIVERGED, RunResult

OPTIMIZERS = ("gd", "sgd", "momentum", "adam")


def nonfinite(loss: torch.Tensor | float) -> torch.Tensor:
    """The divergence rule: a loss (or each of a vector of per-model losses) that is NaN or infinite."""
    return ~torch.isfinite(torch.as_tensor(loss))


def run_steps(steps: int, *, measure: Callable[[int], bool | None], compute: Callable[[int], torch.Tensor],
              apply: Callable[[int], None], diverge: Callable[[int, torch.Tensor], bool]) -> None:
    """The step loop. For ``step = 0 .. steps``: ``measure(step)`` (it returns True to end the run there); then
    (before the last) ``loss = compute(step)`` (forward, loss and backward on the step's minibatch),
    ``diverge(step, nonfinite(loss))`` when any loss is non-finite (it returns True to stop the loop), and
    ``apply(step)`` (the optimizer step)."""
    for step in range(steps + 1):
        if measure(step) or step == steps:
            return
        bad = nonfinite(compute(step).detach())
        if bool(bad.any()) and diverge(step, bad):
            return
        apply(step)


def build_optimizer(name: str, params: Iterable, *, lr: float, momentum: float = 0.0,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                    weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The torch optimizer of a learning rule: ``gd``/``sgd`` (plain steps), ``momentum`` (heavy ball,
    ``v = beta v + g; theta -= lr v``), ``adam`` or ``adamw`` (decoupled ``weight_decay``; L2 for the others);
    ``params`` may be parameter groups with their own ``lr`` and ``weight_decay``."""
    if name in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "momentum":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    raise ValueError(f"optimizer={name!r} is not supported; allowed values: {', '.join(map(repr, OPTIMIZERS))}")


def optimizer_step(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """``optimizer.step`` as a function; for plain SGD (no momentum, weight decay, Nesterov or maximize in any
    group) the same update ``p -= lr g`` (``torch.optim.SGD``'s own ``p.add_(g, alpha=-lr)``, bit-equal) without
    torch.optim's per-call wrapper (profiler record, hooks, grad mode): ~0.09 ms of a small network's ~0.4 ms step,
    e.g. the lazy-rich law's 5000-step runs. Reads each group's ``lr`` at every call (schedules keep working)."""
    plain = type(optimizer) is torch.optim.SGD and all(
        not (g["momentum"] or g["weight_decay"] or g["nesterov"] or g["maximize"]) for g in optimizer.param_groups)
    if not plain:
        return optimizer.step

    def step() -> None:
        with torch.no_grad():
            for group in optimizer.param_groups:
                params = [p for p in group["params"] if p.grad is not None]
                if params:
                    torch._foreach_add_(params, [p.grad for p in params], alpha=-group["lr"])
    return step


def full_batch() -> None:
    """The batch order of full-batch training: every step sees the whole training set (``None``)."""
    return None


def minibatches(n: int, batch_size: int | None, seed: int) -> Callable[[], torch.Tensor | None]:
    """Index batches without replacement, reshuffled each epoch; ``None`` means the full batch
    (:func:`full_batch` itself when ``batch_size`` covers the set)."""
    if batch_size is None or batch_size >= n:
        return full_batch
    gen = torch.Generator().manual_seed(seed + 7919)
    queue: list[torch.Tensor] = []

    def next_batch() -> torch.Tensor:
        if not queue:
            perm = torch.randperm(n, generator=gen)
            queue.extend(perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size))
            queue.reverse()
        return queue.pop()

    return next_batch


def measure_probes(probes: Iterable[Probe], state: TrainState, result: RunResult) -> None:
    """Every probe's measurement on ``state`` appended to ``result`` (scalars to ``records``, arrays to ``arrays``)."""
    for probe in probes:
        record(result, state.step, probe.measure(state))


def record(result: RunResult, step: int, values: dict) -> None:
    """Scalars go to ``records``; arrays and tensors (kernels, outputs) to ``arrays`` as float64 numpy."""
    for name, value in values.items():
        if isinstance(value, (np.ndarray, torch.Tensor)) and np.ndim(value) > 0:
            array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
            result.arrays.append((step, name, array))
        else:
            result.records.append((step, name, float(value)))


def finite_outcome(result: RunResult) -> str:
    """A run whose measured loss went non-finite (e.g. at the last step, after the last update) also diverged."""
    for step, name, value in result.records:
        if name.startswith("loss/") and not math.isfinite(value):
            result.diverged_step = step
            return DIVERGED
    return COMPLETED

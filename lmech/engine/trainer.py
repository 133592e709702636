"""The engine: train a system for its step budget, measuring probes on their schedules."""
from __future__ import annotations

import math
import platform
import time
from typing import Callable, Sequence

import numpy as np
import torch

from .._version import __version__
from ..hyper.parametrize import parametrize
from ..observables.probes import Probe
from ..observables.weights import snapshot
from ..systems.architecture import ResidualMLP, Transformer
from ..systems.networks import activation_gain, build_model
from ..systems.system import System, stable_hash
from ..store.result import COMPLETED, DIVERGED, RunResult
from ..observables.state import TrainState


def run_id(system: System, probes: Sequence[Probe]) -> str:
    """Content hash of the system, the measurement plan and lmech's version: equal ids mean identical runs
    (a new version may change conventions, e.g. 0.2 moved the NTK gain into the multiplier, so it retrains)."""
    return stable_hash({"system": system.to_dict(), "probes": [p.to_dict() for p in probes], "lmech": __version__})


def versions() -> dict[str, str]:
    return {"lmech": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def _optimizer(system: System, params) -> torch.optim.Optimizer:
    rule = system.rule
    if rule.optimizer in ("gd", "sgd"):
        return torch.optim.SGD(params, lr=rule.lr)
    if rule.optimizer == "momentum":  # v = beta v + g; theta -= lr v
        return torch.optim.SGD(params, lr=rule.lr, momentum=rule.momentum)
    return torch.optim.Adam(params, lr=rule.lr, betas=rule.betas, eps=rule.eps)


def _batches(n: int, batch_size: int | None, seed: int) -> Callable[[], torch.Tensor | None]:
    """Index batches without replacement, reshuffled each epoch; ``None`` means the full batch."""
    if batch_size is None or batch_size >= n:
        return lambda: None
    gen = torch.Generator().manual_seed(seed + 7919)
    queue: list[torch.Tensor] = []

    def next_batch() -> torch.Tensor:
        if not queue:
            perm = torch.randperm(n, generator=gen)
            queue.extend(perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size))
            queue.reverse()
        return queue.pop()

    return next_batch


def initial_state(system: System, device: str | torch.device = "cpu") -> TrainState:
    """Step 0 of ``system``: the initialized model and the data as tensors (targets as the loss consumes them),
    exactly as :func:`train` starts from them (same seed, dtype and device); ``optimizer`` is not set.
    Theory that integrates from the init (e.g. the central flow) builds its model with this."""
    rule = system.rule
    dtype = rule.torch_dtype
    data = system.data.load()
    device = torch.device(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(a)
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    y_train = system.task.targets(tensor(data.y_train), data.n_classes, dtype)
    y_test = system.task.targets(tensor(data.y_test), data.n_classes, dtype)
    model = build_model(system.architecture, data, init=rule.init, init_scale=rule.init_scale,
                        seed=rule.seed, dtype=dtype).to(device)
    groups = parametrized_groups(system, model)
    return TrainState(0, model, system.task.loss_fn, tensor(data.x_train), y_train, tensor(data.x_test), y_test,
                      data.n_classes is not None, snapshot(model), param_groups=groups)


def parametrized_groups(system: System, model: torch.nn.Module) -> list[dict] | None:
    """Re-initialize ``model`` by :func:`lmech.parametrize` when ``system``'s architecture asks for it (muP MLPs,
    residual MLPs, transformers) and return the optimizer groups; ``None`` for lmech's own SP/NTK networks."""
    arch, rule = system.architecture, system.rule
    if not (arch.parameterization in ("mup", "depth-mup") or isinstance(arch, (ResidualMLP, Transformer))):
        return None
    gain = rule.init_scale * (1.0 if isinstance(arch, Transformer) else activation_gain(arch.activation))
    base_depth = getattr(arch, "base_depth", None)
    if isinstance(arch, Transformer) and base_depth is not None:
        base_depth *= 2  # two residual branches per block
    return parametrize(model, arch.parameterization, base_width=arch.base_width or arch.width,
                       optimizer="adam" if rule.optimizer == "adam" else "sgd", lr=rule.lr, width=arch.width,
                       gain=gain, seed=rule.seed, base_depth=base_depth,
                       depth_exponent=getattr(arch, "depth_exponent", 0.5),
                       readout_zero_init=getattr(arch, "readout_zero_init", False)).groups


def train(system: System, probes: Sequence[Probe] = (), *, device: str | torch.device = "cpu",
          progress: Callable[[int, int], None] | None = None) -> RunResult:
    """Train ``system`` for ``system.rule.steps`` updates and measure ``probes`` on their schedules.

    Probes at step ``s`` see the parameters after ``s`` updates (step 0 is the init). The run is
    deterministic for a seed on CPU. A non-finite training loss ends the run with outcome
    ``"diverged"`` and its step; measurements taken before it are kept.
    """
    rule = system.rule
    start = time.perf_counter()
    state = initial_state(system, device)
    model = state.model
    optimizer = state.optimizer = _optimizer(system, state.param_groups or model.parameters())
    for p in probes:
        p.reset()
    when = [p.schedule.steps(rule.steps) for p in probes]
    next_batch = _batches(len(state.x_train), rule.batch_size, rule.seed)
    result = RunResult(run_id(system, probes), system, [p.to_dict() for p in probes], versions=versions())
    report_every = max(rule.steps // 100, 1)
    for step in range(rule.steps + 1):
        state.step = step
        for probe, steps in zip(probes, when):
            if step in steps:
                _record(result, step, probe.measure(state))
        if step == rule.steps:
            break
        idx = next_batch()
        x, y = (state.x_train, state.y_train) if idx is None else (state.x_train[idx], state.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        batch_loss = state.loss_fn(model(x), y)
        if not math.isfinite(float(batch_loss.detach())):
            result.outcome, result.diverged_step = DIVERGED, step
            break
        batch_loss.backward()
        optimizer.step()
        if progress is not None and step % report_every == 0:
            progress(step, rule.steps)
    if result.outcome == COMPLETED:
        result.outcome = _finite_outcome(result)
    result.wall_time = time.perf_counter() - start
    return result


def _record(result: RunResult, step: int, values: dict) -> None:
    """Scalars go to ``records``; arrays and tensors (kernels, outputs) to ``arrays`` as float64 numpy."""
    for name, value in values.items():
        if isinstance(value, (np.ndarray, torch.Tensor)) and np.ndim(value) > 0:
            array = value.detach().cpu().double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, float)
            result.arrays.append((step, name, array))
        else:
            result.records.append((step, name, float(value)))


def _finite_outcome(result: RunResult) -> str:
    """A run whose measured loss went non-finite at the last step also counts as diverged."""
    for step, name, value in result.records:
        if name.startswith("loss/") and not math.isfinite(value):
            result.diverged_step = step
            return DIVERGED
    return COMPLETED


"""The engine: train a system for its step budget, measuring probes on their schedules."""
from __future__ import annotations

import os
import platform
import time
from typing import Callable, Sequence

import numpy as np
import torch

from .._version import __version__
from ..hyper.parametrize import parametrize
from .loop import build_optimizer, finite_outcome, full_batch, measure_probes, minibatches, optimizer_step, run_steps
from ..observables.probes import Probe
from ..observables.weights import snapshot
from ..systems._validate import ConfigError
from ..systems.architecture import MLP, ResidualMLP, Transformer
from ..systems.networks import activation_gain, build_model
from ..systems.system import System, stable_hash
from ..store.result import COMPLETED, DIVERGED, RunResult
from ..observables.state import StepPass, TrainState


def run_id(system: System, probes: Sequence[Probe]) -> str:
    """Content hash of the system, the measurement plan and lmech's version: equal ids mean identical runs
    (a new version may change conventions, e.g. 0.2 moved the NTK gain into the multiplier, so it retrains)."""
    return stable_hash({"system": system.to_dict(), "probes": [p.to_dict() for p in probes], "lmech": __version__})


def versions() -> dict[str, str]:
    return {"lmech": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch device this torch build can use, or a :class:`ConfigError` naming it and the fix."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    usable = {"cpu": lambda: True, "cuda": torch.cuda.is_available, "mps": torch.backends.mps.is_available}
    if dev.type not in usable:
        raise ConfigError(f"--device {device!r}: lmech trains on cpu, cuda or mps, not {dev.type}")
    if not usable[dev.type]():
        raise ConfigError(f"--device {device}: this torch ({torch.__version__}) has no usable {dev.type.upper()} device; "
                          f"use --device cpu, or install a torch build with {dev.type.upper()} support")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ConfigError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here; use cuda:0")
    return dev


def parameter_count(system: System, data) -> int:
    """The number of trainable parameters ``system``'s network has on ``data`` (a loaded dataset), from the
    architecture's shapes alone (nothing allocated)."""
    arch, d_in, d_out = system.architecture, data.input_dim, data.output_dim
    w = arch.width
    if isinstance(arch, Transformer):
        block = 4 * w * w + 2 * arch.mlp_ratio * w * w + (arch.mlp_ratio + 5) * w
        return data.info.get("vocab", d_in) * w + d_in * w + arch.depth * block + 2 * w + w * d_out + d_out
    if isinstance(arch, ResidualMLP):
        return d_in * w + w + arch.depth * (w * w + w) + w * d_out + d_out
    hidden = arch.depth if isinstance(arch, MLP) else arch.depth - 1
    dims = [d_in] + [w] * hidden + [d_out]
    return sum(a * b + (b if getattr(arch, "bias", False) else 0) for a, b in zip(dims, dims[1:]))


def _check_fits(system: System, data) -> None:
    """Refuse, before allocating, a network whose parameters, gradients and two optimizer moments would not fit in
    this machine's memory."""
    count = parameter_count(system, data)
    need = 4 * count * torch.empty((), dtype=system.rule.torch_dtype).element_size()
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > 0.8 * have:
        raise ConfigError(f"this system's network has {count:.3g} parameters: about {need / 2 ** 30:.3g} GiB with "
                          f"gradients and optimizer state ({system.rule.dtype}), more than this machine's "
                          f"{have / 2 ** 30:.3g} GiB; lower architecture.width or architecture.depth")


def initial_state(system: System, device: str | torch.device = "cpu") -> TrainState:
    """Step 0 of ``system``: the initialized model and the data as tensors (targets as the loss consumes them),
    exactly as :func:`train` starts from them (same seed, dtype and device); ``optimizer`` is not set.
    Theory that integrates from the init (e.g. the central flow) builds its model with this."""
    rule = system.rule
    dtype = rule.torch_dtype
    data = system.data.load()
    device = check_device(device)
    _check_fits(system, data)

    def tensor(a: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(a)
        return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

    y_train = system.task.targets(tensor(data.y_train), data.n_classes, dtype)
    y_test = system.task.targets(tensor(data.y_test), data.n_classes, dtype)
    model = build_model(system.architecture, data, init=rule.init, init_scale=rule.init_scale,
                        seed=rule.seed, dtype=dtype).to(device)
    groups = parametrized_groups(system, model)
    if rule.train == "readout":
        freeze_all_but_readout(model)
    return TrainState(0, model, system.task.loss_fn, tensor(data.x_train), y_train, tensor(data.x_test), y_test,
                      data.n_classes is not None, snapshot(model), param_groups=groups)


def freeze_all_but_readout(model: torch.nn.Module) -> None:
    """``requires_grad = False`` on every parameter but those of the module that owns the last one (the readout)."""
    names = [n for n, _ in model.named_parameters()]
    owner = names[-1].rpartition(".")[0]
    for name, p in model.named_parameters():
        p.requires_grad_(name.rpartition(".")[0] == owner)


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
                       optimizer="adam" if rule.optimizer in ("adam", "adamw") else "sgd", lr=rule.lr,
                       weight_decay=rule.weight_decay, width=arch.width,
                       gain=gain, seed=rule.seed, base_depth=base_depth,
                       depth_exponent=getattr(arch, "depth_exponent", 0.5),
                       readout_zero_init=getattr(arch, "readout_zero_init", False)).groups


def optimizer_for(system: System, params) -> torch.optim.Optimizer:
    """The torch optimizer of ``system``'s learning rule over ``params`` (parameters or parameter groups)."""
    rule = system.rule
    return build_optimizer(rule.optimizer, params, lr=rule.lr, momentum=rule.momentum, betas=rule.betas, eps=rule.eps,
                           weight_decay=rule.weight_decay)


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
    state.optimizer = optimizer_for(system, state.param_groups or state.model.parameters())
    result = RunResult(run_id(system, probes), system, [p.to_dict() for p in probes], versions=versions())
    train_model(state, probes, result, rule.steps, minibatches(len(state.x_train), rule.batch_size, rule.seed),
                progress=progress, lr_factor=rule.lr_factor if rule.scheduled else None)
    result.wall_time = time.perf_counter() - start
    return result


def train_model(state: TrainState, probes: Sequence[Probe], result: RunResult, steps: int,
                next_batch: Callable[[], torch.Tensor | None] = full_batch, *,
                progress: Callable[[int, int], None] | None = None,
                lr_factor: Callable[[int], float] | None = None) -> RunResult:
    """The single-model loop (:func:`~lmech.engine.loop.run_steps`) on a prepared ``state`` (model, data, optimizer):
    probes measured on their schedules into ``result``, then minibatch loss, divergence rule and optimizer step;
    ``lr_factor(t)`` (a learning-rate schedule) multiplies every parameter group's rate at update ``t``.

    In full-batch training the step's loss and gradient are those at the parameters the probes of that step see, so
    when a probe that reads it is due (:meth:`Probe.reads_step_pass`: :class:`~lmech.Loss` on the training set,
    :class:`~lmech.GradNorm`), the step's forward and backward run first and the probes read them (``TrainState.step_pass``): the same numbers, one pass instead of
    two or three."""
    model, optimizer = state.model, state.optimizer
    step_optimizer = optimizer_step(optimizer)
    base_rates = [group["lr"] for group in optimizer.param_groups]
    when = [(p, p.schedule.steps(steps)) for p in probes]
    report_every = max(steps // 100, 1)
    sharing = next_batch is full_batch

    def measure(step: int) -> bool:
        state.step = step
        due = [p for p, steps_due in when if step in steps_due]
        if sharing and step < steps and any(p.reads_step_pass() for p in due):
            compute(step)  # the step's own pass, before the probes that read it
        measure_probes(due, state, result)
        if step < steps and any(p.ends_run(result.records, step) for p in due):  # a StopWhen probe ends the run:
            result.records.append((step, "stopped", 1.0))  # what was scheduled at the last step is measured here
            measure_probes([p for p, steps_due in when if steps in steps_due and p not in due], state, result)
            return True
        return False

    def compute(step: int) -> torch.Tensor:
        shared = state.shared_pass()
        if shared is not None:
            return shared.loss
        idx = next_batch()
        x, y = (state.x_train, state.y_train) if idx is None else (state.x_train[idx], state.y_train[idx])
        optimizer.zero_grad(set_to_none=True)
        outputs = model(x)
        loss = state.loss_fn(outputs, y)
        finite = bool(torch.isfinite(loss.detach()))
        if finite:
            loss.backward()
        if sharing:
            state.step_pass = StepPass(step, loss.detach(), outputs.detach(), finite)
        return loss

    def apply(step: int) -> None:
        if lr_factor is not None:
            factor = lr_factor(step)
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * factor
        step_optimizer()
        if progress is not None and step % report_every == 0:
            progress(step, steps)

    def diverge(step: int, bad: torch.Tensor) -> bool:
        result.outcome, result.diverged_step = DIVERGED, step
        return True

    run_steps(steps, measure=measure, compute=compute, apply=apply, diverge=diverge)
    if result.outcome == COMPLETED:
        result.outcome = finite_outcome(result)
    return result

"""Sweeps through the engine: experiments that differ only in the learning rate and seeds are trained together.

:func:`lmech.run_experiments` (what :func:`lmech.check` uses) reuses runs already in the store and groups the rest
by everything but ``rule.lr``, ``rule.seed`` and ``data.seed`` (same architecture, data config, task, optimizer and
probes; each model keeps its own seed's init and minibatch order, and its own draw of the data when data seeds
differ). A group whose probes all stack (:meth:`~lmech.Probe.stacks`: they read the model, its data and init, not the
optimizer) is trained at once by :func:`~lmech.hyper.train_stacked` (one batched gradient per step for all its
models; per-layer learning rates from :func:`lmech.parametrize` included): :class:`~lmech.Loss` probes are read off
the stack, the others measure each model on its own copy of the parameters at their steps. Every model is still its
own :class:`~lmech.RunResult` with the records the sequential engine would write (equal to float rounding, see
``tests/test_sweep.py``), committed to the store as soon as its group finishes. Mixed shapes, probes that read the
optimizer (e.g. :class:`~lmech.Instability`) or end runs, and singletons run one after another through
:func:`lmech.train`.
"""
from __future__ import annotations

import time
from typing import Sequence

import torch

from ..store.result import DIVERGED, RunResult
from .loop import finite_outcome, record
from .trainer import initial_state, run_id, versions
from ..observables.probes import Loss
from .batched import train_stacked

MAX_GROUP = 64  # models trained together at most (memory grows linearly with the group)


def batch_key(exp) -> str | None:
    """Experiments with equal keys can share one stacked run (they differ at most in the learning rate, the seeds and
    an MLP's output multiplier); ``None`` when the probes need the sequential engine."""
    if not exp.probes or not all(p.stacks() for p in exp.probes) or exp.system.rule.steps == 0:
        return None  # (a run without steps only measures its init: nothing to train together)
    if exp.system.rule.weight_decay or exp.system.rule.optimizer == "adamw":
        return None  # the stacked optimizers have no weight decay
    if exp.system.rule.train != "all":
        return None  # and train every parameter
    system = exp.system.to_dict()
    system["rule"] = {k: v for k, v in system["rule"].items() if k not in ("lr", "seed")}
    system["data"] = {k: v for k, v in system["data"].items() if k != "seed"}
    if system["architecture"]["kind"] == "mlp":  # a chain: the output multiplier may differ per model
        system["architecture"] = {k: v for k, v in system["architecture"].items() if k != "alpha"}
    return repr((system, [p.to_dict() for p in exp.probes]))


def train_group(experiments: Sequence, device: str = "cpu") -> list[RunResult]:
    """Train experiments that differ only in ``rule.lr``, ``rule.seed`` and ``data.seed`` together (:func:`train_stacked`) and
    return one :class:`RunResult` per experiment with its probes' records on their schedules, as :func:`lmech.train`
    writes them: ``loss/<split>`` (and ``accuracy/<split>``) of :class:`~lmech.Loss` probes from the stack, every
    other probe measured on the experiment's own model, loaded with its parameters at the probe's steps (a model that
    diverged is measured up to its divergence, as alone)."""
    start = time.perf_counter()
    first = experiments[0]
    rule = first.system.rule
    states = [initial_state(e.system, device) for e in experiments]
    state = states[0]
    lr_scale = {g["name"]: g["lr_scale"] for g in state.param_groups} if state.param_groups is not None else None
    due = [p.schedule.steps(rule.steps) for p in first.probes]
    losses = [(p.split, steps) for p, steps in zip(first.probes, due) if type(p) is Loss]
    record_steps = sorted(set().union(*(steps for _, steps in losses)))
    measure_steps = sorted(set().union(*(steps for p, steps in zip(first.probes, due) if type(p) is not Loss)))
    has_test = any(split == "test" for split, _ in losses) and len(state.x_test) > 0
    train_records = any(split == "train" for split, _ in losses) or not has_test  # only the splits asked for
    per_model = len({e.system.data.seed for e in experiments}) > 1  # independent draws: one dataset per model
    data = {k: torch.stack([getattr(s, k) for s in states]) if per_model else getattr(state, k)
            for k in ("x_train", "y_train", "x_test", "y_test")}
    measured: list[dict[tuple[int, int], dict]] = [{} for _ in experiments]  # (step, probe index) -> values

    def measure(step: int, params: dict[str, torch.Tensor], live: list[int]) -> None:
        for i in live:
            model = states[i].model
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.copy_(params[name][i])
            states[i].step = step
            for j, (probe, steps) in enumerate(zip(experiments[i].probes, due)):
                if type(probe) is not Loss and step in steps:
                    measured[i][step, j] = probe.measure(states[i])

    run = train_stacked([s.model for s in states], state.loss_fn, data["x_train"], data["y_train"],
                        lr=[e.system.rule.lr for e in experiments], lr_scale=lr_scale, steps=rule.steps,
                        optimizer="adam" if rule.optimizer == "adam" else "sgd",
                        momentum=rule.momentum if rule.optimizer == "momentum" else 0.0, betas=rule.betas,
                        eps=rule.eps, batch_size=rule.batch_size, seed=[e.system.rule.seed for e in experiments],
                        record_steps=record_steps,
                        x_test=data["x_test"] if has_test else None, y_test=data["y_test"] if has_test else None,
                        accuracy=state.labelled, data_per_model=per_model,
                        lr_factor=rule.lr_factor if rule.scheduled else None, train_records=train_records,
                        on_measure=measure if measure_steps else None, measure_steps=measure_steps)
    row = {int(s): t for t, s in enumerate(run.steps)}
    metrics = {("train", "loss"): run.loss, ("train", "accuracy"): run.accuracy,
               ("test", "loss"): run.test_loss, ("test", "accuracy"): run.test_accuracy}
    share = (time.perf_counter() - start) / len(experiments)
    results = []
    for i, exp in enumerate(experiments):
        result = RunResult(run_id(exp.system, exp.probes), exp.system, [p.to_dict() for p in exp.probes],
                           versions={**versions(), "executor": f"train_stacked x{len(experiments)}"})
        last = int(run.diverged_step[i]) if run.diverged_step[i] >= 0 else rule.steps
        for step in sorted(set(record_steps) | set(measure_steps)):
            if step > last:
                break
            for j, (probe, steps) in enumerate(zip(exp.probes, due)):
                if step not in steps:
                    continue
                if type(probe) is not Loss:
                    record(result, step, measured[i][step, j])
                elif probe.split == "train" or has_test:
                    for kind in ("loss", "accuracy") if state.labelled else ("loss",):
                        value = float(metrics[(probe.split, kind)][row[step], i])
                        result.records.append((step, f"{kind}/{probe.split}", value))
        if run.diverged_step[i] >= 0:
            result.outcome, result.diverged_step = DIVERGED, int(run.diverged_step[i])
        else:
            result.outcome = finite_outcome(result)
        result.wall_time = share
        results.append(result)
    return results

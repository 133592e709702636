"""Check laws: run (or reuse) each law's experiments, evaluate, and store runs and verdicts."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from .engine.experiment import Experiment
from .engine.sweep import MAX_GROUP, batch_key, train_group
from .engine.trainer import run_id, train
from .laws.base import SCALES
from .laws.registry import get_law
from .report.verdict import Verdict
from .store import Store
from .store.result import DIVERGED, RunResult
from .store.runs import Runs
from .systems._validate import one_of

Progress = Callable[[str], None]
StepProgress = Callable[[str, int, int], None]


def run_experiment(exp: Experiment, store: Store | None = None, *, force: bool = False, device: str = "cpu",
                   progress: Progress | None = None, step_progress: StepProgress | None = None) -> RunResult:
    """Train ``exp`` or load it from ``store`` when an identical run is stored (unless ``force``).

    A trained run is committed to the store in one transaction as soon as it finishes. ``progress``
    receives one line per run; ``step_progress(label, step, total)`` is called during training.
    """
    rid = run_id(exp.system, exp.probes)
    if store is not None and not force:
        cached = store.load_run(rid)
        if cached is not None:
            if progress:
                progress(f"  {exp.label}: reused stored run {rid}")
            return cached
    start = time.perf_counter()
    ticks = (lambda step, total: step_progress(exp.label, step, total)) if step_progress else None
    result = train(exp.system, exp.probes, device=device, progress=ticks)
    if store is not None:
        store.save_run(result)
    if progress:
        progress(f"  {exp.label}: trained {exp.system.rule.steps} steps in {time.perf_counter() - start:.1f}s ({result.outcome})")
    return result


def run_experiments(experiments: Sequence[Experiment], store: Store | None = None, *, force: bool = False,
                    device: str = "cpu", batched: bool = True, progress: Progress | None = None,
                    step_progress: StepProgress | None = None) -> Runs:
    """Run (or load from ``store``) every experiment and return them as :class:`Runs` by key, in their order.

    With ``batched`` (default), experiments that differ only in ``rule.lr`` and measure only losses are trained
    together, up to ``MAX_GROUP`` at a time (:mod:`lmech.engine.sweep`), each still a separate stored run;
    the others run one after another (:func:`run_experiment`). Each run or group is committed as it finishes.
    """
    results: dict = {}
    groups: dict[str, list[Experiment]] = {}
    for exp in experiments:
        cached = store.load_run(run_id(exp.system, exp.probes)) if store is not None and not force else None
        if cached is not None:
            results[exp.key] = cached
            if progress:
                progress(f"  {exp.label}: reused stored run {cached.run_id}")
            continue
        key = batch_key(exp) if batched else None
        groups.setdefault(key if key is not None else ("alone", exp.key), []).append(exp)
    for members in groups.values():
        for chunk in (members[i:i + MAX_GROUP] for i in range(0, len(members), MAX_GROUP)):
            if len(chunk) == 1:  # alone by key (not batchable, or batched=False) or by count
                for exp in chunk:
                    results[exp.key] = run_experiment(exp, store, force=True, device=device, progress=progress,
                                                        step_progress=step_progress)
                continue
            start = time.perf_counter()
            for exp, result in zip(chunk, train_group(chunk, device)):
                if store is not None:
                    store.save_run(result)
                results[exp.key] = result
            if progress:
                diverged = sum(results[e.key].outcome == DIVERGED for e in chunk)
                progress(f"  {len(chunk)} runs {chunk[0].label} .. {chunk[-1].label} trained together in "
                         f"{time.perf_counter() - start:.1f}s ({diverged} diverged)")
    return Runs((exp.key, results[exp.key]) for exp in experiments)


def check(law_ids: Sequence[str], scale: str = "quick", store: Store | None = None, *, force: bool = False,
          device: str = "cpu", progress: Progress | None = None, step_progress: StepProgress | None = None) -> list[Verdict]:
    """Verdicts for ``law_ids`` at ``scale`` (``"quick"`` or ``"full"``), in order; stored when ``store`` is given."""
    one_of("scale", scale, SCALES)
    laws = [get_law(i) for i in law_ids]
    verdicts = []
    for n, law in enumerate(laws, 1):
        if progress:
            progress(f"[{n}/{len(laws)}] {law.id} ({scale})")
        runs = run_experiments(law.experiments(scale), store, force=force, device=device, progress=progress,
                               step_progress=step_progress)
        verdict = law.evaluate(runs, scale)
        if store is not None:
            store.save_verdict(verdict.to_dict())
        if progress:
            progress(f"  -> {verdict.status.upper()}: {verdict.summary}")
        verdicts.append(verdict)
    return verdicts

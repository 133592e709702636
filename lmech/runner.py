"""Check laws: run (or reuse) each law's experiments, evaluate, and store runs and verdicts."""
from __future__ import annotations

import time
from typing import Callable, Sequence

from .engine.result import RunResult
from .engine.trainer import run_id, train
from .laws.base import SCALES, Experiment, Verdict
from .laws.registry import get_law
from .store import Store
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


def check(law_ids: Sequence[str], scale: str = "quick", store: Store | None = None, *, force: bool = False,
          device: str = "cpu", progress: Progress | None = None, step_progress: StepProgress | None = None) -> list[Verdict]:
    """Verdicts for ``law_ids`` at ``scale`` (``"quick"`` or ``"full"``), in order; stored when ``store`` is given."""
    one_of("scale", scale, SCALES)
    laws = [get_law(i) for i in law_ids]
    verdicts = []
    for n, law in enumerate(laws, 1):
        if progress:
            progress(f"[{n}/{len(laws)}] {law.id} ({scale})")
        runs = {exp.label: run_experiment(exp, store, force=force, device=device, progress=progress, step_progress=step_progress)
                for exp in law.experiments(scale)}
        verdict = law.evaluate(runs, scale)
        if store is not None:
            store.save_verdict(verdict.to_dict())
        if progress:
            progress(f"  -> {verdict.status.upper()}: {verdict.summary}")
        verdicts.append(verdict)
    return verdicts

"""Check laws and run sweeps: collect the experiments, reuse stored runs, train the rest through an executor, store
each run as it finishes, and judge each law as soon as its runs are in.

Only this driver writes the store, one transaction per finished run (workers only train), so an interrupted check
keeps every run that finished; rerunning it trains only what is missing.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from .engine.executor import Executor, InProcess, Task, plan_tasks
from .engine.experiment import Experiment
from .laws.base import SCALES, Law
from .laws.registry import get_law
from .report.verdict import Verdict
from .store import Store
from .store.result import RunResult
from .store.runs import Runs
from .systems._validate import one_of

Progress = Callable[[str], None]
StepProgress = Callable[[str, int, int], None]


def _execute(experiments: Sequence[Experiment], store: Store | None, executor: Executor | None, *, force: bool,
             device: str, batched: bool, progress: Progress | None, step_progress: StepProgress | None,
             on_run: Callable[[RunResult], None] | None = None,
             started: Callable[[], None] | None = None) -> dict[str, RunResult]:
    """Results by run id for ``experiments``: stored ones reused (unless ``force``), the rest trained once each
    (duplicates by run id share one run), each saved to ``store`` as it finishes; ``on_run`` sees every result;
    ``started()`` runs once training is under way (at once when nothing needs training)."""
    results: dict[str, RunResult] = {}
    todo: dict[str, Experiment] = {}
    for exp in experiments:
        rid = exp.run_id
        if rid in results or rid in todo:
            continue
        cached = store.load_run(rid) if store is not None and not force else None
        if cached is not None:
            results[rid] = cached
            if progress:
                progress(f"  {exp.label}: reused stored run {rid}")
        else:
            todo[rid] = exp
    for result in list(results.values()) if on_run else ():
        on_run(result)
    tasks = plan_tasks(list(todo.values()), batched=batched)
    begun = time.perf_counter()

    def done(task: Task, task_results: list[RunResult]) -> None:
        for result in task_results:
            if store is not None:
                store.save_run(result)
            results[result.run_id] = result
        if progress:
            outcomes = [r.outcome for r in task_results]
            tally = ", ".join(f"{outcomes.count(o)} {o}" for o in dict.fromkeys(outcomes))
            errors = "; ".join(dict.fromkeys(r.error for r in task_results if r.error))
            progress(f"  {task.label}: {tally} after {time.perf_counter() - begun:.1f}s"
                     + (f" ({errors})" if errors else "") + (f" [attempt {task.attempts}]" if task.attempts > 1 else ""))
        for result in task_results:
            if on_run:
                on_run(result)

    if tasks:
        (executor or InProcess()).run(tasks, done, device=device, progress=step_progress, started=started)
    elif started:
        started()
    return results


def run_experiments(experiments: Sequence[Experiment], store: Store | None = None, *, force: bool = False,
                    device: str = "cpu", batched: bool = True, executor: Executor | None = None,
                    progress: Progress | None = None, step_progress: StepProgress | None = None,
                    on_run: Callable[[RunResult], None] | None = None) -> Runs:
    """Run (or load from ``store``) every experiment and return them as :class:`Runs` by key, in their order.

    With ``batched`` (default), experiments that differ only in ``rule.lr``, the seeds and an MLP's ``alpha``, with
    probes that stack (:meth:`~lmech.Probe.stacks`), are trained together (:mod:`lmech.engine.sweep`), each still a
    separate stored run. ``executor`` (default
    :class:`~lmech.engine.executor.InProcess`) runs the tasks longest first; each run is committed as it finishes,
    and ``on_run(result)`` sees each run as it arrives (stored ones first).
    """
    results = _execute(experiments, store, executor, force=force, device=device, batched=batched, progress=progress,
                       step_progress=step_progress, on_run=on_run)
    return Runs((exp.key, results[exp.run_id]) for exp in experiments)


def check(law_ids: Sequence[str], scale: str = "quick", store: Store | None = None, *, force: bool = False,
          device: str = "cpu", executor: Executor | None = None, progress: Progress | None = None,
          step_progress: StepProgress | None = None,
          on_verdict: Callable[[Verdict], None] | None = None) -> list[Verdict]:
    """Verdicts for ``law_ids`` at ``scale`` (``"quick"`` or ``"full"``), in order; stored when ``store`` is given.

    Every experiment of every law is collected first, so a run two laws share trains once; the runs are scheduled
    longest first on ``executor``, and each law is judged (and its verdict stored) as soon as its runs are in (a law
    without runs once the workers have their first tasks, so that its theory overlaps their training);
    ``on_verdict(verdict)`` then runs in the driver (the CLI renders the law's figure there, while the workers train).
    """
    one_of("scale", scale, SCALES)
    laws = [get_law(i) for i in dict.fromkeys(law_ids)]
    plans = {law.id: law.experiments(scale) for law in laws}
    waiting = {law.id: {e.run_id for e in plans[law.id]} for law in laws}
    verdicts: dict[str, Verdict] = {}
    arrived: dict[str, RunResult] = {}

    def judge(law: Law) -> None:
        runs = Runs((e.key, arrived[e.run_id]) for e in plans[law.id])
        verdict = law.evaluate(runs, scale)
        verdicts[law.id] = verdict
        if store is not None:
            store.save_verdict(verdict.to_dict())
        if progress:
            progress(f"[{len(verdicts)}/{len(laws)}] {law.id} ({scale}, {len(runs)} runs) -> "
                     f"{verdict.status.upper()}: {verdict.summary}")
        if on_verdict:
            on_verdict(verdict)

    def on_run(result: RunResult) -> None:
        arrived[result.run_id] = result
        for law in laws:
            pending = waiting[law.id]
            if result.run_id in pending:
                pending.discard(result.run_id)
                if not pending:
                    judge(law)

    def judge_theory_only() -> None:  # laws without runs: judged while the workers train
        for law in laws:
            if not waiting[law.id] and law.id not in verdicts:
                judge(law)

    if progress:
        total = len({rid for ids in waiting.values() for rid in ids})
        progress(f"{len(laws)} law(s), {total} distinct run(s) on {(executor or InProcess()).describe()}")
    every = [e for law in laws for e in plans[law.id]]
    _execute(every, store, executor, force=force, device=device, batched=True, progress=progress,
             step_progress=step_progress, on_run=on_run, started=judge_theory_only)
    return [verdicts[law.id] for law in laws]


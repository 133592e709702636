"""Executors: where training tasks run. In this process (:class:`InProcess`), in local worker processes
(:class:`LocalPool`) or on a Ray cluster (:class:`Ray`), behind one interface.

A :class:`Task` is one unit of work: a single experiment, or a group of experiments that differ only in the learning
rate and seed and are trained together (:func:`lmech.engine.sweep.train_group`; a batched group stays one task). An executor
runs tasks and hands each finished task's results to a callback in the driver, which alone writes the store, one
transaction per run: a killed worker, a ``KeyboardInterrupt`` or ``kill -9`` of the driver loses only the tasks in
flight. A task lost with a crashed worker is retried once; a second loss, or an exception raised by the training
code, becomes a run with outcome ``"error"`` carrying the message.
"""
from __future__ import annotations

import multiprocessing
import os
import socket
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence

import torch
from threadpoolctl import threadpool_limits

from ..store.result import ERROR, RunResult
from .experiment import Experiment
from .sweep import MAX_GROUP, batch_key, train_group
from .trainer import train, versions

Done = Callable[["Task", list[RunResult]], None]
_CURVATURE_PROBES = frozenset({"sharpness", "hessian_trace", "hessian_density", "noise_scale", "kernels", "nfa"})
EXECUTORS = ("inprocess", "pool", "ray")


@dataclass
class Task:
    """One worker call: its ``parts`` trained one after another, each as one unit (a single experiment, or a batched
    group); its estimated ``cost`` (seconds, for longest-first scheduling) and how many times it was started."""

    parts: list[list[Experiment]]
    cost: float = 0.0
    attempts: int = field(default=0, compare=False)

    @property
    def experiments(self) -> list[Experiment]:
        return [e for part in self.parts for e in part]

    @property
    def label(self) -> str:
        exps = self.experiments
        first, last = exps[0].label, exps[-1].label
        if len(exps) == 1:
            return first
        return f"{len(exps)} runs {first} .. {last} " + ("(batched)" if len(self.parts) == 1 else f"({len(self.parts)} parts)")


# A worker's speed for the cost model: seconds per operator call (forward, backward and update; under vmap for a
# group) and float32 multiply-add throughput of one thread, set from the quick atlas's task times (bench/README.md,
# "Scheduling, and the CPU floor").
_SECONDS_PER_OP = 2.5e-5
_MACS_PER_SECOND = 5e10


def _forward_size(arch) -> tuple[float, float]:
    """Multiply-adds per example and operator calls of one forward pass of ``arch`` (input and output layers counted
    as 64 units each). A transformer's examples are the two-token sequences of lmech's token data, and its
    multiply-adds count twice: its many small attention products, LayerNorms and GELUs under ``vmap`` ran at half an
    MLP's rate in the quick atlas."""
    width, depth = float(arch.width), getattr(arch, "depth", 1)
    if arch.kind == "transformer":
        return 2 * 2 * depth * (4 + 2 * arch.mlp_ratio) * width ** 2, 30 * depth + 10
    if arch.kind == "residual_mlp":
        return depth * width ** 2 + 128 * width, 6 * depth + 6
    return max(depth - 1, 0) * width ** 2 + 128 * width, 3 * depth + 3


def _run_cost(exp: Experiment) -> tuple[float, float]:
    """Rough seconds one worker needs to train ``exp``, split into the training steps' per-call overhead (paid once
    by a batched group) and what every member pays (the arithmetic, and its probes: a stacked model is measured on
    its own): a training step is three forward passes' calls and multiply-adds over its rows, a probe measurement
    one pass over the training set (curvature probes 60 passes: about 20 Hessian-vector products of 3 passes
    each)."""
    rule, n = exp.system.rule, exp.system.data.n_train
    macs, ops = _forward_size(exp.system.architecture)
    rows = min(rule.batch_size or n, n)
    passes = sum(len(p.schedule.steps(rule.steps)) * (60 if p.name in _CURVATURE_PROBES else 1) for p in exp.probes)
    member = ops * passes * _SECONDS_PER_OP + macs * (3 * rows * rule.steps + n * passes) / _MACS_PER_SECOND
    return 3 * ops * rule.steps * _SECONDS_PER_OP, member


def task_cost(experiments: Sequence[Experiment]) -> float:
    """Rough seconds of one task: its members' arithmetic summed, their call overhead once (a group steps together)."""
    costs = [_run_cost(e) for e in experiments]
    return max(c[0] for c in costs) + sum(c[1] for c in costs)


_BUNDLE_SECONDS = 1.0  # smaller tasks travel together: fewer round trips, and a queued task keeps a worker busy


def plan_tasks(experiments: Sequence[Experiment], *, batched: bool = True) -> list[Task]:
    """Group ``experiments`` into units (batchable ones by :func:`batch_key`, at most ``MAX_GROUP`` per unit) and
    the units into tasks, longest first by :func:`task_cost`; units estimated under a second are bundled, in that
    order, into tasks of about a second (the quick atlas has ~1700 runs of 10-100 ms, and a worker that finishes one
    idles while the driver judges a law)."""
    groups: dict[object, list[Experiment]] = {}
    for exp in experiments:
        key = batch_key(exp) if batched else None
        groups.setdefault(key if key is not None else ("alone", exp.run_id), []).append(exp)
    chunks = [members[i:i + MAX_GROUP] for members in groups.values() for i in range(0, len(members), MAX_GROUP)]
    tasks: list[Task] = []
    for cost, chunk in sorted(((task_cost(c), c) for c in chunks), key=lambda u: -u[0]):
        if tasks and tasks[-1].cost < _BUNDLE_SECONDS and cost < _BUNDLE_SECONDS:
            tasks[-1].parts.append(chunk)
            tasks[-1].cost += cost
        else:
            tasks.append(Task([chunk], cost))
    return tasks


def run_task(parts: Sequence[Sequence[Experiment]], device: str = "cpu", threads: int | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> list[RunResult]:
    """Train a task's parts one after another (a group together, a single experiment through :func:`lmech.train`);
    an exception raised while training a part becomes one ``"error"`` run per experiment of that part, with its
    message. ``threads`` sets torch's intra-op threads and numpy's BLAS threads first (a worker's share of the
    cores)."""
    if threads is not None:
        _limit_threads(threads)
    return [result for part in parts for result in _train_part(part, device, progress)]


def _train_part(experiments: Sequence[Experiment], device: str,
                progress: Callable[[str, int, int], None] | None) -> list[RunResult]:
    try:
        if len(experiments) > 1:
            return train_group(list(experiments), device)
        exp = experiments[0]
        ticks = (lambda step, total: progress(exp.label, step, total)) if progress else None
        return [train(exp.system, exp.probes, device=device, progress=ticks)]
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # noqa: BLE001 - the message is kept as the run's outcome
        message = f"{type(exc).__name__}: {exc}"
        detail = traceback.format_exc(limit=3)
        return error_results(experiments, message, detail)


def error_results(experiments: Sequence[Experiment], message: str, detail: str = "") -> list[RunResult]:
    """One ``"error"`` :class:`RunResult` per experiment, carrying ``message`` (and a short traceback in ``info``)."""
    return [RunResult(e.run_id, e.system, [p.to_dict() for p in e.probes], outcome=ERROR,
                      versions=versions(), error=message, info={"traceback": detail} if detail else {})
            for e in experiments]


class Executor:
    """Runs tasks; :meth:`run` calls ``done(task, results)`` in the driver as each task finishes, and ``started()``
    once the workers have their first tasks (driver-side work placed there overlaps the training)."""

    name = "executor"

    def run(self, tasks: Sequence[Task], done: Done, *, device: str = "cpu",
            progress: Callable[[str, int, int], None] | None = None, started: Callable[[], None] | None = None) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name


class InProcess(Executor):
    """Every task in this process, one after another (torch uses all its threads)."""

    name = "inprocess"

    def run(self, tasks, done, *, device="cpu", progress=None, started=None):
        if started:
            started()  # nothing runs beside the driver here
        for task in tasks:
            task.attempts += 1
            done(task, run_task(task.parts, device, progress=progress))


def _limit_threads(threads: int) -> None:
    """Torch's intra-op threads and numpy's BLAS (OpenBLAS) threads, both set to ``threads``."""
    torch.set_num_threads(threads)
    threadpool_limits(threads, user_api="blas")


@contextmanager
def _driver_on_one_thread() -> Iterator[None]:
    """While workers hold the cores, the driver's judges and figures use one torch and one BLAS thread.

    OpenBLAS threads spin while they wait: with two busy workers on two cores, numpy's default two BLAS threads in the
    driver made the eigenlearning law's judge 5x slower (31 s against 5.8 s with one thread; bench/README.md,
    "Scheduling, and the CPU floor")."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def _init_worker(driver: int) -> None:  # each task sets the worker's threads (run_task), under Ray too
    threading.Thread(target=_exit_without, args=(driver,), daemon=True).start()


def _exit_without(driver: int) -> None:
    """End this worker once its driver process is gone (a driver killed with SIGKILL cannot stop its pool; the
    worker is then re-parented and would otherwise wait for tasks forever)."""
    while os.getppid() == driver:
        time.sleep(1.0)
    os._exit(1)


class LocalPool(Executor):
    """``workers`` local processes (spawned, so no torch state is forked), each with ``cores // workers`` torch
    threads. A worker that dies (killed, out of memory) breaks the pool: it is restarted and the tasks that were in
    flight are retried once."""

    name = "pool"

    def __init__(self, workers: int = 2, cores: int | None = None) -> None:
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers={workers!r} must be a positive integer (e.g. --workers 2)")
        self.workers = workers
        self.threads = max((cores or os.cpu_count() or 1) // workers, 1)
        self._live: ProcessPoolExecutor | None = None  # kept between runs (workers start once), see close()

    def describe(self) -> str:
        return f"pool({self.workers} workers x {self.threads} threads)"

    def _pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_init_worker, initargs=(os.getpid(),))

    def _current(self) -> ProcessPoolExecutor:
        if self._live is None:
            self._live = self._pool()
        return self._live

    def close(self, wait: bool = False) -> None:
        """Stop the worker processes (a later :meth:`run` starts new ones); ``wait`` until they have exited."""
        if self._live is not None:
            self._live.shutdown(wait=wait, cancel_futures=True)
            self._live = None

    def run(self, tasks, done, *, device="cpu", progress=None, started=None):
        try:
            with _driver_on_one_thread():
                self._loop(list(tasks), done, device, started)
        except BaseException:  # interrupted: stop the workers, keep what the driver already stored
            self.close()
            raise

    def _loop(self, queue: list[Task], done: Done, device: str, started: Callable[[], None] | None) -> None:
        """Keep each worker fed until the queue is empty and every task is done; a broken pool is replaced."""
        pool = self._current()
        running: dict[Future, Task] = {}
        while queue or running:
            broken = not self._fill(pool, queue, running, device)
            if started:
                started()
                started = None
            if not broken:
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    broken |= self._finish(future, running.pop(future), queue, done)
            if broken:  # every task still in flight was lost with the pool: retry them in a fresh one
                for task in running.values():
                    self._retry(task, queue, done)
                running.clear()
                self.close()
                pool = self._current()

    def _fill(self, pool: ProcessPoolExecutor, queue: list[Task], running: dict[Future, Task], device: str) -> bool:
        """Submit queued tasks until each worker has two; ``False`` when the pool is broken (a worker died while
        idle: the task never started and stays queued)."""
        while queue and len(running) < 2 * self.workers:
            try:
                future = pool.submit(run_task, queue[0].parts, device, self.threads)
            except BrokenProcessPool:
                return False
            task = queue.pop(0)
            task.attempts += 1
            running[future] = task
        return True

    def _finish(self, future: Future, task: Task, queue: list[Task], done: Done) -> bool:
        """Hand a finished task's results to ``done``; ``True`` when its worker died (the task is retried)."""
        try:
            results = future.result()
        except BrokenProcessPool:
            self._retry(task, queue, done)
            return True
        except Exception as exc:  # noqa: BLE001 - e.g. a result that could not be sent back
            results = error_results(task.experiments, f"{type(exc).__name__}: {exc}")
        done(task, results)
        return False

    @staticmethod
    def _retry(task: Task, queue: list[Task], done: Done) -> None:
        """Queue a task lost with a dead worker again, once; a second loss is an ``"error"`` run."""
        if task.attempts < 2:
            queue.insert(0, task)
        else:
            done(task, error_results(task.experiments, "a worker process died twice while running this task "
                                     "(killed, or out of memory)"))


class Ray(Executor):
    """Tasks as Ray remote functions (``pip install 'lmech[ray]'``): a local Ray cluster with ``workers`` CPUs when
    ``address`` is ``None``, else the existing cluster at ``address`` (``host:port`` of its GCS, or ``"auto"``).
    Ray retries a task whose worker died once (``max_retries=1``); a second loss is an ``"error"`` run."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 2, cores: int | None = None) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ValueError("--executor ray needs Ray, which is not installed: pip install 'lmech[ray]'") from None
        if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
            raise ValueError(f"workers={workers!r} must be a positive integer (e.g. --workers 2)")
        if address not in (None, "auto"):
            _check_reachable(address)
        self.address, self.workers = address, workers
        self.threads = max((cores or os.cpu_count() or 1) // workers, 1)

    def describe(self) -> str:
        return f"ray({self.address or f'local, {self.workers} CPUs'})"

    def _init(self):
        import ray

        if not ray.is_initialized():
            kwargs = {"address": self.address} if self.address else {"num_cpus": self.workers}
            ray.init(**kwargs, include_dashboard=False, log_to_driver=False, configure_logging=False)
        return ray

    def run(self, tasks, done, *, device="cpu", progress=None, started=None):
        ray = self._init()
        remote = ray.remote(num_cpus=1, max_retries=1)(run_task)
        refs = {}
        for task in tasks:
            task.attempts += 1
            refs[remote.remote(task.parts, device, self.threads)] = task
        with _driver_on_one_thread() if self.address is None else nullcontext():  # a local cluster shares the cores
            if started:
                started()
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        results = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # worker crashed twice, or the node was lost
                        results = error_results(task.experiments, f"Ray lost this task twice: {type(exc).__name__}: "
                                                f"{str(exc).splitlines()[0] if str(exc) else ''}")
                    done(task, results)


def _check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast, with one line, when nothing listens at ``host:port``."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address {address!r} must be host:port of a Ray cluster's head (e.g. 127.0.0.1:6379) "
                         "or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise ValueError(f"--address {address}: no Ray cluster reachable there ({exc.strerror or exc}); start one with "
                         "`ray start --head` or omit --address for a local cluster") from None


def make_executor(kind: str | None = None, workers: int | str = "auto", address: str | None = None) -> Executor:
    """The executor named ``kind`` (``inprocess``, ``pool``, ``ray``; ``None``: in-process for one worker, a local
    pool for more) with ``workers`` workers (``"auto"``: the fastest choice on this machine, :func:`auto_workers`)."""
    if kind is not None and kind not in EXECUTORS:
        raise ValueError(f"--executor {kind!r} is not an executor; choose one of {', '.join(EXECUTORS)}")
    if address is not None and kind not in (None, "ray"):
        raise ValueError(f"--address is the address of a Ray cluster; it needs --executor ray, not {kind}")
    if workers == "auto":
        workers = auto_workers()
    if isinstance(workers, str):
        if not workers.isdigit():
            raise ValueError(f"--workers {workers!r} must be a positive integer or 'auto'")
        workers = int(workers)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers {workers!r} must be a positive integer or 'auto' (0 workers cannot train)")
    if kind is None:
        kind = "ray" if address is not None else "inprocess" if workers == 1 else "pool"
    if kind == "inprocess":
        if workers != 1:
            raise ValueError(f"--executor inprocess runs one task at a time; for --workers {workers} use --executor pool")
        return InProcess()
    if kind == "pool":
        return LocalPool(workers)
    return Ray(address, workers)


def auto_workers() -> int:
    """Workers for ``--workers auto``: one single-threaded process per core. lmech's networks are small, and on the
    2-core quick atlas two processes with one thread each took 318 s against 436 s for one process with two
    threads (bench/README.md, "Executors"); a 1-core machine gets one in-process worker."""
    return max(os.cpu_count() or 1, 1)


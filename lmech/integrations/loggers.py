"""Send lmech's measurements to the experiment trackers people already use: TensorBoard, MLflow and Weights & Biases.

One interface, :class:`MetricLogger`: ``log(metrics, step)`` and ``close()``; an adapter is a small subclass that
writes one step's scalars. Metric names become ``lmech/<observable>/<field>`` (``sharpness/0`` -> ``lmech/sharpness/0``) at
the training step they were measured. Each adapter imports its library only when built and says which extra to
install when it is missing (``pip install 'lmech[tensorboard]'``, ``'lmech[mlflow]'``, ``'lmech[wandb]'``).
:meth:`MetricLogger.log_run` replays a stored run; :meth:`MetricLogger.log_verdict` writes a law's verdict summary.
"""
from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any, Mapping

from ..report.verdict import Verdict
from ..store.result import RunResult

PREFIX = "lmech/"


def _require(module: str, extra: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed; install it with: pip install 'lmech[{extra}]'") from None


class MetricLogger:
    """Base adapter: subclasses implement :meth:`write` (one step's ``{name: value}``, names already prefixed) and may
    override :meth:`flush` and :meth:`close`. Non-finite values are skipped (trackers disagree on NaN); ``only``
    keeps the metric families named (``("sharpness", "loss")``)."""

    def __init__(self, only: tuple[str, ...] | None = None) -> None:
        self.only = only
        self.logged = 0

    def write(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Make what was written so far visible to readers."""

    def close(self) -> None:
        self.flush()

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        """``metrics`` (lmech names, e.g. ``{"sharpness/0": 12.5}``) measured at ``step``."""
        values = {PREFIX + name: float(value) for name, value in metrics.items()
                  if (self.only is None or name.split("/")[0] in self.only)
                  and isinstance(value, (int, float)) and math.isfinite(value)}
        if values:
            self.write(values, int(step))
            self.logged += len(values)

    def log_run(self, run: RunResult) -> None:
        """Every scalar measurement of a stored run, at its step."""
        by_step: dict[int, dict[str, float]] = {}
        for step, name, value in run.records:
            by_step.setdefault(step, {})[name] = value
        for step in sorted(by_step):
            self.log(by_step[step], step)
        self.flush()

    def log_verdict(self, verdict: Verdict, step: int = 0) -> None:
        """A law's verdict summary: ``lmech/verdict/<law>/error``, ``.../tolerance`` and ``.../passed``."""
        base = f"verdict/{verdict.law}"
        self.log({f"{base}/error": verdict.error, f"{base}/tolerance": verdict.tolerance,
                  f"{base}/passed": float(verdict.status == "pass")}, step)

    def __enter__(self) -> "MetricLogger":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class TensorBoardLogger(MetricLogger):
    """Event files in ``log_dir`` (``torch.utils.tensorboard.SummaryWriter``), readable by ``tensorboard``."""

    def __init__(self, log_dir: str | Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        _require("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))

    def write(self, values: dict[str, float], step: int) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class MLflowLogger(MetricLogger):
    """An MLflow run (started here unless ``run_id`` continues one) in the tracking store ``tracking_uri`` (a local
    SQLite file ``sqlite:///mlflow.db``, a server, or a ``file:`` folder where MLflow still allows it). Keys keep
    lmech's ``/``."""

    def __init__(self, tracking_uri: str, *, experiment: str = "lmech", run_name: str | None = None,
                 run_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        mlflow = _require("mlflow", "mlflow")
        self.client = mlflow.tracking.MlflowClient(tracking_uri=tracking_uri)
        if run_id is None:
            found = self.client.get_experiment_by_name(experiment)
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment)
            run_id = self.client.create_run(exp_id, run_name=run_name).info.run_id
        self.run_id = run_id
        self._pending: list = []
        self._metric = mlflow.entities.Metric

    def write(self, values: dict[str, float], step: int) -> None:
        stamp = int(time.time() * 1000)
        self._pending += [self._metric(name, value, stamp, step) for name, value in values.items()]
        if len(self._pending) >= 500:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self.client.log_batch(self.run_id, metrics=self._pending)
            self._pending = []

    def close(self) -> None:
        self.flush()
        self.client.set_terminated(self.run_id)


class WandbLogger(MetricLogger):
    """A Weights & Biases run (``mode="offline"`` by default: files under ``dir``, synced later with ``wandb sync``);
    pass ``run`` to log into one already started. Steps go to the ``lmech/step`` axis, so they may be logged out of
    order with the run's own."""

    def __init__(self, *, project: str = "lmech", dir: str | Path | None = None, mode: str = "offline",
                 run: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        wandb = _require("wandb", "wandb")
        self._owns = run is None
        self.run = run if run is not None else wandb.init(project=project, dir=None if dir is None else str(dir),
                                                          mode=mode, reinit="create_new")
        self.run.define_metric(PREFIX + "step")
        self.run.define_metric(PREFIX + "*", step_metric=PREFIX + "step")

    def write(self, values: dict[str, float], step: int) -> None:
        self.run.log({**values, PREFIX + "step": step})

    def close(self) -> None:
        if self._owns:
            self.run.finish()

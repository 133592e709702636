"""lmech's probes inside PyTorch Lightning and the Hugging Face Trainer: a callback each, a two-line change.

Both build a :class:`lmech.Tracker` when training starts (on the framework's model and optimizer, a fixed
measurement batch ``x, y`` and your ``loss_fn(model(x), y)``), count the framework's global step (so every
measurement lands at the step the framework reports), measure on the steps divisible by ``every`` and nowhere else
(``every="auto"``: the tracker's time-budgeted schedule, :class:`lmech.Tracker`), and close the tracker when
training ends (its :attr:`run` then holds the measurements; ``store`` keeps them).
``loggers`` receive every measurement as ``lmech/<observable>/<field>``.

The Hugging Face model's output object is read through ``output`` (default: its ``logits``), so ``loss_fn`` sees a
tensor, as for any other model. Curvature probes differentiate twice, which PyTorch's fused attention kernels
(``sdpa``, flash) cannot: with ``eager_attention=True`` (the default) the callback switches the model to eager
attention when training starts (the same function, computed without the fused kernel). Measurements run in the
model's current mode: set dropout to 0 for a deterministic Hessian.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..engine.tracker import Tracker
from ..store.result import RunResult
from .loggers import _require


class _Probing:
    """What both callbacks share: the tracker's arguments until training starts, then the tracker."""

    def __init__(self, loss_fn: Callable, x: Any, y: torch.Tensor, *, every: int | str = 50, probes: Sequence | None = None,
                 store: str | Path | None = None, loggers: Sequence = (), name: str = "tracked") -> None:
        self._args = dict(loss_fn=loss_fn, x=x, y=y, every=every, probes=probes, store=store, loggers=loggers,
                          name=name)
        self.tracker: Tracker | None = None
        self.run: RunResult | None = None

    def _start(self, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
        while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
            optimizer = optimizer.optimizer  # accelerate's and Lightning's wrappers hold the torch optimizer
        a = self._args
        self.tracker = Tracker(model, a["loss_fn"], a["x"], a["y"], optimizer=optimizer, every=a["every"],
                               probes=a["probes"], store=a["store"], loggers=a["loggers"], name=a["name"])

    def _step(self, global_step: int) -> None:
        if self.tracker is not None:
            self.tracker.step(global_step)

    def _end(self) -> None:
        if self.tracker is not None:
            self.run = self.tracker.close()
            self.tracker = None


def LightningCallback(loss_fn: Callable, x: Any, y: torch.Tensor, **kwargs: Any) -> Any:
    """A ``lightning.pytorch.Callback`` measuring lmech probes on the ``LightningModule`` (module docstring)::

        callback = lmech.integrations.LightningCallback(loss_fn, x_fixed, y_fixed, every=50, loggers=[tb])
        trainer = lightning.Trainer(..., callbacks=[callback])
    """
    pl = _require("lightning.pytorch", "lightning")

    class _Callback(_Probing, pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: nn.Module) -> None:
            self._start(pl_module, trainer.optimizers[0] if trainer.optimizers else None)

        def on_train_batch_end(self, trainer: Any, pl_module: nn.Module, *args: Any) -> None:
            self._step(trainer.global_step)

        def on_train_end(self, trainer: Any, pl_module: nn.Module) -> None:
            self._end()

    return _Callback(loss_fn, x, y, **kwargs)


class _Outputs(nn.Module):
    """A Hugging Face model seen as ``x -> output(model(x))``: ``x`` a tensor of input ids or a dict of inputs."""

    def __init__(self, model: nn.Module, output: str) -> None:
        super().__init__()
        self.model, self.output = model, output

    def forward(self, x: Any) -> torch.Tensor:
        out = self.model(**x) if isinstance(x, dict) else self.model(x)
        return getattr(out, self.output)


def HFTrainerCallback(loss_fn: Callable, x: Any, y: torch.Tensor, *, output: str = "logits",
                      eager_attention: bool = True, **kwargs: Any) -> Any:
    """A ``transformers.TrainerCallback`` measuring lmech probes on the Trainer's model (module docstring)::

        callback = lmech.integrations.HFTrainerCallback(lmech.cross_entropy, input_ids, labels, every=50)
        trainer = transformers.Trainer(model=model, args=args, train_dataset=data, callbacks=[callback])
    """
    transformers = _require("transformers", "huggingface")

    class _Callback(_Probing, transformers.TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: nn.Module = None,
                           optimizer: torch.optim.Optimizer = None, **kw: Any) -> None:
            if eager_attention and getattr(getattr(model, "config", None), "_attn_implementation", "eager") != "eager":
                model.set_attn_implementation("eager")
            self._start(_Outputs(model, output), optimizer)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._step(state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._end()

    return _Callback(loss_fn, x, y, **kwargs)

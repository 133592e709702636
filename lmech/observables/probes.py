"""Observables as engine probes: serializable, scheduled measurements that return named scalars.

Each probe wraps a public observable function; the engine calls it on a :class:`TrainState`.
Metric names are ``/``-namespaced (``loss/train``, ``sharpness/0``) as in W&B and TensorBoard.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar


from ..engine.schedule import Schedule
from ..systems._validate import ConfigError, one_of, positive_float, positive_int
from .conservation import balancedness, neuron_balance, relative_drift
from .linear_net import end_to_end_singular_values
from .metrics import accuracy, gradient_norm, loss
from .sharpness import SharpnessTracker
from .weights import weight_change

if TYPE_CHECKING:
    from ..engine.state import TrainState

EVERY_STEP = Schedule(every=1)


@dataclass
class Probe:
    """Base class: ``schedule`` says when, :meth:`measure` says what. Subclasses set ``name``."""

    schedule: Schedule = field(default=EVERY_STEP)
    name: ClassVar[str] = ""

    def measure(self, state: "TrainState") -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget state carried between measurements (warm starts, reference values)."""

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "schedule"}
        return {"name": self.name, **d, "schedule": self.schedule.to_dict()}


@dataclass
class Loss(Probe):
    """``loss/<split>`` and, for labelled data, ``accuracy/<split>``."""

    split: str = "train"
    name: ClassVar[str] = "loss"

    def __post_init__(self) -> None:
        one_of("probe.split", self.split, ("train", "test"))

    def measure(self, state: "TrainState") -> dict[str, float]:
        x, y = (state.x_train, state.y_train) if self.split == "train" else (state.x_test, state.y_test)
        if len(x) == 0:
            return {}
        out = {f"loss/{self.split}": loss(state.model, state.loss_fn, x, y)}
        if state.labelled:
            out[f"accuracy/{self.split}"] = accuracy(state.model, x, y)
        return out


@dataclass
class GradNorm(Probe):
    """``grad_norm``: full-batch gradient norm on the training set."""

    name: ClassVar[str] = "grad_norm"

    def measure(self, state: "TrainState") -> dict[str, float]:
        return {"grad_norm": gradient_norm(state.model, state.loss_fn, state.x_train, state.y_train)}


@dataclass
class WeightChange(Probe):
    """``weights/distance``, ``weights/relative`` and ``weights/relative/<param>`` against the init."""

    name: ClassVar[str] = "weights"

    def measure(self, state: "TrainState") -> dict[str, float]:
        return {f"weights/{k}": v for k, v in weight_change(state.model, state.init).items()}


@dataclass
class SingularValues(Probe):
    """``sv/<i>``: singular values of a linear network's end-to-end map, descending."""

    name: ClassVar[str] = "sv"

    def measure(self, state: "TrainState") -> dict[str, float]:
        svs = end_to_end_singular_values(state.model, state.x_train.shape[1])
        return {f"sv/{i}": float(s) for i, s in enumerate(svs)}


@dataclass
class Conservation(Probe):
    """``<kind>/drift``: relative drift of a conserved quantity since the first measurement.

    ``kind="balancedness"`` (linear nets, :func:`balancedness`) or ``"neuron_balance"`` (ReLU MLPs,
    :func:`neuron_balance`); also ``<kind>/drift/<l>`` per layer pair.
    """

    kind: str = "balancedness"
    name: ClassVar[str] = "conservation"
    _initial: list = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        one_of("probe.kind", self.kind, ("balancedness", "neuron_balance"))

    def reset(self) -> None:
        self._initial = []

    def measure(self, state: "TrainState") -> dict[str, float]:
        current = (balancedness if self.kind == "balancedness" else neuron_balance)(state.model)
        if not self._initial:
            self._initial = [c.clone() for c in current]
        out = {f"{self.kind}/drift": relative_drift(current, self._initial)}
        for i, (c, c0) in enumerate(zip(current, self._initial)):
            out[f"{self.kind}/drift/{i}"] = relative_drift([c], [c0])
        return out


@dataclass
class Sharpness(Probe):
    """``sharpness/<i>`` (top-k Hessian eigenvalues of the training loss on the first ``subset``
    training examples, all if ``None``), with ``sharpness/matvecs`` and ``sharpness/residual``
    (max relative residual). Warm-started from the previous measurement."""

    k: int = 1
    tol: float = 1e-3
    max_matvecs: int = 200
    subset: int | None = None
    name: ClassVar[str] = "sharpness"
    _tracker: SharpnessTracker | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        positive_int("probe.k", self.k)
        positive_float("probe.tol", self.tol)
        positive_int("probe.max_matvecs", self.max_matvecs)
        if self.subset is not None:
            positive_int("probe.subset", self.subset)
        self.reset()

    def reset(self) -> None:
        self._tracker = SharpnessTracker(self.k, tol=self.tol, max_matvecs=self.max_matvecs)

    def measure(self, state: "TrainState") -> dict[str, float]:
        n = self.subset or len(state.x_train)
        res = self._tracker(state.model, state.loss_fn, state.x_train[:n], state.y_train[:n])
        out = {f"sharpness/{i}": float(v) for i, v in enumerate(res.values)}
        out["sharpness/matvecs"] = float(res.matvecs)
        out["sharpness/residual"] = res.relative_residual
        return out


PROBES = {cls.name: cls for cls in (Loss, GradNorm, WeightChange, SingularValues, Conservation, Sharpness)}


def probe_from_dict(d: dict) -> Probe:
    """Rebuild a probe from :meth:`Probe.to_dict` output."""
    d = dict(d)
    one_of("probe.name", d.get("name"), PROBES)
    cls = PROBES[d.pop("name")]
    schedule = Schedule(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("schedule", {"every": 1}).items()})
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    if set(d) - allowed:
        raise ConfigError(f"probe {cls.name!r} has unknown field(s) {sorted(set(d) - allowed)}; allowed: {sorted(allowed)}")
    return cls(schedule=schedule, **d)

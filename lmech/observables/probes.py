"""Observables as engine probes: serializable, scheduled measurements that return named scalars.

Each probe wraps a public observable function; the engine calls it on a :class:`TrainState`. A probe is immutable
configuration (a frozen dataclass: what to measure and when); what it carries from one measurement to the next in a
run (a warm start, the first measurement to compare with) lives in that run's state (:meth:`TrainState.memo`), so
one probe object can serve many runs and there is nothing to reset. Defining a subclass registers it under its
``name`` (what :meth:`Probe.to_dict` writes and :func:`probe_from_dict` reads). Metric names are ``/``-namespaced
(``loss/train``, ``sharpness/0``) as in W&B and TensorBoard, and each starts with one of the probe's
``families``; no two probes share a family, so a metric name says which probe wrote it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from .schedule import Schedule
from ..systems._validate import ConfigError, one_of, positive_float, positive_int
from .conservation import balancedness, neuron_balance, relative_drift
from .coordinates import coordinate_sizes
from .features import (_default_layers, _layer_inputs, agop, hidden_representations, neural_feature_matrix,
                       nfa_scores, readout_kernel, representation_change)
from .linear_net import end_to_end_singular_values
from .ntk import empirical_ntk, kernel_distance, kernel_target_alignment, ntk_eigenvalues
from .metrics import accuracy, gradient_norm, loss, norm_of, output_accuracy
from .heavy_tails import weight_spectrum
from .instability import KINDS as INSTABILITY_KINDS, InstabilityMonitor
from .similarity import cka
from .neural_collapse import NeuralCollapseAccumulator
from .noise import gradient_noise_scale
from .density import hessian_density
from .trace import hessian_trace
from .sharpness import SharpnessTracker
from .state import TrainState
from .learning_curves import weight_norm
from .weights import weight_change

EVERY_STEP = Schedule(every=1)


__all__ = ["Probe", "Loss", "GradNorm", "WeightChange", "SingularValues", "Conservation", "Sharpness", "Instability",
           "Outputs", "Kernels", "Parameters", "RepresentationChange", "RepresentationSimilarity", "FeatureAnsatz", "NoiseScale",
           "HessianTrace", "HessianDensity", "CoordinateSizes", "NeuralCollapse", "WeightSpectrum", "StopWhen",
           "probe_from_dict", "probe_types"]

_REGISTRY: dict[str, type["Probe"]] = {}


@dataclass(frozen=True)
class Probe:
    """Base class: ``schedule`` says when, :meth:`measure` says what. Subclasses set ``name`` (registered when the
    class is defined) and ``families`` (the first component of every metric name they write). A measurement must
    leave the parameters and their ``.grad`` as it found them: in full-batch training the step's gradient is
    already there (``TrainState.step_pass``), so take derivatives with ``torch.autograd.grad`` or ``torch.func``."""

    schedule: Schedule = field(default=EVERY_STEP)
    name: ClassVar[str] = ""
    families: ClassVar[tuple[str, ...]] = ()
    stackable: ClassVar[bool] = False  # see stacks()

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.name or not cls.families:
            raise TypeError(f"probe class {cls.__name__} must set name and families")
        taken = {f: other for other in _REGISTRY.values() if other.__qualname__ != cls.__qualname__
                 for f in other.families}
        clash = [f"{f!r} ({taken[f].__name__})" for f in cls.families if f in taken]
        if clash or (cls.name in _REGISTRY and _REGISTRY[cls.name].__qualname__ != cls.__qualname__):
            raise TypeError(f"probe class {cls.__name__}: name {cls.name!r} or families {clash} already registered")
        _REGISTRY[cls.name] = cls

    def measure(self, state: TrainState) -> dict[str, float | np.ndarray | torch.Tensor]:
        """Named scalars (tidy metrics) and/or arrays (kernels, outputs: stored as array records)."""
        raise NotImplementedError

    def ends_run(self, records: list[tuple[int, str, float]], step: int) -> bool:
        """Whether the run should end after this step's measurements (``records``: the run's so far); only
        :class:`StopWhen` says yes."""
        return False

    def reads_step_pass(self) -> bool:
        """Whether this probe reads the training step's own full-batch pass (``TrainState.step_pass``), so that the
        engine runs the step's forward and backward before measuring it."""
        return False

    def stacks(self) -> bool:
        """Whether this probe can measure a model trained in a stack (:func:`lmech.engine.sweep.train_group`): the
        engine then hands it a state whose model holds that model's parameters at the step, with its data, init and
        memo, but no optimizer and no step pass. Probes that read neither, and do not end runs, say yes
        (``stackable = True``); a new probe class says no unless it declares so (its runs then train alone)."""
        return self.stackable

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init and f.name != "schedule"}
        return {"name": self.name, **d, "schedule": self.schedule.to_dict()}


@dataclass(frozen=True)
class Loss(Probe):
    """``loss/<split>`` and, for labelled data, ``accuracy/<split>``."""

    split: str = "train"
    name: ClassVar[str] = "loss"
    families: ClassVar[tuple[str, ...]] = ("loss", "accuracy")
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        one_of("probe.split", self.split, ("train", "test"))

    def reads_step_pass(self) -> bool:
        return self.split == "train"

    def measure(self, state: TrainState) -> dict[str, float]:
        x, y = (state.x_train, state.y_train) if self.split == "train" else (state.x_test, state.y_test)
        if len(x) == 0:
            return {}
        shared = state.shared_pass() if self.split == "train" else None
        if shared is not None:  # the training step's own forward at this step (full batch)
            out = {"loss/train": float(shared.loss)}
            if state.labelled:
                out["accuracy/train"] = output_accuracy(shared.outputs, y)
            return out
        out = {f"loss/{self.split}": loss(state.model, state.loss_fn, x, y)}
        if state.labelled:
            out[f"accuracy/{self.split}"] = accuracy(state.model, x, y)
        return out


@dataclass(frozen=True)
class StopWhen(Probe):
    """End the run at the first step of its schedule where ``metric`` (a scalar another probe recorded at that step,
    listed before this one, e.g. ``accuracy/test`` of :class:`Loss`) is ``>= at_least`` (or ``<= at_most``: give
    one); the engine then records ``stopped = 1`` and measures every probe scheduled at the last step at this one, so
    "final" measurements describe where the run stopped. For runs whose budget only needs to outlast an event (a
    grokking run needs no steps after its test accuracy crossed the threshold)."""

    metric: str = "accuracy/test"
    at_least: float | None = None
    at_most: float | None = None
    name: ClassVar[str] = "stop"
    families: ClassVar[tuple[str, ...]] = ("stopped",)

    def __post_init__(self) -> None:
        if (self.at_least is None) == (self.at_most is None):
            raise ConfigError(f"probe StopWhen({self.metric!r}) needs exactly one of at_least= and at_most= (the "
                              "threshold the metric must reach)")

    def measure(self, state: TrainState) -> dict[str, float]:
        return {}

    def ends_run(self, records: list[tuple[int, str, float]], step: int) -> bool:
        for at, name, value in reversed(records):
            if at != step:
                return False
            if name == self.metric:
                return value >= self.at_least if self.at_least is not None else value <= self.at_most
        return False


@dataclass(frozen=True)
class GradNorm(Probe):
    """``grad_norm``: full-batch gradient norm on the training set."""

    name: ClassVar[str] = "grad_norm"
    families: ClassVar[tuple[str, ...]] = ("grad_norm",)
    stackable: ClassVar[bool] = True

    def reads_step_pass(self) -> bool:
        return True

    def measure(self, state: TrainState) -> dict[str, float]:
        shared = state.shared_pass()
        if shared is not None and shared.backward:  # the training step's own full-batch gradient at this step
            return {"grad_norm": norm_of([p.grad for p in state.model.parameters() if p.requires_grad])}
        return {"grad_norm": gradient_norm(state.model, state.loss_fn, state.x_train, state.y_train)}


@dataclass(frozen=True)
class WeightChange(Probe):
    """``weights/distance``, ``weights/relative`` and ``weights/relative/<param>`` against the init, and
    ``weights/norm`` (:func:`~lmech.weight_norm`, the global norm that weight decay shrinks)."""

    name: ClassVar[str] = "weights"
    families: ClassVar[tuple[str, ...]] = ("weights",)
    stackable: ClassVar[bool] = True

    def measure(self, state: TrainState) -> dict[str, float]:
        return {f"weights/{k}": v for k, v in weight_change(state.model, state.init).items()} | {
            "weights/norm": weight_norm(state.model)}


@dataclass(frozen=True)
class SingularValues(Probe):
    """``sv/<i>``: singular values of a linear network's end-to-end map, descending."""

    name: ClassVar[str] = "sv"
    families: ClassVar[tuple[str, ...]] = ("sv",)
    stackable: ClassVar[bool] = True

    def measure(self, state: TrainState) -> dict[str, float]:
        svs = end_to_end_singular_values(state.model, state.x_train.shape[1])
        return {f"sv/{i}": float(s) for i, s in enumerate(svs)}


@dataclass(frozen=True)
class Conservation(Probe):
    """``<kind>/drift``: relative drift of a conserved quantity since the first measurement.

    ``kind="balancedness"`` (linear nets, :func:`balancedness`) or ``"neuron_balance"`` (ReLU MLPs,
    :func:`neuron_balance`); also ``<kind>/drift/<l>`` per layer pair.
    """

    kind: str = "balancedness"
    name: ClassVar[str] = "conservation"
    families: ClassVar[tuple[str, ...]] = ("balancedness", "neuron_balance")
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        one_of("probe.kind", self.kind, ("balancedness", "neuron_balance"))

    def measure(self, state: TrainState) -> dict[str, float]:
        current = (balancedness if self.kind == "balancedness" else neuron_balance)(state.model)
        initial = state.memo(self).setdefault("initial", [c.clone() for c in current])
        out = {f"{self.kind}/drift": relative_drift(current, initial)}
        for i, (c, c0) in enumerate(zip(current, initial)):
            out[f"{self.kind}/drift/{i}"] = relative_drift([c], [c0])
        return out


@dataclass(frozen=True)
class Sharpness(Probe):
    """``sharpness/<i>`` (top-k Hessian eigenvalues of the training loss on the first ``subset``
    training examples, all if ``None``), with ``sharpness/matvecs`` and ``sharpness/residual``
    (max relative residual). Warm-started from the previous measurement. ``preconditioned=True``
    measures ``lambda_max(P^-1 H)`` with ``P`` from the run's optimizer state instead (Adam, RMSprop:
    :func:`sharpness` with ``optimizer``), as ``preconditioned_sharpness/<i>``; before the first
    optimizer step ``P`` is undefined and nothing is recorded."""

    k: int = 1
    tol: float = 1e-3
    max_matvecs: int = 200
    subset: int | None = None
    preconditioned: bool = False
    name: ClassVar[str] = "sharpness"
    families: ClassVar[tuple[str, ...]] = ("sharpness", "preconditioned_sharpness")

    def __post_init__(self) -> None:
        positive_int("probe.k", self.k)
        positive_float("probe.tol", self.tol)
        positive_int("probe.max_matvecs", self.max_matvecs)
        if self.subset is not None:
            positive_int("probe.subset", self.subset)

    def stacks(self) -> bool:
        return not self.preconditioned  # P comes from the run's optimizer

    def measure(self, state: TrainState) -> dict[str, float]:
        n = self.subset  # None: every training example
        optimizer = state.optimizer if self.preconditioned else None
        if self.preconditioned and (optimizer is None or not optimizer.state):
            return {}
        memo = state.memo(self)
        if "tracker" not in memo:  # warm-started from this run's previous measurement
            memo["tracker"] = SharpnessTracker(self.k, tol=self.tol, max_matvecs=self.max_matvecs)
        res = memo["tracker"](state.model, state.loss_fn, state.x_train[:n], state.y_train[:n], optimizer)
        prefix = "preconditioned_sharpness" if self.preconditioned else "sharpness"
        out = {f"{prefix}/{i}": float(v) for i, v in enumerate(res.values)}
        out[f"{prefix}/matvecs"] = float(res.matvecs)
        out[f"{prefix}/residual"] = res.relative_residual
        return out


@dataclass(frozen=True)
class Instability(Probe):
    """``instability/ratio`` (sharpness over the optimizer's stability threshold), ``instability/sharpness``,
    ``instability/threshold``, ``instability/growth``, ``instability/crossing_step``,
    ``instability/decay_crossing_step``, ``instability/event_step``, ``instability/top_fraction``,
    ``instability/alarm`` (1 or 0), ``instability/kind`` (the index of the forecast's kind in ``("stable",
    "edge-of-stability", "catapult", "divergence")``) and ``instability/matvecs``:
    :class:`~lmech.InstabilityMonitor` on the run's optimizer and its first ``subset`` training examples. Adaptive
    optimizers record nothing before their first step."""

    subset: int | None = None
    band: float = 0.15
    catapult_ratio: float = 2.0
    horizon: int = 200
    window: int = 5
    name: ClassVar[str] = "instability"
    families: ClassVar[tuple[str, ...]] = ("instability",)

    def __post_init__(self) -> None:
        if self.subset is not None:
            positive_int("probe.subset", self.subset)

    def measure(self, state: TrainState) -> dict[str, float]:
        if state.optimizer is None:
            raise ConfigError("probe instability needs the run's optimizer (lmech's engine or a Tracker given one)")
        memo = state.memo(self)
        if "monitor" not in memo:
            memo["monitor"] = InstabilityMonitor(state.optimizer, band=self.band, catapult_ratio=self.catapult_ratio,
                                                 horizon=self.horizon, window=self.window)
        f = memo["monitor"](state.step, state.model, state.loss_fn, state.x_train[:self.subset],
                            state.y_train[:self.subset])
        if f is None:
            return {}
        return {"instability/ratio": f.ratio, "instability/sharpness": f.sharpness,
                "instability/threshold": f.threshold, "instability/growth": f.growth,
                "instability/crossing_step": f.crossing_step, "instability/decay_crossing_step": f.decay_crossing_step,
                "instability/event_step": f.event_step, "instability/top_fraction": f.top_fraction,
                "instability/alarm": float(f.alarm), "instability/kind": float(INSTABILITY_KINDS.index(f.kind)),
                "instability/matvecs": float(f.matvecs)}


@dataclass(frozen=True)
class Outputs(Probe):
    """Arrays ``output/train`` and ``output/test``: the network's outputs on the first ``points``
    inputs of each split (all if ``None``), for comparing a run with a predicted function."""

    points: int | None = None
    name: ClassVar[str] = "outputs"
    families: ClassVar[tuple[str, ...]] = ("output",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.points is not None:
            positive_int("probe.points", self.points)

    @torch.no_grad()
    def measure(self, state: TrainState) -> dict[str, np.ndarray]:
        out = {}
        for split, x in (("train", state.x_train), ("test", state.x_test)):
            if len(x):
                out[f"output/{split}"] = state.model(x[:self.points]).double().cpu().numpy()
        return out


@dataclass(frozen=True)
class Kernels(Probe):
    """Arrays ``kernels/ntk`` (empirical NTK, traced over outputs: :func:`empirical_ntk`) and
    ``kernels/readout`` (the readout's conditional NNGP without its ``w_std^2``: :func:`readout_kernel`)
    on the first ``points`` training inputs; scalars ``kernels/ntk_eig/0`` (top eigenvalue), ``kernels/alignment``
    (kernel-target alignment) and ``kernels/distance`` (kernel distance from the first measurement).
    With ``ntk=False`` only ``kernels/readout`` is recorded: a forward pass, no Jacobian. With ``test_points > 0``
    the array ``kernels/ntk_test_train`` holds the NTK between the first ``test_points`` test inputs and the
    ``points`` training inputs (what a linearized model needs to predict on the test set) and ``kernels/ntk_test``
    the NTK among those test inputs (what its predictive variance needs, e.g. a linearized Laplace)."""

    points: int = 64
    ntk: bool = True
    test_points: int = 0
    name: ClassVar[str] = "kernels"
    families: ClassVar[tuple[str, ...]] = ("kernels",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.points", self.points)
        positive_int("probe.test_points", self.test_points, minimum=0)

    def measure(self, state: TrainState) -> dict:
        x, y = state.x_train[:self.points], state.y_train[:self.points]
        if not self.ntk:
            return {"kernels/readout": readout_kernel(state.model, x)}
        ntk = empirical_ntk(state.model, x, trace_outputs=True)
        initial = state.memo(self).setdefault("initial", ntk)
        out = {"kernels/ntk": ntk, "kernels/readout": readout_kernel(state.model, x),
               "kernels/ntk_eig/0": float(ntk_eigenvalues(ntk, 1)[0]), "kernels/alignment": kernel_target_alignment(ntk, y),
               "kernels/distance": kernel_distance(initial, ntk)}
        if self.test_points:
            x_test = state.x_test[:self.test_points]
            out["kernels/ntk_test_train"] = empirical_ntk(state.model, x_test, x, trace_outputs=True)
            out["kernels/ntk_test"] = empirical_ntk(state.model, x_test, trace_outputs=True)
        return out


@dataclass(frozen=True)
class Parameters(Probe):
    """Arrays ``param/<name>``: copies of the named parameter tensors (all if ``names`` is empty),
    e.g. to look at neuron directions after training."""

    names: tuple[str, ...] = ()
    name: ClassVar[str] = "parameters"
    families: ClassVar[tuple[str, ...]] = ("param",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))

    def measure(self, state: TrainState) -> dict[str, torch.Tensor]:
        params = dict(state.model.named_parameters())
        missing = set(self.names) - set(params)
        if missing:
            raise ConfigError(f"probe.names {sorted(missing)} are not parameters of the model; available: {sorted(params)}")
        return {f"param/{n}": params[n].detach().clone() for n in (self.names or params)}


@dataclass(frozen=True)
class RepresentationChange(Probe):
    """``representation/<i>``: relative change ``||h_t - h_0|| / ||h_0||`` of each hidden representation on the
    first ``points`` training inputs (:func:`representation_change`): feature learning, ~0 in the lazy regime."""

    points: int | None = None
    name: ClassVar[str] = "representation"
    families: ClassVar[tuple[str, ...]] = ("representation",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.points is not None:
            positive_int("probe.points", self.points)

    def measure(self, state: TrainState) -> dict[str, float]:
        return representation_change(state.model, state.init, state.x_train[:self.points])


@dataclass(frozen=True)
class RepresentationSimilarity(Probe):
    """``similarity/<i>``: debiased linear CKA (:func:`~lmech.cka`) between hidden representation ``i`` now and at
    init on the first ``points`` training inputs (numbered as in :class:`RepresentationChange`): 1 while the
    features keep their geometry (the lazy regime), falling as they are learned; invariant to the isotropic growth
    that ``representation/<i>`` also counts."""

    points: int = 256
    name: ClassVar[str] = "similarity"
    families: ClassVar[tuple[str, ...]] = ("similarity",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.points", self.points, minimum=4)

    def measure(self, state: TrainState) -> dict[str, float]:
        now, then = hidden_representations(state.model, state.init, state.x_train[:self.points])
        return {f"similarity/{i}": cka(h.double().cpu().numpy(), h0.double().cpu().numpy(), debiased=True)
                for i, (h, h0) in enumerate(zip(now, then))}


@dataclass(frozen=True)
class FeatureAnsatz(Probe):
    """``nfa/<layer>/s=0.5``, ``nfa/<layer>/s=1``: Neural Feature Ansatz correlations of layer ``layer``
    (an index into ``model.layers``) between its init-removed weight Gram and the AGOP to the power s,
    and ``nfa/<layer>/init``, the baseline correlation with the init Gram (:func:`nfa_scores`), on the
    first ``points`` training inputs; the arrays ``agop/<layer>`` and ``nfa/<layer>/nfm`` hold the AGOP and the
    init-removed NFM themselves."""

    layer: int = 0
    points: int | None = None
    name: ClassVar[str] = "nfa"
    families: ClassVar[tuple[str, ...]] = ("nfa", "agop")
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.layer", self.layer, minimum=0)
        if self.points is not None:
            positive_int("probe.points", self.points)

    def measure(self, state: TrainState) -> dict:
        layer = state.model.layers[self.layer]
        x = state.x_train[:self.points]
        gram = agop(state.model, x, layer)
        init = state.init[f"layers.{self.layer}.weight"]
        scores = nfa_scores(state.model, x, layer, init_weight=init, gram=gram)
        return {f"agop/{self.layer}": gram, f"nfa/{self.layer}/nfm": neural_feature_matrix(layer, init),
                **{f"nfa/{self.layer}/{k}": v for k, v in scores.items()}}


@dataclass(frozen=True)
class NeuralCollapse(Probe):
    """``nc/1``, ``nc/1_weak``, ``nc/cdnv``, ``nc/2_equinorm_means`` (and ``_weights``), ``nc/2_equiangular_*``,
    ``nc/2_max_angle_*``, ``nc/3``, ``nc/4``: neural collapse (:func:`~lmech.neural_collapse`) of the readout's input
    features on the ``split`` set, with the readout's weight as the classifier and the model's own outputs as its
    decisions (bias and any output multiplier included). Needs labelled data and a ``.layers`` model."""

    split: str = "train"
    name: ClassVar[str] = "neural_collapse"
    families: ClassVar[tuple[str, ...]] = ("nc",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        one_of("probe.split", self.split, ("train", "test"))

    def measure(self, state: TrainState) -> dict[str, float]:
        x, y = (state.x_train, state.y_train) if self.split == "train" else (state.x_test, state.y_test)
        if y.ndim == 1 and not y.is_floating_point():
            labels = y
        elif state.labelled and y.ndim == 2:
            labels = y.argmax(dim=1)  # one-hot targets of MSE on classes
        else:
            raise ConfigError("probe neural_collapse needs class labels (integer labels, or one-hot targets of "
                              "labelled data); these are regression targets")
        readout = _default_layers(state.model, None, skip_first=False)[0]
        with torch.no_grad():
            (h,), logits = _layer_inputs(state.model, x, [readout])
        h = h.reshape(len(h), -1)
        acc = NeuralCollapseAccumulator(logits.shape[1], h.shape[1])
        acc.update(h, labels)
        acc.classify(h, logits)
        r = acc.result(readout.weight)
        out = {f"nc/{f.name[2:]}": float(getattr(r, f.name)) for f in dataclasses.fields(r)
               if f.name.startswith("nc") and getattr(r, f.name) is not None}  # nc1 -> nc/1, nc2_x -> nc/2_x
        return out | {"nc/cdnv": r.cdnv}


@dataclass(frozen=True)
class WeightSpectrum(Probe):
    """``esd/<i>/alpha``, ``esd/<i>/alpha_weighted``, ``esd/<i>/heavy_tailed`` (1 or 0, the layer's status) and
    ``esd/<i>/above_mp`` (the eigenvalues past the Marchenko-Pastur edge) of the ``i``-th 2-D weight matrix, in
    parameter order (:func:`~lmech.weight_spectrum`: the power-law fit of the eigenvalues of ``W^T W``). A layer with
    too few eigenvalues records NaN alphas."""

    name: ClassVar[str] = "weight_spectrum"
    families: ClassVar[tuple[str, ...]] = ("esd",)
    stackable: ClassVar[bool] = True

    def measure(self, state: TrainState) -> dict[str, float]:
        out = {}
        for i, layer in enumerate(weight_spectrum(state.model)):
            out |= {f"esd/{i}/alpha": layer.fit.alpha, f"esd/{i}/alpha_weighted": layer.alpha_weighted,
                    f"esd/{i}/heavy_tailed": float(layer.status == "heavy-tailed"),
                    f"esd/{i}/above_mp": float(layer.n_above_edge)}
        return out


@dataclass(frozen=True)
class NoiseScale(Probe):
    """``noise_scale/b_simple``, ``noise_scale/b_simple_stderr``, ``noise_scale/b_noise``, ``noise_scale/trace_sigma``, ``noise_scale/grad_sq``,
    ``noise_scale/trace_h_sigma``, ``noise_scale/g_h_g``, ``noise_scale/matvecs``: :func:`gradient_noise_scale` on the first ``points``
    training examples (all if ``None``); ``hessian_samples=0`` skips the Hessian terms (no ``B_noise``)."""

    points: int | None = 1000
    hessian_samples: int = 32
    chunk_size: int = 64
    name: ClassVar[str] = "noise_scale"
    families: ClassVar[tuple[str, ...]] = ("noise_scale",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.points is not None:
            positive_int("probe.points", self.points, minimum=3)
        positive_int("probe.hessian_samples", self.hessian_samples, minimum=0)
        positive_int("probe.chunk_size", self.chunk_size)

    def measure(self, state: TrainState) -> dict[str, float]:
        x, y = state.x_train[:self.points], state.y_train[:self.points]
        est = gradient_noise_scale(state.model, state.loss_fn, x, y, hessian=self.hessian_samples > 0,
                                   hessian_samples=max(self.hessian_samples, 2), chunk_size=self.chunk_size)
        out = {"noise_scale/b_simple": est.b_simple, "noise_scale/b_simple_stderr": est.b_simple_stderr,
               "noise_scale/trace_sigma": est.trace_sigma, "noise_scale/grad_sq": est.grad_sq}
        if self.hessian_samples:
            out.update({"noise_scale/b_noise": est.b_noise, "noise_scale/trace_h_sigma": est.trace_h_sigma,
                        "noise_scale/g_h_g": est.g_h_g, "noise_scale/matvecs": float(est.matvecs)})
        return out


@dataclass(frozen=True)
class HessianTrace(Probe):
    """``hessian/trace``, ``hessian/trace_stderr`` and ``hessian/trace_matvecs``: :func:`hessian_trace` (Hutch++ with
    ``matvecs`` products) of the training loss on the first ``subset`` training examples (all if ``None``)."""

    matvecs: int = 60
    subset: int | None = None
    name: ClassVar[str] = "hessian_trace"
    families: ClassVar[tuple[str, ...]] = ("hessian",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.matvecs", self.matvecs, minimum=3)
        if self.subset is not None:
            positive_int("probe.subset", self.subset)

    def measure(self, state: TrainState) -> dict[str, float]:
        n = self.subset  # None: every training example
        est = hessian_trace(state.model, state.loss_fn, state.x_train[:n], state.y_train[:n], matvecs=self.matvecs)
        return {"hessian/trace": est.value, "hessian/trace_stderr": est.stderr, "hessian/trace_matvecs": est.matvecs}


@dataclass(frozen=True)
class HessianDensity(Probe):
    """Arrays ``density/nodes`` and ``density/weights`` (``probes x steps``; a probe whose Krylov space closed early
    is padded with weight 0): the quadrature rules of :func:`hessian_density` on the first ``subset`` training
    examples, from which :class:`SpectralDensity` rebuilds the density; scalar ``density/matvecs``."""

    probes: int = 4
    steps: int = 40
    subset: int | None = None
    name: ClassVar[str] = "hessian_density"
    families: ClassVar[tuple[str, ...]] = ("density",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.probes", self.probes)
        positive_int("probe.steps", self.steps)
        if self.subset is not None:
            positive_int("probe.subset", self.subset)

    def measure(self, state: TrainState) -> dict:
        n = self.subset  # None: every training example
        sd = hessian_density(state.model, state.loss_fn, state.x_train[:n], state.y_train[:n], probes=self.probes,
                             steps=self.steps, seed=state.step)
        nodes, weights = np.zeros((self.probes, self.steps)), np.zeros((self.probes, self.steps))
        for i, (nd, wt) in enumerate(zip(sd.nodes, sd.weights)):
            nodes[i, :len(nd)], weights[i, :len(wt)] = nd, wt
        return {"density/nodes": nodes, "density/weights": weights, "density/matvecs": float(sd.matvecs)}


@dataclass(frozen=True)
class CoordinateSizes(Probe):
    """``coords/<module>/size`` = mean ``|h_t|`` and ``coords/<module>/update`` = mean ``|h_t - h_0|`` of the output
    ``h_t`` of every ``nn.Linear``, lmech ``Dense``, ``nn.Embedding`` and ``nn.LayerNorm`` module on the first
    ``points`` training inputs (token ids work too), ``h_0`` from the run's first measurement (the init
    when scheduled at step 0), and for affine layers the update's two parts ``coords/<module>/update_weight`` = mean
    ``|(W_t - W_0) x_t|`` and ``coords/<module>/update_input`` = mean ``|W_0 (x_t - x_0)|`` (for class labels, the
    readout's split into ``update_input_target`` and ``update_input_other``): the coordinate check of Yang et al. 2022 (arXiv:2203.03466, App. D.1), read back by
    :meth:`lmech.CoordCheck.from_runs`."""

    points: int = 256
    name: ClassVar[str] = "coords"
    families: ClassVar[tuple[str, ...]] = ("coords",)
    stackable: ClassVar[bool] = True

    def __post_init__(self) -> None:
        positive_int("probe.points", self.points)

    @torch.no_grad()
    def measure(self, state: TrainState) -> dict[str, float]:
        y = state.y_train[:self.points]
        labels = (y.argmax(dim=1) if y.dim() == 2 else y) if state.labelled else None
        with coordinate_sizes(state.model, state.memo(self).setdefault("first", {}), labels) as sizes:
            state.model(state.x_train[:self.points])
        return {f"coords/{n}/{kind}": v for n, kinds in sizes.items() for kind, v in kinds.items()}


def probe_types() -> dict[str, type[Probe]]:
    """Every registered probe class by name (the built-in ones and any subclass defined since)."""
    return dict(_REGISTRY)


def probe_from_dict(d: dict) -> Probe:
    """Rebuild a probe from :meth:`Probe.to_dict` output."""
    d = dict(d)
    one_of("probe.name", d.get("name"), _REGISTRY)
    cls = _REGISTRY[d.pop("name")]
    schedule = Schedule(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("schedule", {"every": 1}).items()})
    allowed = {f.name for f in dataclasses.fields(cls) if f.init}
    if set(d) - allowed:
        raise ConfigError(f"probe {cls.name!r} has unknown field(s) {sorted(set(d) - allowed)}; allowed: {sorted(allowed)}")
    return cls(schedule=schedule, **d)

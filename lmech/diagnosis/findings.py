"""One function per topic: the theory applied to one stored run's measurements.

Each takes a :class:`RunView` and returns a :class:`Finding` with its number, the theory it rests on, what it means
and what to try; a topic whose observable was not recorded returns a ``"missing"`` finding that names the probe to
add instead of guessing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..observables.instability import KINDS
from ..observables.stability import adam_threshold, gd_threshold, heavy_ball_threshold
from ..store.result import DIVERGED, RunResult

OK, ATTENTION, MISSING = "ok", "attention", "missing"
EOS_BAND = (0.9, 1.15)  # S/T from 0.9 to 1.15: at the edge of stability (InstabilityMonitor's band above 1)
LAZY, RICH = 0.05, 0.2  # relative kernel or representation movement: below, kernel regime; above, feature learning
RANDOM_LIKE = 6.0  # a layer's ESD tail exponent above this: random-like (Martin & Mahoney 2021)
CRITICAL_BAND = (0.5, 2.0)  # batch / B_simple inside: near the critical batch


@dataclass(frozen=True)
class Finding:
    """``topic``; ``status`` (``"ok"``, ``"attention"`` or ``"missing"``); ``value`` (the headline number, NaN when
    missing); ``summary`` (one line with the number); ``theory`` (what it rests on, with the source); ``meaning``;
    ``advice`` (what to try, or which probe to add)."""

    topic: str
    status: str
    value: float
    summary: str
    theory: str
    meaning: str
    advice: str


@dataclass(frozen=True)
class Optimizer:
    """What the threshold needs: ``kind`` (``"gd"``, ``"momentum"``, ``"adam"`` or ``"other"``), ``lr``, ``beta``
    (momentum or beta1), ``batch_size`` (``None`` for full batch or unknown) and ``n_train``."""

    kind: str
    lr: float
    beta: float
    batch_size: int | None
    n_train: int | None

    @property
    def threshold(self) -> float:
        if self.kind == "adam":
            return adam_threshold(self.lr, self.beta)
        if self.kind == "momentum":
            return heavy_ball_threshold(self.lr, self.beta)
        return gd_threshold(self.lr) if self.kind == "gd" else math.nan

    @property
    def threshold_text(self) -> str:
        return {"gd": "2/eta", "momentum": "(2 + 2 beta)/eta", "adam": "(2 + 2 beta1)/((1 - beta1) eta)"}.get(
            self.kind, "unknown")


class RunView:
    """A stored run with the lookups the findings share."""

    def __init__(self, run: RunResult) -> None:
        self.run = run
        self.names = set(run.names())
        self.optimizer = _optimizer(run)

    def has(self, name: str) -> bool:
        return name in self.names

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        return self.run.series(name)

    def prefixed(self, prefix: str) -> list[str]:
        return sorted(n for n in self.names if n.startswith(prefix))

    def last_by_part(self, prefix: str, suffix: str) -> dict[str, float]:
        """``{part: last value}`` of the metrics ``prefix + part + suffix`` (e.g. per layer)."""
        return {n[len(prefix):-len(suffix)]: float(self.series(n)[1][-1]) for n in self.prefixed(prefix)
                if n.endswith(suffix)}


def _optimizer(run: RunResult) -> Optimizer:
    """From an engine run's learning rule, or a tracked run's optimizer class and defaults."""
    if run.system is not None:
        rule = run.system.rule
        kind = {"gd": "gd", "sgd": "gd", "momentum": "momentum", "adam": "adam", "adamw": "adam"}[rule.optimizer]
        beta = rule.betas[0] if kind == "adam" else rule.momentum
        return Optimizer(kind, rule.lr, beta, rule.batch_size, getattr(run.system.data, "n_train", None))
    name, d = run.info.get("optimizer"), run.info.get("optimizer_defaults") or {}
    lr = float(d.get("lr", math.nan))
    if name in ("Adam", "AdamW"):
        return Optimizer("adam", lr, float((d.get("betas") or [0.9])[0]), None, None)
    if name == "SGD":
        momentum = float(d.get("momentum", 0.0) or 0.0)
        return Optimizer("momentum" if momentum else "gd", lr, momentum, None, None)
    return Optimizer("other", lr, math.nan, None, None)


def _missing(topic: str, theory: str, probe: str) -> Finding:
    return Finding(topic, MISSING, math.nan, "not recorded", theory, "", f"record it: add {probe} to the run's probes")


def training(view: RunView) -> Finding:
    """The loss from the first to the last measurement, and whether the run diverged."""
    theory = "the training loss on the measurement set"
    if not view.has("loss/train"):
        return _missing("training", theory, "Loss()")
    steps, loss = view.series("loss/train")
    finite = loss[np.isfinite(loss)]
    if view.run.outcome == DIVERGED or len(finite) < len(loss):
        return Finding("training", ATTENTION, float(view.run.diverged_step or steps[-1]),
                       f"diverged at step {view.run.diverged_step} (loss {finite[0]:.3g} at step {steps[0]})", theory,
                       "the loss became non-finite", "lower the learning rate, or add a warm-up; see the edge-of-"
                       "stability and instability findings for how far above the threshold it was")
    drop = finite[0] / finite[-1] if finite[-1] > 0 else math.inf
    return Finding("training", OK, float(finite[-1]), f"loss {finite[0]:.3g} -> {finite[-1]:.3g} (x{1 / drop:.2g}) over "
                   f"steps {steps[0]}-{steps[-1]}", theory, "", "")


def edge_of_stability(view: RunView) -> Finding:
    """Sharpness (preconditioned for Adam) against the optimizer's threshold over training."""
    opt = view.optimizer
    name = "preconditioned_sharpness/0" if opt.kind == "adam" else "sharpness/0"
    theory = (f"linear stability: GD-type updates are stable along the top Hessian direction while S < "
              f"{opt.threshold_text}; under full-batch GD the sharpness rises to the threshold and hovers there, the "
              "edge of stability (Cohen et al. 2021, arXiv:2103.00065; Adam: Cohen et al. 2022, arXiv:2207.14484)")
    if not view.has(name):
        probe = "Sharpness(preconditioned=True)" if opt.kind == "adam" else "Sharpness()"
        return _missing("edge of stability", theory, f"{probe} (a Tracker records it by default)")
    if not math.isfinite(opt.threshold):
        return Finding("edge of stability", MISSING, math.nan, f"no known threshold for this optimizer ({opt.kind})",
                       theory, "", "the thresholds cover SGD (with or without momentum), Adam and AdamW")
    steps, s = view.series(name)
    ratio = s / opt.threshold
    peak, last = float(np.nanmax(ratio)), float(ratio[-1])
    near = np.flatnonzero(ratio >= EOS_BAND[0])
    head = f"S/T = {last:.2f} at the end (peak {peak:.2f}; T = {opt.threshold:.4g} = {opt.threshold_text})"
    above = np.flatnonzero(ratio > EOS_BAND[1])
    if len(above) and last > EOS_BAND[1]:
        return Finding("edge of stability", ATTENTION, peak, head + f"; above the threshold from step {steps[above[0]]}",
                       theory, "the top direction is linearly unstable beyond what self-stabilization absorbs: expect "
                       "loss spikes (a catapult) or divergence", "lower the learning rate below "
                       f"{opt.lr * EOS_BAND[0] / peak:.3g} (S/T scales with eta), or add warm-up")
    if len(above):
        return Finding("edge of stability", OK, last, head + f"; above the threshold at step {steps[above[0]]}, then "
                       "fell back", theory, "a catapult: the excursion above the threshold drove the curvature down "
                       "(the loss spikes, then training goes on; Lewkowycz et al. 2020, arXiv:2003.02218)",
                       f"to avoid the spike, start below {opt.lr * EOS_BAND[0] / peak:.3g} and warm up to the rate")
    if len(near):
        return Finding("edge of stability", OK, last, head + f"; at the edge of stability from step {steps[near[0]]}",
                       theory, "the learning rate, not the landscape, caps the curvature: the loss may oscillate but "
                       "keeps falling on average; a smaller rate lets the sharpness rise further (progressive "
                       "sharpening)", "nothing to fix; for smoother curves lower eta or use a decaying schedule")
    return Finding("edge of stability", OK, last, head + "; below the edge throughout", theory,
                   "the step size is not limiting the curvature: training is in the stable regime",
                   f"the rate could grow up to about x{1 / max(peak, 1e-12) * EOS_BAND[0]:.2g} before reaching the "
                   "edge")


def instability(view: RunView) -> Finding:
    """The InstabilityMonitor's alarms and forecast kinds."""
    theory = ("InstabilityMonitor: the (preconditioned) sharpness against the threshold, with a forecast of the "
              "crossing and of the event (REFERENCE 2.19; the law instability-early-warning scores it)")
    if not view.has("instability/alarm"):
        return _missing("instability alarms", theory, "Instability()")
    steps, alarm = view.series("instability/alarm")
    _, kind = view.series("instability/kind")
    fired = np.flatnonzero(alarm > 0)
    if not len(fired):
        return Finding("instability alarms", OK, 0.0, f"no alarm in {len(steps)} measurements", theory,
                       "no measured sign of a coming spike or divergence", "")
    kinds = sorted({KINDS[int(k)] for k in kind[fired]})
    return Finding("instability alarms", ATTENTION, float(len(fired)), f"{len(fired)} alarm(s) from step "
                   f"{steps[fired[0]]} ({', '.join(kinds)})", theory,
                   "the curvature reached (or was forecast to reach) the optimizer's threshold; under Adam the "
                   "forecast alarm also fires on runs that then hover at the edge without a spike",
                   "lower the learning rate or add warm-up around the first alarm; check the loss there")


def lazy_or_rich(view: RunView) -> Finding:
    """Relative movement of the empirical NTK (else of the hidden representations, else of the weights)."""
    theory = (f"kernel (lazy) regime when the tangent kernel barely moves (< {LAZY:g} relative), feature learning "
              f"(rich) when it moves by more than {RICH:g} (Jacot et al. 2018; Chizat, Oyallon & Bach 2019, "
              "arXiv:1812.07956)")
    reps = view.prefixed("representation/")
    if view.has("kernels/distance"):
        value, what = float(view.series("kernels/distance")[1][-1]), "kernel distance from the first measurement"
    elif reps:
        value, what = max(float(view.series(n)[1][-1]) for n in reps), "largest relative representation change"
    elif view.has("weights/relative"):
        value, what = float(view.series("weights/relative")[1][-1]), "relative weight change ||theta - theta_0|| / ||theta_0||"
    else:
        return _missing("lazy or rich", theory, "Kernels(), RepresentationChange() or WeightChange()")
    regime = "lazy" if value < LAZY else "rich" if value > RICH else "in between"
    meaning = {"lazy": "the network trains like its linearization: kernel theory (NTK, eigenlearning) predicts it",
               "rich": "features move: the kernel limit no longer describes it; muP-style scalings keep this regime "
                       "at larger width",
               "in between": "partly lazy: kernel predictions hold early, drift later"}[regime]
    return Finding("lazy or rich", OK, value, f"{regime}: {what} {value:.3g}", theory, meaning,
                   "to move toward feature learning: larger learning rate in muP or a smaller output multiplier; "
                   "toward lazy: larger width in NTK parameterization" if regime != "rich" else "")


def coordinates(view: RunView) -> Finding:
    """Per-layer update sizes relative to each layer's activation size (the coordinate check)."""
    theory = ("muP: every layer's update to its output is of the same order as the output, at every width (Yang et "
              "al. 2022, arXiv:2203.03466, App. D.1); a layer whose relative update is orders of magnitude off the "
              "others limits transfer")
    sizes, updates = view.last_by_part("coords/", "/size"), view.last_by_part("coords/", "/update")
    if not sizes:
        return _missing("coordinate sizes (muP)", theory, "CoordinateSizes()")
    rel = {k: updates[k] / v for k, v in sizes.items() if k in updates and v > 0}
    finite = {k: v for k, v in rel.items() if math.isfinite(v) and v > 0}
    if not finite:
        return _missing("coordinate sizes (muP)", theory, "CoordinateSizes() scheduled after step 0")
    spread = max(finite.values()) / min(finite.values())
    table = ", ".join(f"{k} {v:.2g}" for k, v in finite.items())
    status = ATTENTION if spread > 10 else OK
    return Finding("coordinate sizes (muP)", status, spread, f"relative updates {table} (spread x{spread:.3g})", theory,
                   "one run cannot show width scaling; a spread over 10x means some layers barely train while others "
                   "move a lot, the SP symptom that muP removes" if status == ATTENTION else
                   "layers move by comparable relative amounts",
                   "run lmech.coord_check across widths to see which layer's exponent is off, and parametrize the "
                   "model in muP (lmech.parametrize)")


def noise_scale(view: RunView) -> Finding:
    """The gradient noise scale against the batch size."""
    theory = ("the critical batch size is about the gradient noise scale B_noise ~ B_simple = tr(Sigma)/|G|^2: below "
              "it, doubling the batch nearly halves the steps; above it, steps barely fall (McCandlish et al. 2018, "
              "arXiv:1812.06162)")
    if not view.has("noise_scale/b_simple"):
        return _missing("batch size", theory, "NoiseScale()")
    b = float(np.nanmedian(view.series("noise_scale/b_simple")[1]))
    batch = view.optimizer.batch_size or view.optimizer.n_train
    if batch is None:
        return Finding("batch size", OK, b, f"B_simple {b:.3g} (the batch size was not recorded)", theory,
                       "compare with your batch size", "batches well below B_simple train in fewer examples; well "
                       "above, in fewer steps at more compute")
    ratio = batch / b
    low, high = CRITICAL_BAND
    advice = (f"a batch up to ~{b:.0f} would cut the steps nearly in proportion" if ratio < low else
              f"a batch below ~{b:.0f} would use fewer examples for the same loss" if ratio > high else
              "the batch is near the critical batch: the compute-efficient choice")
    return Finding("batch size", ATTENTION if not low <= ratio <= high else OK, ratio,
                   f"batch {batch} vs B_simple {b:.3g} (ratio {ratio:.2g})", theory,
                   "below the critical batch" if ratio < low else "above the critical batch" if ratio > high else
                   "near the critical batch", advice)


def heavy_tails(view: RunView) -> Finding:
    """Power-law exponents of the layers' weight spectra."""
    theory = ("heavy-tailed self-regularization: trained layers' eigenvalue densities of W^T W develop power-law "
              "tails, alpha about 2-4 in well-trained layers, larger in under-trained or random-like ones (Martin & "
              "Mahoney 2021, arXiv:1810.01075; the law heavy-tailed-spectra)")
    alphas = view.last_by_part("esd/", "/alpha")
    if not alphas:
        return _missing("weight spectra", theory, "WeightSpectrum()")
    finite = {k: v for k, v in alphas.items() if math.isfinite(v)}
    if not finite:
        return _missing("weight spectra", theory, "WeightSpectrum() on layers with more eigenvalues")
    table = ", ".join(f"layer {k}: {v:.2f}" for k, v in finite.items())
    loose = [k for k, v in finite.items() if v > RANDOM_LIKE]
    return Finding("weight spectra", ATTENTION if loose else OK, float(np.median(list(finite.values()))),
                   f"alpha {table}", theory,
                   f"layer(s) {', '.join(loose)} look random-like (alpha > {RANDOM_LIKE:g}): little learned structure"
                   if loose else f"every layer's tail exponent at most {RANDOM_LIKE:g}, the range of trained layers "
                   "(2-4 the most strongly correlated)",
                   "more training or a larger learning-rate-to-batch ratio deepens the tails" if loose else "")


def neural_collapse(view: RunView) -> Finding:
    """NC1 (within-class variability over between-class) from its first to its last measurement."""
    theory = ("neural collapse: trained to zero error and beyond, the last layer's class means form a simplex and "
              "within-class variability vanishes, NC1 -> 0 (Papyan, Han & Donoho 2020, arXiv:2008.08186)")
    if not view.has("nc/1"):
        return _missing("neural collapse", theory, "NeuralCollapse() (classification only)")
    _, nc1 = view.series("nc/1")
    drop = float(nc1[0] / nc1[-1]) if nc1[-1] > 0 else math.inf
    stage = "collapsing" if drop >= 10 else "early" if drop >= 2 else "not collapsing"
    return Finding("neural collapse", OK, float(nc1[-1]), f"NC1 {nc1[0]:.3g} -> {nc1[-1]:.3g} (x{1 / drop:.2g}): "
                   f"{stage}", theory, "the terminal phase of training: features become class-separable and the "
                   "classifier aligns with them" if stage == "collapsing" else "features still vary within classes",
                   "" if stage == "collapsing" else "train past zero training error (with weight decay) to reach "
                   "the terminal phase")


TOPICS = (training, edge_of_stability, instability, lazy_or_rich, coordinates, noise_scale, heavy_tails,
          neural_collapse)

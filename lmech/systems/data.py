"""Datasets: seeded generators and offline real data, with subsetting and a train/test split.

Every loader returns a :class:`Dataset` of float64 NumPy arrays; the engine casts to the run's dtype.
Classification sets carry integer labels; the task turns them into one-hot targets for MSE.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import numpy as np

from ._validate import ConfigError, check_types, one_of, positive_float, positive_int


@dataclass(frozen=True)
class Dataset:
    """Arrays of one data config. ``y_*`` are labels (int) when ``n_classes`` is set, else targets."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int | None = None
    info: dict = field(default_factory=dict)

    @property
    def input_dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def output_dim(self) -> int:
        return self.n_classes if self.n_classes is not None else int(self.y_train.shape[1])


def _check_split(name: str, n_train: int, n_test: int, available: int | None = None) -> None:
    positive_int("data.n_train", n_train)
    positive_int("data.n_test", n_test, minimum=0)
    if available is not None and n_train + n_test > available:
        raise ConfigError(
            f"data.n_train + data.n_test = {n_train + n_test} exceeds the {available} samples of {name}; "
            f"lower n_train or n_test"
        )


def _orthonormal_columns(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((rows, cols)))
    return q * np.sign(np.diag(r))


def whiten(x: np.ndarray) -> np.ndarray:
    """Return ``x @ C^{-1/2}`` with ``C = x^T x / n``, so that the result satisfies ``X^T X / n = I`` exactly."""
    cov = x.T @ x / x.shape[0]
    evals, evecs = np.linalg.eigh(cov)
    return x @ (evecs / np.sqrt(evals)) @ evecs.T


@dataclass(frozen=True)
class WhitenedLinear:
    """Whitened Gaussian inputs and a linear target ``y = W* x`` with ``W* = U diag(s) V^T``.

    The training inputs are whitened exactly (``X^T X / n = I``), so the input-output covariance is
    ``Sigma_yx = W*``: its singular values are ``singular_values`` (Saxe et al. 2014, arXiv:1312.6120).
    ``U`` and ``V`` (random orthonormal, seeded) are kept in ``Dataset.info``.
    """

    d_in: int
    d_out: int
    singular_values: tuple[float, ...]
    n_train: int = 256
    n_test: int = 256
    seed: int = 0
    kind: ClassVar[str] = "whitened_linear"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.d_in", self.d_in)
        positive_int("data.d_out", self.d_out)
        object.__setattr__(self, "singular_values", tuple(float(s) for s in self.singular_values))
        rank = len(self.singular_values)
        if rank == 0 or rank > min(self.d_in, self.d_out):
            raise ConfigError(f"data.singular_values needs 1 to min(d_in, d_out) = {min(self.d_in, self.d_out)} values, got {rank}")
        for s in self.singular_values:
            positive_float("data.singular_values[i]", s)
        _check_split(self.kind, self.n_train, self.n_test)
        if self.n_train < self.d_in:
            raise ConfigError(f"data.n_train={self.n_train} must be >= data.d_in={self.d_in} to whiten the inputs")

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        rank = len(self.singular_values)
        u = _orthonormal_columns(rng, self.d_out, rank)
        v = _orthonormal_columns(rng, self.d_in, rank)
        w_star = u @ np.diag(self.singular_values) @ v.T
        x_train = whiten(rng.standard_normal((self.n_train, self.d_in)))
        x_test = rng.standard_normal((self.n_test, self.d_in))
        info = {"U": u, "V": v, "W_star": w_star, "singular_values": np.array(self.singular_values)}
        return Dataset(x_train, x_train @ w_star.T, x_test, x_test @ w_star.T, None, info)


def _gaussian_regression(rng: np.random.Generator, config, target, info: dict) -> Dataset:
    """``x ~ N(0, I_d)`` for ``config.n_train + config.n_test`` points, ``y = target(x) + config.noise * eps``, split."""
    x = rng.standard_normal((config.n_train + config.n_test, config.d_in))
    y = target(x)[:, None] + config.noise * rng.standard_normal((len(x), 1))
    n = config.n_train
    return Dataset(x[:n], y[:n], x[n:], y[n:], None, info)


@dataclass(frozen=True)
class TeacherStudent:
    """Gaussian inputs ``x ~ N(0, I_d)`` labelled by a random two-layer teacher.

    ``y = sum_j a_j phi(w_j . x) + noise * eps`` with unit-norm ``w_j`` and ``a_j = +-1``
    (the setting of Chizat et al. 2019, Fig. 2: 2-D inputs, 3 ReLU units). Teacher in ``info``.
    """

    d_in: int = 2
    teacher_width: int = 3
    activation: str = "relu"
    n_train: int = 1000
    n_test: int = 1000
    noise: float = 0.0
    seed: int = 0
    kind: ClassVar[str] = "teacher_student"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.d_in", self.d_in)
        positive_int("data.teacher_width", self.teacher_width)
        one_of("data.activation", self.activation, ("relu", "tanh", "erf", "linear"))
        positive_float("data.noise", self.noise, allow_zero=True)
        _check_split(self.kind, self.n_train, self.n_test)

    def load(self) -> Dataset:
        from scipy.special import erf

        phi = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh, "erf": erf, "linear": lambda z: z}[self.activation]
        rng = np.random.default_rng(self.seed)
        w = rng.standard_normal((self.teacher_width, self.d_in))
        w /= np.linalg.norm(w, axis=1, keepdims=True)
        a = rng.choice([-1.0, 1.0], size=self.teacher_width)
        return _gaussian_regression(rng, self, lambda x: phi(x @ w.T) @ a, {"teacher_w": w, "teacher_a": a})


def _split(x: np.ndarray, y: np.ndarray, n_train: int, n_test: int, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(len(x))
    tr, te = order[:n_train], order[n_train:n_train + n_test]
    return x[tr], y[tr], x[te], y[te]


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data / 16.0, bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _mnist1d_arrays() -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset  # procedural: no download

    d = make_dataset(get_dataset_args())
    return (np.asarray(d["x"], float), np.asarray(d["y"], np.int64),
            np.asarray(d["x_test"], float), np.asarray(d["y_test"], np.int64))


@dataclass(frozen=True)
class MNIST1D:
    """MNIST-1D (Greydanus & Kobak 2024, arXiv:2011.14439), generated offline with the default arguments.

    40 features, 10 classes, a canonical 4000/1000 split. ``n_train`` and ``n_test`` draw a seeded
    subset of the canonical train and test parts.
    """

    n_train: int = 4000
    n_test: int = 1000
    seed: int = 0
    kind: ClassVar[str] = "mnist1d"

    def __post_init__(self) -> None:
        check_types(self, "data")
        _check_split(self.kind, self.n_train, self.n_test)
        if self.n_train > 4000:
            raise ConfigError(f"data.n_train={self.n_train} exceeds the 4000 training samples of mnist1d; lower n_train")
        if self.n_test > 1000:
            raise ConfigError(f"data.n_test={self.n_test} exceeds the 1000 test samples of mnist1d; lower n_test")

    def load(self) -> Dataset:
        x, y, xt, yt = _mnist1d_arrays()
        rng = np.random.default_rng(self.seed)
        tr = rng.permutation(len(x))[: self.n_train]
        te = rng.permutation(len(xt))[: self.n_test]
        return Dataset(x[tr], y[tr], xt[te], yt[te], 10)


@dataclass(frozen=True)
class Digits:
    """scikit-learn's 8x8 digits (1797 samples, 64 features scaled to [0, 1]), seeded split.

    ``target="class"``: the 10 class labels; ``target="parity"``: a scalar regression target
    ``y = +1`` for even digits and ``-1`` for odd ones (the binary task of kernel-regression checks).
    ``train_classes``: train on those digits only, test on every digit (a covariate shift: out-of-distribution
    inputs); ``info["test_digits"]`` holds the test points' digits.
    """

    n_train: int = 1000
    n_test: int = 797
    seed: int = 0
    target: str = "class"
    train_classes: tuple[int, ...] | None = None
    kind: ClassVar[str] = "digits"

    def __post_init__(self) -> None:
        if self.train_classes is not None:
            object.__setattr__(self, "train_classes", tuple(sorted(set(self.train_classes))))
        check_types(self, "data")
        _check_split(self.kind, self.n_train, self.n_test, available=1797)
        one_of("data.target", self.target, ("class", "parity"))
        if self.train_classes is not None and not (self.train_classes and set(self.train_classes) <= set(range(10))):
            raise ConfigError(f"data.train_classes={self.train_classes!r} must be digits in 0-9 (or None for all)")

    def load(self) -> Dataset:
        x, digit = _digits_arrays()
        y = np.where(digit % 2 == 0, 1.0, -1.0)[:, None] if self.target == "parity" else digit
        classes = None if self.target == "parity" else 10
        if self.train_classes is None:
            x_tr, y_tr, x_te, y_te = _split(x, y, self.n_train, self.n_test, self.seed)
            return Dataset(x_tr, y_tr, x_te, y_te, classes)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        tr = order[np.isin(digit[order], self.train_classes)][: self.n_train]
        te = rng.permutation(np.setdiff1d(order, tr))[: self.n_test]  # every digit, in its share
        if len(tr) < self.n_train:
            raise ConfigError(f"data.n_train={self.n_train} exceeds the {len(tr)} digits of classes "
                              f"{self.train_classes}; lower n_train")
        return Dataset(x[tr], y[tr], x[te], y[te], classes, {"test_digits": digit[te]})


@dataclass(frozen=True)
class DigitsPriorTeacher:
    """scikit-learn digits inputs (as :class:`Digits`) with targets drawn from the infinite-width prior of a bias-free
    one-hidden-layer ReLU MLP with ``w_std = sqrt 2`` in every layer (lmech's ``MLP(depth=1, bias=False)`` at
    ``init_scale`` 1): a teacher for calibration checks (He, Lakshminarayanan & Teh 2020, arXiv:2007.05864).

    A random network of ``teacher_width`` units, ``h = sqrt 2 W x / sqrt d`` with standard-normal ``W`` and ``v``:
    ``kernel="nngp"`` takes its output ``f = sqrt 2 v . relu(h) / sqrt width``, whose covariance over draws is the
    NNGP kernel ``K`` exactly (at any width; Gaussian as the width grows); ``kernel="ntk"`` its tangent in a random
    direction ``z`` of parameter space, ``J(x) . z``, whose covariance is the NTK ``Theta``. ``teacher_seed`` draws
    the teacher; ``seed`` the split. No label noise.
    """

    kernel: str = "nngp"
    teacher_width: int = 16384
    n_train: int = 100
    n_test: int = 100
    seed: int = 0
    teacher_seed: int = 0
    kind: ClassVar[str] = "digits_prior_teacher"

    def __post_init__(self) -> None:
        check_types(self, "data")
        one_of("data.kernel", self.kernel, ("nngp", "ntk"))
        positive_int("data.teacher_width", self.teacher_width)
        positive_int("data.teacher_seed", self.teacher_seed, minimum=0)
        _check_split(self.kind, self.n_train, self.n_test, available=1797)

    def load(self) -> Dataset:
        x, y = _prior_teacher(self)
        n = self.n_train
        return Dataset(x[:n].copy(), y[:n, None].copy(), x[n:].copy(), y[n:, None].copy(), None, {"kernel": self.kernel})


@lru_cache(maxsize=8)  # an ensemble's seeds share one teacher
def _prior_teacher(config: DigitsPriorTeacher) -> tuple[np.ndarray, np.ndarray]:
    inputs = Digits(config.n_train, config.n_test, config.seed, target="parity").load()
    x = np.concatenate([inputs.x_train, inputs.x_test])
    rng = np.random.default_rng(config.teacher_seed)
    width, d = config.teacher_width, x.shape[1]
    w, v = rng.standard_normal((width, d)), rng.standard_normal(width)
    h = np.sqrt(2.0 / d) * x @ w.T
    if config.kernel == "nngp":
        return x, np.sqrt(2.0 / width) * np.maximum(h, 0) @ v
    z_v, z_w = rng.standard_normal(width), rng.standard_normal((width, d))  # J(x) . z: readout and hidden tangents
    return x, np.sqrt(2.0 / width) * (np.maximum(h, 0) @ z_v + ((h > 0) * v * (np.sqrt(2.0 / d) * x @ z_w.T)).sum(1))


_INDEX_FUNCTIONS = {
    "z1*z2": lambda z: z[:, 0] * z[:, 1],
    "z1*z2+z1^2": lambda z: z[:, 0] * z[:, 1] + z[:, 0] ** 2,
    "tanh(z1)+z2^2": lambda z: np.tanh(z[:, 0]) + z[:, 1] ** 2,
}


@dataclass(frozen=True)
class MultiIndex:
    """Gaussian inputs ``x ~ N(0, I_d)`` with a target that depends on ``x`` only through ``z = U^T x``.

    ``U`` is a random ``d_in x 2`` matrix with orthonormal columns (in ``info["U"]``) and ``target``
    names ``g(z)``; the multi-index setting of the neural feature ansatz checks (Radhakrishnan et al.
    2024, arXiv:2212.13881). ``noise`` adds Gaussian label noise of that standard deviation.
    """

    d_in: int = 20
    target: str = "z1*z2+z1^2"
    n_train: int = 2000
    n_test: int = 1000
    noise: float = 0.0
    seed: int = 0
    kind: ClassVar[str] = "multi_index"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.d_in", self.d_in, minimum=2)
        one_of("data.target", self.target, tuple(_INDEX_FUNCTIONS))
        positive_float("data.noise", self.noise, allow_zero=True)
        _check_split(self.kind, self.n_train, self.n_test)

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        u = _orthonormal_columns(rng, self.d_in, 2)
        return _gaussian_regression(rng, self, lambda x: _INDEX_FUNCTIONS[self.target](x @ u), {"U": u})


@dataclass(frozen=True)
class ModularArithmetic:
    """All pairs ``(a, b)`` of residues mod ``p`` labelled ``(a + b) mod p`` (or ``a * b``, ``a - b``): the algorithmic
    task of grokking studies (Power et al. 2022, arXiv:2201.02177), a seeded split of the ``p^2`` pairs.

    ``encoding="tokens"``: two integer token ids per example (vocabulary ``p``, in ``info["vocab"]``) for a sequence
    model; ``"one_hot"``: the ``2p``-dimensional concatenation ``onehot(a) + onehot(b)`` for an MLP (the setting of
    Liu et al. 2023, arXiv:2210.01117, and Gromov 2023, arXiv:2301.02679)."""

    p: int = 97
    operation: str = "add"
    n_train: int = 3000
    n_test: int = 1000
    seed: int = 0
    encoding: str = "tokens"
    kind: ClassVar[str] = "modular_arithmetic"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.p", self.p, minimum=2)
        one_of("data.operation", self.operation, ("add", "subtract", "multiply"))
        one_of("data.encoding", self.encoding, ("tokens", "one_hot"))
        _check_split(self.kind, self.n_train, self.n_test, available=self.p ** 2)

    def load(self) -> Dataset:
        a, b = (v.ravel() for v in np.meshgrid(np.arange(self.p), np.arange(self.p), indexing="ij"))
        y = {"add": a + b, "subtract": a - b, "multiply": a * b}[self.operation] % self.p
        if self.encoding == "one_hot":
            x = np.zeros((len(a), 2 * self.p), dtype=np.float32)
            x[np.arange(len(a)), a] = 1.0
            x[np.arange(len(a)), self.p + b] = 1.0
            return Dataset(*_split(x, y.astype(np.int64), self.n_train, self.n_test, self.seed), self.p)
        x = np.stack([a, b], axis=1).astype(np.int64)
        return Dataset(*_split(x, y.astype(np.int64), self.n_train, self.n_test, self.seed), self.p,
                       {"vocab": self.p})


@dataclass(frozen=True)
class CircleFourier:
    """Power-law Fourier regression on the circle: inputs ``x = (cos t, sin t)`` with ``t ~ U[0, 2 pi)``, target the
    random-phase series ``f(t) = sum_{k=1}^{harmonics} k^-decay cos(k t + phi_k)`` (phases from ``seed``, drawn before
    the inputs, so the function does not depend on the sizes) plus ``noise`` times a standard normal.

    Each degree ``k`` is two eigenmodes (cos, sin) of any rotation-invariant kernel, with target power
    ``k^(-2 decay) / 2`` each, so the tail of the target power past mode ``i`` falls as ``i^-(2 decay - 1)``: the
    power-law targets of kernel learning-curve exponents (Spigler, Geiger & Wyart 2020, arXiv:1905.10843; Bordelon,
    Canatar & Pehlevan 2020, arXiv:2002.02561). :meth:`function` evaluates ``f`` anywhere (e.g. on a grid)."""

    decay: float = 1.0
    harmonics: int = 512
    n_train: int = 1000
    n_test: int = 1000
    noise: float = 0.0
    seed: int = 0
    kind: ClassVar[str] = "circle_fourier"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_float("data.decay", self.decay)
        positive_int("data.harmonics", self.harmonics)
        positive_float("data.noise", self.noise, allow_zero=True)
        _check_split(self.kind, self.n_train, self.n_test)

    def phases(self) -> np.ndarray:
        return np.random.default_rng(self.seed).uniform(0.0, 2 * np.pi, self.harmonics)

    def function(self, t: np.ndarray) -> np.ndarray:
        """The noise-free target at angles ``t``."""
        k = np.arange(1, self.harmonics + 1)
        return np.cos(np.outer(np.asarray(t, float), k) + self.phases()) @ (k ** -self.decay)

    def on_grid(self, points: int) -> np.ndarray:
        """The noise-free target on the uniform grid ``t_j = 2 pi j / points`` by one inverse FFT (exact when
        ``points > 2 harmonics``, the grid's Nyquist limit)."""
        if points <= 2 * self.harmonics:
            raise ValueError(f"points={points} cannot resolve {self.harmonics} harmonics; use more than "
                             f"{2 * self.harmonics}")
        spectrum = np.zeros(points // 2 + 1, dtype=complex)
        k = np.arange(1, self.harmonics + 1)
        spectrum[1:self.harmonics + 1] = points / 2 * k ** -self.decay * np.exp(1j * self.phases())
        return np.fft.irfft(spectrum, n=points)

    def load(self) -> Dataset:
        rng = np.random.default_rng([self.seed, 1])
        t = rng.uniform(0.0, 2 * np.pi, self.n_train + self.n_test)
        x = np.stack([np.cos(t), np.sin(t)], axis=1)
        y = (self.function(t) + self.noise * rng.standard_normal(len(t)))[:, None]
        n = self.n_train
        return Dataset(x[:n], y[:n], x[n:], y[n:], None, {"t_train": t[:n], "t_test": t[n:]})


@dataclass(frozen=True)
class MultitaskParity:
    """Multitask sparse parity (Michaud, Liu, Girit & Tegmark 2023, arXiv:2303.13506): each example picks task ``k``
    with probability ``p_k ~ k^-(alpha + 1)`` (Zipf), shown as ``n_tasks`` one-hot control bits, and ``n_bits`` task
    bits (as +-1); its label is the parity of task ``k``'s own ``k_bits`` of them (subsets fixed by ``seed``): one
    "quantum" of skill per task. ``info``: ``frequencies``, ``subsets`` and the task of every train and test example."""

    n_tasks: int = 64
    n_bits: int = 8
    k_bits: int = 3
    alpha: float = 0.5
    n_train: int = 2 ** 18
    n_test: int = 20000
    seed: int = 0
    kind: ClassVar[str] = "multitask_parity"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.n_tasks", self.n_tasks)
        positive_int("data.n_bits", self.n_bits)
        positive_int("data.k_bits", self.k_bits)
        if self.k_bits > self.n_bits:
            raise ConfigError(f"data.k_bits={self.k_bits} must be at most data.n_bits={self.n_bits}")
        positive_float("data.alpha", self.alpha)
        _check_split(self.kind, self.n_train, self.n_test)

    def frequencies(self) -> np.ndarray:
        """``p_k = k^-(alpha + 1) / sum_j j^-(alpha + 1)`` for tasks ``k = 1 .. n_tasks``."""
        p = np.arange(1, self.n_tasks + 1) ** -(self.alpha + 1)
        return p / p.sum()

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        subsets = np.array([rng.choice(self.n_bits, self.k_bits, replace=False) for _ in range(self.n_tasks)])
        size = self.n_train + self.n_test
        task = rng.choice(self.n_tasks, size, p=self.frequencies())
        bits = rng.integers(0, 2, (size, self.n_bits))
        x = np.zeros((size, self.n_tasks + self.n_bits), dtype=np.float32)
        x[np.arange(size), task] = 1.0
        x[:, self.n_tasks:] = 2.0 * bits - 1.0
        y = (bits[np.arange(size)[:, None], subsets[task]].sum(axis=1) % 2).astype(np.int64)
        n = self.n_train
        return Dataset(x[:n], y[:n], x[n:], y[n:], 2, {"frequencies": self.frequencies(), "subsets": subsets,
                                                       "task_train": task[:n], "task_test": task[n:]})


@dataclass(frozen=True)
class PowerLawFeatures:
    """Linear regression on the top ``features`` eigen-directions of a power-law covariance: the solvable model of
    compute-optimal scaling (Maloney, Roberts & Sully 2022, arXiv:2210.16859; Paquette et al. 2024,
    arXiv:2405.15074; Qiu et al. 2025, arXiv:2507.02119).

    A latent Gaussian ``z`` has independent coordinates of variance ``lambda_i = i^-spectrum`` (``i = 1, 2, ...``) and
    the target ``y = sum_i beta_i z_i + noise eps`` puts power ``lambda_i beta_i^2 = i^-source`` on mode ``i``. A model
    of ``features`` parameters sees ``x = (z_1 .. z_features)``; the modes it cannot see enter ``y`` as one Gaussian of
    variance ``sum_{i > features} i^-source`` (a Hurwitz zeta value, exact in distribution), so every size is the same
    task. ``info``: ``variances`` (lambda), ``beta`` and ``tail`` (the unseen power)."""

    features: int
    spectrum: float = 1.5
    source: float = 1.5
    noise: float = 0.0
    n_train: int = 32768
    n_test: int = 8192
    seed: int = 0
    kind: ClassVar[str] = "power_law_features"

    def __post_init__(self) -> None:
        check_types(self, "data")
        positive_int("data.features", self.features)
        positive_float("data.spectrum", self.spectrum)
        positive_float("data.source", self.source)
        if self.source <= 1:
            raise ConfigError(f"data.source={self.source!r} must exceed 1 so that the target's power sum_i i^-source "
                              "is finite")
        positive_float("data.noise", self.noise, allow_zero=True)
        _check_split(self.kind, self.n_train, self.n_test)

    def variances(self) -> np.ndarray:
        return np.arange(1, self.features + 1) ** -self.spectrum

    def tail(self) -> float:
        """Power of the unseen modes, ``sum_{i > features} i^-source``."""
        from scipy.special import zeta

        return float(zeta(self.source, self.features + 1))

    def load(self) -> Dataset:
        rng = np.random.default_rng(self.seed)
        i = np.arange(1, self.features + 1)
        lam, beta = self.variances(), i ** ((self.spectrum - self.source) / 2)
        size = self.n_train + self.n_test
        x = rng.standard_normal((size, self.features)) * np.sqrt(lam)
        unseen = np.sqrt(self.tail() + self.noise ** 2) * rng.standard_normal(size)
        y = (x @ beta + unseen)[:, None]
        n = self.n_train
        return Dataset(x[:n], y[:n], x[n:], y[n:], None, {"variances": lam, "beta": beta, "tail": self.tail()})


DATASETS = {cls.kind: cls for cls in (WhitenedLinear, TeacherStudent, MNIST1D, Digits, DigitsPriorTeacher, MultiIndex,
                                      ModularArithmetic, CircleFourier, MultitaskParity, PowerLawFeatures)}

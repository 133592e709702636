"""The network suite of bench/bench_sharpness_suite.py: 8 plain PyTorch models, fixed before any measurement.

Each is built the way a user would write it (``nn.Sequential``, ``nn.Conv2d``, ``nn.TransformerEncoderLayer``), on
1000 training examples, in float32. :func:`states` yields every network at initialization and after 150 full-batch
Adam steps at lr 1e-3 (issue 18's protocol).

| name | model | data | loss |
|---|---|---|---|
| mlp-tanh-2 | 40-256-256-10 tanh (the issue's network) | MNIST-1D | cross-entropy |
| mlp-tanh-4 | 40-128-128-128-128-10 tanh | MNIST-1D | MSE on one-hot |
| mlp-relu-2 | 40-256-256-10 ReLU | MNIST-1D | MSE on one-hot |
| mlp-relu-4 | 40-128-128-128-128-10 ReLU | MNIST-1D | cross-entropy |
| cnn-2d | conv 1-16-32 (3x3, pad 1), ReLU, max-pool 2, linear | digits 8x8 | cross-entropy |
| cnn-1d | conv 1-16-32 (5, stride 2), ReLU, linear | MNIST-1D | MSE on one-hot |
| transformer-ce | 10 tokens of 4 values, d=32, 2 heads, 1 encoder layer, mean-pool | MNIST-1D | cross-entropy |
| transformer-mse | 8 tokens (digit rows) of 8 values, d=32, 2 heads, 2 encoder layers, mean-pool | digits 8x8 | MSE on one-hot |
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lmech.systems.data import MNIST1D, Digits

N_EXAMPLES = 1000
TRAIN_STEPS = 150
TRAIN_LR = 1e-3


@dataclass
class State:
    """One network at one point of training: the model, its data and loss (``loss(model(x), y)``)."""

    name: str
    when: str  # "init" or "trained"
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    @property
    def label(self) -> str:
        return f"{self.name}/{self.when}"


def _mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, F.one_hot(target, out.shape[-1]).to(out.dtype))


def _mlp(width: int, depth: int, act: type[nn.Module]) -> nn.Module:
    layers: list[nn.Module] = []
    d = 40
    for _ in range(depth):
        layers += [nn.Linear(d, width), act()]
        d = width
    return nn.Sequential(*layers, nn.Linear(d, 10))


class _Tokens(nn.Module):
    """Rows of ``x`` cut into ``tokens`` tokens, embedded, a stack of encoder layers, mean-pooled, read out."""

    def __init__(self, tokens: int, d_in: int, layers: int) -> None:
        super().__init__()
        self.tokens, self.d_in = tokens, d_in
        self.embed = nn.Linear(d_in, 32)
        self.position = nn.Parameter(0.02 * torch.randn(tokens, 32))
        self.encoder = nn.Sequential(*[nn.TransformerEncoderLayer(32, 2, 64, dropout=0.0, batch_first=True)
                                       for _ in range(layers)])
        self.readout = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(len(x), self.tokens, self.d_in)) + self.position
        return self.readout(self.encoder(h).mean(1))


def _cnn_2d() -> nn.Module:
    return nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 10))


def _cnn_1d() -> nn.Module:
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 16, 5, stride=2), nn.ReLU(),
                         nn.Conv1d(16, 32, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 7, 10))


NETWORKS: dict[str, tuple[Callable[[], nn.Module], str, Callable]] = {
    "mlp-tanh-2": (lambda: _mlp(256, 2, nn.Tanh), "mnist1d", F.cross_entropy),
    "mlp-tanh-4": (lambda: _mlp(128, 4, nn.Tanh), "mnist1d", _mse),
    "mlp-relu-2": (lambda: _mlp(256, 2, nn.ReLU), "mnist1d", _mse),
    "mlp-relu-4": (lambda: _mlp(128, 4, nn.ReLU), "mnist1d", F.cross_entropy),
    "cnn-2d": (_cnn_2d, "digits", F.cross_entropy),
    "cnn-1d": (_cnn_1d, "mnist1d", _mse),
    "transformer-ce": (lambda: _Tokens(10, 4, 1), "mnist1d", F.cross_entropy),
    "transformer-mse": (lambda: _Tokens(8, 8, 2), "digits", _mse),
}


def _data(kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    data = (MNIST1D(n_train=N_EXAMPLES, n_test=0) if kind == "mnist1d" else Digits(n_train=N_EXAMPLES, n_test=0)).load()
    return torch.tensor(data.x_train, dtype=torch.float32), torch.tensor(data.y_train, dtype=torch.long)


def states(names: list[str] | None = None) -> Iterator[State]:
    """Every network of the suite (or those named) at init, then after 150 full-batch Adam steps (seed 0)."""
    for name in names or list(NETWORKS):
        build, kind, loss = NETWORKS[name]
        x, y = _data(kind)
        torch.manual_seed(0)
        model = build()
        yield State(name, "init", copy.deepcopy(model), x, y, loss)
        trained = model
        opt = torch.optim.Adam(trained.parameters(), lr=TRAIN_LR)
        for _ in range(TRAIN_STEPS):
            opt.zero_grad(set_to_none=True)
            loss(trained(x), y).backward()
            opt.step()
        trained.zero_grad(set_to_none=True)
        yield State(name, "trained", trained, x, y, loss)

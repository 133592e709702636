"""Batched (vmapped) training equals training each model alone with torch.optim, to float64 rounding."""
import numpy as np
import pytest
import torch
from torch import nn

from lmech.engine.trainer import _batches
from lmech.hyper import train_stacked
from lmech.systems.task import half_mse


def _models(count=4):
    out = []
    for seed in range(count):
        torch.manual_seed(seed)
        out.append(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double())
    return out


def _sequential(model, x, y, lr, steps, optimizer, batch_size):
    opt = (torch.optim.Adam(model.parameters(), lr=lr) if optimizer == "adam"
           else torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9 if optimizer == "momentum" else 0.0))
    next_batch = _batches(len(x), batch_size, 0)
    losses = []
    for _ in range(steps):
        with torch.no_grad():
            losses.append(half_mse(model(x), y).item())
        idx = next_batch()
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        opt.zero_grad()
        half_mse(model(xb), yb).backward()
        opt.step()
    return losses


@pytest.mark.parametrize("optimizer, batch_size", [("sgd", None), ("momentum", 8), ("adam", 8)])
def test_stacked_training_equals_sequential_training(optimizer, batch_size):
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 6, generator=gen, dtype=torch.float64), torch.randn(32, 3, generator=gen, dtype=torch.float64)
    lrs = [0.01, 0.03, 0.1, 0.3] if optimizer != "adam" else [1e-3, 3e-3, 1e-2, 3e-2]
    stacked, alone = _models(), _models()
    run = train_stacked(stacked, half_mse, x, y, lr=lrs, steps=20, batch_size=batch_size,
                        optimizer="adam" if optimizer == "adam" else "sgd", momentum=0.9 if optimizer == "momentum" else 0.0)
    for i, (a, b) in enumerate(zip(stacked, alone)):
        losses = _sequential(b, x, y, lrs[i], 20, optimizer, batch_size)
        np.testing.assert_allclose(run.loss[:20, i], losses, rtol=1e-10)
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_mixed_shapes_and_bad_optimizer_are_refused():
    models = _models(1) + [nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).double()]
    x, y = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="one architecture"):
        train_stacked(models, half_mse, x, y, lr=0.1, steps=1)
    with pytest.raises(ValueError, match="optimizer"):
        train_stacked(_models(1), half_mse, x, y, lr=0.1, steps=1, optimizer="lbfgs")

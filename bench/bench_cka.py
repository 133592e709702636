"""Debiased linear CKA of two representations: lmech's ``cka(X, Y, debiased=True)`` (feature space when p < n:
every term of Song et al.'s unbiased HSIC from X^T Y, X^T X, Y^T Y and row norms) against torch-cka 0.21 (``CKA``
hooks two models and evaluates the unbiased HSIC from the n x n Gram matrices, per minibatch; one batch of all n
samples here, so both estimate the same quantity; torch-cka works in float32, its own dtype, lmech in float64).

Inputs: X (n x 256) and Y = X A + noise (n x 128), n = 1000 and 4000; torch-cka sees them as the outputs of identity
linear layers. Same process, 2 threads, best of 5 clean measurements (torch-cka of 3; `_benchutil.timed`). Writes
bench/out/cka.json.
Run: .venv/bin/python bench/bench_cka.py (needs `pip install --no-deps torch-cka==0.21`, the bench extra)
"""
from __future__ import annotations

import json
import warnings

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from _benchutil import OUT, machine_facts, timed, wait_quiet
from lmech import cka


def _identity(p: int) -> torch.nn.Module:
    layer = torch.nn.Linear(p, p, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(p))
    return torch.nn.Sequential(layer)


def _torch_cka(x: np.ndarray, y: np.ndarray) -> float:
    from torch_cka import CKA

    m1, m2 = _identity(x.shape[1]), _identity(y.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = CKA(m1, m2, model1_layers=["0"], model2_layers=["0"], device="cpu")
        loader1 = DataLoader(TensorDataset(torch.tensor(x, dtype=torch.float32)), batch_size=len(x))
        loader2 = DataLoader(TensorDataset(torch.tensor(y, dtype=torch.float32)), batch_size=len(y))
        runner.compare(loader1, loader2)
    return float(runner.hsic_matrix[0, 0])


def main() -> None:
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    wait_quiet()
    rows = {}
    for n in (1000, 4000):
        x = rng.standard_normal((n, 256))
        y = x @ rng.standard_normal((256, 128)) / 16 + rng.standard_normal((n, 128))
        ours, t_lmech = timed(lambda: cka(x, y, debiased=True), 5, label=f"lmech n={n}")
        ref, t_ref = timed(lambda: _torch_cka(x, y), 3, label=f"torch-cka n={n}")
        t_lmech, t_ref = t_lmech["best_s"], t_ref["best_s"]
        rows[n] = {"lmech_s": t_lmech, "torch_cka_s": t_ref, "speedup": t_ref / t_lmech, "lmech": ours,
                   "torch_cka": ref}
        print(f"n = {n}: lmech {t_lmech * 1e3:.1f} ms, torch-cka {t_ref * 1e3:.1f} ms ({t_ref / t_lmech:.1f}x); "
              f"CKA {ours:.12f} vs {ref:.12f}")
    OUT.mkdir(exist_ok=True)
    (OUT / "cka.json").write_text(json.dumps({"machine": machine_facts(), "results": rows}, indent=2))


if __name__ == "__main__":
    main()

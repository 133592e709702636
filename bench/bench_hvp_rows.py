"""Blocks of Hessian-vector products: lmech's ``hvp_rows`` (reverse-over-reverse through one gradient graph, one
backward pass per row) against ``vmap`` of forward-over-reverse ``jvp(grad L)`` (torch.func's recipe, and lmech's
own path before issue 18) in chunks of 8 and in one chunk.

33 rows (the noise scale's 32 centred per-example gradients and the mean gradient) on four networks, float32, one
torch thread (as in the atlas's workers): the critical-batch law's 40-64-10 relu MLP and a 40-256-256-10 tanh MLP
(cross-entropy, 1000 examples), a 1-D CNN (cross-entropy, 1000 examples) and a 64-100-10 tanh MLP (half-MSE, 500
examples). The script asserts that the three agree and writes bench/out/hvp_rows.json.
Run: .venv/bin/python bench/bench_hvp_rows.py
"""
from __future__ import annotations

import json

import torch
from torch import nn
from torch.func import grad, jvp, vmap

from _benchutil import OUT, machine_facts, source_fingerprint, timed, wait_quiet
from lmech.observables import hessian
from lmech.observables._params import FlatParams, loss_of_params
from lmech.observables.hessian import hvp_rows

ROWS = 33


def _half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum(1).mean()


def _networks() -> dict[str, tuple[nn.Module, torch.Tensor, torch.Tensor, object]]:
    torch.manual_seed(0)
    ce = nn.functional.cross_entropy
    labels = torch.randint(0, 10, (1000,))
    return {
        "mlp 40-64-10 relu (CE)": (nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 10)),
                                   torch.randn(1000, 40), labels, ce),
        "mlp 40-256-256-10 tanh (CE)": (nn.Sequential(nn.Linear(40, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(),
                                                      nn.Linear(256, 10)), torch.randn(1000, 40), labels, ce),
        "cnn-1d 2 x conv16 (CE)": (nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 16, 5), nn.ReLU(),
                                                 nn.Conv1d(16, 16, 5), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 32, 10)),
                                   torch.randn(1000, 40), labels, ce),
        "mlp 64-100-10 tanh (half-MSE)": (nn.Sequential(nn.Linear(64, 100), nn.Tanh(), nn.Linear(100, 10)),
                                          torch.randn(500, 64), torch.randn(500, 10), _half_mse),
    }


def vmap_forward_over_reverse(loss, theta: torch.Tensor, vectors: torch.Tensor, chunk: int) -> torch.Tensor:
    """``vmap`` over rows of ``jvp(grad L)``, ``chunk`` rows at a time."""
    grad_loss = grad(loss)
    return torch.cat([vmap(lambda v: jvp(grad_loss, (theta,), (v,))[1])(vectors[i:i + chunk])
                      for i in range(0, len(vectors), chunk)])


def main() -> None:
    torch.set_num_threads(1)
    busy = wait_quiet(timeout=30.0, label="hvp rows")
    results = {}
    for name, (model, x, y, loss_fn) in _networks().items():
        flat = FlatParams(model)
        loss = loss_of_params(model, loss_fn, x, y, flat)
        vectors = torch.randn(ROWS, flat.vector.numel(), generator=torch.Generator().manual_seed(1))
        ours, t_ours = timed(lambda: hvp_rows(loss, flat.vector, vectors), repeats=3, max_tries=6, label=name)
        chunked, t_chunked = timed(lambda: vmap_forward_over_reverse(loss, flat.vector, vectors, 8), repeats=3,
                                   max_tries=6, label=name)
        whole, t_whole = timed(lambda: vmap_forward_over_reverse(loss, flat.vector, vectors, ROWS), repeats=3,
                               max_tries=6, label=name)
        scale = float(ours.abs().max())
        agree = max(float((other - ours).abs().max()) / scale for other in (chunked, whole))
        assert agree <= 1e-4, (name, agree)
        results[name] = {"params": flat.vector.numel(), "examples": len(x), "lmech": t_ours,
                         "vmap_fwd_rev_chunk_8": t_chunked, f"vmap_fwd_rev_chunk_{ROWS}": t_whole,
                         "ratio_chunk_8": round(t_chunked["best_s"] / t_ours["best_s"], 2),
                         f"ratio_chunk_{ROWS}": round(t_whole["best_s"] / t_ours["best_s"], 2),
                         "max_relative_difference": agree}
        print(f"{name:32s} P={flat.vector.numel():6d}: lmech {t_ours['best_s'] * 1e3:7.1f} ms; vmap fwd-rev chunk 8 "
              f"{t_chunked['best_s'] * 1e3:7.1f} ms ({results[name]['ratio_chunk_8']:.2f}x), chunk {ROWS} "
              f"{t_whole['best_s'] * 1e3:7.1f} ms ({results[name][f'ratio_chunk_{ROWS}']:.2f}x); agree {agree:.1e}")
    OUT.mkdir(exist_ok=True)
    (OUT / "hvp_rows.json").write_text(json.dumps(
        {"rows": ROWS, "dtype": "float32", "threads": 1, "networks": results, "busy_before": busy,
         "machine": machine_facts(), "source": source_fingerprint(hessian)}, indent=1))


if __name__ == "__main__":
    main()

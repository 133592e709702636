"""Gradient noise scale B_simple: lmech (closed-form per-example norms of affine layers, and its generic vmap path)
vs a per-example backward loop.

~1e5-parameter tanh MLP (64-256-256-64-10: 99,530 parameters), batch 512, float32. Both give tr Sigma and
|G|^2 (unbiased, lmech.observables.noise); the loop in two variants: storing the n x P gradient matrix (the naive
way) and streaming sums in float64 (the careful way); 2 torch threads. The script asserts all agree, times them
(bench/_benchutil.timed) and writes bench/out/noise_scale.json. Run: .venv/bin/python bench/bench_noise_scale.py
"""
from __future__ import annotations

import json

import torch
from torch import nn

from _benchutil import OUT, machine_facts, source_fingerprint, timed, wait_quiet
from lmech.observables import noise
from lmech.observables.noise import gradient_noise_scale

N, DIMS = 512, (64, 256, 256, 64, 10)


def _loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out - y).pow(2).sum(1).mean()


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(DIMS[:-1], DIMS[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    model = nn.Sequential(*layers[:-1])
    return model, torch.randn(N, DIMS[0]), torch.randn(N, DIMS[-1])


def loop_b_simple(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The naive way: per example, zero_grad, backward, copy the gradient; then the same unbiased estimators."""
    rows = []
    for i in range(len(x)):
        model.zero_grad()
        _loss(model(x[i:i + 1]), y[i:i + 1]).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    g = torch.stack(rows).double()
    gbar = g.mean(0)
    trace = float((g - gbar).pow(2).sum()) / (len(x) - 1)
    return trace / (float(gbar @ gbar) - trace / len(x))


def streaming_loop_b_simple(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """The careful loop: per example, backward, then accumulate sum g and sum ||g||^2 in float64 (no n x P matrix)."""
    total, square = None, 0.0
    for i in range(len(x)):
        model.zero_grad()
        _loss(model(x[i:i + 1]), y[i:i + 1]).backward()
        g = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).double()
        total = g if total is None else total + g
        square += float(g @ g)
    n = len(x)
    gbar = total / n
    trace = (square - n * float(gbar @ gbar)) / (n - 1)
    return trace / (float(gbar @ gbar) - trace / n)


def main() -> None:
    torch.set_num_threads(2)
    model, x, y = _problem()
    params = sum(p.numel() for p in model.parameters())
    busy = wait_quiet(timeout=30.0, label="noise scale")
    fast, t_fast = timed(lambda: gradient_noise_scale(model, _loss, x, y, hessian=False).b_simple, repeats=3,
                         max_tries=5, label="vmap")
    closed_form = noise._affine_layers
    noise._affine_layers = lambda *args: None  # time the generic path (vmap over examples) too
    generic, t_generic = timed(lambda: gradient_noise_scale(model, _loss, x, y, hessian=False).b_simple, repeats=3,
                               max_tries=5, label="vmap (generic path)")
    noise._affine_layers = closed_form
    slow, t_slow = timed(lambda: loop_b_simple(model, x, y), repeats=3, max_tries=5, label="loop")
    stream, t_stream = timed(lambda: streaming_loop_b_simple(model, x, y), repeats=3, max_tries=5, label="stream")
    for other in (slow, stream, generic):
        assert abs(fast - other) <= 1e-4 * abs(other), (fast, other)
    ratio = t_slow["best_s"] / t_fast["best_s"]
    ratio_stream = t_stream["best_s"] / t_fast["best_s"]
    print(f"B_simple: vmap {fast:.6g}, loop {slow:.6g}, streaming loop {stream:.6g}; params {params}, batch {N}, "
          f"{torch.get_num_threads()} threads")
    print(f"generic vmap path {t_generic['best_s']:.4f} s: {t_slow['best_s'] / t_generic['best_s']:.1f}x vs the loop, "
          f"{t_stream['best_s'] / t_generic['best_s']:.1f}x vs the streaming loop")
    print(f"lmech (closed-form affine path) {t_fast['best_s']:.4f} s, loop {t_slow['best_s']:.4f} s ({ratio:.1f}x), streaming loop "
          f"{t_stream['best_s']:.4f} s ({ratio_stream:.1f}x)")
    OUT.mkdir(exist_ok=True)
    (OUT / "noise_scale.json").write_text(json.dumps(
        {"params": params, "batch": N, "dtype": "float32", "b_simple": {"vmap": fast, "loop": slow, "streaming_loop": stream},
         "lmech": t_fast, "lmech_generic_vmap": t_generic, "loop": t_slow, "streaming_loop": t_stream,
         "ratio_best": round(ratio, 2), "ratio_best_streaming": round(ratio_stream, 2), "busy_before": busy,
         "machine": machine_facts(), "source": source_fingerprint(noise)}, indent=1))


if __name__ == "__main__":
    main()

"""Empirical neural tangent kernel ``Theta(x, x') = J(x) J(x')^T`` of any model, and kernel statistics.

Three algorithms of Novak, Sohl-Dickstein & Schoenholz (2022, "Fast Finite Width Neural Tangent
Kernel", arXiv:2206.08720) -- Jacobian contraction, NTK-vector products and structured derivatives
(here the closed form of affine layers) -- and a FLOP/memory cost model that picks one of them.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, jacrev, jvp, vjp, vmap

from ..systems._validate import ConfigError, one_of, positive_int
from ..systems.networks import Dense

METHODS = ("auto", "jacobian", "ntk-vp", "structured")
MEMORY_BUDGET = 2 ** 27
"""Tensor elements one chunk of Jacobians / tangents may hold (1 GiB in float64); chunk sizes derive from it."""

_AFFINE_FORWARDS = (nn.Linear.forward, Dense.forward)


@dataclass
class _Affine:
    """An ``nn.Linear`` / ``Dense`` layer ``z = c W h + b`` whose trainable weight and/or bias the structured method covers."""

    module: nn.Module
    weight: str | None
    bias: str | None
    multiplier: float
    fan_in: int
    fan_out: int
    rows: int = 1  # rows h_t per sample (sequence positions x calls), measured on one sample


@dataclass
class _Problem:
    model: nn.Module
    state: dict[str, torch.Tensor]  # every parameter and buffer, detached
    trainable: dict[str, torch.Tensor]  # the differentiated parameters, detached
    x1: torch.Tensor
    x2: torch.Tensor
    symmetric: bool
    k: int
    trace: bool
    all_params: int
    activations: int  # activation elements per sample (leaf-module outputs)
    affine: list[_Affine] = field(default_factory=list)

    @property
    def n1(self) -> int:
        return self.x1.shape[0]

    @property
    def n2(self) -> int:
        return self.x2.shape[0]

    @property
    def n_distinct(self) -> int:
        return self.n1 if self.symmetric else self.n1 + self.n2

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.trainable.values())).dtype

    def zeros(self) -> torch.Tensor:
        shape = (self.n1, self.n2) if self.trace else (self.n1, self.n2, self.k, self.k)
        return torch.zeros(shape, dtype=self.dtype, device=self.x1.device)

    def f_batch(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(len(x), k)`` with ``params`` overriding the model's own tensors."""
        return functional_call(self.model, {**self.state, **params}, (x,)).reshape(x.shape[0], self.k)

    def f_one(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``(k,)`` of one sample ``x`` (no batch dimension), for per-sample transforms."""
        return self.f_batch(params, x.unsqueeze(0)).reshape(self.k)


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *, trace_outputs: bool = False,
                  method: str = "auto", chunk_size: int | None = None) -> torch.Tensor:
    """Empirical NTK ``Theta_ab(x, x') = sum_p df_a(x)/dtheta_p df_b(x')/dtheta_p`` over all trainable parameters.

    Shape ``(n1, n2)`` for a scalar-output model (output ``(n,)`` or ``(n, 1)``), else ``(n1, n2, k, k)``
    with trailing output dimensions flattened to ``k``; ``trace_outputs=True`` returns the ``(n1, n2)``
    **sum** (not mean) ``sum_a Theta_aa``. ``x2=None`` means ``x2 = x1``. Computed in the model's dtype
    and device (floating inputs are cast). Samples must not interact (no batch norm using batch
    statistics, no active dropout: use ``model.eval()``), and dimension 0 of the output is the sample.

    Methods (Novak, Sohl-Dickstein & Schoenholz 2022, arXiv:2206.08720):

    - ``"jacobian"``: per-sample ``vmap(jacrev)`` Jacobians ``J_t`` per parameter tensor ``t`` and
      ``Theta = sum_t J_t(x1) J_t(x2)^T``, in groups of parameter tensors and blocks of samples.
    - ``"ntk-vp"``: NTK-vector products: for each (sample, output) of ``x2`` a vjp gives
      ``J(x')^T e_b``, then one jvp over ``x1`` gives the column ``J(x1) J(x')^T e_b``; vmapped, chunked.
      Like any ``torch.func`` vmap over tangents it rejects some in-place ops (``relu_``) in the model.
    - ``"structured"``: every ``nn.Linear`` / lmech ``Dense`` layer ``z = c W h + b`` contributes
      ``c^2 (delta_a(x).delta_b(x')) (h(x).h(x'))`` (weight) + ``delta_a(x).delta_b(x')`` (bias), with ``h``
      the layer input (forward hooks) and ``delta_a = df_a/dz`` from ``k`` backward passes of
      ``sum_i f_a(x_i)`` (exact because samples do not interact); sums over rows ``t`` when a layer acts
      on sequences ``h_t`` or is called repeatedly. Layers must be batch-first; remaining parameters
      (norms, scales, shared weights, non-batch-first layers) use ``"jacobian"`` restricted to them.
    - ``"auto"``: the cheapest by :func:`ntk_costs`.

    Cost model (FLOPs; ``N`` distinct samples, ``P`` trainable / ``P_all`` all parameters, ``A``
    activations per sample, forward ``F = 2 P_all + A`` per sample, backward ``2F``, ``K = k^2``, or ``k``
    with ``trace_outputs``, ``B = MEMORY_BUDGET``):

    - jacobian: ``N (G + 2k) F + 2 n1 n2 K P`` with ``G = ceil(N k P / B)`` parameter groups (forwards);
      memory ``min(N k P, B)``.
    - ntk-vp: ``3 n2 k (n1 + 1) F`` (``n2 k`` vjps on one sample, ``n2 k`` jvps on ``n1``); memory ``<= B``.
    - structured: ``N (1 + 2k) F + sum_layers 2 n1 n2 (K d_out + d_in)`` (+ the jacobian cost of the
      remaining parameters); memory ``N sum_layers T (d_in + k d_out)``. Layers acting on ``T > 1`` rows per
      sample (sequences, repeated calls) form per-sample weight gradients instead of the ``h.h'`` Gram:
      ``2 N k T d_out d_in + 2 n1 n2 K d_out d_in`` FLOPs and ``N k d_out d_in`` memory.

    All memories add the output ``n1 n2 K``. ``auto`` takes the fewest FLOPs among methods whose memory
    beyond the output fits ``B`` (among all if none fits). ``chunk_size`` caps the samples per vectorised call (default: the
    largest that fits ``B``).
    """
    one_of("method", method, METHODS)
    if chunk_size is not None:
        positive_int("chunk_size", chunk_size)
    p = _problem(model, x1, x2, trace_outputs)
    if method == "auto":
        method = _choose(_costs(p), p.n1 * p.n2 * (p.k if p.trace else p.k ** 2))
    out = _KERNELS[method](p, chunk_size)
    return out.reshape(p.n1, p.n2) if p.k == 1 and not p.trace else out


def ntk_costs(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
              trace_outputs: bool = False) -> dict[str, tuple[float, float]]:
    """``{method: (FLOPs, memory in tensor elements)}`` of the cost model in :func:`empirical_ntk`."""
    return _costs(_problem(model, x1, x2, trace_outputs))


def ntk_eigenvalues(kernel: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Top ``k`` (all when ``None``) eigenvalues, descending, of a ``(n, n)`` kernel or of the
    ``(n k_out, n k_out)`` matrix ``M[(i, a), (j, b)] = Theta_ab(x_i, x_j)`` of a ``(n, n, k_out, k_out)`` one."""
    m = _as_matrix(kernel, "kernel")
    if k is not None:
        positive_int("k", k)
        if k > m.shape[0]:
            raise ConfigError(f"k={k} exceeds the kernel size {m.shape[0]}; use k <= {m.shape[0]} or k=None")
    evals = torch.linalg.eigvalsh((m + m.T) / 2).flip(0)
    return evals if k is None else evals[:k]


def kernel_target_alignment(kernel: torch.Tensor, y: torch.Tensor) -> float:
    """``A(K, y) = <K, y y^T>_F / (||K||_F ||y y^T||_F)`` (Cristianini et al. 2001, NeurIPS).

    ``y`` of shape ``(n,)`` or ``(n, m)``. With a ``(n, n)`` kernel (scalar or ``trace_outputs``)
    and ``(n, m)`` targets the target kernel is ``Y Y^T``, i.e. ``tr(Y^T K Y) / (||K||_F ||Y^T Y||_F)``.
    With a ``(n, n, k, k)`` kernel, ``y`` must be ``(n, k)``: the ``(n k, n k)`` flattening ``M`` of
    :func:`ntk_eigenvalues` is aligned with ``vec(Y) vec(Y)^T``, ``vec(Y)[(i, a)] = Y_ia``. No centering.
    """
    m, ndim = _as_matrix(kernel, "kernel"), torch.as_tensor(kernel).ndim
    y = torch.as_tensor(y, dtype=m.dtype, device=m.device)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or (y.numel() if ndim == 4 else y.shape[0]) != m.shape[0]:
        raise ConfigError(f"y of shape {tuple(y.shape)} does not match the kernel of shape {tuple(torch.as_tensor(kernel).shape)}; "
                          "use y (n,) or (n, m) for an (n, n) kernel and y (n, k) for an (n, n, k, k) kernel")
    y = y.reshape(-1, 1) if ndim == 4 else y
    denom = torch.linalg.norm(m) * torch.linalg.norm(y.T @ y)
    if denom == 0:
        raise ConfigError("kernel or y is identically zero; the alignment is undefined")
    return float((y * (m @ y)).sum() / denom)


def kernel_distance(k0: torch.Tensor, k1: torch.Tensor) -> float:
    """``1 - <K0, K1>_F / (||K0||_F ||K1||_F)`` (Fort et al. 2020, arXiv:2010.15110): 0 for proportional
    kernels, 1 for orthogonal ones. Kernels of any equal shape (e.g. two NTKs of one model during training)."""
    a, b = torch.as_tensor(k0), torch.as_tensor(k1)
    if a.shape != b.shape:
        raise ConfigError(f"k0 {tuple(a.shape)} and k1 {tuple(b.shape)} differ in shape; compare kernels on the same inputs")
    a, b = a.reshape(-1), b.to(a.dtype).reshape(-1)
    denom = torch.linalg.norm(a) * torch.linalg.norm(b)
    if denom == 0:
        raise ConfigError("k0 or k1 is identically zero; the kernel distance is undefined")
    return float(1 - a @ b / denom)


# --- setup ---------------------------------------------------------------------------------------

def _as_matrix(kernel: torch.Tensor, name: str) -> torch.Tensor:
    k = torch.as_tensor(kernel)
    if k.ndim == 2 and k.shape[0] == k.shape[1]:
        return k
    if k.ndim == 4 and k.shape[0] == k.shape[1] and k.shape[2] == k.shape[3]:
        n, _, m, _ = k.shape
        return k.permute(0, 2, 1, 3).reshape(n * m, n * m)
    raise ConfigError(f"{name} of shape {tuple(k.shape)} is not a square kernel; pass (n, n) or (n, n, k, k)")


def _check_input(name: str, x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim < 1 or x.shape[0] < 1:
        raise ConfigError(f"{name} must be a tensor with samples along dimension 0; got {type(x).__name__} "
                          f"{tuple(getattr(x, 'shape', ()))}")


def _problem(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None, trace: bool) -> _Problem:
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(trace, bool):
        raise ConfigError(f"trace_outputs={trace!r} must be True or False")
    _check_input("x1", x1)
    symmetric = x2 is None or x2 is x1
    if not symmetric:
        _check_input("x2", x2)
        if x2.shape[1:] != x1.shape[1:]:
            raise ConfigError(f"x2 samples {tuple(x2.shape[1:])} differ from x1 samples {tuple(x1.shape[1:])}; pass inputs of one shape")
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.training or m.running_mean is None):
            raise ConfigError(f"model.{name} normalizes with batch statistics, so samples interact and the per-sample NTK "
                              "is undefined; call model.eval() (with running statistics) first")
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            raise ConfigError(f"model.{name} is a dropout layer in training mode, so the model is random; call model.eval() first")
    trainable = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ConfigError("model has no trainable parameters (requires_grad=True); the NTK is zero-dimensional")
    ref = next(iter(trainable.values()))

    def cast(x: torch.Tensor) -> torch.Tensor:
        return x.to(device=ref.device, dtype=ref.dtype if x.is_floating_point() else x.dtype).detach()

    x1 = cast(x1)
    x2 = x1 if symmetric else cast(x2)
    state = {**{n: t.detach() for n, t in model.named_parameters()}, **dict(model.named_buffers())}
    candidates = _affine_candidates(model)
    out, activations, calls = _probe(model, x1[:1], [c.module for c in candidates])
    if out.ndim < 1 or out.shape[0] != 1:
        raise ConfigError(f"model(x) returned shape {tuple(out.shape)} for one sample; it must return one row per sample")
    affine = []
    for c in candidates:
        shapes = calls[c.module]
        if shapes and all(h[0] == z[0] == 1 and h[-1] == c.fan_in and z[-1] == c.fan_out for h, z in shapes):
            c.rows = sum(math.prod(h[1:-1]) for h, _ in shapes)
            affine.append(c)
    return _Problem(model, state, trainable, x1, x2, symmetric, max(1, out[0].numel()), trace,
                    sum(p.numel() for p in model.parameters()), max(activations, out.numel()), affine)


def _affine_candidates(model: nn.Module) -> list[_Affine]:
    """Affine layers with a trainable weight or bias that no other module shares."""
    owners = Counter(id(p) for _, p in model.named_parameters(remove_duplicate=False))
    names = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    found = []
    for m in model.modules():
        if type(m).forward not in _AFFINE_FORWARDS:
            continue
        w, b = m._parameters.get("weight"), m._parameters.get("bias")
        w_name, b_name = (names.get(id(t)) if t is not None and owners[id(t)] == 1 else None for t in (w, b))
        if w is not None and w.ndim == 2 and (w_name or b_name):
            found.append(_Affine(m, w_name, b_name, float(getattr(m, "multiplier", 1.0)), w.shape[1], w.shape[0]))
    return found


def _probe(model: nn.Module, x: torch.Tensor, modules: list[nn.Module]) -> tuple[torch.Tensor, int, dict]:
    """Output on one sample, activation elements per sample, and the (input, output) shapes of each module's calls."""
    count, calls = [0], {m: [] for m in modules}

    def count_hook(m: nn.Module, inp: tuple, out: object) -> None:
        count[0] += out.numel() if isinstance(out, torch.Tensor) else 0

    def shape_hook(m: nn.Module, inp: tuple, out: object) -> None:
        if inp and isinstance(inp[0], torch.Tensor) and isinstance(out, torch.Tensor):
            calls[m].append((tuple(inp[0].shape), tuple(out.shape)))
        else:
            calls[m].append(((0,), (0,)))

    handles = [m.register_forward_hook(count_hook) for m in model.modules() if not any(m.children())]
    handles += [m.register_forward_hook(shape_hook) for m in modules]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, count[0], calls


def _fit(budget: int, per_sample: int, n: int) -> int:
    return max(1, min(n, budget // max(1, per_sample)))


# --- cost model ----------------------------------------------------------------------------------

def _jacobian_cost(p: _Problem, params: int) -> tuple[float, float]:
    n, k, kk = p.n_distinct, p.k, p.k if p.trace else p.k ** 2
    fwd = 2 * p.all_params + p.activations
    groups = math.ceil(n * k * params / MEMORY_BUDGET)
    return n * (groups + 2 * k) * fwd + 2 * p.n1 * p.n2 * kk * params, min(n * k * params, MEMORY_BUDGET)


def _costs(p: _Problem) -> dict[str, tuple[float, float]]:
    n, n1, n2, k, kk = p.n_distinct, p.n1, p.n2, p.k, p.k if p.trace else p.k ** 2
    fwd, total = 2 * p.all_params + p.activations, sum(t.numel() for t in p.trainable.values())
    flops, memory = n * (1 + 2 * k) * fwd, 0.0
    covered = set()
    for layer in p.affine:
        covered |= {layer.weight, layer.bias} - {None}
        d_in, d_out, t = layer.fan_in, layer.fan_out, layer.rows
        memory += n * t * (d_in + k * d_out)
        if t == 1:
            flops += 2 * n1 * n2 * (kk * d_out + (d_in if layer.weight else 0))
        else:
            flops += 2 * n1 * n2 * kk * d_out
            if layer.weight:
                flops += 2 * n * k * t * d_out * d_in + 2 * n1 * n2 * kk * d_out * d_in
                memory += n * k * d_out * d_in
    rest = sum(t.numel() for name, t in p.trainable.items() if name not in covered)
    if rest:
        f_rest, m_rest = _jacobian_cost(p, rest)
        flops, memory = flops + f_rest, memory + m_rest
    out = n1 * n2 * kk
    costs = {"structured": (flops, memory), "jacobian": _jacobian_cost(p, total),
             "ntk-vp": (3 * n2 * k * (n1 + 1) * fwd, min(n2 * k * (total + n1 * p.activations), MEMORY_BUDGET))}
    return {m: (float(f), float(mem + out)) for m, (f, mem) in costs.items()}


def _choose(costs: dict[str, tuple[float, float]], output: int) -> str:
    """Fewest FLOPs among the methods whose working memory (beyond the output) fits ``MEMORY_BUDGET``."""
    fits = {m: c for m, c in costs.items() if c[1] - output <= MEMORY_BUDGET} or costs
    return min(fits, key=lambda m: fits[m][0])


# --- methods -------------------------------------------------------------------------------------

def _contract(a: torch.Tensor, b: torch.Tensor, trace: bool) -> torch.Tensor:
    """``(n1, k, q) x (n2, k, q) -> (n1, n2, k, k)``, or its output trace ``(n1, n2)``."""
    return torch.einsum("ikq,jkq->ij", a, b) if trace else torch.einsum("ikq,jlq->ijkl", a, b)


def _transposed(block: torch.Tensor, trace: bool) -> torch.Tensor:
    return block.T if trace else block.permute(1, 0, 3, 2)


def _groups(names: list[str], sizes: dict[str, int], capacity: int) -> list[list[str]]:
    """Consecutive parameter tensors packed into groups of at most ``capacity`` elements (one tensor may exceed it)."""
    groups, current, size = [], [], 0
    for name in names:
        if current and size + sizes[name] > capacity:
            groups.append(current)
            current, size = [], 0
        current.append(name)
        size += sizes[name]
    return groups + [current]


def _jacobian_kernel(p: _Problem, chunk: int | None, names: list[str] | None = None) -> torch.Tensor:
    """Jacobian contraction ``sum_t J_t(x1) J_t(x2)^T`` over the parameter tensors ``names`` (default: all)."""
    names = list(p.trainable) if names is None else names
    sizes = {n: p.trainable[n].numel() for n in names}
    out, k = p.zeros(), p.k
    for group in _groups(names, sizes, MEMORY_BUDGET // (p.n_distinct * k)):
        size = sum(sizes[n] for n in group)
        vec = chunk or _fit(MEMORY_BUDGET, k * (size + p.activations), p.n_distinct)
        per_sample = vmap(jacrev(p.f_one), in_dims=(None, 0), chunk_size=vec)
        sub = {n: p.trainable[n] for n in group}

        def jac(x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {n: j.reshape(x.shape[0], k, -1) for n, j in per_sample(sub, x).items()}

        def block(j1: dict, j2: dict) -> torch.Tensor:
            return sum(_contract(j1[n], j2[n], p.trace) for n in group)

        if p.n_distinct * k * size <= MEMORY_BUDGET:
            j1 = jac(p.x1)
            out += block(j1, j1 if p.symmetric else jac(p.x2))
            continue
        rows = chunk or _fit(MEMORY_BUDGET // 2, k * size, p.n_distinct)
        starts2 = range(0, p.n2, rows)
        for s1 in range(0, p.n1, rows):
            j1 = jac(p.x1[s1:s1 + rows])
            for s2 in starts2:
                if p.symmetric and s2 < s1:
                    continue
                blk = block(j1, j1 if p.symmetric and s2 == s1 else jac(p.x2[s2:s2 + rows]))
                out[s1:s1 + rows, s2:s2 + rows] += blk
                if p.symmetric and s2 > s1:
                    out[s2:s2 + rows, s1:s1 + rows] += _transposed(blk, p.trace)
    return out


def _ntk_vp_kernel(p: _Problem, chunk: int | None) -> torch.Tensor:
    """NTK-vector products: columns ``J(x1) [J(x')^T e_b]``, vjp per ``x2`` sample then one jvp over ``x1``."""
    out, k, params = p.zeros(), p.k, p.trainable
    basis = torch.eye(k, dtype=p.dtype, device=p.x1.device)
    total = sum(t.numel() for t in params.values())

    def cotangents(x: torch.Tensor) -> dict[str, torch.Tensor]:
        _, pull = vjp(lambda q: p.f_one(q, x), params)
        return vmap(pull)(basis)[0]

    c2 = chunk or _fit(MEMORY_BUDGET // 2, k * total, p.n2)
    c1 = chunk or _fit(MEMORY_BUDGET // 2, c2 * k * p.activations, p.n1)
    for s2 in range(0, p.n2, c2):
        xb2 = p.x2[s2:s2 + c2]
        tangents = {n: t.flatten(0, 1) for n, t in vmap(cotangents)(xb2).items()}
        for s1 in range(0, p.n1, c1):
            xb1 = p.x1[s1:s1 + c1]

            def push(t: dict[str, torch.Tensor], xb1: torch.Tensor = xb1) -> torch.Tensor:
                return jvp(lambda q: p.f_batch(q, xb1), (params,), (t,))[1]

            blk = vmap(push)(tangents).reshape(xb2.shape[0], k, xb1.shape[0], k).permute(2, 0, 3, 1)
            out[s1:s1 + c1, s2:s2 + c2] = blk.diagonal(dim1=2, dim2=3).sum(-1) if p.trace else blk
    return out


def _affine_features(p: _Problem, layers: list[_Affine], x: torch.Tensor,
                     chunk: int | None) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """Per layer: inputs ``h (n, T, d_in)`` and output gradients ``delta (k, n, T, d_out)``; ``None`` when a
    layer's calls are not batch-first. ``k`` backward passes of ``sum_i f_a(x_i)`` per chunk of samples."""
    per_sample = 2 * p.activations + p.k * sum(layer.rows * layer.fan_out for layer in layers)
    rows = chunk or _fit(MEMORY_BUDGET, per_sample, x.shape[0])
    hs, ds, valid = [[] for _ in layers], [[] for _ in layers], [True] * len(layers)
    for s in range(0, x.shape[0], rows):
        xb = x[s:s + rows]
        calls: list[list] = [[] for _ in layers]

        def hook_for(i: int) -> Callable:
            def hook(m: nn.Module, inp: tuple, z: torch.Tensor) -> torch.Tensor:
                calls[i].append((inp[0].detach().clone(), z))
                return z.clone()  # later in-place ops must not rewrite the recorded output
            return hook

        handles = [layer.module.register_forward_hook(hook_for(i)) for i, layer in enumerate(layers)]
        try:
            with torch.enable_grad():
                f = p.model(xb).reshape(xb.shape[0], p.k)
        finally:
            for h in handles:
                h.remove()
        zs = [z for c in calls for _, z in c]
        grads = [torch.autograd.grad(f[:, a].sum(), zs, retain_graph=a < p.k - 1, allow_unused=True) for a in range(p.k)]
        pos = 0
        for i, layer in enumerate(layers):
            h_rows, d_rows = [], []
            for j, (h, z) in enumerate(calls[i]):
                g = [grads[a][pos + j] for a in range(p.k)]
                d = torch.stack([torch.zeros_like(z) if t is None else t for t in g])
                valid[i] &= h.shape[0] == z.shape[0] == xb.shape[0]
                if valid[i]:
                    h_rows.append(h.reshape(xb.shape[0], -1, layer.fan_in))
                    d_rows.append(d.detach().reshape(p.k, xb.shape[0], -1, layer.fan_out))
            pos += len(calls[i])
            valid[i] &= bool(h_rows)
            if valid[i]:
                hs[i].append(torch.cat(h_rows, 1))
                ds[i].append(torch.cat(d_rows, 2))
    out = []
    for i in range(len(layers)):
        valid[i] = valid[i] and len({h.shape[1] for h in hs[i]}) == 1
        out.append((torch.cat(hs[i]), torch.cat(ds[i], 1)) if valid[i] else None)
    return out


def _affine_block(layer: _Affine, f1: tuple[torch.Tensor, torch.Tensor], f2: tuple[torch.Tensor, torch.Tensor],
                  trace: bool) -> torch.Tensor:
    """NTK contribution of one affine layer from its inputs ``h`` and output gradients ``delta``."""
    (h1, d1), (h2, d2) = f1, f2
    eq = "aiq,ajq->ij" if trace else "aiq,bjq->ijab"
    out = 0
    if h1.shape[1] == 1:
        dd = torch.einsum(eq, d1[:, :, 0], d2[:, :, 0])
        if layer.bias:
            out = out + dd
        if layer.weight:
            hh = h1[:, 0] @ h2[:, 0].T
            out = out + layer.multiplier ** 2 * dd * (hh if trace else hh[:, :, None, None])
        return out
    if layer.bias:
        out = out + torch.einsum(eq, d1.sum(2), d2.sum(2))
    if layer.weight:
        g1 = layer.multiplier * torch.einsum("aito,itd->aiod", d1, h1).flatten(2)
        g2 = g1 if d2 is d1 else layer.multiplier * torch.einsum("aito,itd->aiod", d2, h2).flatten(2)
        out = out + torch.einsum(eq, g1, g2)
    return out


def _structured_kernel(p: _Problem, chunk: int | None) -> torch.Tensor:
    """Closed-form affine-layer contributions plus Jacobian contraction over all other parameters."""
    out, covered = p.zeros(), set()
    if p.affine:
        f1 = _affine_features(p, p.affine, p.x1, chunk)
        f2 = f1 if p.symmetric else _affine_features(p, p.affine, p.x2, chunk)
        for layer, a, b in zip(p.affine, f1, f2):
            if a is not None and b is not None:
                out += _affine_block(layer, a, b, p.trace)
                covered |= {layer.weight, layer.bias} - {None}
    rest = [n for n in p.trainable if n not in covered]
    return out + _jacobian_kernel(p, chunk, rest) if rest else out


_KERNELS: dict[str, Callable[[_Problem, int | None], torch.Tensor]] = {
    "jacobian": _jacobian_kernel, "ntk-vp": _ntk_vp_kernel, "structured": _structured_kernel,
}

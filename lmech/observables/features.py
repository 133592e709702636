"""Feature-learning observables: the AGOP, the Neural Feature Ansatz correlation, representation change.

Layer inputs are read with forward pre-hooks, so these work for any ``nn.Module`` whose submodule ``layer`` is
called exactly once per forward pass. Per-sample gradients come from one backward pass per output over the whole
batch, which assumes samples do not interact (no batch-coupling layers such as BatchNorm in training mode).
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call

from ..systems._validate import ConfigError


def _layer_inputs(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, layers: list[nn.Module], *,
                  leaf: bool = False) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Run ``model(x)`` and return the first positional input each of ``layers`` received, and the output.

    With ``leaf=True`` each input is replaced by a detached copy that requires grad, so the output can be
    differentiated with respect to it.
    """
    seen: dict[int, torch.Tensor] = {}

    def hook_for(i: int):
        def hook(_module: nn.Module, args: tuple):
            if i in seen:
                raise ConfigError(f"layer {type(_module).__name__} is called more than once per forward pass; pass a "
                                  "layer that is called once")
            # a detached copy: a leaf to differentiate at, or a value later in-place ops cannot change
            h = args[0].detach().requires_grad_(True) if leaf else args[0].detach().clone()
            seen[i] = h
            return (h,) + tuple(args[1:]) if leaf else None
        return hook

    handles = [layer.register_forward_pre_hook(hook_for(i)) for i, layer in enumerate(layers)]
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    missing = [type(layers[i]).__name__ for i in range(len(layers)) if i not in seen]
    if missing:
        raise ConfigError(f"layer(s) {missing} were not called by model.forward; pass submodules of the model")
    return [seen[i] for i in range(len(layers))], out


def agop(model: nn.Module, x: torch.Tensor, layer: nn.Module | None = None, *, centered: bool = False) -> torch.Tensor:
    """Average gradient outer product ``G = (1/n) sum_j J_j^T J_j`` with respect to the input of ``layer``.

    ``J_j`` (outputs x d) is the Jacobian of the model output at sample ``j`` with respect to the (flattened)
    input of ``layer`` (``None``: the model input ``x``), so ``J^T J`` is summed over outputs; ``centered``
    subtracts the mean Jacobian over samples first (``verify_deep_NFA.py`` of aradha/agop_feature_learning
    reports both). Radhakrishnan et al. 2024, arXiv:2212.13881, Eq. 3. Returns a detached ``(d, d)`` tensor.
    """
    with torch.enable_grad():
        if layer is None:
            h = x.detach().requires_grad_(True)
            out = model(h)
        else:
            (h,), out = _layer_inputs(model, x, [layer], leaf=True)
        n = h.shape[0]
        out = out.reshape(n, -1)
        gram = torch.zeros(h[0].numel(), h[0].numel(), dtype=h.dtype, device=h.device)
        for c in range(out.shape[1]):
            (g,) = torch.autograd.grad(out[:, c].sum(), h, retain_graph=c + 1 < out.shape[1], allow_unused=True)
            if g is None:
                continue
            g = g.reshape(n, -1)
            if centered:
                g = g - g.mean(0, keepdim=True)
            gram += g.T @ g
    return (gram / n).detach()


def _effective_weight(layer: nn.Module, weight: torch.Tensor | None = None) -> torch.Tensor:
    """``multiplier * W`` (lmech's Dense computes ``multiplier * W h + b``; 1 for other layers), as float64."""
    w = layer.weight if weight is None else weight
    if not isinstance(w, torch.Tensor) or w.ndim != 2:
        raise ConfigError(f"layer={type(layer).__name__} needs a 2-D .weight (out, in) for the neural feature matrix")
    return w.detach().to(torch.float64) * float(getattr(layer, "multiplier", 1.0))


def neural_feature_matrix(layer: nn.Module, init_weight: torch.Tensor | None = None) -> torch.Tensor:
    """NFM ``(W - W0)^T (W - W0) / m_out`` of ``layer`` (``W0 = 0`` without ``init_weight``), float64 ``(in, in)``.

    ``W`` is the effective weight (``multiplier * weight``); ``init_weight`` is the raw parameter at init (as in
    :func:`lmech.observables.weights.snapshot`). The ``1/m_out`` follows ``load_nn`` in ``verify_deep_NFA.py``.
    """
    w = _effective_weight(layer)
    if init_weight is not None:
        w0 = _effective_weight(layer, init_weight.to(w.device))
        if w0.shape != w.shape:
            raise ConfigError(f"init_weight has shape {tuple(w0.shape)} but layer.weight has {tuple(w.shape)}")
        w = w - w0
    return w.T @ w / w.shape[0]


def psd_power(matrix: torch.Tensor, power: float) -> torch.Tensor:
    """``G^s`` of a symmetric PSD matrix via ``eigh`` (rounding negatives clipped to 0); float64.

    Equals the SVD route of ``verify_deep_NFA.py`` (``U diag(s^p) V^T``) on a PSD matrix.
    """
    evals, evecs = torch.linalg.eigh((matrix + matrix.T).to(torch.float64) / 2)
    return (evecs * evals.clamp(min=0) ** power) @ evecs.T


def matrix_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two flattened matrices: subtract each one's global mean, then take the cosine.

    This is ``correlate`` in ``verify_deep_NFA.py``; ``nan`` when either matrix is constant.
    """
    a = a.detach().to(torch.float64).flatten()
    b = b.detach().to(torch.float64).flatten()
    if a.shape != b.shape:
        raise ConfigError(f"matrices to correlate differ in size ({a.numel()} vs {b.numel()})")
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else float("nan")


def _validate_power(power: float) -> None:
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not power > 0:
        raise ConfigError(f"power={power!r} must be a number > 0 (the ansatz uses 1/2 and 1)")


def nfa_correlation(model: nn.Module, x: torch.Tensor, layer: nn.Module, *, init_weight: torch.Tensor | None = None,
                    power: float = 0.5, centered: bool = False) -> float:
    """Neural Feature Ansatz statistic: Pearson correlation of ``W^T W`` with ``AGOP^power`` for ``layer``.

    ``W^T W`` is :func:`neural_feature_matrix` (init removed when ``init_weight`` is given, as the reference code
    does); the AGOP (:func:`agop`) is taken with respect to the layer's input over ``x``. The ansatz is
    ``W^T W ∝ G^s`` (Radhakrishnan et al. 2024, arXiv:2212.13881, Eq. 3, reference ``s = 1/2``; Mallinar et al.
    2024). ``nan`` when ``W = W0``.
    """
    _validate_power(power)
    nfm = neural_feature_matrix(layer, init_weight)
    gram = agop(model, x, layer, centered=centered)
    if gram.shape != nfm.shape:
        raise ConfigError(f"AGOP of layer input is {tuple(gram.shape)} but W^T W is {tuple(nfm.shape)}; the layer's "
                          "input must be the vector its weight acts on")
    return matrix_correlation(nfm, psd_power(gram, power))


def nfa_scores(model: nn.Module, x: torch.Tensor, layer: nn.Module, *, init_weight: torch.Tensor | None = None,
               centered: bool = False, gram: torch.Tensor | None = None) -> dict[str, float]:
    """``{"s=0.5": ..., "s=1": ...}`` from :func:`nfa_correlation` with one AGOP, plus ``"init"`` when
    ``init_weight`` is given: the baseline correlation of the NFM with ``W0^T W0`` (``init_correlation`` in
    ``verify_deep_NFA.py``). ``gram``: an AGOP already computed by :func:`agop` on the same inputs."""
    nfm = neural_feature_matrix(layer, init_weight)
    gram = agop(model, x, layer, centered=centered) if gram is None else gram
    if gram.shape != nfm.shape:
        raise ConfigError(f"AGOP of layer input is {tuple(gram.shape)} but W^T W is {tuple(nfm.shape)}")
    out = {f"s={s:g}": matrix_correlation(nfm, psd_power(gram, s)) for s in (0.5, 1.0)}
    if init_weight is not None:
        w0 = _effective_weight(layer, init_weight.to(nfm.device))
        out["init"] = matrix_correlation(nfm, w0.T @ w0 / w0.shape[0])
    return out


def _default_layers(model: nn.Module, layers: Iterable[nn.Module] | None, skip_first: bool) -> list[nn.Module]:
    if layers is not None:
        return list(layers)
    if not isinstance(getattr(model, "layers", None), nn.ModuleList):
        raise ConfigError(f"{type(model).__name__} has no .layers ModuleList; pass layers=[modules whose inputs are "
                          "the representations]")
    return list(model.layers)[1:] if skip_first else [model.layers[-1]]


@torch.no_grad()
def representation_change(model: nn.Module, init_state: dict[str, torch.Tensor], x: torch.Tensor, *,
                          layers: Iterable[nn.Module] | None = None) -> dict[str, float]:
    """Relative change ``||h_t - h_0||_F / ||h_0||_F`` of each hidden representation on inputs ``x``.

    The representations are the inputs of ``layers`` (default ``model.layers[1:]``: for lmech's MLPNet, key
    ``representation/i`` is ``h_{i+1} = phi(layers[i](h_i))``, the post-activation output of hidden layer ``i``
    counting from 0). ``h_t`` uses the current parameters, ``h_0`` the parameters in ``init_state`` (a
    :func:`lmech.observables.weights.snapshot` or a state dict). ``nan`` where ``h_0 = 0``.
    """
    out = {}
    for i, (h, h0) in enumerate(zip(*hidden_representations(model, init_state, x, layers=layers))):
        base = float(h0.double().norm())
        out[f"representation/{i}"] = float((h - h0).double().norm()) / base if base > 0 else float("nan")
    return out


def hidden_representations(model: nn.Module, init_state: dict[str, torch.Tensor], x: torch.Tensor, *,
                           layers: Iterable[nn.Module] | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The hidden representations (inputs of ``layers``, default ``model.layers[1:]``) on ``x`` now and with the
    parameters in ``init_state``: two lists of ``(n, features)`` tensors, layer by layer."""
    mods = _default_layers(model, layers, skip_first=True)
    known = dict(model.named_parameters()) | dict(model.named_buffers())
    unknown = sorted(set(init_state) - set(known))
    if unknown:
        raise ConfigError(f"init_state has entries {unknown[:5]} that are not parameters or buffers of the model; "
                          "pass snapshot(model) taken at init")
    with torch.no_grad():
        now, _ = _layer_inputs(model, x, mods)
        then, _ = _layer_inputs(lambda inp: functional_call(model, dict(init_state), (inp,)), x, mods)
    return [h.reshape(len(h), -1) for h in now], [h.reshape(len(h), -1) for h in then]


@torch.no_grad()
def readout_kernel(model: nn.Module, x: torch.Tensor, layer: nn.Module | None = None) -> torch.Tensor:
    """Feature kernel of the readout, ``K = h h^T / m`` with ``h`` the ``(n, m)`` input of ``layer``
    (default ``model.layers[-1]``): the readout's NNGP conditional on the features, without its ``w_std^2``
    (or output multiplier), the same in standard and NTK parameterization."""
    mods = [layer] if layer is not None else _default_layers(model, None, skip_first=False)
    (h,), _ = _layer_inputs(model, x, mods)
    h = h.reshape(h.shape[0], -1)
    return h @ h.T / h.shape[1]

"""Batched training: many models of one shape trained together, one batched gradient per step for all of them.

The models' parameters are stacked along a leading model axis, so a sweep over learning rates or seeds of small
models pays one set of large matrix products per step instead of many small ones. The updates reproduce
``torch.optim.SGD`` and ``torch.optim.Adam`` (PyTorch's formulas, a learning rate per model and parameter), so a
batched run equals the sequential one to rounding.

Two gradient paths give the same numbers. A chain of affine layers (``nn.Linear``, lmech ``Dense``) and elementwise
activations (an ``nn.Sequential`` of them, lmech's ``MLPNet`` and ``DeepLinearNet``) on 2-D inputs (or one 2-D set per model) runs a
hand-written forward and backward (an MLP's output multiplier may differ per model): ``bmm`` over the model axis
into buffers reused from step to step, closed-form
backward of relu/tanh/sigmoid (autograd for other activations), of lmech's ``half_mse`` and ``cross_entropy`` on
integer labels (autograd through ``vmap`` for other losses). lmech's ``ResidualMLPNet`` (the depth-muP laws' model)
has its own hand-written forward and backward (ATen's LayerNorm kernels over the last axis). Any other model runs
``vmap`` of ``functional_call`` (torch.func) for its losses and one autograd backward pass for their gradients.
Parameters,
gradients and optimizer state live in flat buffers (one ``(models, *shape)`` block per parameter), so an optimizer
update is a few elementwise kernels for all models and parameters together.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .loop import minibatches, run_steps
from ..observables._params import LossFn
from ..systems.networks import _ACTIVATIONS, Dense, DeepLinearNet, MLPNet, ResidualMLPNet
from ..systems.task import cross_entropy, half_mse


@dataclass
class StackedRun:
    """Per-model records at ``steps[t]`` (the parameters after that many updates), float64 arrays ``[t, i]`` for
    model ``i``: ``loss`` (full training set; ``None`` when not asked for), ``test_loss`` (``None`` without a test
    set), ``accuracy`` and
    ``test_accuracy`` (fraction of rows whose arg-max output is the label, or the arg-max of a one-hot row; ``None``
    unless asked for or the targets are integer labels). ``diverged_step[i]`` is the step at which model ``i``
    diverged, -1 if it did not; its records after that step are NaN."""

    steps: np.ndarray
    loss: np.ndarray | None
    diverged_step: np.ndarray
    test_loss: np.ndarray | None = None
    accuracy: np.ndarray | None = None
    test_accuracy: np.ndarray | None = None


@dataclass(frozen=True)
class _Affine:
    weight: str
    bias: str | None
    multiplier: float  # z = multiplier * W h + b (lmech Dense)


@dataclass(frozen=True)
class _Pointwise:
    kind: str  # "relu", "tanh", "sigmoid": backward from the output; "scale": times ``scale``; "autograd": ``fn``
    fn: Callable[[torch.Tensor], torch.Tensor] | None = None
    scale: float | torch.Tensor = 1.0  # a (models, 1, 1) tensor: one output multiplier per model


_FROM_OUTPUT = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid"}
_CLOSED_FORM = tuple(_FROM_OUTPUT.values())  # activations differentiated from their output by hand
_ELEMENTWISE = (nn.GELU, nn.SiLU, nn.ELU, nn.CELU, nn.SELU, nn.LeakyReLU, nn.Softplus, nn.Mish, nn.Hardtanh,
                nn.Softsign, nn.Tanhshrink)


def _plain(model: nn.Module) -> bool:
    """Whether ``model`` has no buffers and no hooks: its ``forward`` is all a hand-written path must reproduce."""
    return not any(True for _ in model.buffers()) and not any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in model.modules())


def _chain(model: nn.Module, scaled: bool = False) -> list[_Affine | _Pointwise] | None:
    """``model`` as a chain of affine layers and elementwise maps (first op affine), or ``None`` if it is not one:
    an ``nn.Sequential`` of ``nn.Linear`` / ``Dense`` / listed activations / ``nn.Identity``, an ``MLPNet`` or a
    ``DeepLinearNet``, without buffers or hooks. Exact types: a subclass may change ``forward``; an in-place
    activation (other than relu, tanh, sigmoid: computed here) would overwrite what its backward needs. ``scaled``:
    an ``MLPNet``'s output multiplier is an op even when it is 1."""
    if not _plain(model):
        return None
    ops: list[_Affine | _Pointwise] = []
    if type(model) in (MLPNet, DeepLinearNet) and all(type(layer) is Dense for layer in model.layers):
        for i, layer in enumerate(model.layers):
            if i and type(model) is MLPNet and model.activation != "linear":
                kind = model.activation if model.activation in ("relu", "tanh") else "autograd"
                ops.append(_Pointwise(kind, _ACTIVATIONS[model.activation]))
            ops.append(_Affine(f"layers.{i}.weight", None if layer.bias is None else f"layers.{i}.bias",
                               layer.multiplier))
        if type(model) is MLPNet and (model.alpha != 1.0 or scaled):
            ops.append(_Pointwise("scale", scale=model.alpha))
    elif type(model) is nn.Sequential:
        for name, child in model.named_children():
            if type(child) in (nn.Linear, Dense):
                ops.append(_Affine(f"{name}.weight", None if child.bias is None else f"{name}.bias",
                                   getattr(child, "multiplier", 1.0)))
            elif type(child) in _FROM_OUTPUT:
                ops.append(_Pointwise(_FROM_OUTPUT[type(child)]))
            elif type(child) in _ELEMENTWISE and not getattr(child, "inplace", False):
                ops.append(_Pointwise("autograd", child))
            elif type(child) is not nn.Identity:
                return None
    else:
        return None
    covered = {n for op in ops if isinstance(op, _Affine) for n in (op.weight, op.bias) if n}
    if not ops or not isinstance(ops[0], _Affine) or covered != {n for n, _ in model.named_parameters()}:
        return None
    return ops


def _stacked_chain(models: Sequence[nn.Module]) -> list[_Affine | _Pointwise] | None:
    """The chain of ``models`` (:func:`_chain`), with one output multiplier per model where only those differ (e.g. a
    sweep over ``MLP.alpha``); ``None`` if they are not chains. Models that differ otherwise are refused."""
    def is_scale(op: _Affine | _Pointwise) -> bool:
        return isinstance(op, _Pointwise) and op.kind == "scale"

    def signature(chain: list | None, scales: bool = True) -> list | None:  # activation modules compared by repr
        return chain and [op if isinstance(op, _Affine) else
                          (op.kind, repr(op.fn), op.scale if scales or not is_scale(op) else None) for op in chain]

    chains = [_chain(m) for m in models]
    if chains[0] is None or all(signature(c) == signature(chains[0]) for c in chains[1:]):
        return chains[0]
    chains = [_chain(m, scaled=True) for m in models]
    if any(signature(c, scales=False) != signature(chains[0], scales=False) for c in chains[1:]):
        raise ValueError("models must share one architecture (up to an MLP's output multiplier alpha); train "
                         "others sequentially")
    param = next(models[0].parameters())
    return [dataclasses.replace(op, scale=torch.tensor([float(c[k].scale) for c in chains], dtype=param.dtype,
                                                      device=param.device).view(-1, 1, 1))
            if is_scale(op) else op for k, op in enumerate(chains[0])]


def _loss_and_grad(loss_fn: LossFn) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(out, y, per_model) -> (losses, dlosses/dout)`` for stacked outputs ``(models, rows, ...)`` and targets shared
    by the models or, with ``per_model``, one set per model (leading axis): closed form for lmech's
    ``half_mse`` (``L = sum |f - y|^2 / (2 rows)``, ``dL/df = (f - y) / rows``) and ``cross_entropy`` on integer
    labels (``L = -mean log softmax(f)_y``, ``dL/df = (softmax(f) - onehot(y)) / rows``: autograd through ``vmap``
    took half of a small network's stacked step there, in a decomposition run in Python), else autograd through
    ``vmap``."""
    shared, own = vmap(loss_fn, in_dims=(0, None)), vmap(loss_fn, in_dims=(0, 0))

    def generic(out: torch.Tensor, y: torch.Tensor, per_model: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        out = out.detach().requires_grad_()
        with torch.enable_grad():
            losses = (own if per_model else shared)(out, y)
            return losses.detach(), torch.autograd.grad(losses.sum(), out)[0]

    if loss_fn is cross_entropy:
        def softmax_closed(out: torch.Tensor, y: torch.Tensor, per_model: bool = False):
            if out.dim() != 3 or y.is_floating_point():
                return generic(out, y, per_model)
            logp = torch.log_softmax(out, dim=2)
            labels = (y if per_model else y.expand(out.shape[0], -1)).unsqueeze(2)
            losses = logp.gather(2, labels).squeeze(2).mean(dim=1).neg_()
            grad = logp.exp_().scatter_add_(2, labels, torch.full_like(labels, -1, dtype=logp.dtype))
            return losses, grad.div_(out.shape[1])
        return softmax_closed
    if loss_fn is half_mse:
        def closed(out: torch.Tensor, y: torch.Tensor, per_model: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
            diff = torch.empty(torch.broadcast_shapes(out.shape, y.shape), dtype=torch.result_type(out, y),
                               device=out.device)
            torch.sub(out, y, out=diff)  # contiguous even when out is a transposed view
            losses = diff.reshape(*diff.shape[:2], -1).pow(2).sum(dim=2).mean(dim=1).mul_(0.5)
            return losses, diff.div_(out.shape[1])
        return closed
    return generic


def _tanh(h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``tanh(h) = 2 sigmoid(2h) - 1``: ATen's sigmoid kernel is 4x faster than its tanh on the CPU build lmech
    installs (four passes 0.6-0.7 ns per float32 element against 2.6 ns); absolute error <= 2e-7 in float32 (3e-8 for
    ``torch.tanh``), 1e-16 in float64. The backward reads the output as ``torch.tanh``'s does."""
    out = torch.mul(h, 2, out=out)
    return torch.sigmoid(out, out=out).mul_(2).sub_(1)


def _activation(kind: str, h: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``kind`` (one of ``_CLOSED_FORM``) applied to ``h``, into ``out`` if given."""
    if kind == "relu":
        return torch.clamp_min(h, 0.0, out=out)
    return _tanh(h, out) if kind == "tanh" else torch.sigmoid(h, out=out)


def _activation_backward(kind: str, d: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``dL/dh`` from ``d = dL/dz`` and the output ``z`` of ``_activation(kind, h)``, written into ``d``."""
    if kind == "relu":
        return torch.ops.aten.threshold_backward.grad_input(d, z, 0.0, grad_input=d)
    backward = torch.ops.aten.tanh_backward if kind == "tanh" else torch.ops.aten.sigmoid_backward
    return backward.grad_input(d, z, grad_input=d)


def _affine(w: torch.Tensor, b: torch.Tensor | None, multiplier: float, h: torch.Tensor, out: torch.Tensor | None,
            relu: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``relu?(multiplier h W^T + b)`` for stacked ``h`` ``(models, rows, in)``, and the buffer holding it
    (``(models, out, rows)`` when out < rows: MKL's batched product is faster with the small dimension first)."""
    flip = w.shape[1] < h.shape[1]
    a, c = (w, h.mT) if flip else (h, w.mT)
    if b is not None and not relu:
        buf = torch.baddbmm(b.unsqueeze(2 if flip else 1), a, c, alpha=multiplier, out=out)
    else:
        buf = torch.bmm(a, c, out=out)
        if multiplier != 1.0:
            buf.mul_(multiplier)
        if relu:
            torch.ops.aten._add_relu_(buf, b.unsqueeze(2 if flip else 1))
    return (buf.mT if flip else buf), buf


def _affine_backward(d: torch.Tensor, h: torch.Tensor, w: torch.Tensor, multiplier: float, grad_w: torch.Tensor,
                     grad_b: torch.Tensor | None, inputs: bool, out: torch.Tensor | None = None) -> torch.Tensor | None:
    """Gradients of ``z = multiplier h W^T + b`` from ``d = dL/dz``: into ``grad_w`` and ``grad_b``, and (with
    ``inputs``) ``dL/dh`` returned (in ``out`` if given)."""
    if grad_w.shape[2] < min(16, grad_w.shape[1]):  # few inputs: MKL's batched product is slow with a narrow
        grad_w.copy_(torch.bmm(h.mT, d).mT)            # result (0.98 vs 0.15 ms for 21 x 200 x 2)
    else:
        torch.bmm(d.mT, h, out=grad_w)
    if multiplier != 1.0:
        grad_w.mul_(multiplier)
    if grad_b is not None:
        torch.sum(d, 1, out=grad_b)
    if not inputs:
        return None
    d = torch.mul(d, w, out=out) if w.shape[1] == 1 else torch.bmm(d, w, out=out)  # one output: a broadcast outer product
    return d.mul_(multiplier) if multiplier != 1.0 else d


class _ChainNet:
    """Forward and backward of a chain on ``(models, rows, features)`` activations; the gradients of the per-model
    losses go into ``grads``. Training reuses its activation buffers from step to step (the rows stay fixed); an
    affine layer with a bias followed by a relu is one product and one fused add-relu pass."""

    def __init__(self, ops: list[_Affine | _Pointwise], params: dict[str, torch.Tensor],
                 grads: dict[str, torch.Tensor], loss_fn: LossFn) -> None:
        self.ops, self.params, self.grads = ops, params, grads
        self.models = next(iter(params.values())).shape[0]
        self.widest = max(params[op.weight].shape[1] for op in ops if isinstance(op, _Affine))
        self.fused = {k for k, (op, nxt) in enumerate(zip(ops, ops[1:])) if isinstance(op, _Affine)
                      and op.bias is not None and isinstance(nxt, _Pointwise) and nxt.kind == "relu"}
        self.loss_and_grad_out = _loss_and_grad(loss_fn)
        self.buffers: dict[tuple[str, int], torch.Tensor] = {}
        self.rows = -1

    def _forward(self, x: torch.Tensor, keep: bool, per_model: bool = False) -> tuple[torch.Tensor, list]:
        h, saved = (x if per_model else x.expand(self.models, *x.shape)), []
        for k, op in enumerate(self.ops):
            out = self.buffers.get(("z", k)) if keep else None
            if isinstance(op, _Affine):
                z, buf = _affine(self.params[op.weight], self.params.get(op.bias), op.multiplier, h, out,
                                 relu=k in self.fused)
            elif k - 1 in self.fused:  # the relu was applied with the bias
                z = buf = h
            elif op.kind in _CLOSED_FORM:
                z = buf = _activation(op.kind, h, out)
            elif op.kind == "scale":
                z = buf = torch.mul(h, op.scale, out=out)
            elif keep:
                h = h.detach().requires_grad_()
                with torch.enable_grad():
                    z = buf = op.fn(h)
            else:
                z = buf = op.fn(h)
            if keep:
                saved.append((h, z))
                if not z.requires_grad:
                    self.buffers["z", k] = buf
            h = z
        return h, saved

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        """Per-model losses on ``(x, y)`` (with ``per_model``, model ``i`` sees ``(x[i], y[i])``); their gradients
        are written into ``grads``."""
        rows = x.shape[1] if per_model else len(x)
        if rows != self.rows:
            self.buffers.clear()
            self.rows = rows
        out, saved = self._forward(x, keep=True, per_model=per_model)
        losses, d = self.loss_and_grad_out(out, y, per_model)
        d = d.contiguous()
        for k in reversed(range(len(self.ops))):
            op, (h, z) = self.ops[k], saved[k]
            if isinstance(op, _Affine):
                d_in = _affine_backward(d, h, self.params[op.weight], op.multiplier, self.grads[op.weight],
                                        self.grads.get(op.bias), inputs=k > 0, out=self.buffers.get(("d", k)))
                if k:
                    d = self.buffers["d", k] = d_in
            elif op.kind in _CLOSED_FORM:
                _activation_backward(op.kind, d, z)
            elif op.kind == "scale":
                d.mul_(op.scale)
            else:
                d = torch.autograd.grad(z, h, d)[0]
        return losses

    def outputs(self, x: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        """``(models, rows, ...)`` outputs (with ``per_model``, model ``i`` on ``x[i]``), in row chunks of at most
        2^21 activations per layer (few page faults)."""
        chunk = max(1, 2 ** 21 // (self.models * self.widest))
        rows = x.shape[1] if per_model else len(x)
        return torch.cat([self._forward(x[:, i:i + chunk] if per_model else x[i:i + chunk], keep=False,
                                        per_model=per_model)[0] for i in range(0, rows, chunk)], dim=1)


class _ResidualNet:
    """lmech's ``ResidualMLPNet`` on ``(models, rows, features)``: ``h_0 = embed(x)``, ``h_l = h_(l-1) +
    Linear_l(phi(LayerNorm(h_(l-1))))``, ``out = readout(h_L)``, forward and backward by hand: the products batched
    over models, the LayerNorm (no affine part) and its backward by ATen's own kernels over the last axis, relu, tanh
    and sigmoid differentiated in closed form, other activations by autograd. Under ``vmap`` the same step ran many
    small kernels and copies (a 21-model depth-16 step: 28 ms)."""

    def __init__(self, model: ResidualMLPNet, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                 loss_fn: LossFn) -> None:
        self.params, self.grads = params, grads
        self.models = next(iter(params.values())).shape[0]
        self.depth, self.eps = len(model.blocks), model.blocks[0][0].eps
        self.act = model.blocks[0][1]
        self.kind = _FROM_OUTPUT.get(type(self.act), "linear" if type(self.act) is nn.Identity else "autograd")
        self.loss_and_grad_out = _loss_and_grad(loss_fn)

    def _linear(self, name: str, h: torch.Tensor) -> torch.Tensor:
        return _affine(self.params[f"{name}.weight"], self.params.get(f"{name}.bias"), 1.0, h, None)[0]

    def _forward(self, x: torch.Tensor, keep: bool, per_model: bool) -> tuple[torch.Tensor, list]:
        x = x if per_model else x.expand(self.models, *x.shape)
        h, saved = self._linear("embed", x), [x]
        for l in range(self.depth):
            u, mean, inv_sigma = torch.native_layer_norm(h, h.shape[2:], None, None, self.eps)  # autograd's kernel
            if self.kind == "autograd" and keep:
                u.requires_grad_()
                with torch.enable_grad():
                    a = self.act(u)
            else:
                a = _activation(self.kind, u) if self.kind in _CLOSED_FORM else self.act(u)
            if keep:
                saved.append((h, mean, inv_sigma, u, a))
            w, b = self.params[f"blocks.{l}.2.weight"], self.params.get(f"blocks.{l}.2.bias")
            h = torch.baddbmm(h, a.detach(), w.mT)  # the residual sum in the product's accumulator
            if b is not None:
                h.add_(b.unsqueeze(1))
        if keep:
            saved.append(h)
        return self._linear("readout", h), saved

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        """Per-model losses on ``(x, y)`` (with ``per_model``, model ``i`` sees ``(x[i], y[i])``); their gradients
        are written into ``grads``."""
        out, saved = self._forward(x, keep=True, per_model=per_model)
        losses, d = self.loss_and_grad_out(out, y, per_model)

        def backward(name: str, d: torch.Tensor, h: torch.Tensor, inputs: bool = True) -> torch.Tensor | None:
            return _affine_backward(d, h, self.params[f"{name}.weight"], 1.0, self.grads[f"{name}.weight"],
                                    self.grads.get(f"{name}.bias"), inputs)

        dh = backward("readout", d.contiguous(), saved[-1])
        for l in reversed(range(self.depth)):
            h, mean, inv_sigma, u, a = saved[l + 1]
            g = backward(f"blocks.{l}.2", dh, a.detach())
            if self.kind in _CLOSED_FORM:
                _activation_backward(self.kind, g, a)  # g is the product's own output
            elif self.kind == "autograd":
                g = torch.autograd.grad(a, u, g)[0]
            dh = dh.add_(torch.ops.aten.native_layer_norm_backward(g, h, h.shape[2:], mean, inv_sigma, None, None,
                                                                   [True, False, False])[0])
        backward("embed", dh, saved[0], inputs=False)
        return losses

    def outputs(self, x: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        return self._forward(x, keep=False, per_model=per_model)[0]


def _residual(model: nn.Module) -> bool:
    """Whether ``model`` is exactly lmech's ``ResidualMLPNet`` (LayerNorms without affine parts, an activation
    ``_ResidualNet`` covers, the same in every block; linear layers; no buffers or hooks), which
    :class:`_ResidualNet` trains."""
    if type(model) is not ResidualMLPNet or not _plain(model):
        return False
    acts = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.Identity, *_ELEMENTWISE)
    first = model.blocks[0]
    return type(model.embed) is nn.Linear and type(model.readout) is nn.Linear and all(
        len(b) == 3 and type(b[0]) is nn.LayerNorm and not b[0].elementwise_affine and b[0].eps == first[0].eps
        and type(b[1]) in acts and repr(b[1]) == repr(first[1]) and not getattr(b[1], "inplace", False)
        and type(b[2]) is nn.Linear for b in model.blocks)


class _VmapNet:
    """Any model: the per-model losses by ``vmap`` over the model axis of ``functional_call``, their gradients by one
    reverse pass of ordinary autograd through those batched operations (each model's loss depends on its own slice
    only, so the gradient of their sum is every model's own gradient). Bit-equal to ``vmap(grad_and_value(...))``
    and faster without functorch's gradient transform: a 21-model depth-16 residual MLP step 24 -> 17 ms, a 30-model
    width-128 transformer step 284 -> 248 ms (bench/README.md, "Scheduling, and the CPU floor")."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor], grads: dict[str, torch.Tensor],
                 buffers: dict[str, torch.Tensor], loss_fn: LossFn) -> None:
        template = copy.deepcopy(model).to("meta")
        self.params, self.grads, self.buffers = params, grads, buffers

        def output(p: dict, b: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, (p, b), (x,))

        def loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return loss_fn(output(p, b, x), y)

        self.output = {per_model: vmap(output, in_dims=(0, 0, 0 if per_model else None)) for per_model in (False, True)}
        self.losses = {per_model: vmap(loss, in_dims=(0, 0) + ((0, 0) if per_model else (None, None)))
                       for per_model in (False, True)}

    def loss_and_grad(self, x: torch.Tensor, y: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        leaves = {n: p.detach().requires_grad_(True) for n, p in self.params.items()}  # views of the flat buffer
        with torch.enable_grad():
            losses = self.losses[per_model](leaves, self.buffers, x, y)
            grads = torch.autograd.grad(losses.sum(), list(leaves.values()))
        for n, g in zip(leaves, grads):
            self.grads[n].copy_(g)
        return losses.detach()

    def outputs(self, x: torch.Tensor, per_model: bool = False) -> torch.Tensor:
        return self.output[per_model](self.params, self.buffers, x)


class _FlatOptimizer:
    """``torch.optim.SGD`` (heavy-ball ``momentum``) or ``torch.optim.Adam`` for all models and parameters: the state
    updates are elementwise kernels on the flat buffers, the parameter update one kernel per parameter block with
    its per-model rates ``rates[name]`` of shape ``(models, 1, ...)`` (a flat rate buffer would cost a pass over
    memory as large as the parameters')."""

    def __init__(self, flat: torch.Tensor, grad: torch.Tensor, rates: dict[str, torch.Tensor],
                 shapes: dict[str, torch.Size], optimizer: str, momentum: float, betas: tuple[float, float],
                 eps: float) -> None:
        self.grad, self.rates = grad, rates
        self.optimizer, self.momentum, self.betas, self.eps = optimizer, momentum, betas, eps
        adam = optimizer == "adam"
        self.state = [torch.zeros_like(flat) for _ in range(2 if adam else int(bool(momentum)))]
        self.scratch = [torch.empty_like(flat) for _ in range(2 if adam else 0)]
        self.params, self.grads = _blocks(flat, shapes), _blocks(grad, shapes)
        self.state_blocks = [_blocks(b, shapes) for b in self.state]
        self.denoms, self.scaled = (_blocks(b, shapes) for b in self.scratch) if adam else ({}, {})

    def step(self, t: int, factor: float = 1.0) -> None:
        """Update ``t`` (0-based), every rate times ``factor`` (a learning-rate schedule's)."""
        if self.optimizer == "sgd":
            g = self.grads
            if self.momentum:
                if t == 0:
                    self.state[0].copy_(self.grad)
                else:
                    self.state[0].mul_(self.momentum).add_(self.grad)
                g = self.state_blocks[0]
            for n, p in self.params.items():
                p.addcmul_(self.rates[n], g[n], value=-factor)
            return
        (b1, b2), (m, v), denom = self.betas, self.state, self.scratch[0]
        m.lerp_(self.grad, 1 - b1)
        v.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        torch.sqrt(v, out=denom).div_((1 - b2 ** (t + 1)) ** 0.5).add_(self.eps)
        for n, p in self.params.items():
            scaled = torch.mul(self.state_blocks[0][n], self.rates[n], out=self.scaled[n])
            p.addcdiv_(scaled, self.denoms[n], value=-factor / (1 - b1 ** (t + 1)))

    def stop(self, i: int) -> None:
        """Freeze model ``i``: zero its parameters, gradient, state and rates (its updates are then exactly 0)."""
        for blocks in [self.params, self.grads, self.rates, *self.state_blocks]:
            for b in blocks.values():
                b[i].zero_()


def _blocks(flat: torch.Tensor, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
    """Views of ``flat`` as consecutive ``(models, *shape)`` blocks, one per parameter."""
    out, start = {}, 0
    for name, shape in shapes.items():
        out[name] = flat[start:start + shape.numel()].view(shape)
        start += shape.numel()
    return out


def _record_steps(steps: int, record_every: int, record_steps: Sequence[int] | None) -> list[int]:
    if record_steps is None:
        if record_every < 1:
            raise ValueError(f"record_every={record_every} must be >= 1")
        return sorted({*range(0, steps + 1, record_every), steps})
    when = sorted({int(s) for s in record_steps})
    if when and (when[0] < 0 or when[-1] > steps):
        raise ValueError(f"record_steps must lie in 0..steps={steps}; got {when[0]}..{when[-1]}")
    return when


def train_stacked(models: Sequence[nn.Module], loss_fn: LossFn, x: torch.Tensor, y: torch.Tensor, *,
                  lr: float | Sequence[float], steps: int, optimizer: str = "sgd", momentum: float = 0.0,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, batch_size: int | None = None,
                  seed: int | Sequence[int] = 0, record_every: int = 1, record_steps: Sequence[int] | None = None,
                  lr_scale: Mapping[str, float] | None = None, x_test: torch.Tensor | None = None,
                  y_test: torch.Tensor | None = None, accuracy: bool | None = None,
                  data_per_model: bool = False, lr_factor: Callable[[int], float] | None = None,
                  train_records: bool = True, on_measure: Callable[[int, dict[str, torch.Tensor], list[int]], None]
                  | None = None, measure_steps: Sequence[int] = ()) -> StackedRun:
    """Train ``models`` (same architecture, any init) together for ``steps`` updates on ``(x, y)``; their parameters
    are written back in place.

    ``optimizer`` is ``"sgd"`` (heavy-ball ``momentum`` as ``torch.optim.SGD``) or ``"adam"`` (as
    ``torch.optim.Adam``); every parameter is trained. ``lr`` is one value or one per model; ``lr_scale`` multiplies
    it per parameter name (missing names: 1), so parameter ``n`` of model ``i`` moves at ``lr[i] * lr_scale[n]``:
    optimizer parameter groups, e.g. muP's per-layer rates (:attr:`lmech.hyper.Parametrization.lr_scale`).
    Minibatches of ``batch_size`` follow lmech's engine (the order of a ``seed``; ``seed`` may be one per model, each
    model then drawing its own minibatches, gathered into one ``(models, batch, ...)`` step; ``None`` is full batch).
    Records (:class:`StackedRun`: full-set losses, accuracies when ``accuracy`` (by default
    for integer-label targets; one-hot rows count by their arg-max), the test set ``(x_test, y_test)`` if given) are
    taken at ``record_steps`` (in 0..steps), by default every
    ``record_every`` steps and at the last. ``data_per_model``: ``x, y`` (and ``x_test, y_test``) carry a leading
    model axis, model ``i`` training on ``(x[i], y[i])`` (e.g. independent draws of a dataset, one per model; the same
    number of rows for all). ``lr_factor(t)``: a learning-rate schedule, multiplying every rate at update ``t``.
    ``train_records=False`` records the test set only (a full pass over a large training set at every record step
    can cost more than the training itself: the quanta law's 2^18 examples). ``on_measure(step, params, live)`` is
    called at each of ``measure_steps`` with the stacked parameters (``(models, *shape)`` per name, the parameters
    after ``step`` updates) and the models that have not diverged: other measurements (probes) on those models.

    Divergence follows lmech's engine, per model: the minibatch loss is computed before each update, and a model
    whose loss is non-finite diverged at that step and stops there (its parameters as they were then; the other
    models go on, unaffected). A model whose minibatch losses stayed finite but whose recorded loss did not (e.g. at
    the last step, where no minibatch loss is computed) diverged at the first such recorded step.
    """
    if not train_records and x_test is None:
        raise ValueError("train_records=False needs a test set (x_test, y_test): nothing would be recorded")
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer={optimizer!r} is not supported; allowed values: 'sgd', 'adam'")
    if not models:
        raise ValueError("models is empty")
    if (x_test is None) != (y_test is None):
        raise ValueError("pass both x_test and y_test, or neither")
    archs = {tuple((n, p.shape, p.dtype) for n, p in m.named_parameters()) for m in models}
    if len(archs) > 1:
        raise ValueError("models must share one architecture (parameter names, shapes and dtypes); train mixed "
                         "shapes sequentially")
    count = len(models)
    if data_per_model and any(t is not None and (t.dim() < 2 or len(t) != count) for t in (x, y, x_test, y_test)):
        raise ValueError(f"data_per_model: x, y (and x_test, y_test) need a leading axis of {count} models")
    rows = x.shape[1] if data_per_model else len(x)
    lrs = np.asarray(lr, float)
    if lrs.ndim and lrs.shape != (count,):
        raise ValueError(f"lr has {lrs.size} values for {count} models; pass one value or one per model")
    lrs = np.broadcast_to(lrs, (count,))
    when = _record_steps(steps, record_every, record_steps)
    stacked, buffers = stack_module_state(list(models))
    scale = dict(lr_scale or {})
    unknown = sorted(set(scale) - set(stacked))
    if unknown:
        raise ValueError(f"lr_scale names {unknown} are not parameters of the models; names: {list(stacked)}")

    shapes = {n: p.shape for n, p in stacked.items()}
    flat = torch.cat([p.detach().reshape(-1) for p in stacked.values()])
    rates = {n: torch.as_tensor(lrs * scale.get(n, 1.0), dtype=flat.dtype, device=flat.device)
             .view(-1, *[1] * (len(shape) - 1)) for n, shape in shapes.items()}
    opt = _FlatOptimizer(flat, torch.zeros_like(flat), rates, shapes, optimizer, momentum, betas, eps)
    params = opt.params
    features = x.dim() == 2 + data_per_model  # rows of features: the hand-written paths apply
    ops = _stacked_chain(models) if features else None
    if ops is None and len({getattr(m, "alpha", 1.0) for m in models}) > 1:
        raise ValueError("models with different output multipliers (alpha) stack only as chains on 2-D inputs "
                         "(an MLP); train them sequentially")
    if ops is not None:
        net = _ChainNet(ops, params, opt.grads, loss_fn)
    elif features and _residual(models[0]):
        net = _ResidualNet(models[0], params, opt.grads, loss_fn)
    else:
        net = _VmapNet(models[0], params, opt.grads, buffers, loss_fn)
    evaluate = vmap(loss_fn, in_dims=(0, 0 if data_per_model else None))
    labels = accuracy if accuracy is not None else not (y.dtype.is_floating_point or y.dtype.is_complex)
    sets = ({"": (x, y)} if train_records else {}) | ({"test_": (x_test, y_test)} if x_test is not None else {})
    records = {f"{s}{k}": np.full((len(when), count), np.nan) for s in sets for k in ("loss",) + ("accuracy",) * labels}

    slot = {s: t for t, s in enumerate(when)}
    diverged = np.full(count, -1)
    frozen: dict[int, dict[str, torch.Tensor]] = {}
    if np.ndim(seed) and np.shape(seed) != (count,):
        raise ValueError(f"seed has {np.size(seed)} values for {count} models; pass one value or one per model")
    seeds = np.broadcast_to(np.asarray(seed, int), (count,))
    per_model = batch_size is not None and batch_size < rows and len(set(seeds.tolist())) > 1
    orders = [minibatches(rows, batch_size, int(s)) for s in (seeds if per_model else seeds[:1])]
    model_axis = torch.arange(count, device=x.device)[:, None]

    probe_steps = set(measure_steps)

    def measure(step: int) -> None:
        if on_measure is not None and step in probe_steps:
            with torch.enable_grad():  # measurements as in the sequential engine (training runs without autograd)
                on_measure(step, params, [i for i in range(count) if diverged[i] < 0])
        t = slot.get(step)
        if t is None:
            return
        for prefix, (xs, ys) in sets.items():
            out = net.outputs(xs, per_model=data_per_model)
            records[prefix + "loss"][t] = evaluate(out, ys).double().cpu().numpy()
            if labels:
                one_hot = ys.dim() > 1 + data_per_model
                hits = out.argmax(dim=2) == (ys.argmax(dim=-1) if one_hot else ys)
                records[prefix + "accuracy"][t] = hits.flatten(1).double().mean(dim=1).cpu().numpy()

    def compute(step: int) -> torch.Tensor:
        if per_model:
            idx = torch.stack([order() for order in orders])
            if data_per_model:
                return net.loss_and_grad(x[model_axis, idx], y[model_axis, idx], per_model=True)
            return net.loss_and_grad(x[idx], y[idx], per_model=True)
        idx = orders[0]()
        if data_per_model:
            return net.loss_and_grad(x if idx is None else x[:, idx], y if idx is None else y[:, idx], per_model=True)
        return net.loss_and_grad(x, y) if idx is None else net.loss_and_grad(x[idx], y[idx])

    def diverge(step: int, bad: torch.Tensor) -> bool:
        for i in torch.nonzero(bad).flatten().tolist():
            if diverged[i] < 0:  # keep model i's parameters as they are now, then freeze its slot
                diverged[i] = step
                frozen[i] = {n: p[i].clone() for n, p in params.items()}
                opt.stop(i)
        return False  # the other models go on

    with torch.no_grad():
        apply = opt.step if lr_factor is None else (lambda t: opt.step(t, lr_factor(t)))
        run_steps(steps, measure=measure, compute=compute, apply=apply, diverge=diverge)
        for i, model in enumerate(models):
            for n, p in model.named_parameters():
                p.copy_(frozen[i][n] if i in frozen else params[n][i])

    steps_arr = np.array(when, dtype=int)
    for i in range(count):
        if diverged[i] < 0:
            bad = np.any([~np.isfinite(records[prefix + "loss"][:, i]) for prefix in sets], axis=0)
            if bad.any():
                diverged[i] = steps_arr[bad.argmax()]
        if diverged[i] >= 0:
            for a in records.values():
                a[steps_arr > diverged[i], i] = np.nan
    return StackedRun(steps_arr, records.get("loss"), diverged, records.get("test_loss"), records.get("accuracy"),
                      records.get("test_accuracy"))

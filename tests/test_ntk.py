"""Empirical NTK: every method against an explicit per-sample Jacobian product, plus kernel statistics."""
import math

import numpy as np
import pytest
import torch
from torch import nn

import lmech.observables.ntk as ntk
from lmech.observables.ntk import empirical_ntk, kernel_distance, kernel_target_alignment, ntk_costs, ntk_eigenvalues
from lmech.systems import MLP, ConfigError, Dataset
from lmech.systems.networks import Dense, build_model

METHODS = ("jacobian", "ntk-vp", "structured", "auto")
F64 = torch.float64


def reference_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """(n1, n2, k, k) by a different route: one torch.autograd.grad per (sample, output), explicit J J^T."""
    params = [p for p in model.parameters() if p.requires_grad]

    def jacobian(x: torch.Tensor) -> torch.Tensor:
        out = model(x).reshape(x.shape[0], -1)
        rows = []
        for i in range(x.shape[0]):
            for a in range(out.shape[1]):
                grads = torch.autograd.grad(out[i, a], params, retain_graph=True, allow_unused=True)
                rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for g, p in zip(grads, params)]))
        return torch.stack(rows).reshape(x.shape[0], out.shape[1], -1)

    return torch.einsum("iap,jbp->ijab", jacobian(x1), jacobian(x2))


def assert_matches(kernel: torch.Tensor, ref: torch.Tensor, trace: bool = False, rtol: float = 1e-10) -> None:
    expected = ref.diagonal(dim1=2, dim2=3).sum(-1) if trace else ref.reshape(kernel.shape)
    assert kernel.dtype == ref.dtype and kernel.shape == expected.shape
    err = float((kernel - expected).abs().max() / expected.abs().max())
    assert err < rtol, err


def tanh_mlp(k: int) -> nn.Module:
    torch.manual_seed(k)
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 6), nn.Tanh(), nn.Linear(6, k)).to(F64)


@pytest.mark.parametrize("k", [1, 3])
def test_all_methods_match_per_sample_jacobian_loop_on_tanh_mlp(k):
    model = tanh_mlp(k)
    x1, x2 = torch.randn(6, 5, dtype=F64), torch.randn(4, 5, dtype=F64)
    ref_rect, ref_sym = reference_ntk(model, x1, x2), reference_ntk(model, x1, x1)
    for method in METHODS:
        rect = empirical_ntk(model, x1, x2, method=method)
        assert rect.shape == ((6, 4) if k == 1 else (6, 4, k, k))
        assert_matches(rect, ref_rect)
        assert_matches(empirical_ntk(model, x1, method=method), ref_sym)
        assert_matches(empirical_ntk(model, x1, x2, method=method, trace_outputs=True), ref_rect, trace=True)
    sym = empirical_ntk(model, x1, method="structured")
    torch.testing.assert_close(sym, sym.transpose(0, 1) if k == 1 else sym.permute(1, 0, 3, 2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_all_methods_match_reference_on_lmech_mlpnet_in_ntk_parameterization(bias):
    data = Dataset(np.zeros((4, 7)), np.zeros((4, 2)), np.zeros((0, 7)), np.zeros((0, 2)))
    arch = MLP(width=12, depth=2, activation="tanh", bias=bias, alpha=0.5, parameterization="ntk")
    model = build_model(arch, data, init="normal", init_scale=1.0, seed=1, dtype=F64)
    assert {layer.multiplier for layer in model.layers} == {1 / math.sqrt(7), 1 / math.sqrt(12)}
    if bias:
        with torch.no_grad():
            for layer in model.layers:
                layer.bias.normal_()
    x1, x2 = torch.randn(5, 7, dtype=F64), torch.randn(3, 7, dtype=F64)
    ref = reference_ntk(model, x1, x2)
    p = ntk._problem(model, x1, x2, False)
    assert len(p.affine) == 3 and all(layer.multiplier != 1 for layer in p.affine)
    for method in METHODS:
        assert_matches(empirical_ntk(model, x1, x2, method=method), ref)
        assert_matches(empirical_ntk(model, x1, x2, method=method, trace_outputs=True), ref, trace=True)


class Mixed(nn.Module):
    """Linear layers plus non-affine parameters (LayerNorm, an elementwise scale) for the structured fallback."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.norm, self.out = nn.Linear(4, 6), nn.LayerNorm(6), nn.Linear(6, 2)
        self.scale = nn.Parameter(torch.randn(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.norm(self.inp(x))) * self.scale)


def test_structured_falls_back_to_jacobian_for_non_affine_parameters():
    torch.manual_seed(2)
    model = Mixed().to(F64)
    with torch.no_grad():
        model.norm.weight.normal_()
    x1, x2 = torch.randn(5, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    p = ntk._problem(model, x1, x2, False)
    covered = {n for layer in p.affine for n in (layer.weight, layer.bias)}
    assert covered == {"inp.weight", "inp.bias", "out.weight", "out.bias"}  # norm.*, scale -> jacobian fallback
    ref = reference_ntk(model, x1, x2)
    for method in METHODS:
        assert_matches(empirical_ntk(model, x1, x2, method=method), ref)
    model.inp.weight.requires_grad_(False)  # frozen parameters are excluded from the NTK
    assert_matches(empirical_ntk(model, x1, x2, method="structured"), reference_ntk(model, x1, x2))


class SharedSeq(nn.Module):
    """A linear layer called twice on sequences ``(n, T, d)``, with an in-place op on its output."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 6), nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu_(self.a(x)) + torch.tanh(self.a(2 * x))
        return self.b(h).sum(1)


def test_structured_handles_sequences_reused_layers_and_inplace_ops():
    torch.manual_seed(3)
    model = SharedSeq().to(F64)
    x1, x2 = torch.randn(4, 3, 4, dtype=F64), torch.randn(3, 3, 4, dtype=F64)
    p = ntk._problem(model, x1, x2, False)
    assert [layer.rows for layer in p.affine] == [6, 3]  # 2 calls x 3 positions, 3 positions
    ref = reference_ntk(model, x1, x2)
    for method in ("jacobian", "structured"):  # vmap over tangents (ntk-vp) rejects relu_
        assert_matches(empirical_ntk(model, x1, x2, method=method), ref)


def test_linear_model_ntk_is_exactly_the_input_gram():
    torch.manual_seed(4)
    x1, x2 = torch.randn(6, 5, dtype=F64), torch.randn(4, 5, dtype=F64)
    gram = x1 @ x2.T
    linear = nn.Linear(5, 1, bias=False).to(F64)
    dense = Dense(5, 1, bias=True, multiplier=0.3).to(F64)
    for method in METHODS:
        torch.testing.assert_close(empirical_ntk(linear, x1, x2, method=method), gram, rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(empirical_ntk(dense, x1, x2, method=method), 0.09 * gram + 1, rtol=1e-13, atol=1e-13)


def test_memory_limited_and_chunked_paths_agree(monkeypatch):
    model = tanh_mlp(3)
    x1, x2 = torch.randn(7, 5, dtype=F64), torch.randn(5, 5, dtype=F64)
    ref_rect, ref_sym = reference_ntk(model, x1, x2), reference_ntk(model, x1, x1)
    monkeypatch.setattr(ntk, "MEMORY_BUDGET", 100)  # parameter groups, sample blocks, tangent chunks
    for method in ("jacobian", "ntk-vp", "structured"):
        assert_matches(empirical_ntk(model, x1, x2, method=method), ref_rect)
        assert_matches(empirical_ntk(model, x1, method=method), ref_sym)
        assert_matches(empirical_ntk(model, x1, method=method, trace_outputs=True), ref_sym, trace=True)
    monkeypatch.undo()
    for method in ("jacobian", "ntk-vp", "structured"):
        assert_matches(empirical_ntk(model, x1, x2, method=method, chunk_size=2), ref_rect)


def test_auto_chooses_structured_for_an_mlp(monkeypatch):
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
    x = torch.randn(30, 20)
    costs = ntk_costs(model, x)
    assert min(costs, key=lambda m: costs[m][0]) == "structured"
    assert costs["structured"][0] < costs["jacobian"][0] / 5 and costs["structured"][1] < costs["jacobian"][1]
    called = []
    structured = ntk._KERNELS["structured"]
    monkeypatch.setitem(ntk._KERNELS, "structured", lambda p, c: called.append(1) or structured(p, c))
    kernel = empirical_ntk(model, x)
    assert called == [1] and kernel.dtype == torch.float32 and kernel.shape == (30, 30)
    torch.testing.assert_close(kernel, empirical_ntk(model, x, method="jacobian"), rtol=1e-4, atol=1e-4)


def test_float64_model_casts_float32_inputs():
    model = tanh_mlp(1)
    x = torch.randn(4, 5)
    kernel = empirical_ntk(model, x, method="structured")
    assert kernel.dtype == F64
    assert_matches(kernel, reference_ntk(model, x.to(F64), x.to(F64)))


def test_ntk_eigenvalues_descending_and_kronecker_flattening():
    a = torch.tensor([[2.0, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 5.0]], dtype=F64)  # eigenvalues 5, 3, 1
    torch.testing.assert_close(ntk_eigenvalues(a), torch.tensor([5.0, 3.0, 1.0], dtype=F64))
    torch.testing.assert_close(ntk_eigenvalues(a, k=2), torch.tensor([5.0, 3.0], dtype=F64))
    b = torch.tensor([[1.0, 0.0], [0.0, 0.5]], dtype=F64)
    four = a[:, :, None, None] * b[None, None]  # Theta_ab(x_i, x_j) = a_ij b_ab: spectrum {5,3,1} x {1,0.5}
    torch.testing.assert_close(ntk_eigenvalues(four), torch.tensor([5.0, 3.0, 2.5, 1.5, 1.0, 0.5], dtype=F64))
    with pytest.raises(ConfigError, match="k=7"):
        ntk_eigenvalues(a, k=7)


def test_kernel_target_alignment_and_distance_hand_values():
    y = torch.tensor([1.0, -1.0], dtype=F64)
    assert kernel_target_alignment(torch.outer(y, y), y) == pytest.approx(1.0, abs=1e-15)
    assert kernel_target_alignment(torch.eye(2, dtype=F64), y) == pytest.approx(1 / math.sqrt(2), abs=1e-15)
    eye = torch.eye(2, dtype=F64)
    assert kernel_target_alignment(eye, eye) == pytest.approx(1.0, abs=1e-15)  # tr(Y^T K Y) / (||K|| ||Y^T Y||)
    four = eye[:, :, None, None] * eye[None, None]  # flattened to I_4, vec(Y) vec(Y)^T: 2 / (2 * 2)
    assert kernel_target_alignment(four, eye) == pytest.approx(0.5, abs=1e-15)
    k0 = torch.randn(3, 3, dtype=F64)
    assert kernel_distance(k0, k0) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(k0, 3 * k0) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(torch.diag(torch.tensor([1.0, 0.0])), torch.diag(torch.tensor([0.0, 1.0]))) == 1.0
    assert kernel_distance(eye, torch.ones(2, 2, dtype=F64)) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-15)


def test_bad_inputs_raise_config_errors_naming_the_field():
    model, x = tanh_mlp(1), torch.randn(3, 5, dtype=F64)
    with pytest.raises(ConfigError, match="method='exact'"):
        empirical_ntk(model, x, method="exact")
    with pytest.raises(ConfigError, match="chunk_size=0"):
        empirical_ntk(model, x, chunk_size=0)
    with pytest.raises(ConfigError, match="x2 samples"):
        empirical_ntk(model, x, torch.randn(3, 4, dtype=F64))
    with pytest.raises(ConfigError, match=r"model\.1 .*model\.eval\(\)"):
        empirical_ntk(nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3), nn.Linear(3, 1)), torch.randn(3, 5))
    with pytest.raises(ConfigError, match="k0"):
        kernel_distance(torch.eye(2), torch.eye(3))
    with pytest.raises(ConfigError, match="y of shape"):
        kernel_target_alignment(torch.eye(2), torch.ones(3))

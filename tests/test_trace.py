"""Hessian trace estimators against explicit traces: exactness of Hutch++ at full rank, unbiasedness, error decay."""
import numpy as np
import pytest
import torch

from lmech import half_mse
from lmech.observables.hessian import HessianOperator
from lmech.observables.trace import hessian_trace, trace_estimate
from lmech.systems import ConfigError


def _small_net():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2)).double()
    x, y = torch.randn(30, 4, dtype=torch.float64), torch.randn(30, 2, dtype=torch.float64)
    return model, x, y


def test_linear_regression_trace_is_closed_form_and_hutchpp_is_exact_at_full_rank():
    # half-MSE of a bias-free linear model W x with k outputs: H = I_k kron X^T X / n, tr H = k ||X||_F^2 / n
    torch.manual_seed(1)
    x, y = torch.randn(50, 5, dtype=torch.float64), torch.randn(50, 3, dtype=torch.float64)
    model = torch.nn.Linear(5, 3, bias=False).double()
    exact = 3 * float((x ** 2).sum()) / 50
    est = hessian_trace(model, half_mse, x, y, matvecs=3 * 15 + 3)  # m/3 = 16 >= P = 15: the sketch spans H
    assert est.value == pytest.approx(exact, rel=1e-10) and est.matvecs == 48


def test_hutchinson_is_unbiased_and_hutchpp_is_more_accurate_on_a_small_net():
    model, x, y = _small_net()
    exact = float(torch.trace(HessianOperator(model, half_mse, x, y).dense()))
    hutch = [hessian_trace(model, half_mse, x, y, matvecs=30, method="hutchinson", seed=s) for s in range(40)]
    values = np.array([h.value for h in hutch])
    # the mean of 40 independent estimates lies within 4 standard errors of the truth
    assert abs(values.mean() - exact) < 4 * values.std(ddof=1) / np.sqrt(len(values))
    # each estimate's reported standard error matches the spread across seeds (within a factor 2)
    assert 0.5 < np.mean([h.stderr for h in hutch]) / values.std(ddof=1) < 2
    plus = np.array([hessian_trace(model, half_mse, x, y, matvecs=30, seed=s).value for s in range(40)])
    assert np.sqrt(np.mean((plus - exact) ** 2)) < np.sqrt(np.mean((values - exact) ** 2))


def test_trace_estimate_on_a_matrix_and_bad_input():
    a = torch.diag(torch.arange(1.0, 21.0, dtype=torch.float64))
    est = trace_estimate(lambda v: a @ v, 20, a, matvecs=63)
    assert est.value == pytest.approx(210.0, rel=1e-12)
    with pytest.raises(ConfigError, match="method"):
        trace_estimate(lambda v: a @ v, 20, a, method="slq")
    with pytest.raises(ConfigError, match="matvecs"):
        trace_estimate(lambda v: a @ v, 20, a, matvecs=2)

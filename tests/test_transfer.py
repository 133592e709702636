"""The optimal learning rate of a loss-vs-lr grid (the transfer laws' measurement)."""
import numpy as np
import pytest

from lmech.laws._transfer import optimal_lr


def test_parabolic_optimum_is_exact_for_a_parabola_in_log_lr():
    lrs = 2.0 ** np.arange(-8, 0)
    losses = 0.3 * (np.log2(lrs) + 4.6) ** 2 + 1.0
    opt = optimal_lr(lrs, losses)
    assert opt.lr == pytest.approx(2 ** -4.6, rel=1e-9) and not opt.at_edge
    assert opt.loss == pytest.approx(losses.min())


def test_edge_and_diverged_runs():
    lrs = 2.0 ** np.arange(-8, 0)
    rising = np.arange(8.0)
    assert optimal_lr(lrs, rising).at_edge and optimal_lr(lrs, rising).lr == lrs[0]
    diverged_right = np.array([5, 4, 3, 2, 1.5, np.nan, np.inf, np.nan])  # the neighbour of the minimum diverged
    opt = optimal_lr(lrs, diverged_right)
    assert opt.lr == lrs[4] and not opt.at_edge
    assert np.isnan(optimal_lr(lrs, np.full(8, np.nan)).lr)
    with pytest.raises(ValueError, match="at least three"):
        optimal_lr(lrs[:2], rising[:2])

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


def _synthetic_runs(optimum, seeds=3, scatter=0.0, widths=(32, 64, 128, 256, 512)):
    """Width-transfer runs whose loss is a parabola in log2(lr) around ``optimum(scheme, width)`` (log2), each seed's
    optimum shifted by ``scatter * (seed - 1)`` octaves."""
    from lmech.laws import Runs
    from lmech.store.result import RunResult

    pairs = []
    for scheme in ("sp", "mup"):
        for w in widths:
            for seed in range(seeds):
                centre = optimum(scheme, w) + scatter * (seed - 1)
                for k in range(-14, 0):
                    run = RunResult(f"{scheme}{w}{seed}{k}", None, [])
                    run.records = [(1, "loss/train", 0.1 * (k - centre) ** 2 + 0.5 * 32 / w)]
                    pairs.append(({"scheme": scheme, "width": w, "log2_lr": float(k), "seed": seed}, run))
    return Runs(pairs)


def _width_transfer(runs):
    from lmech.laws._transfer import width_transfer

    t = width_transfer(runs, lambda r: r.records[-1][2], trained=1.0, trained_text="1", title="t", ylabel="loss")
    return {c.name.split(":")[0].split(" (")[0]: c for c in t.checks}


def _sp(w):
    return -5.0 - np.log2(w / 32)


def test_width_transfer_passes_a_settling_mup_optimum_and_an_sp_optimum_falling_as_one_over_width():
    checks = _width_transfer(_synthetic_runs(lambda s, w: _sp(w) if s == "sp" else -5.0 + 0.6 * 32 / w, scatter=0.1))
    assert all(c.ok for c in checks.values()), [c for c in checks.values() if not c.ok]
    assert checks["SP slope of log2(optimal lr) on log2(width)"].value == pytest.approx(-1.0, abs=1e-6)
    assert checks["seed spread of the optimum"].value == pytest.approx(0.1, abs=1e-6)


def test_width_transfer_fails_a_mup_optimum_that_moves_more_as_the_width_grows():
    """Within the factor-2 band and the per-doubling bound, but drifting faster at large width: not asymptotic."""
    checks = _width_transfer(_synthetic_runs(lambda s, w: _sp(w) if s == "sp" else -5.0 + 0.06 * np.log2(w / 32) ** 2))
    moving = next(c for n, c in checks.items() if n.startswith("muP optimum moves less as the width grows"))
    assert not moving.ok and moving.kind == "claim"
    assert checks["muP optimal-lr spread across widths, log2(max/min)"].ok


def test_width_transfer_is_inconclusive_when_the_seeds_scatter_more_than_the_claims_resolve():
    checks = _width_transfer(_synthetic_runs(lambda s, w: -5.0 - 0.1 * np.log2(w / 32), scatter=0.8))
    spread, fall = checks["seed spread of the optimum"], checks["SP optimum's fall across the widths in seed standard errors"]
    assert not spread.ok and spread.kind == "data" and spread.value == pytest.approx(0.8, abs=1e-6)
    assert not fall.ok and fall.kind == "data"  # a 0.4-octave fall against a 0.46-octave standard error

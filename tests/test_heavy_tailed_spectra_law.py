"""heavy-tailed-spectra: the stratified Spearman interval against scipy, and the law failing on the wrong sign."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from lmech.laws import FAIL, LAWS


def test_spearman_trend_matches_scipy_and_its_interval_covers_the_sign_of_a_true_trend():
    from lmech.laws._trend import spearman_trend

    rng = np.random.default_rng(0)
    x = np.repeat([1.0, 2.0, 4.0, 8.0], 5)
    y = -np.log(x) + 0.4 * rng.standard_normal(x.size)
    trend = spearman_trend(x, y)
    assert trend.rho == pytest.approx(spearmanr(x, y)[0], abs=1e-12)
    assert trend.low < trend.rho < trend.high < 0 and trend.same_sign(-1) and not trend.same_sign(+1)
    flat = spearman_trend(x, rng.standard_normal(x.size))  # no trend: the interval straddles 0
    assert flat.low < 0 < flat.high


def test_heavy_tailed_spectra_fails_when_alpha_is_predicted_to_rise_with_lr_over_batch(quick_runs, monkeypatch):
    from lmech.laws import heavy_tailed_spectra as module

    monkeypatch.setattr(module, "_SIGN", +1)
    verdict = LAWS["heavy-tailed-spectra"].evaluate(quick_runs["heavy-tailed-spectra"], "quick")
    assert verdict.status == FAIL and verdict.error > 0


def test_median_reversals_flags_only_a_reversal_beyond_the_seed_scatter():
    from lmech.laws._trend import median_reversals

    rng = np.random.default_rng(1)
    x = np.repeat([1.0, 2.0, 4.0, 8.0], 6)
    falling = np.repeat([6.0, 4.0, 5.0, 1.0], 6)  # 2 -> 4 rises by 1
    assert median_reversals(x, falling + 0.05 * rng.standard_normal(x.size), -1) == [(2.0, 4.0)]
    assert median_reversals(x, falling + 2.0 * rng.standard_normal(x.size), -1) == []  # inside the scatter
    assert median_reversals(x, -falling, +1) == [(2.0, 4.0)]

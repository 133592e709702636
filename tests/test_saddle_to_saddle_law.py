"""saddle-to-saddle: the escape-time formula against Saxe's closed form, and the law failing on a wrong exponent."""
import numpy as np
import pytest

from lmech.laws import FAIL, LAWS


def test_escape_time_is_where_the_closed_form_mode_has_half_its_drop():
    from lmech.laws import saddle_to_saddle as module
    from lmech.theory import saxe_mode

    s = LAWS["saddle-to-saddle"].setting("quick")
    m0 = module.initial_strength(s)
    for sv in s.singular_values:
        t = module.escape_time(s, sv)
        assert (sv - saxe_mode(t, sv, m0)) ** 2 == pytest.approx(sv ** 2 / 2, rel=1e-9)
        assert t * 2 * sv / np.log(1 / s.init_scale ** 2) == pytest.approx(1, abs=0.15)  # leading order


def test_saddle_to_saddle_fails_when_escape_times_scale_as_one_over_s_squared(quick_runs, monkeypatch):
    from lmech.laws import saddle_to_saddle as module

    law = LAWS["saddle-to-saddle"]
    right = module.escape_time
    monkeypatch.setattr(module, "escape_time", lambda s, sv: right(s, sv) * max(s.singular_values) / sv)
    verdict = law.evaluate(quick_runs["saddle-to-saddle"], "quick")
    assert verdict.status == FAIL and verdict.error > 0.5


def test_saddle_to_saddle_fails_when_a_steps_weight_change_is_not_rank_one(quick_runs):
    from conftest import distorted

    rng = np.random.default_rng(0)
    runs = distorted(quick_runs["saddle-to-saddle"], "param/",
                     lambda key, w: np.asarray(w) + 0.3 * rng.standard_normal(np.shape(w)))  # full-rank jitter
    verdict = LAWS["saddle-to-saddle"].evaluate(runs, "quick")
    (rank_one,) = [c for c in verdict.checks if c.name.startswith("rank one")]
    assert verdict.status == FAIL and not rank_one.ok and rank_one.value < 0.9

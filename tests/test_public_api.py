"""The public API is grouped and small: what a user calls at the root, helpers private, no near-duplicate names."""
import lmech


def _normal(name: str) -> str:
    return name.lower().replace("_", "").replace("isation", "ization").replace("ise", "ize")


def test_no_two_public_names_differ_only_by_case_or_spelling():
    seen: dict[str, str] = {}
    for name in lmech.__all__:
        assert _normal(name) not in seen, (name, seen.get(_normal(name)))
        seen[_normal(name)] = name
    assert all(hasattr(lmech, name) for name in lmech.__all__)


def test_root_has_the_user_entry_points_and_no_helpers():
    for name in ("train", "check", "sweep", "Tracker", "System", "MLP", "sharpness", "hessian_trace", "LocalPool",
                 "Ray", "Store", "Runs", "parametrize", "coord_check", "write_report"):
        assert name in lmech.__all__, name
    for helper in ("stable_hash", "run_id", "PROBES", "lanczos_tridiagonal", "Check", "Law", "snapshot",
                   "probe_from_dict", "stability_threshold", "nngp_ntk", "Sharpness", "Loss"):
        assert not hasattr(lmech, helper) or helper not in lmech.__all__, helper
        assert helper not in vars(lmech), helper
    assert lmech.probes.Sharpness is lmech.observables.probes.Sharpness
    assert lmech.theory.stability_threshold and lmech.laws.Check

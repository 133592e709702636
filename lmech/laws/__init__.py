"""Laws: executable claims of learning mechanics, and the atlas that registers them."""
from . import (conservation_laws, dln_saxe_modes, edge_of_stability, eigenlearning_curves, feature_ansatz,  # noqa: F401
               lazy_rich, nngp_monte_carlo, ntk_lazy_limit)  # (registration)
from .base import DIVERGED, FAIL, INCONCLUSIVE, OUT_OF_REGIME, PASS, Check, Experiment, Law, Panel, Series, Verdict
from .registry import LAWS, get_law, register

__all__ = ["DIVERGED", "FAIL", "INCONCLUSIVE", "OUT_OF_REGIME", "PASS", "Check", "Experiment", "Law", "Panel",
           "Series", "Verdict", "LAWS", "get_law", "register"]

"""Laws: executable claims of learning mechanics, and the atlas that registers them."""
from . import (batch_scaling, catapult, central_flow, conservation_laws, critical_batch, dln_saxe_modes,  # noqa: F401
               depth_transfer, edge_of_stability, eigenlearning_curves, feature_ansatz, grokking_weight_decay,
               heavy_tailed_spectra, instability_early_warning, kernel_scaling_exponent, lazy_rich, mup_coord_check,
               mup_transfer, neural_collapse, nngp_monte_carlo, ntk_ensemble_variance, ntk_lazy_limit, optimizer_eos,
               prior_teacher_calibration, quanta_multitask_parity, representation_convergence, saddle_to_saddle,
               scaling_collapse, scaling_extrapolation, transformer_transfer, variance_ood_detection)  # (registration)
from ..engine.experiment import Experiment
from ..report.verdict import DIVERGED, FAIL, INCONCLUSIVE, OUT_OF_REGIME, PASS, Check, Panel, Series, Verdict
from ..store.runs import Key, Runs
from .base import Law
from .registry import LAWS, get_law, register

__all__ = ["DIVERGED", "FAIL", "INCONCLUSIVE", "OUT_OF_REGIME", "PASS", "Check", "Experiment", "Key", "Law", "Panel",
           "Runs", "Series", "Verdict", "LAWS", "get_law", "register"]

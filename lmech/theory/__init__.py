"""Theory: first-principles predictions, computed blind to any measurement."""
from .collapse import (Collapse, Horizons, collapse_statistics, compute_optimal_horizons, normalized_curves,
                       power_law_features_loss)
from .central_flow import CentralFlowResult, central_flow, moving_average, sharpness_gradient, solve_lcp
from .deep_linear import learning_time, mode_ode, mode_trajectory, saxe_mode
from .ensemble import EnsemblePrediction, ensemble_predict, linearized_laplace_variance, ntk_predict
from .eigenlearning import (EigenlearningResult, SpectralExponents, circle_eigensystem, eigenlearning,
                           eigenlearning_from_kernel, kernel_eigensystem, solve_kappa, spectral_exponents)
from .kernels import nngp_ntk
from .linearized import eigenmode_descent_loss, kernel_regression, linearized_gd
from .loss_curves import MultiPowerFit, fit_loss_curve, fit_multi_power_law, multi_power_loss
from .parameterization import BranchScaling, LayerScaling, branch_scaling, layer_scaling
from .scaling import Extrapolation, ScalingFit, ScalingFitWarning, fit_scaling_law, leave_largest_out
from .stability import adam_threshold, catapult_time, gd_threshold, heavy_ball_threshold, stability_threshold

__all__ = ["CentralFlowResult", "central_flow", "moving_average", "sharpness_gradient", "solve_lcp",
           "nngp_ntk", "kernel_regression", "linearized_gd", "eigenmode_descent_loss", "EigenlearningResult", "eigenlearning",
           "eigenlearning_from_kernel", "kernel_eigensystem", "solve_kappa", "SpectralExponents", "circle_eigensystem",
           "spectral_exponents", "learning_time", "mode_ode",
           "mode_trajectory", "saxe_mode", "adam_threshold", "gd_threshold", "heavy_ball_threshold",
           "stability_threshold", "LayerScaling", "layer_scaling", "BranchScaling", "branch_scaling", "ScalingFit", "ScalingFitWarning",
           "Extrapolation", "leave_largest_out", "fit_scaling_law", "MultiPowerFit", "fit_loss_curve",
           "fit_multi_power_law", "multi_power_loss", "Collapse", "Horizons", "collapse_statistics",
           "compute_optimal_horizons", "normalized_curves", "power_law_features_loss", "EnsemblePrediction",
           "ensemble_predict", "linearized_laplace_variance", "ntk_predict", "catapult_time"]

"""Theory: first-principles predictions, computed blind to any measurement."""
from .deep_linear import learning_time, mode_ode, mode_trajectory, saxe_mode
from .eigenlearning import EigenlearningResult, eigenlearning, eigenlearning_from_kernel, kernel_eigensystem, solve_kappa
from .stability import adam_threshold, gd_threshold, heavy_ball_threshold

__all__ = ["EigenlearningResult", "eigenlearning", "eigenlearning_from_kernel", "kernel_eigensystem", "solve_kappa",
           "learning_time", "mode_ode", "mode_trajectory", "saxe_mode", "adam_threshold", "gd_threshold",
           "heavy_ball_threshold"]

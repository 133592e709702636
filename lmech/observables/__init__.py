"""Observables: coarse statistics of a model, usable on any ``nn.Module`` + loss + data, and as engine probes."""
from .conservation import balancedness, neuron_balance, relative_drift
from .coordinates import coordinate_sizes
from .density import SpectralDensity, hessian_density, spectral_density
from .features import agop, matrix_correlation, neural_feature_matrix, nfa_correlation, nfa_scores, readout_kernel, \
    representation_change
from .heavy_tails import powerlaw_fit, weight_spectrum
from .hessian import HessianOperator, hvp
from .instability import GradNormZScore, InstabilityMonitor, LossSpike, NonFinite
from .learning_curves import fourier_sparsity, grokking_times, plateaus, weight_norm
from .linear_net import end_to_end_map, end_to_end_singular_values
from .metrics import accuracy, gradient_norm, loss
from .neural_collapse import NeuralCollapseAccumulator, neural_collapse
from .noise import NoiseScaleEstimate, gradient_noise_scale, per_example_grads
from .ntk import empirical_ntk, kernel_distance, kernel_target_alignment, ntk_eigenvalues
from .preconditioner import preconditioner_diagonal
from .probes import (Conservation, CoordinateSizes, FeatureAnsatz, GradNorm, HessianDensity, HessianTrace, Kernels,
                     Loss, NoiseScale, Outputs, Parameters, Probe, RepresentationChange, Sharpness, SingularValues,
                     WeightChange)
from .schedule import Schedule
from .similarity import LinearCKA, cka, kernel_alignment, mutual_knn
from .sharpness import SharpnessTracker, layer_blocks, sharpness
from .trace import TraceEstimate, hessian_trace, trace_estimate
from .weights import weight_change

# the functions (and their warm-started or structured helpers); result types and probes stay in their modules
# (``lmech.observables.trace.TraceEstimate``, ``lmech.probes.Sharpness``) so no two public names differ by case only
INSTRUMENTS = [
    "loss", "accuracy", "gradient_norm", "weight_change", "sharpness", "SharpnessTracker", "layer_blocks",
    "preconditioner_diagonal", "HessianOperator", "hvp", "hessian_trace", "trace_estimate",
    "hessian_density", "spectral_density", "gradient_noise_scale", "per_example_grads", "empirical_ntk", "ntk_eigenvalues", "kernel_target_alignment", "kernel_distance",
    "readout_kernel", "agop", "neural_feature_matrix", "nfa_correlation", "nfa_scores", "matrix_correlation",
    "representation_change", "balancedness", "neuron_balance", "relative_drift", "end_to_end_map", "end_to_end_singular_values",
    "coordinate_sizes", "neural_collapse", "NeuralCollapseAccumulator", "powerlaw_fit", "weight_spectrum",
    "cka", "LinearCKA", "kernel_alignment", "mutual_knn", "grokking_times", "fourier_sparsity", "plateaus",
    "weight_norm", "InstabilityMonitor", "LossSpike", "GradNormZScore", "NonFinite",
]
__all__ = INSTRUMENTS + ["Schedule"]

"""Observables: coarse statistics of a model, usable on any ``nn.Module`` + loss + data, and as engine probes."""
from ._lanczos import EigenResult
from .conservation import balancedness, linear_layers, neuron_balance, relative_drift
from .density import SpectralDensity, hessian_density, lanczos_tridiagonal, spectral_density
from .features import (agop, matrix_correlation, neural_feature_matrix, nfa_correlation, nfa_scores, psd_power,
                       readout_kernel, representation_change)
from .hessian import HessianOperator, hvp
from .linear_net import end_to_end_map, end_to_end_singular_values
from .ntk import empirical_ntk, kernel_distance, kernel_target_alignment, ntk_costs, ntk_eigenvalues
from .metrics import accuracy, gradient_norm, loss
from .noise import NoiseScaleEstimate, gradient_noise_scale, per_example_grads
from .probes import (Conservation, CoordinateSizes, FeatureAnsatz, GradNorm, HessianDensity, HessianTrace,
                     Kernels, Loss, NoiseScale, Outputs, Parameters, Probe,
                     RepresentationChange, Sharpness, SingularValues, WeightChange, probe_from_dict)
from .coordinates import coordinate_sizes
from .preconditioner import preconditioner_diagonal
from .sharpness import SharpnessTracker, layer_blocks, sharpness
from .trace import TraceEstimate, hessian_trace, trace_estimate
from .weights import snapshot, weight_change

__all__ = [
    "EigenResult", "agop", "matrix_correlation", "neural_feature_matrix", "nfa_correlation", "nfa_scores", "psd_power",
    "readout_kernel", "representation_change", "balancedness", "linear_layers", "neuron_balance", "relative_drift",
    "HessianOperator", "hvp", "end_to_end_map", "end_to_end_singular_values", "accuracy", "gradient_norm", "loss",
    "Conservation", "GradNorm", "Loss", "Probe", "Outputs", "Kernels", "Parameters",
    "RepresentationChange", "FeatureAnsatz",
    "Sharpness", "SingularValues", "WeightChange", "probe_from_dict", "empirical_ntk", "kernel_distance",
    "kernel_target_alignment", "ntk_costs", "ntk_eigenvalues", "SharpnessTracker", "sharpness", "snapshot", "weight_change",
    "TraceEstimate", "hessian_trace", "trace_estimate", "SpectralDensity", "hessian_density", "lanczos_tridiagonal",
    "spectral_density", "NoiseScaleEstimate", "gradient_noise_scale", "per_example_grads", "NoiseScale", "HessianTrace", "HessianDensity",
    "CoordinateSizes", "coordinate_sizes", "preconditioner_diagonal", "layer_blocks",
]

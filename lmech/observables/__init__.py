"""Observables: coarse statistics of a model, usable on any ``nn.Module`` + loss + data, and as engine probes."""
from ._lanczos import EigenResult
from .conservation import balancedness, linear_layers, neuron_balance, relative_drift
from .hessian import HessianOperator, hvp
from .linear_net import end_to_end_map, end_to_end_singular_values
from .metrics import accuracy, gradient_norm, loss
from .probes import PROBES, Conservation, GradNorm, Loss, Probe, Sharpness, SingularValues, WeightChange, probe_from_dict
from .sharpness import SharpnessTracker, sharpness
from .weights import snapshot, weight_change

__all__ = [
    "EigenResult", "balancedness", "linear_layers", "neuron_balance", "relative_drift", "HessianOperator", "hvp",
    "end_to_end_map", "end_to_end_singular_values", "accuracy", "gradient_norm", "loss", "PROBES", "Conservation",
    "GradNorm", "Loss", "Probe", "Sharpness", "SingularValues", "WeightChange", "probe_from_dict",
    "SharpnessTracker", "sharpness", "snapshot", "weight_change",
]

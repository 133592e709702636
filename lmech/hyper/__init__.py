"""Hyperparameter theory in practice: parameterizations (SP, NTK, muP) of ordinary PyTorch models."""
from .parametrize import Parametrization, parametrize

__all__ = ["Parametrization", "parametrize"]

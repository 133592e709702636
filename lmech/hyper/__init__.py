"""Hyperparameter theory in practice: parameterizations (SP, NTK, muP) of ordinary PyTorch models,
and the coordinate check."""
from .coord_check import CoordCheck, coord_check
from .parametrize import Parametrization, parametrize

__all__ = ["CoordCheck", "coord_check", "Parametrization", "parametrize"]

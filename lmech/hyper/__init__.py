"""Hyperparameter theory in practice: parameterizations (SP, NTK, muP) of ordinary PyTorch models,
and the coordinate check."""
from .batched import StackedRun, train_stacked
from .coord_check import CoordCheck, coord_check
from .parametrize import Parametrization, parametrize

__all__ = ["StackedRun", "train_stacked", "CoordCheck", "coord_check", "Parametrization", "parametrize"]

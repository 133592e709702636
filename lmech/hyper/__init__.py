"""Hyperparameter theory applied to ordinary PyTorch models: parameterizations (SP, NTK, muP, depth-muP) as
re-initialization plus per-parameter optimizer groups. Execution (coordinate checks, batched sweeps) is in
:mod:`lmech.engine`."""
from .parametrize import Parametrization, parametrize

__all__ = ["Parametrization", "parametrize"]

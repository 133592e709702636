"""The infinite-width kernels of a system's MLP, in lmech's parameterization conventions."""
from __future__ import annotations

import numpy as np

from ..systems import MLP, ConfigError, LearningRule, System, Task
from ..systems.networks import activation_gain
from ..systems.system import Data
from ..theory.kernels import nngp_ntk


def analytic_kernels(system: System, x1: np.ndarray, x2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(nngp, ntk)`` of ``system``'s MLP at its initialization, as :func:`lmech.nngp_ntk` computes them.

    lmech's MLP has ``w_std = init_scale * gain`` (gain sqrt(2) for relu, else 1): NTK parameterization
    multiplies standard-normal weights by ``w_std/sqrt(fan_in)`` (neural-tangents' convention), SP draws
    them with standard deviation ``w_std/sqrt(fan_in)``; the output multiplier ``alpha`` scales both kernels
    by ``alpha^2``. Biases are trainable parameters initialized at zero, which ``nngp_ntk``'s ``b_std`` cannot
    express, so bias-free MLPs only.
    """
    arch = system.architecture
    if not isinstance(arch, MLP) or arch.bias:
        raise ConfigError("analytic kernels need architecture=MLP(..., bias=False); lmech's zero-initialized trainable "
                          "biases add an NTK term with no NNGP counterpart")
    w_std = weight_std(system)
    parameterization = "ntk" if arch.parameterization == "ntk" else "standard"
    nngp, ntk = nngp_ntk(x1, x2, depth=arch.depth, activation=arch.activation, w_std=w_std, b_std=0.0,
                         parameterization=parameterization, width=arch.width)
    return arch.alpha ** 2 * nngp, arch.alpha ** 2 * ntk


def weight_std(system: System) -> float:
    """``w_std`` of lmech's MLP init: ``init_scale`` times the gain (sqrt(2) for relu, else 1)."""
    return system.rule.init_scale * activation_gain(system.architecture.activation)


def ntk_sharpness(arch: MLP, data: Data) -> float:
    """``lambda0 = lambda_max(Theta) / n``: the initial sharpness of the 1/(2n) squared loss at infinite width, from
    the analytic NTK ``Theta`` on the training inputs (the Gauss-Newton part of the Hessian, ``J^T J / n``, has the
    nonzero eigenvalues of ``Theta / n``; the residual part vanishes as the width grows)."""
    probe = System(arch, data, Task("mse"), LearningRule(lr=1.0, steps=0))
    x = data.load().x_train
    return float(np.linalg.eigvalsh(analytic_kernels(probe, x)[1])[-1] / len(x))

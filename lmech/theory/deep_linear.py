"""Gradient-flow dynamics of deep linear networks from small, balanced, aligned init.

With whitened inputs and ``L = 1/(2n) sum ||y - W_L ... W_1 x||^2``, each singular mode of
``Sigma_yx = sum_a s_a u_a v_a^T`` evolves independently; its strength ``m`` obeys

    dm/dt = L m^(2 - 2/L) (s - m)        (t = eta * steps)

(Saxe, McClelland & Ganguli 2014, arXiv:1312.6120, Eqs. 5-7 for L = 2; the depth-L form follows from
balanced layers a_l = m^(1/L); Arora, Cohen & Hazan 2018, arXiv:1802.06509). For L = 2 it is the
logistic equation with the closed form ``m(t) = s e^{2st} / (e^{2st} - 1 + s/m0)``.
"""
from __future__ import annotations

import numpy as np
from scipy.integrate import quad, solve_ivp


def saxe_mode(t: np.ndarray | float, s: float, m0: float) -> np.ndarray:
    """Closed-form mode strength of a two-layer linear network, ``m(t) = s e^{2st} / (e^{2st} - 1 + s/m0)``."""
    t = np.asarray(t, dtype=float)
    if s == 0:
        return m0 / (1 + 2 * m0 * t)
    # divide through by e^{2st} so large t cannot overflow
    return s / (1 - np.exp(-2 * s * t) * (1 - s / m0))


def mode_ode(t: np.ndarray, s: float, m0: float, depth: int, rtol: float = 1e-10) -> np.ndarray:
    """Mode strength at times ``t`` from numerical integration of ``dm/dt = L m^(2-2/L) (s - m)``.

    Integrated in ``log m`` (``d log m/dt = L m^(1-2/L) (s - m)``), which stays well scaled
    across the many decades a small init spans.
    """
    t = np.asarray(t, dtype=float)
    if depth < 1:
        raise ValueError(f"depth={depth} must be >= 1")
    if m0 <= 0:
        raise ValueError(f"m0={m0} must be > 0")

    def rhs(_, z):
        m = np.exp(z)
        return depth * m ** (1 - 2 / depth) * (s - m)

    order = np.argsort(t)
    sol = solve_ivp(rhs, (0.0, float(t.max(initial=0.0))), [np.log(m0)], t_eval=t[order], method="LSODA",
                    rtol=rtol, atol=rtol * 1e-2)
    out = np.empty_like(t)
    out[order] = np.exp(sol.y[0])
    return out


def mode_trajectory(t: np.ndarray | float, s: float, m0: float, depth: int) -> np.ndarray:
    """Mode strength ``m(t)``: the closed form for ``depth == 2``, the integrated ODE otherwise."""
    return saxe_mode(t, s, m0) if depth == 2 else mode_ode(np.atleast_1d(t), s, m0, depth)


def learning_time(s: float, m0: float, depth: int, fraction: float = 0.5) -> float:
    """Gradient-flow time for a mode to grow from ``m0`` to ``fraction * s``.

    ``t = int_{m0}^{fraction s} dm / (L m^(2-2/L) (s - m))``; for ``L = 2``,
    ``t = (1/2s) ln[fraction (s - m0) / (m0 (1 - fraction))]`` (at fraction 1/2, ``(1/2s) ln((s - m0)/m0)``).
    Smaller ``s`` is learned later: ``t ~ 1/s`` (Saxe et al. 2014).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must be in (0, 1)")
    m_f = fraction * s
    if not 0 < m0 < m_f:
        raise ValueError(f"m0={m0} must be in (0, fraction * s = {m_f})")
    if depth == 2:
        return float(np.log(m_f * (s - m0) / (m0 * (s - m_f))) / (2 * s))
    # substitute m = exp(z) so the integrand is smooth on a log scale
    value, _ = quad(lambda z: np.exp(z) / (depth * np.exp(z) ** (2 - 2 / depth) * (s - np.exp(z))),
                    np.log(m0), np.log(m_f), epsabs=0, epsrel=1e-11, limit=200)
    return float(value)

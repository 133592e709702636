"""Infinite-width kernels of fully connected networks: the NNGP K and the NTK Theta by layer recursions.

Conventions follow neural-tangents ``stax.serial(Dense(W_std, b_std), act, ..., Dense(1, W_std, b_std))``
(Novak et al. 2020, arXiv:1912.02803; ``_src/stax/linear.py`` ``Dense``): input kernel ``x.x'/d``, ``Theta = 0``;
in NTK parameterization a dense layer maps ``K <- w^2 K + b^2`` and then ``Theta <- K + w^2 Theta``; a
nonlinearity maps ``K <- E[phi(u) phi(v)]`` and ``Theta <- Theta E[phi'(u) phi'(v)]`` with ``(u, v) ~ N(0, K)``
on the pair. Sources: Neal 1996; Williams 1997 (erf); Cho & Saul 2009 (arc-cosine kernel); Lee et al. 2018,
arXiv:1711.00165; Jacot et al. 2018, arXiv:1806.07572; Sohl-Dickstein et al. 2020, arXiv:2001.07301 (standard).
"""
from __future__ import annotations

import warnings
from typing import Callable

import numpy as np
from scipy.special import erf, roots_hermite

from ..systems._validate import ConfigError, one_of, positive_float, positive_int

_CLOSED_FORMS = ("relu", "erf", "linear")
_TWO_PI = 2 * np.pi
_BLOCK = 250_000  # pair-array elements per row block: bounds each of the few temporaries to ~2 MB
_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256)  # quadrature degrees tried by quadrature_degree=None
_AUTO_RTOL = 1e-6


def _tanh(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.tanh(z)
    return t, 1.0 - t * t


def _gelu(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    cdf = 0.5 * (1.0 + erf(z / np.sqrt(2.0)))
    return z * cdf, cdf + z * np.exp(-0.5 * z * z) / np.sqrt(2 * np.pi)


def _silu(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic sigmoid, without overflow
    return z * s, s * (1.0 + z * (1.0 - s))


_SMOOTH = {"tanh": _tanh, "gelu": _gelu, "silu": _silu}  # name -> z -> (phi(z), phi'(z))


def nngp_ntk(x1: np.ndarray, x2: np.ndarray | None = None, *, depth: int, activation: str | Callable = "relu",
             w_std: float = 1.0, b_std: float = 0.0, parameterization: str = "ntk", width: int | None = None,
             quadrature_degree: int | None = None, derivative: Callable | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(nngp, ntk)``, float64 arrays of shape ``(n1, n2)``, of an MLP with ``depth`` hidden layers and a readout.

    ``x2=None`` means ``x2 = x1`` (then only one triangle is computed and mirrored). Every dense layer, the
    scalar readout included, has weight std ``w_std`` and bias std ``b_std`` (``b_std = 0``: no bias, i.e.
    neural-tangents' ``b_std=None``). The recursions are those of neural-tangents' ``kernel_fn(x1, x2, ("nngp", "ntk"))``
    for that ``stax.serial`` (read from its source; this module does not call it).

    ``activation``: ``"relu"`` (arc-cosine kernel, ``theta = arctan2(sqrt(K11 K22 - K12^2), K12)``,
    ``E[phi phi] = (sqrt(K11 K22 - K12^2) + (pi - theta) K12)/2pi``, ``E[phi' phi'] = (pi - theta)/2pi``) and
    ``"erf"`` (``E[phi phi] = (2/pi) arcsin(2 K12/sqrt(P))``, ``E[phi' phi'] = (4/pi)/sqrt(P - 4 K12^2)``,
    ``P = (1 + 2 K11)(1 + 2 K22)``) in closed form; ``"linear"``; ``"tanh"``, ``"gelu"``, ``"silu"`` or any
    elementwise callable ``phi`` by 2-D Gauss-Hermite quadrature with physicists' nodes ``x`` and weights ``w``,
    ``E[f(u) f(v)] ~ (1/pi) sum_ij w_i w_j f(sqrt(2 K11) x_i) f(K12/sqrt(K11/2) x_i + sqrt(2(K22 - K12^2/K11)) x_j)``,
    ``deg^2`` evaluations per pair and layer. A callable's derivative is ``derivative`` if given; else torch
    autograd if ``phi`` maps a float64 torch tensor to a tensor (e.g. ``torch.tanh``); else a central
    difference (relative error ~1e-10).

    Quadrature accuracy is set by the pre-activation variance ``q`` (the nodes spread as ``sqrt(q deg)``
    while phi's features stay at scale 1). Max relative error of one layer's ``E[phi phi]``, ``E[phi' phi']``
    over correlations in [-0.9, 0.95], at degrees 16 / 24 / 32 / 48 / 64::

        tanh  q=0.25: 1e-6 7e-9 9e-11 1e-13 1e-14   q=1: 3e-3 3e-4 3e-5 8e-7 4e-8   q=4: 1e-1 5e-2 2e-2 3e-3 8e-4
        erf   q=0.25: 1e-8 1e-12 1e-14 ...          q=1: 1e-3 3e-5 9e-7 7e-10 5e-13  q=4: 2e-1 5e-2 1e-2 1e-3 1e-4
        gelu  q=0.25: 2e-11 2e-14 ...               q=1: 7e-5 2e-7 4e-10 1e-13 ...  q=4: 1e-1 1e-2 1e-3 2e-5 2e-7
        silu  q=0.25: 3e-12 2e-14 ...               q=1: 2e-6 1e-8 1e-10 1e-13 ...  q=4: 7e-3 6e-4 7e-5 2e-6 8e-8

    ``quadrature_degree=None`` (default) therefore picks, per layer, the smallest degree in
    ``16, 24, 32, 48, 64, 96, 128, 192, 256`` at which 1-D moments ``E[phi(u + s)^2]``, ``E[phi'(u + s)^2]``
    (``s = 0, sqrt(q)/2``) at the layer's largest ``q`` change by at most 1e-6 (relative) when the degree
    doubles. That estimate tracks the 2-D error within a factor ~4, so kernels come out to ~1e-6 relative (checked
    against degree 512 for tanh, gelu, silu and against erf's closed form, depth 3, ``w_std`` 0.8-2), and a
    RuntimeWarning says when even 256 does not reach it (a kink converges only algebraically: relu by
    quadrature errs ~1e-3, hence its closed form). The price is speed at large variances: tanh with
    ``w_std = 1.5`` (``q ~ 2.3``) needs degrees 128/96/64 in its three layers. An explicit
    ``quadrature_degree`` is used for every layer as given (the rule of neural-tangents'
    ``ElementwiseNumerical(deg=...)``, default 25 there).

    ``parameterization="standard"`` (neural-tangents ``Dense(parameterization="standard")``, weights
    ``N(0, w_std^2/fan_in)`` used unscaled, biases ``N(0, b_std^2)``): the NNGP is the same as in NTK
    parameterization, but each dense layer maps ``Theta <- fan_in K_in + w^2 Theta (+ 1 with a bias)``
    with ``K_in`` its input kernel (before ``K_in -> w^2 K_in + b^2``). ``fan_in`` is ``d`` for the first
    layer (a term ``x.x'``) and ``width`` (required) for the others, so the NTK is affine in the width:
    ``Theta_SP = width A + B`` with ``A, B`` independent of it.
    """
    x1 = np.asarray(x1, dtype=np.float64)
    x2 = x1 if x2 is None else np.asarray(x2, dtype=np.float64)  # identity marks the symmetric case
    if x1.ndim != 2 or x2.ndim != 2 or x1.shape[1] != x2.shape[1]:
        raise ConfigError(f"x1 {x1.shape} and x2 {x2.shape} must be 2-D (points, features) with the same number of features")
    positive_int("depth", depth, minimum=0)
    positive_float("w_std", w_std)
    positive_float("b_std", b_std, allow_zero=True)
    one_of("parameterization", parameterization, ("ntk", "standard"))
    if parameterization == "standard":
        if width is None:
            raise ConfigError("parameterization='standard' needs width= (the hidden width): its NTK grows linearly with it")
        positive_int("width", width)
    if quadrature_degree is not None:
        positive_int("quadrature_degree", quadrature_degree, minimum=2)
    if isinstance(activation, str):
        one_of("activation", activation, _CLOSED_FORMS + tuple(_SMOOTH))
    elif not callable(activation):
        raise ConfigError(f"activation={activation!r} must be a name or a callable phi")
    if derivative is not None and not callable(derivative):
        raise ConfigError(f"derivative={derivative!r} must be a callable phi' (or None)")
    elementwise = None if activation in _CLOSED_FORMS else _phi_and_derivative(activation, derivative)

    d = x1.shape[1]
    symmetric = x2 is x1
    q1, q2 = np.einsum("ij,ij->i", x1, x1) / d, np.einsum("ij,ij->i", x2, x2) / d
    if elementwise is None:
        degrees = [0] * depth
    elif quadrature_degree is None:
        degrees = _auto_degrees(elementwise, np.concatenate([q1, q2]), depth, w_std, b_std)
    else:
        degrees = [quadrature_degree] * depth
    nngp = np.matmul(x1 / d, x2.T)  # the input kernel; each row block is then mapped in place, layer by layer
    ntk = np.empty_like(nngp)
    per_pair = max(degrees, default=1) or 1  # quadrature holds deg values per pair
    step = max(1, _BLOCK // (max(len(x2), 1) * per_pair))
    for start in range(0, len(x1), step):
        rows = slice(start, start + step)
        cols = slice(start if symmetric else 0, None)  # K(x, x) is symmetric: compute the upper block triangle
        k, theta = nngp[rows, cols], ntk[rows, cols]
        k_out, theta_out = _recursion(k, theta, q1[rows], q2[cols], symmetric, depth, activation, elementwise, w_std,
                                      b_std, parameterization, width, d, degrees)
        for view, values in ((k, k_out), (theta, theta_out)):
            if values is not view:
                view[...] = values
    if symmetric:
        _mirror_upper(nngp)
        _mirror_upper(ntk)
    return nngp, ntk


def _mirror_upper(a: np.ndarray, tile: int = 256) -> None:
    """Copy the upper triangle of square ``a`` onto its lower one, tile by tile (20x faster than strips)."""
    n = len(a)
    for i in range(0, n, tile):
        for j in range(i + tile, n, tile):
            a[j:j + tile, i:i + tile] = a[i:i + tile, j:j + tile].T
        block = a[i:i + tile, i:i + tile]
        lower = np.tril_indices(len(block), -1)
        block[lower] = block.T[lower]


def _recursion(k: np.ndarray, theta: np.ndarray, q1: np.ndarray, q2: np.ndarray, on_diagonal: bool, depth: int,
               activation, elementwise, w: float, b: float, parameterization: str, width: int | None, d: int,
               degrees: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Run the layer recursion on one block of pairs: ``k`` (the input kernel, overwritten), ``theta`` (scratch for
    the NTK), ``q1``/``q2`` (the two diagonals); returns the final ``(k, theta)``, in those arrays where possible.

    ``on_diagonal``: the block's pairs ``(r, r)`` are a point with itself; their ``k`` is pinned to the tracked
    variance so rounding cannot open a spurious ~1e-8 angle between a point and itself.
    """
    diag = np.arange(len(q1)) if on_diagonal else None
    if diag is not None:
        k[diag, diag] = q1
    theta[...] = 0.0
    fan_in = d
    for layer in range(depth + 1):
        if parameterization == "standard":  # Theta <- fan_in K_in + [bias] + w^2 Theta, with K before the layer
            theta *= w * w
            theta += fan_in * k + (1.0 if b > 0 else 0.0)
        k *= w * w
        k += b * b
        q1, q2 = w * w * q1 + b * b, w * w * q2 + b * b
        if parameterization == "ntk":  # Theta <- K + w^2 Theta
            theta *= w * w
            theta += k
        if layer == depth:
            break
        k, dot, q1, q2 = _nonlinearity(activation, elementwise, k, q1, q2, degrees[layer])
        if diag is not None:
            k[diag, diag] = q1
        theta *= dot
        fan_in = width if parameterization == "standard" else fan_in
    return k, theta


def _nonlinearity(activation, elementwise, k: np.ndarray, q1: np.ndarray, q2: np.ndarray, degree: int):
    """``(E[phi phi], E[phi' phi'], E[phi(u)^2] for x1, for x2)`` under the Gaussian with the given covariance."""
    if activation == "linear":
        return k, np.ones_like(k), q1, q2
    if activation == "relu":  # arc-cosine kernel of degree 1, in place: this is the hot path
        sin = np.multiply.outer(q1, q2)
        sin -= k * k
        np.maximum(sin, 0.0, out=sin)  # rounding can make K11 K22 - K12^2 slightly negative: |cos| <= 1
        np.sqrt(sin, out=sin)  # sqrt(K11 K22 - K12^2) = sqrt(K11 K22) sin(theta)
        dot = np.arctan2(sin, k)  # theta in [0, pi]
        np.subtract(np.pi, dot, out=dot)
        dot *= 1 / _TWO_PI  # (pi - theta)/2pi = E[phi' phi']
        k *= dot
        sin *= 1 / _TWO_PI
        k += sin
        return k, dot, q1 / 2, q2 / 2
    if activation == "erf":
        p1, p2 = 1 + 2 * q1, 1 + 2 * q2
        p = np.multiply.outer(p1, p2)  # P = (1 + 2 K11)(1 + 2 K22)
        dot = k * k
        dot *= -4
        dot += p
        np.maximum(dot, 1e-300, out=dot)
        np.sqrt(dot, out=dot)
        np.divide(4 / np.pi, dot, out=dot)  # (4/pi)/sqrt(P - 4 K12^2) = E[phi' phi']
        np.sqrt(p, out=p)
        np.divide(k, p, out=k)
        k *= 2
        np.clip(k, -1.0, 1.0, out=k)
        np.arcsin(k, out=k)
        k *= 2 / np.pi  # (2/pi) arcsin(2 K12/sqrt(P)) = E[phi phi]
        return k, dot, (2 / np.pi) * np.arcsin(2 * q1 / p1), (2 / np.pi) * np.arcsin(2 * q2 / p2)
    return _gauss_hermite(elementwise, k, q1, q2, degree)


def _variances(elementwise: Callable, q: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """``E[phi(u)^2]`` and ``E[phi'(u)^2]`` for ``u ~ N(0, q)``, by 1-D Gauss-Hermite of the given degree."""
    nodes, weights = roots_hermite(degree)
    f, df = elementwise(np.sqrt(2 * np.asarray(q, dtype=np.float64))[..., None] * nodes)
    return (weights * f * f).sum(-1) / np.sqrt(np.pi), (weights * df * df).sum(-1) / np.sqrt(np.pi)


def _auto_degrees(elementwise: Callable, q: np.ndarray, depth: int, w: float, b: float) -> list[int]:
    """Per hidden layer, the smallest ladder degree whose 1-D moments at the largest ``q`` are stable to 1e-6.

    The moments are ``E[phi(u + s)^2]`` and ``E[phi'(u + s)^2]`` for ``s = 0`` and ``s = sqrt(q)/2``: the shift
    breaks the nodes' symmetry about 0, which would otherwise integrate a kink at 0 exactly in 1-D.
    """
    degrees = []
    for _ in range(depth):
        q = w * w * q + b * b
        top = q.max(initial=0.0)

        def moments(degree: int) -> np.ndarray:
            nodes, weights = roots_hermite(degree)
            u = np.sqrt(2 * top) * nodes + np.array([[0.0], [np.sqrt(top) / 2]])
            return np.concatenate([(weights * f * f).sum(-1) for f in elementwise(u)]) / np.sqrt(np.pi)
        for degree in _LADDER:
            coarse, fine = moments(degree), moments(2 * degree)
            if np.all(np.abs(coarse - fine) <= _AUTO_RTOL * np.abs(fine) + 1e-300):
                break
        else:
            warnings.warn(f"Gauss-Hermite quadrature of degree {degree} is not converged to {_AUTO_RTOL:g} at pre-activation "
                          f"variance {top:.3g} (relative change {np.max(np.abs(coarse - fine) / np.abs(fine)):.1e} on "
                          "doubling): a kink or a very wide pre-activation; expect kernel errors of about that size",
                          RuntimeWarning, stacklevel=3)
        degrees.append(degree)
        q = _variances(elementwise, q, degree)[0]
    return degrees


def _phi_and_derivative(activation, derivative: Callable | None) -> Callable:
    """``z -> (phi(z), phi'(z))`` for a named smooth activation or a user callable (see ``nngp_ntk``)."""
    if isinstance(activation, str):
        return _SMOOTH[activation]
    phi = activation
    if derivative is not None:
        return lambda z: (np.asarray(phi(z), dtype=np.float64), np.asarray(derivative(z), dtype=np.float64))
    if _differentiable_in_torch(phi):
        return lambda z: _torch_phi_and_derivative(phi, z)

    def central_difference(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = 1e-5 * (1 + np.abs(z))
        return np.asarray(phi(z), dtype=np.float64), (phi(z + h) - phi(z - h)) / (2 * h)
    return central_difference


def _differentiable_in_torch(phi: Callable) -> bool:
    try:
        import torch
        z = torch.tensor([-1.3, 0.2, 0.7], dtype=torch.float64, requires_grad=True)
        out = phi(z)
    except Exception:  # a NumPy-only phi refuses a tensor that requires grad
        return False
    return isinstance(out, torch.Tensor) and out.shape == z.shape and out.requires_grad


def _torch_phi_and_derivative(phi: Callable, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import torch
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # blocks are cache-sized: thread start-up costs more than it saves (10x on 2 busy cores)
    try:
        zt = torch.from_numpy(np.ascontiguousarray(z)).requires_grad_(True)
        out = phi(zt)
        (grad,) = torch.autograd.grad(out.sum(), zt)  # phi is elementwise: the gradient of the sum is phi'(z)
    finally:
        torch.set_num_threads(threads)
    return out.detach().numpy(), grad.numpy()


def _gauss_hermite(elementwise: Callable, k: np.ndarray, q1: np.ndarray, q2: np.ndarray, degree: int):
    """2-D Gauss-Hermite (physicists' nodes x, weights w) for ``E[f(u) f(v)]``, f = phi and phi'.

    ``u_i = sqrt(2 K11) x_i``, ``v_ij = (K12/sqrt(K11/2)) x_i + sqrt(2(K22 - K12^2/K11)) x_j``; the loop runs
    over ``j`` only, with all pairs and ``i`` vectorized: ``sum_j w_j f(v_ij)`` is accumulated, then contracted
    with ``w_i f(u_i)`` by one batched matrix product.
    """
    nodes, weights = roots_hermite(degree)
    q1s = np.maximum(q1, 1e-300)[:, None]
    f_u, df_u = elementwise(np.sqrt(2 * q1s) * nodes)  # (rows, deg)
    slope = (k / np.sqrt(q1s / 2))[:, :, None] * nodes  # (rows, cols, deg): the x_i part of v
    spread = np.sqrt(np.maximum(2 * (q2[None, :] - k * k / q1s), 0.0))[:, :, None]  # coefficient of x_j
    acc_f, acc_df = np.zeros_like(slope), np.zeros_like(slope)
    v = np.empty_like(slope)
    for xj, wj in zip(nodes, weights):
        np.multiply(spread, xj, out=v)
        v += slope
        f_v, df_v = elementwise(v)
        f_v *= wj
        acc_f += f_v
        df_v *= wj
        acc_df += df_v
    k_new = np.matmul(acc_f, (weights * f_u)[:, :, None])[..., 0] / np.pi
    dot = np.matmul(acc_df, (weights * df_u)[:, :, None])[..., 0] / np.pi

    return k_new, dot, _variances(elementwise, q1, degree)[0], _variances(elementwise, q2, degree)[0]

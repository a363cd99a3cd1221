"""Gaussian expectations of an activation: E[g(z)] for z ~ N(mu, s^2).

The theory of the backward pass needs, for every activation f and every layer,

    E[f], E[f'], E[f'^2], E[f f'], E[f^2]      under z ~ N(mu, s^2)

(:func:`expectations`), and the cross moment E[g(z_1) h(z_2)] of two units of one layer
whose pre-activations share a common part (:func:`bivariate`).

Methods
-------
* Piecewise-linear activations (``identity``, ``relu``, ``leaky_relu``) use closed forms
  in the standard normal pdf phi and cdf Phi (:func:`piecewise_linear`); quadrature on a
  kink would lose digits.
* Smooth activations use Gauss-Hermite quadrature (``numpy.polynomial.hermite_e``,
  probabilists' weight e^{-x^2/2}):  E[g(z)] ~= sum_i w_i g(mu + s x_i) / sqrt(2 pi).
  When s is wide compared with the activation's unit scale (s > ``GRID_ABOVE``), the
  nodes are too sparse near the origin where tanh' and sigmoid' live, so composite
  8-point Gauss-Legendre on panels over mu +- 12 s is used instead (:func:`panel_nodes`):
  unit panels on |z| <= ``FINE_RADIUS``, panels growing with |z| beyond, none wider than
  s/2.  Its cost does not grow with s (a fixed-step grid's would).
  Assumption: g varies on the unit scale only for |z| <= 40 and on the scale of |z|
  beyond, as every activation of deltaprop (and their products and powers) does.
* Both rules add mirror pairs first where the nodes are symmetric about mu (always for
  Gauss-Hermite, at mu = 0 for the panels), so an expectation that vanishes by symmetry
  (E[f], E[f f'] of an odd f at mu = 0) is exactly 0.

All functions accept scalar or array ``mu`` and ``var`` (broadcast together) and return
NumPy arrays of that shape.  NumPy only: the theory is host-side arithmetic.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import activations as _act

__all__ = ["expect", "expectations", "piecewise_linear", "bivariate", "numpy_pair", "phi",
           "Phi", "NAMES", "GRID_ABOVE", "FINE_RADIUS", "SLOPES", "hermite_nodes", "panel_nodes"]

#: the five expectations of :func:`expectations`, in order
NAMES = ("f", "df", "df2", "fdf", "f2")
#: s above which quadrature switches from Gauss-Hermite to Gauss-Legendre panels
GRID_ABOVE = 1.0
#: |z| within which the panels are of unit width (where the activations bend)
FINE_RADIUS = 40.0
#: (alpha, beta) of each piecewise-linear activation: f(z) = alpha z (z < 0), beta z (z >= 0)
SLOPES = {"identity": (1.0, 1.0), "relu": (0.0, 1.0), "leaky_relu": (_act.LEAKY_SLOPE, 1.0)}


def phi(x):
    """Standard normal pdf phi(x) = exp(-x^2/2) / sqrt(2 pi)."""
    return np.exp(-0.5 * np.square(x)) / math.sqrt(2 * math.pi)


def Phi(x):
    """Standard normal cdf Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return 0.5 * (1.0 + np.vectorize(math.erf, otypes=[float])(np.asarray(x) / math.sqrt(2)))


@lru_cache(maxsize=8)
def hermite_nodes(n):
    """Nodes x and weights w of n-point Gauss-Hermite quadrature for the standard normal:
    E[g(x)] ~= sum_i w_i g(x_i), x ~ N(0, 1) (weights already divided by sqrt(2 pi))."""
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2 * math.pi)


def _check_var(var):
    """ValueError with the first offending value unless every var is >= 0 (not NaN)."""
    var = np.asarray(var, float)
    bad = ~(var >= 0)
    if np.any(bad):
        raise ValueError(f"var (the variance of z) must be >= 0, got {var[bad].flat[0]}")


def expect(g, mu, var, n=101):
    """E[g(z)] for z ~ N(mu, var), g a vectorised NumPy function of z.

    Gauss-Hermite with ``n`` nodes where sqrt(var) <= GRID_ABOVE, else Gauss-Legendre
    panels on mu +- 12 s (:func:`panel_nodes`; ~1e-15 relative for the activations' f^2 at
    any s).  ``var = 0`` gives g(mu).
    """
    mu, var = np.broadcast_arrays(np.asarray(mu, float), np.asarray(var, float))
    shape = mu.shape
    mu, var = mu.reshape(-1), var.reshape(-1)
    _check_var(var)
    s = np.sqrt(var)
    out = np.empty(mu.shape)
    narrow = s <= GRID_ABOVE
    if np.any(narrow):
        x, w = hermite_nodes(n)
        out[narrow] = _symmetric_sum(g(mu[narrow][..., None] + s[narrow][..., None] * x), w)
    for i in np.nonzero(~narrow)[0]:
        z, w = panel_nodes(float(mu[i]), float(s[i]))
        out[i] = _symmetric_sum(g(z), w) if mu[i] == 0 else g(z) @ w
    return out.reshape(shape)


_LEGENDRE = np.polynomial.legendre.leggauss(8)


def panel_nodes(mu, s):
    """Nodes z and weights w with sum_i w_i g(z_i) ~= E[g(z)], z ~ N(mu, s^2), s > 0.

    Composite 8-point Gauss-Legendre on [mu - 12 s, mu + 12 s], cut at the integers of
    |z| <= FINE_RADIUS (the activations' bends, and the kink of relu at 0), at
    +-FINE_RADIUS 1.15^j beyond, and every s/2 from mu: about 250 panels at any s.  At
    mu = 0 every cut has its mirror image, so the nodes are symmetric about mu.
    """
    lo, hi = mu - 12 * s, mu + 12 * s
    far = max(abs(lo), abs(hi), FINE_RADIUS)
    grow = FINE_RADIUS * 1.15 ** np.arange(math.ceil(math.log(far / FINE_RADIUS, 1.15)) + 1)
    cuts = np.concatenate([np.arange(-FINE_RADIUS, FINE_RADIUS + 1), grow, -grow,
                           mu + 0.5 * s * np.arange(-24, 25)])
    cuts = np.unique(np.clip(cuts, lo, hi))
    mid, half = (cuts[1:] + cuts[:-1]) / 2, (cuts[1:] - cuts[:-1]) / 2
    x, w = _LEGENDRE
    z = (mid[:, None] + half[:, None] * x).reshape(-1)
    return z, (half[:, None] * w).reshape(-1) * phi((z - mu) / s) / s


def _symmetric_sum(v, w):
    """sum_i w_i v_i over nodes symmetric about mu, mirror pairs added first.

    ``v[..., i]`` and ``v[..., -1 - i]`` are g at mu + s x and mu - s x (nodes and weights
    exactly symmetric), so for g odd about mu the pairs cancel exactly and E[g] is 0, not
    a rounding residue of size eps * E[|g|] left by the summation order (E[f f'] of tanh
    at mean 0 came out as ~1e-18).
    """
    h = v.shape[-1] // 2
    total = (v[..., :h] + v[..., : -h - 1 : -1]) @ w[:h]
    return total + v[..., h] * w[h] if v.shape[-1] % 2 else total


def piecewise_linear(slopes, mu, var):
    """Closed forms for f(z) = alpha z (z < 0), beta z (z > 0):  identity, relu, leaky relu.

    With t = mu / s, P = Phi(t), p = phi(t):

        E[z; z>0]   = mu P + s p            E[z^2; z>0] = (mu^2 + s^2) P + mu s p
        E[f]   = beta E[z; z>0] + alpha (mu - E[z; z>0])
        E[f']  = beta P + alpha (1 - P)     E[f'^2] = beta^2 P + alpha^2 (1 - P)
        E[f^2] = beta^2 E[z^2; z>0] + alpha^2 (mu^2 + s^2 - E[z^2; z>0])
        E[f f'] = beta^2 E[z; z>0] + alpha^2 (mu - E[z; z>0])

    Returns a dict keyed by :data:`NAMES`.
    """
    alpha, beta = slopes
    mu, var = np.broadcast_arrays(np.asarray(mu, float), np.asarray(var, float))
    s = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(s > 0, mu / np.where(s > 0, s, 1.0), np.sign(mu) * np.inf)
    P = np.where(s > 0, Phi(np.where(np.isfinite(t), t, 0.0)), (mu > 0).astype(float))
    P = np.where(np.isinf(t) & (t > 0), 1.0, np.where(np.isinf(t) & (t < 0), 0.0, P))
    p = np.where(np.isfinite(t), phi(np.where(np.isfinite(t), t, 0.0)), 0.0)
    e1 = mu * P + s * p
    e2 = (mu**2 + var) * P + mu * s * p
    return {
        "f": beta * e1 + alpha * (mu - e1),
        "df": beta * P + alpha * (1 - P),
        "df2": beta**2 * P + alpha**2 * (1 - P),
        "fdf": beta**2 * e1 + alpha**2 * (mu - e1),
        "f2": beta**2 * e2 + alpha**2 * (mu**2 + var - e2),
    }


def numpy_pair(f):
    """(activation, f, f') with f(z) and f'(z) vectorised NumPy functions of z alone (the
    integrands of :func:`expect`); ``ValueError`` for a non-elementwise activation."""
    act = _act.get(f)
    if not act.elementwise:
        raise ValueError(f"{act.name} is not elementwise: no Gaussian expectations per unit")

    def fz(z):
        return act.f(z, np)

    def dfz(z):
        return act.df(z, act.f(z, np), np)

    return act, fz, dfz


def expectations(f, mu, var, n=101) -> dict:
    """E[f], E[f'], E[f'^2], E[f f'], E[f^2] for z ~ N(mu, var).

    Parameters
    ----------
    f : str or Activation
        An elementwise activation.
    mu, var : float or array
        Mean and variance of the pre-activation z.
    n : int
        Gauss-Hermite nodes (smooth activations).

    Returns
    -------
    dict
        Keys ``"f", "df", "df2", "fdf", "f2"``, each an array shaped like ``mu`` and ``var``.
        Closed forms for identity, relu and leaky relu; quadrature otherwise.
    """
    _check_var(var)
    act, fz, dfz = numpy_pair(f)
    if act.name in SLOPES:
        return piecewise_linear(SLOPES[act.name], mu, var)
    g = {"f": fz, "df": dfz, "df2": lambda z: dfz(z) ** 2, "fdf": lambda z: fz(z) * dfz(z),
         "f2": lambda z: fz(z) ** 2}
    return {k: expect(g[k], mu, var, n) for k in NAMES}


def bivariate(g, h, mu, q, c, n=61):
    """E[g(z_1) h(z_2)] for two units with means mu, variances q and covariance c.

    Model: z_i = mu + sqrt(c) u + sqrt(q - c) e_i with u, e_1, e_2 i.i.d. N(0, 1), so

        E[g(z_1) h(z_2)] = E_u[ E_e[g(mu + sqrt(c) u + sqrt(q-c) e)] E_e[h(...)] ]

    (nested Gauss-Hermite).  Assumes 0 <= c <= q; c = 0 gives E[g] E[h].  ``g`` and ``h``
    are vectorised NumPy functions; mu, q, c are scalars.
    """
    c = float(min(max(c, 0.0), q))
    x, w = hermite_nodes(n)
    inner = mu + math.sqrt(c) * x
    return float((expect(g, inner, q - c) * expect(h, inner, q - c)) @ w)

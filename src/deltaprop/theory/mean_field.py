"""Mean-field (gradient independence) theory of E[delta^2]: chi, depth scale, edge of chaos.

Assumptions: mu_w = 0; weights W[l+1] treated as independent of the forward pass when
propagating delta backwards (the gradient-independence assumption of Schoenholz et al.
2017), pre-activations z[l] ~ N(m_l, q_l) from :mod:`.forward`.

Scaling convention (loud): ``var_w`` is the raw variance of one entry of W[l+1].  Then

    E[delta[l]^2] = chi_l E[delta[l+1]^2],    chi_l = n_{l+1} var_w[l+1] E[f'(z[l])^2].

In the mean-field parametrisation var_w[l+1] = sigma_w^2 / n_l, so
chi_l = sigma_w^2 (n_{l+1} / n_l) E[f'(z[l])^2], which is sigma_w^2 E[f'^2] for equal
widths.  (Written with the seed's i.i.d. variance sigma_w^2 per entry, chi = n_{l+1}
sigma_w^2 E[f'^2]: the same number.)

Over many layers at the fixed point q*, E[delta^2] ~ exp(-(L - l) / xi) with
xi = -1 / log chi: xi > 0 vanishing, xi < 0 exploding (|xi| layers per factor e), infinite at
chi = 1, the edge of chaos.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations as _act
from .gaussian import expectations, numpy_pair

__all__ = ["chi", "mean_field_backward", "fixed_point", "chi_at_fixed_point", "depth_scale",
           "edge_of_chaos"]


def chi(sigma_w2, q, f, mean=0.0, width_ratio=1.0):
    """chi = sigma_w^2 (n_{l+1} / n_l) E[f'(z)^2],  z ~ N(mean, q)  (mean-field scaling)."""
    return sigma_w2 * width_ratio * float(expectations(f, mean, q)["df2"])


def mean_field_backward(sizes, E_df2, var_w, out_second):
    """E[delta[l]^2] for l = L..1: E[delta[l]^2] = n_{l+1} var_w[l+1] E[f'(z[l])^2] E[delta[l+1]^2].

    Parameters
    ----------
    sizes : [n_0, ..., n_L]
    E_df2 : sequence indexed by layer (slot 0 unused): E[f_l'(z[l])^2].
    var_w : sequence indexed by layer: raw per-entry variance of W[l].
    out_second : E[delta[L]^2].

    Returns
    -------
    list (slot l = layer l, slot 0 None)
    """
    L = len(sizes) - 1
    second = [None] * (L + 1)
    second[L] = float(out_second)
    for l in range(L - 1, 0, -1):
        second[l] = sizes[l + 1] * var_w[l + 1] * E_df2[l] * second[l + 1]
    return second


def fixed_point(sigma_w2, sigma_b2, f, q_max=1e12):
    """q* = sigma_w^2 E[f(z)^2] + sigma_b^2, z ~ N(0, q*) (mu_w = 0, zero-mean biases).

    Solved as the root of h(q) = sigma_w^2 E[f^2](q) + sigma_b^2 - q with
    ``scipy.optimize.brentq`` (fast even at the edge of chaos, where iterating the map
    converges only algebraically).  With sigma_b^2 = 0 and f(0) = 0, q* = 0 is the stable
    fixed point when sigma_w^2 f'(0)^2 <= 1 and is returned; otherwise the positive root.
    Returns ``math.inf`` if h stays positive up to ``q_max`` (e.g. relu, sigma_w^2 >= 2).
    """
    from scipy.optimize import brentq

    act, fz, dfz = numpy_pair(f)
    f0, df0 = float(fz(np.zeros(1))[0]), float(dfz(np.zeros(1))[0])

    def h(q):
        return sigma_w2 * float(expectations(act, 0.0, q)["f2"]) + sigma_b2 - q

    if sigma_b2 == 0 and f0 == 0 and sigma_w2 * df0**2 <= 1:
        return 0.0
    lo, hi = 1e-12, 1.0
    while h(hi) > 0:
        hi *= 4
        if hi > q_max:
            return math.inf
    return brentq(h, lo, hi, xtol=1e-14, rtol=1e-13)


def chi_at_fixed_point(sigma_w2, sigma_b2, f):
    """chi at q*: sigma_w^2 E[f'(z)^2], z ~ N(0, q*).  For relu chi = sigma_w^2 / 2 for any q."""
    act = _act.get(f)
    if act.name in ("relu", "leaky_relu", "identity"):
        return chi(sigma_w2, 1.0, act)  # E[f'^2] does not depend on q at mean 0
    q = fixed_point(sigma_w2, sigma_b2, act)
    return chi(sigma_w2, q, act) if math.isfinite(q) else 0.0


def depth_scale(chi_value):
    """xi = -1 / log chi: layers per factor e of E[delta^2] (negative: growth; inf at chi=1)."""
    if chi_value <= 0:
        return 0.0
    lg = math.log(chi_value)
    return math.inf if lg == 0 else -1.0 / lg


def edge_of_chaos(sigma_b2, f, lo=0.05, hi=20.0):
    """sigma_w^2 with chi(q*(sigma_w^2, sigma_b^2)) = 1, by ``scipy.optimize.brentq``.

    For tanh with sigma_b^2 = 0 this is 1; relu (any sigma_b^2) gives 2.
    """
    from scipy.optimize import brentq

    act = _act.get(f)
    g = lambda s: chi_at_fixed_point(s, sigma_b2, act) - 1.0  # noqa: E731
    if g(lo) * g(hi) > 0:
        raise ValueError(f"no edge of chaos for {act.name} with sigma_b^2 = {sigma_b2} "
                         f"in sigma_w^2 in [{lo}, {hi}]")
    return brentq(g, lo, hi, xtol=1e-10)

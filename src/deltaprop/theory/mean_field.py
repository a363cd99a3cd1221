"""Mean-field (gradient independence) theory of E[delta^2]: chi, fixed points, edge of chaos.

Assumptions: mu_w = 0; weights W[l+1] treated as independent of the forward pass when
propagating delta backwards (the gradient-independence assumption of Schoenholz et al.
2017), pre-activations z[l] ~ N(m_l, q_l) from :mod:`.forward`.

Scaling convention (loud): ``weight_var`` is the raw variance of one entry of W[l+1].  Then

    E[delta[l]^2] = chi_l E[delta[l+1]^2],    chi_l = n_{l+1} weight_var[l+1] E[f'(z[l])^2].

In the mean-field parametrisation weight_var[l+1] = sigma_w^2 / n_l, so
chi_l = sigma_w^2 (n_{l+1} / n_l) E[f'(z[l])^2], which is sigma_w^2 E[f'^2] for equal
widths.  (Written with the question's i.i.d. variance sigma_w^2 per entry, chi = n_{l+1}
sigma_w^2 E[f'^2]: the same number.)

The forward variance obeys q[l] = F(q[l-1]), F(q) = sigma_w^2 E[f(z)^2] + sigma_b^2 with
z ~ N(0, q) (Poole et al. 2016).  :func:`fixed_points` lists every fixed point q* = F(q*)
(q* = inf when the variance diverges, as for relu, softplus, SiLU and GELU at
sigma_w^2 > 2) with its stability |dF/dq| < 1; :func:`fixed_point` is the one the
iteration from q[0] = q0 reaches.  Over many layers at q*, E[delta^2] ~ exp(-(L - l) / xi)
with xi = -1 / log chi (:func:`gradient_depth_scale`): xi > 0 vanishing, xi < 0 exploding
(|xi| layers per factor e), infinite at chi = 1, the edge of chaos.  At q* = inf, chi is
its limit sigma_w^2 (f'(+inf)^2 + f'(-inf)^2) / 2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from .. import activations as _act
from .._checks import check_nonnegative
from .gaussian import SLOPES, expect, expectations, numpy_pair

__all__ = ["chi", "mean_field_backward", "FixedPoint", "fixed_points", "fixed_point",
           "chi_at_fixed_point", "gradient_depth_scale", "edge_of_chaos", "LengthMap",
           "reached_point"]


def chi(sigma_w2, q, f, mean=0.0, width_ratio=1.0):
    """chi = sigma_w^2 (n_{l+1} / n_l) E[f'(z)^2],  z ~ N(mean, q)  (mean-field scaling).

    At q = inf the limit sigma_w^2 (n_{l+1} / n_l) (f'(+inf)^2 + f'(-inf)^2) / 2.
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("q", q, finite=False)
    if q == math.inf:
        cp2, cm2 = _tail(_act.get(f))[:2]
        return sigma_w2 * width_ratio * (cp2 + cm2) / 2
    return sigma_w2 * width_ratio * float(expectations(f, mean, q)["df2"])


def mean_field_backward(sizes, E_df2, weight_var, out_second):
    """E[delta[l]^2] = n_{l+1} weight_var[l+1] E[f'(z[l])^2] E[delta[l+1]^2], l = L-1..1.

    Parameters
    ----------
    sizes : [n_0, ..., n_L]
    E_df2 : sequence indexed by layer (slot 0 unused): E[f_l'(z[l])^2].
    weight_var : sequence indexed by layer: raw per-entry variance of W[l].
    out_second : E[delta[L]^2].

    Returns
    -------
    list (slot l = layer l, slot 0 None)
    """
    check_nonnegative("weight_var", weight_var[1:])
    L = len(sizes) - 1
    second = [None] * (L + 1)
    second[L] = float(out_second)
    for l in range(L - 1, 0, -1):
        second[l] = sizes[l + 1] * weight_var[l + 1] * E_df2[l] * second[l + 1]
    return second


@lru_cache(maxsize=32)
def _tail(act):
    """(c+^2, c-^2, min r, max r) for r(z) = f(z)^2 - c+-^2 z^2 (z >< 0), c+- = f'(+-inf).

    c+- are read at z = +-1000 (1 and 0 for relu-like tails, 0 and 0 for saturating
    ones), the extremes of r on a grid (step 0.005 on |z| <= 60, geometric to 1000).
    Assumes f' has limits at +-inf and f bends only near the origin, as every
    activation of deltaprop does.
    """
    big = np.array([_TAIL_Z, -_TAIL_Z])
    cp2, cm2 = (float(v) ** 2 for v in act.df(big, act.f(big, np), np))
    out = np.geomspace(60.0, _TAIL_Z, 400)
    z = np.concatenate([-out[::-1], np.linspace(-60.0, 60.0, 24001), out])
    r = act.f(z, np) ** 2 - np.where(z > 0, cp2, cm2) * z * z
    return cp2, cm2, float(r.min()), float(r.max())


_TAIL_Z = 1e3
#: |dF/dq| within this of 1 counts as 1 ("marginal"), the quadrature's rounding
MARGINAL = 1e-9


@dataclass(frozen=True)
class FixedPoint:
    """A fixed point q* = F(q*) of the variance map F(q) = sigma_w^2 E[f(z)^2] + sigma_b^2.

    Attributes
    ----------
    q : float
        q*, the variance of z[l] (z ~ N(0, q*)).  ``math.inf`` when the map diverges
        (F(q) > q for every large q: the variance grows without bound with depth);
        ``math.nan`` when every q >= 0 is a fixed point (F(q) = q: relu at sigma_w^2 = 2,
        identity at 1, leaky relu at 2 / (1 + 0.01^2), each with sigma_b^2 = 0).
    chi : float
        sigma_w^2 E[f'(z)^2] at q*; for q* = inf its limit as q -> inf,
        sigma_w^2 (f'(+inf)^2 + f'(-inf)^2) / 2 (1/2 sigma_w^2 for relu-like tails, 0 for
        tanh and sigmoid).
    slope : float
        dF/dq at q*: sigma_w^2 E[z f(z) f'(z)] / q (Stein), sigma_w^2 f'(0)^2 at q* = 0, and
        its limit as q -> inf (equal to chi there) at q* = inf.
    stability : str
        ``"stable"`` (|slope| < 1: starts near q* converge to it; for q* = inf: every start
        above the largest finite fixed point diverges), ``"unstable"`` (|slope| > 1) or
        ``"marginal"`` (|slope| = 1 to :data:`MARGINAL`, or the line of fixed points: the
        linear test cannot tell).
    """

    q: float
    chi: float
    slope: float
    stability: str

    @property
    def stable(self) -> bool:
        """|dF/dq| < 1 at q* (for q* = inf: the map diverges from large q)."""
        return self.stability == "stable"


def _label(slope):
    if abs(abs(slope) - 1) <= MARGINAL:
        return "marginal"
    return "stable" if abs(slope) < 1 else "unstable"


class LengthMap:
    """F(q) = sigma_w^2 E[f(z)^2] + sigma_b^2, z ~ N(0, q), and h(q) = F(q) - q.

    With c+^2, c-^2 = f'(+-inf)^2, a = sigma_w^2 (c+^2 + c-^2) / 2 is the slope of F at
    infinity (and chi there), and h is evaluated as

        h(q) = (a - 1) q + sigma_w^2 E[r(z)] + sigma_b^2,   r = f^2 - c+-^2 z^2 (z >< 0)

    so that at large q the O(q) parts cancel exactly, not in rounding (r stays bounded).
    """

    def __init__(self, sigma_w2, sigma_b2, f):
        check_nonnegative("sigma_w2", sigma_w2)
        check_nonnegative("sigma_b2", sigma_b2)
        self.act, self.f, self.df = numpy_pair(f)
        self.w2, self.b2 = w2, b2 = float(sigma_w2), float(sigma_b2)
        self.linear = SLOPES.get(self.act.name)  # (alpha, beta) of a piecewise-linear f
        cp2, cm2, r_lo, r_hi = _tail(self.act)
        self.a = a = w2 * (cp2 + cm2) / 2
        self.r = lambda z: self.f(z) ** 2 - np.where(z > 0, cp2, cm2) * z * z
        f0, df0 = (float(v[0]) for v in (self.f(np.zeros(1)), self.df(np.zeros(1))))
        self.F0, self.slope0 = w2 * f0**2 + b2, w2 * df0**2
        # min r <= E[r] <= max r, so beyond `top` h has the sign of a - 1: no root there
        top = (w2 * r_hi + b2) / (1 - a) if a < 1 else \
            (-w2 * r_lo - b2) / (a - 1) if a > 1 else math.inf
        self.top = top if math.isinf(top) else min(top, 1e250)

    def h(self, q):
        q = np.asarray(q, float)
        return (self.a - 1) * q + self.w2 * expect(self.r, 0.0, q) + self.b2

    def point(self, q):
        """The :class:`FixedPoint` at a root q of h (0, finite or inf)."""
        if q == math.inf:
            return FixedPoint(q, self.a, self.a, "stable")
        chi_q = self.w2 * float(expect(lambda z: self.df(z) ** 2, 0.0, q))
        if q == 0:
            slope = self.slope0
        else:
            slope = self.w2 * float(expect(lambda z: z * self.f(z) * self.df(z), 0.0, q)) / q
        return FixedPoint(float(q), chi_q, slope, _label(slope))

    def root(self, lo, hi):
        from scipy.optimize import brentq

        return brentq(lambda q: float(self.h(q)), lo, hi, xtol=1e-300, rtol=1e-13)


_STEP = 10 ** (1 / 8)  # the scan's grid: 8 points a decade
_FLOOR = 1e-8  # the smallest q scanned when F(0) = 0 (q* = 0 is then a fixed point)


def _linear_points(m):
    """Closed form for f = alpha z (z < 0), beta z (z > 0): F(q) = a q + sigma_b^2."""
    a, b2 = m.a, m.b2
    if abs(a - 1) <= MARGINAL:
        return (FixedPoint(math.inf, a, a, "stable"),) if b2 > 0 else \
            (FixedPoint(math.nan, a, a, "marginal"),)
    if a < 1:
        return (FixedPoint(b2 / (1 - a), a, a, _label(a)),)
    return ((FixedPoint(0.0, a, a, _label(a)),) if b2 == 0 else ()) + \
        (FixedPoint(math.inf, a, a, "stable"),)


def _scan(m, start, up, first=False):
    """Roots of h met walking from q = start by factors of 10^(1/8), downwards to
    max(F(0), 1e-8) or upwards over 4 decades and then by factors of 10, to one step past
    the bound beyond which h has the sign of a - 1 (20 decades when a = 1); 16 points at
    a time, stopping at the first root if ``first``.  Returns (roots in walking order, h
    at the last q walked)."""
    if up:
        top = max(m.top if math.isfinite(m.top) else start * 1e20, start)
        q_all = start * _STEP ** np.arange(33)
        q_all = q_all[: np.searchsorted(q_all, top) + 1]
        if q_all[-1] < top:
            tail = q_all[-1] * 10.0 ** np.arange(1, math.ceil(math.log10(top / q_all[-1])) + 1)
            q_all = np.concatenate([q_all, tail])
    else:
        floor = max(m.F0, _FLOOR)
        if start <= floor:
            return [], float(m.h(start))
        n = math.ceil(math.log(start / floor, _STEP))
        q_all = np.append(start / _STEP ** np.arange(n), floor)
    roots, h_prev = [], float(m.h(start))
    for c in range(0, len(q_all) - 1, 16):
        q = q_all[c:c + 17]
        hq = np.concatenate([[h_prev], m.h(q[1:])])
        for i in range(len(q) - 1):
            if hq[i + 1] == 0:
                roots.append(float(q[i + 1]))
            elif np.sign(hq[i]) * np.sign(hq[i + 1]) < 0:  # (h near 1e300: no overflow)
                roots.append(m.root(*sorted((q[i], q[i + 1]))))
        h_prev = float(hq[-1])
        if roots and first:
            break
    return roots, h_prev


def fixed_points(sigma_w2, sigma_b2, f):
    """Every fixed point q* = sigma_w^2 E[f(z)^2] + sigma_b^2 = F(q*), z ~ N(0, q*), with its
    chi and its stability as a point of the map q[l] = F(q[l-1]) (mu_w = 0, zero-mean biases).

    Returns
    -------
    tuple of :class:`FixedPoint`, by increasing q; q = inf last when the map diverges, and
    a single q = nan entry when every q is a fixed point.

    Method: piecewise-linear f in closed form (F(q) = a q + sigma_b^2).  Otherwise q* = 0
    when F(0) = 0 (sigma_b^2 = 0 and f(0) = 0: tanh, SiLU, GELU), then the sign changes of
    h(q) = F(q) - q, each refined by ``scipy.optimize.brentq`` (relative 1e-13), on a grid
    from F(0) (from 1e-8 when F(0) = 0) of 8 points a decade for 4 decades and one a decade
    beyond.  With a = sigma_w^2 (f'(+inf)^2 + f'(-inf)^2) / 2 (the slope of F at infinity)
    and r = f^2 - f'(+-inf)^2 z^2, h(q) = (a - 1) q + sigma_w^2 E[r] + sigma_b^2 with
    min r <= E[r] <= max r, so the grid ends where (a - 1) q outweighs the rest: no root
    lies beyond (20 decades when a = 1).  q* = inf is a fixed point when h > 0 there
    (a > 1, or a = 1 with F(q) > q at large q, as for softplus at sigma_w^2 = 2).  Two
    roots within one grid step, or a root in (0, 1e-8), would be missed.  Assumes F
    increasing in q, so no fixed point lies below F(0): true for every activation in
    deltaprop (f(z)^2 + f(-z)^2 grows with |z|).
    """
    m = LengthMap(sigma_w2, sigma_b2, f)
    if m.linear is not None:
        return _linear_points(m)
    points = [m.point(0.0)] if m.F0 == 0 else []
    roots, h_end = _scan(m, m.F0 if m.F0 > 0 else _FLOOR, up=True)
    if m.F0 > 0 and m.h(m.F0) == 0:  # F constant (sigma_w^2 = 0): q* = F(0)
        roots.insert(0, m.F0)
    points += [m.point(q) for q in roots]
    if h_end > 0:
        points.append(m.point(math.inf))
    return tuple(points)


def reached_point(m, q0):
    """The fixed point the iteration q[l] = F(q[l-1]) from q[0] = q0 converges to.

    F is increasing, so the iterates move monotonically towards the nearest fixed point in
    the direction of F(q0) - q0: the first above q0 (or inf) when h(q0) > 0, the first
    below (or 0) when h(q0) < 0.
    """
    if not (q0 > 0 and math.isfinite(q0)):
        raise ValueError(f"q0 must be finite and > 0; got {q0!r}")
    if m.linear is not None:
        pts = _linear_points(m)
        if math.isnan(pts[0].q):
            return replace(pts[0], q=float(q0))
        h0 = (m.a - 1) * q0 + m.b2
        if h0 == 0:
            return pts[0]
        return next(p for p in (pts if h0 > 0 else pts[::-1]) if (p.q > q0) == (h0 > 0))
    h0 = float(m.h(q0))
    if h0 == 0:
        return m.point(q0)
    roots, _ = _scan(m, q0, up=h0 > 0, first=True)
    return m.point(roots[0] if roots else math.inf if h0 > 0 else 0.0)


def fixed_point(sigma_w2, sigma_b2, f, q0=1.0):
    """q* = sigma_w^2 E[f(z)^2] + sigma_b^2, z ~ N(0, q*): the fixed point reached from q0.

    The variance map q[l] = F(q[l-1]) (mu_w = 0, zero-mean biases) iterated from
    q[0] = ``q0`` (default 1: unit-variance pre-activations) converges to one of
    :func:`fixed_points`; this returns its q (``math.inf`` when the variance diverges, q0
    itself when every q is a fixed point).  Examples: relu q* = sigma_b^2 / (1 -
    sigma_w^2 / 2) for sigma_w^2 < 2, inf for sigma_w^2 > 2; SiLU and GELU at sigma_b^2 = 0
    keep q* = 0 stable beside a divergent branch, and q0 picks the branch.
    """
    return reached_point(LengthMap(sigma_w2, sigma_b2, f), q0).q


def chi_at_fixed_point(sigma_w2, sigma_b2, f, q0=1.0):
    """chi at the q* of :func:`fixed_point`: sigma_w^2 E[f'(z)^2], z ~ N(0, q*).

    At q* = inf the limit sigma_w^2 (f'(+inf)^2 + f'(-inf)^2) / 2: sigma_w^2 / 2 for relu,
    softplus, SiLU and GELU (gradients explode when it exceeds 1), 0 for tanh and sigmoid.
    For relu chi = sigma_w^2 / 2 at every q.
    """
    return reached_point(LengthMap(sigma_w2, sigma_b2, f), q0).chi


def gradient_depth_scale(chi_value):
    """xi = -1 / log chi: layers per factor e of E[delta^2] (negative: growth; inf at chi=1).

    The gradient's depth scale: E[delta[l]^2] ~ exp(-(L - l) / xi) at the fixed point.
    """
    if chi_value <= 0:
        return 0.0
    lg = math.log(chi_value)
    return math.inf if lg == 0 else -1.0 / lg


def edge_of_chaos(sigma_b2, f, lo=0.05, hi=20.0, q0=1.0):
    """sigma_w^2 with chi(q*(sigma_w^2, sigma_b^2)) = 1, q* as in :func:`fixed_point`.

    The bracket [lo, hi] grows (lo / 4, hi * 4) until chi - 1 changes sign in it, then
    ``scipy.optimize.brentq``.  For every activation in deltaprop chi grows with
    sigma_w^2, so the root is the only one.  tanh with sigma_b^2 = 0 gives 1; relu and
    softplus 2 (any sigma_b^2); leaky relu 2 / (1 + 0.01^2); identity 1; sigmoid about
    103 (sigma_b^2 = 0).  SiLU (sigma_b^2 = 0, 0.05, 0.3) and GELU (0, 0.05) have none
    from q0 = 1: chi jumps past 1 where the fixed point reached from q0 jumps from the
    finite branch to q* = inf.

    Raises
    ------
    ValueError
        when chi stays on one side of 1 for sigma_w^2 in [1e-12, 1e12], or when chi jumps
        across 1 (the fixed point reached from q0 jumps, so no sigma_w^2 has chi = 1;
        the message gives where).
    """
    check_nonnegative("sigma_b2", sigma_b2)
    from scipy.optimize import brentq

    act = _act.get(f)

    def g(s):
        return chi_at_fixed_point(s, sigma_b2, act, q0) - 1.0

    g_lo, g_hi = g(lo), g(hi)
    while g_lo > 0 and lo > 1e-12:
        hi, g_hi, lo = lo, g_lo, lo / 4
        g_lo = g(lo)
    while g_hi < 0 and hi < 1e12:
        lo, g_lo, hi = hi, g_hi, hi * 4
        g_hi = g(hi)
    if g_lo * g_hi > 0:
        raise ValueError(f"no edge of chaos for {act.name} with sigma_b^2 = {sigma_b2}: chi "
                         f"{'>' if g_lo > 0 else '<'} 1 for every sigma_w^2 in [{lo:g}, {hi:g}]")
    s = brentq(g, lo, hi, xtol=1e-12, rtol=1e-12)
    if abs(g(s)) > 1e-6:
        eps = 1e-9 * s
        raise ValueError(f"no edge of chaos for {act.name} with sigma_b^2 = {sigma_b2}: chi "
                         f"jumps from {g(s - eps) + 1:.6g} to {g(s + eps) + 1:.6g} at "
                         f"sigma_w^2 = {s:.10g}, where the fixed point reached from q0 = "
                         f"{q0:g} jumps from q* = {fixed_point(s - eps, sigma_b2, act, q0):.6g}"
                         f" to {fixed_point(s + eps, sigma_b2, act, q0):.6g}")
    return s

"""Signal propagation at initialisation: the length and correlation maps, their fixed points,
the depth scales and the phase (Poole et al. 2016; Schoenholz et al. 2017).

Model and assumptions: z[l] = a[l-1] W[l]^T + b[l] with W[l]_jk i.i.d. of mean 0 and
variance sigma_w^2 / n_{l-1}, b[l]_j i.i.d. of mean 0 and variance sigma_b^2, at infinite
width.  Then each unit's pre-activations for two inputs x_a, x_b are jointly Gaussian, the
same for every unit, with variances q_aa, q_bb and covariance q_ab that obey

    q^l    = sigma_w^2 E[f(u)^2] + sigma_b^2 = F(q^{l-1}),   u ~ N(0, q^{l-1})   (length map)
    q_ab^l = sigma_w^2 E[f(u_a) f(u_b)] + sigma_b^2                             (covariance)
    c^l    = q_ab^l / q^l = C(c^{l-1})                                        (C-map)

for two inputs of equal length, (u_a, u_b) ~ N(0, q^{l-1} [[1, c], [c, 1]]), c = c^{l-1}
(Poole et al. 2016, sec. 2; Schoenholz et al. 2017, sec. 2).  At a fixed point q* of F
(:func:`deltaprop.theory.mean_field.fixed_points`), with u ~ N(0, q*):

    chi_1 = sigma_w^2 E[f'(u)^2]                   slope of the C-map at c = 1
    chi_c = sigma_w^2 E[f'(u_a) f'(u_b)] at c*     slope of the C-map at its fixed point c*
    xi_q  = -1 / log(chi_1 + sigma_w^2 E[f''(u) f(u)]) = -1 / log F'(q*)
    xi_c  = -1 / log chi_c
    gradient depth scale = -1 / log chi_1          (Schoenholz et al.'s xi_nabla)

|q^l - q*| ~ exp(-l / xi_q), |c^l - c*| ~ exp(-l / xi_c), E[delta[l]^2] ~ exp(-(L - l) /
gradient depth scale) (Schoenholz et al. 2017, sec. 3 and 5).  The phase is ordered for
chi_1 < 1 (c* = 1: inputs become equal; gradients vanish), chaotic for chi_1 > 1 (c* < 1:
nearby inputs decorrelate; gradients explode) and critical at chi_1 = 1, the edge of chaos,
where xi_c diverges.  Schoenholz et al. (2017, sec. 6) find networks trainable up to about 6 xi_c
layers (:data:`TRAINABLE_DEPTH`).

By Mehler's expansion E[f(u_a) f(u_b)] = sum_k a_k^2 c^k with a_k the Hermite coefficients
of f(sqrt(q) x), so C(c) = sum_k p_k c^k with p_k >= 0 and, at q*, sum_k p_k = C(1) = 1:
C is increasing and convex on [0, 1].  Hence the iteration from any c^0 in [0, 1) converges
to the smallest fixed point in [0, 1] (:func:`c_star`): 1 when chi_1 <= 1, else the unique
root of C(c) = c in [0, 1).

Limits: at q* = 0 (F(0) = 0: sigma_b^2 = 0 and f(0) = 0) a smooth f acts as its
linearisation and the C-map is the identity (every c a fixed point, chi_c = 1); at q* = inf
and for the piecewise-linear activations (positively homogeneous) the C-map does not depend
on q and has a closed form (:func:`piecewise_kernel`); for relu-like tails it has slope 1
at c = 1.  The C-map is always evaluated normalised by F(q), C_q(c) = (sigma_w^2
E_q[f(u_a) f(u_b)] + sigma_b^2) / F(q), which is the map above at q = q* and its limit at
q* = 0 or inf.

NumPy and SciPy only, like the rest of :mod:`deltaprop.theory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .. import activations as _act
from .._checks import check_nonnegative
from ..network import per_layer
from .gaussian import FINE_RADIUS, SLOPES, expectations, hermite_nodes, numpy_pair, panel_nodes
from .mean_field import (
    MARGINAL,
    LengthMap,
    edge_of_chaos,
    fixed_points,
    gradient_depth_scale,
    reached_point,
)

__all__ = ["length_map", "correlation_map", "correlation_slope", "piecewise_kernel",
           "CorrelationFixedPoint", "correlation_fixed_points", "c_star", "phase",
           "correlation_iteration", "SignalTheory", "signal_theory", "phase_diagram",
           "TRAINABLE_DEPTH", "KEYS"]

#: Schoenholz et al. (2017, sec. 6): networks train up to about this many xi_c layers
TRAINABLE_DEPTH = 6.0
#: the keys of :meth:`SignalTheory.as_dict` (``deltaprop theory --json``), in order
KEYS = ("q_star", "chi_1", "c_star", "chi_c", "xi_q", "xi_c", "gradient_depth_scale",
        "phase", "fixed_points", "edge_of_chaos")


def length_map(q, sigma_w2, sigma_b2, f):
    """q^l = F(q^{l-1}) = sigma_w^2 E[f(u)^2] + sigma_b^2, u ~ N(0, q^{l-1})  (Poole et al.
    2016, the length map; :mod:`.forward` with mu_w = 0).  ``q`` may be an array."""
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q", q, finite=False)
    return sigma_w2 * expectations(f, 0.0, q)["f2"] + sigma_b2


def piecewise_kernel(c, alpha, beta):
    """E[f(u_a) f(u_b)] and E[f'(u_a) f'(u_b)] for f(u) = alpha u (u < 0), beta u (u > 0),
    (u_a, u_b) standard normal with correlation c:

        E[f f]   = (alpha^2 + beta^2) k(c) - 2 alpha beta k(-c),
                   k(c) = (sqrt(1 - c^2) + (pi - arccos c) c) / (2 pi)
        E[f' f'] = (alpha^2 + beta^2) k'(c) + 2 alpha beta k'(-c),
                   k'(c) = (pi - arccos c) / (2 pi)

    k is E[relu(u_a) relu(u_b)], the arc-cosine kernel of degree 1 (Cho & Saul 2009), k' the
    orthant probability P(u_a > 0, u_b > 0).  Scale by q for variance q.
    """
    c = np.clip(np.asarray(c, float), -1.0, 1.0)

    def k(t):
        return (np.sqrt(1 - t * t) + (math.pi - np.arccos(t)) * t) / (2 * math.pi)

    def dk(t):
        return (math.pi - np.arccos(t)) / (2 * math.pi)

    s2, ab = alpha**2 + beta**2, alpha * beta
    return s2 * k(c) - 2 * ab * k(-c), s2 * dk(c) + 2 * ab * dk(-c)


class _CMap:
    """C_q(c) and its slope for one (q, sigma_w^2, sigma_b^2, f), q in [0, inf].

    Smooth f at 0 < q < inf: E[g(u_a) g(u_b)] (g = f and f') by quadrature of
    u_b | u_a ~ N(c u_a, q (1 - c^2)) inside u_a ~ N(0, q): outer nodes Gauss-Hermite (101,
    sqrt(q) <= 1) or the Gauss-Legendre panels of :func:`.gaussian.panel_nodes`; inner nodes
    Gauss-Hermite (61) when sqrt(q (1 - c^2)) <= 1, 8-point Gauss-Legendre on panels of
    unit width in u over +-9 conditional standard deviations up to 8, and beyond that the
    117 panels of :func:`_bend_panels` (unit width where f bends, half a standard deviation
    elsewhere), whose count does not grow with q.  About 1e-12 relative for the activations
    of deltaprop.
    """

    def __init__(self, q, sigma_w2, sigma_b2, f):
        self.act, self.f, self.df = numpy_pair(f)
        self.w2, self.b2, self.q = float(sigma_w2), float(sigma_b2), float(q)
        slopes = SLOPES.get(self.act.name)
        if q == math.inf:  # the tails: f ~ f'(+-inf) u, read at u = -+1000 as mean_field does
            slopes = tuple(float(v) for v in self.df(np.array([-1e3, 1e3])))
            if slopes == (0.0, 0.0):
                raise ValueError(f"{self.act.name} is bounded: its C-map has no limit at q = "
                                 f"inf (q* is not finite at sigma_w^2 = {self.w2:g}: beyond "
                                 f"about 1e29 the fixed-point search gives up); use a smaller "
                                 f"--sigma-w2 (q* grows like sigma_w^2 E[f^2])")
            self.b2 = 0.0  # negligible beside q
        self.slopes = slopes
        if slopes is not None:  # homogeneous: sigma_w^2 E[f f] = sigma_w^2 q kernel(c)
            # q = 0 without biases and q = inf: the limit, independent of q (scale 1)
            self.scale = self.q if 0 < self.q < math.inf else \
                1.0 if self.q == math.inf or self.b2 == 0 else 0.0
            self.norm = self.w2 * self.scale * float(piecewise_kernel(1.0, *slopes)[0]) \
                + self.b2
            return
        if q == 0:
            self.norm = self.w2 * float(self.f(np.zeros(1))[0]) ** 2 + self.b2
            return
        s = math.sqrt(q)
        if s <= 1.0:
            x, w = hermite_nodes(101)
            self.z, self.w = s * x, w
        else:
            self.z, self.w = panel_nodes(0.0, s)
        a = self.f(self.z)
        self.wf, self.wdf = self.w * a, self.w * self.act.df(self.z, a, np)
        # F(q) by the outer rule itself (as expect() would), so that C(1) = 1 to rounding
        self.norm = self.w2 * float(self.wf @ a) + self.b2

    def __call__(self, c):
        """(C_q(c), dC_q/dc) = ((sigma_w^2 E[f f] + sigma_b^2) / F(q),
        sigma_w^2 q E[f' f'] / F(q))."""
        c = float(min(max(c, -1.0), 1.0))
        if self.norm == 0:  # F(q) = 0 at q = 0: the linearised map, the identity
            return c, 1.0
        if self.slopes is not None:
            ff, dd = piecewise_kernel(c, *self.slopes)
            return ((self.w2 * self.scale * float(ff) + self.b2) / self.norm,
                    self.w2 * self.scale * float(dd) / self.norm)
        if self.q == 0:  # F(0) > 0: every input maps to the same f(0) (C = 1)
            return 1.0, 0.0
        sc = math.sqrt(self.q * max(1.0 - c * c, 0.0))
        if sc > _WIDE:  # the nodes per outer node z_a: a bounded count at any q
            u, v = _bend_panels(c * self.z, sc)
            a = self.f(u)
            ff = self.wf @ np.sum(a * v, axis=1)
            dd = self.wdf @ np.sum(self.act.df(u, a, np) * v, axis=1)
            return (self.w2 * ff + self.b2) / self.norm, self.w2 * self.q * dd / self.norm
        if sc <= 1.0:  # f(c u_a + sc x) analytic in a strip |Im x| < pi / (2 sc) >= pi / 2
            x, v = hermite_nodes(61)
        else:
            x, v = _unit_panels(sc)
        u = c * self.z[:, None] + sc * x[None, :]
        a = self.f(u)
        ff = self.wf @ (a @ v)
        dd = self.wdf @ (self.act.df(u, a, np) @ v)
        return (self.w2 * ff + self.b2) / self.norm, self.w2 * self.q * dd / self.norm


def _unit_panels(s):
    """Nodes x and weights v with sum v g(s x) ~= E[g(s x)], x ~ N(0, 1), s > 1: 8-point
    Gauss-Legendre on panels of width 1/s in x (unit width in u = s x) over [-9, 9] (the
    Gaussian's mass beyond 9 is 2e-19)."""
    n = math.ceil(18 * s)
    edges = np.linspace(-9.0, 9.0, n + 1)
    mid, half = (edges[1:] + edges[:-1]) / 2, (edges[1:] - edges[:-1]) / 2
    t, w = _LEGENDRE8
    x = (mid[:, None] + half[:, None] * t).reshape(-1)
    v = (half[:, None] * w).reshape(-1) * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return x, v


_LEGENDRE8 = np.polynomial.legendre.leggauss(8)
#: conditional std above which :func:`_bend_panels` replaces :func:`_unit_panels` (whose
#: 18 s panels grew with sqrt(q): 7.5 GB and 19 s at sigma_w^2 = 1e6, OOM at 1e7)
_WIDE = 8.0
#: the bend cuts of :func:`_bend_panels`: u = -40..40 (gaussian.FINE_RADIUS)
_BENDS = np.arange(-FINE_RADIUS, FINE_RADIUS + 1)
#: its Gaussian cuts: every 1/2 conditional std over +-9
_HALVES = np.arange(-18, 19) / 2


def _bend_panels(mean, s):
    """Nodes u (n, k) and weights v (n, k) with sum_j v[i, j] g(u[i, j]) ~= E[g(u)],
    u ~ N(mean[i], s^2), for each of the n means: 8-point Gauss-Legendre on panels cut, in
    u itself, at the integers of |u| <= FINE_RADIUS (where the activations bend: the panels
    of :func:`_unit_panels` there) and every s/2 over mean +- 9 s (the Gaussian; beyond
    FINE_RADIUS f is flat or linear to rounding).  The same 118 cuts (117 panels) for every
    row, those outside mean +- 9 s clipped to its ends (panels of width 0), so the count
    does not grow with s, and the bends are placed in u without the cancellation of
    mean + s x.
    """
    mean = np.asarray(mean, dtype=np.float64)[:, None]
    lo, hi = mean - 9 * s, mean + 9 * s
    cuts = np.concatenate([np.broadcast_to(_BENDS, (mean.shape[0], _BENDS.size)),
                           mean + s * _HALVES], axis=1)
    cuts = np.sort(np.clip(cuts, lo, hi), axis=1)
    mid, half = (cuts[:, 1:] + cuts[:, :-1]) / 2, (cuts[:, 1:] - cuts[:, :-1]) / 2
    t, w = _LEGENDRE8
    u = (mid[..., None] + half[..., None] * t).reshape(mean.shape[0], -1)
    v = (half[..., None] * w).reshape(mean.shape[0], -1) / s
    return u, v * np.exp(-0.5 * ((u - mean) / s) ** 2) / math.sqrt(2 * math.pi)


def correlation_map(c, q, sigma_w2, sigma_b2, f):
    """c^l = C_q(c^{l-1}) = (sigma_w^2 E[f(u_a) f(u_b)] + sigma_b^2) / F(q),
    (u_a, u_b) ~ N(0, q [[1, c], [c, 1]])  (Poole et al. 2016, the C-map).

    q = q^{l-1} is the length of both inputs at layer l-1 and F(q) = q^l; at q = q* this is
    q_ab^l / q*.  ``q`` may be 0 or ``math.inf`` (the limits of the module docstring).
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q", q, finite=False)
    return _CMap(q, sigma_w2, sigma_b2, f)(c)[0]


def correlation_slope(c, q, sigma_w2, sigma_b2, f):
    """dc^l/dc^{l-1} = sigma_w^2 q E[f'(u_a) f'(u_b)] / F(q) (Price's theorem); at q = q*:
    chi_c = sigma_w^2 E[f'(u_a) f'(u_b)] (Schoenholz et al. 2017), chi_1 at c = 1."""
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q", q, finite=False)
    return _CMap(q, sigma_w2, sigma_b2, f)(c)[1]


@dataclass(frozen=True)
class CorrelationFixedPoint:
    """A fixed point c = C(c) of the C-map at q*, with its slope chi_c = C'(c) and
    stability (``"stable"`` for |chi_c| < 1, ``"unstable"``, ``"marginal"`` at |chi_c| = 1
    to :data:`~deltaprop.theory.mean_field.MARGINAL`); c = nan with slope 1: every c is a
    fixed point (the C-map is the identity)."""

    c: float
    chi_c: float
    stability: str


def _label(slope):
    if abs(abs(slope) - 1) <= MARGINAL:
        return "marginal"
    return "stable" if abs(slope) < 1 else "unstable"


def _c_star(cm, start=0.0):
    """(c*, chi_c) of a :class:`_CMap`: the smallest fixed point in [0, 1] (see module
    docstring); nan when the map is the identity.  Newton starts at ``start`` if it lies
    left of c* (C(start) >= start), else at 0."""
    if _is_identity(cm):
        return math.nan, 1.0
    chi1 = cm(1.0)[1]
    if chi1 <= 1 + MARGINAL:
        return 1.0, chi1
    c, (h, s) = start, cm(start)
    if start > 0 and (h < start or s >= 1):
        c, (h, s) = 0.0, cm(0.0)
    # Newton from the left on the convex h(c) = C(c) - c: increasing, never past the root
    for _ in range(100):
        h -= c
        if h <= 1e-15 or s >= 1:
            break
        step = h / (1 - s)
        c_new = min(c + step, 1.0)
        if c_new - c <= 1e-14 * max(c, 1e-300):
            c = c_new
            break
        c = c_new
        h, s = cm(c)
    return c, cm(c)[1]


def _is_identity(cm):
    return (cm.norm == 0) or (cm.slopes is not None and cm.slopes == (1.0, 1.0)
                              and cm.b2 == 0)


def c_star(q, sigma_w2, sigma_b2, f):
    """c* = lim C^l(c^0), c^0 in [0, 1): the smallest fixed point of the C-map in [0, 1],
    and chi_c = C'(c*) = sigma_w^2 E[f'(u_a) f'(u_b)] there (Schoenholz et al. 2017).

    c* = 1 when chi_1 = C'(1) <= 1 (ordered and critical); otherwise the root of C(c) = c in
    [0, 1), found by Newton's method from c = 0, which increases monotonically to it because
    C is convex on [0, 1] (module docstring).  Returns (nan, 1) when the C-map is the
    identity (q* = 0 for smooth f; linear networks without biases).
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q", q, finite=False)
    return _c_star(_CMap(q, sigma_w2, sigma_b2, f))


def correlation_fixed_points(q, sigma_w2, sigma_b2, f):
    """Every fixed point c = C(c) in [-1, 1] of the C-map at q, by increasing c.

    They are c* of :func:`c_star`, c = 1 and, when C is odd (odd f without biases), c = -1,
    and no others: with C(c) = sum_k p_k c^k, p_k >= 0, sum p_k = 1 (module docstring),
    C is convex and increasing on [0, 1], so [0, 1] holds c* and 1 only; for c in [-1, 0),
    C(c) - c >= p_0 + |c| (1 - sum_{k odd} p_k) >= 0, zero only where C is odd and c = -1.
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q", q, finite=False)
    return _fixed_points(_CMap(q, sigma_w2, sigma_b2, f))[0]


def _fixed_points(cm):
    """(every fixed point, c*, chi_c) of a :class:`_CMap`."""
    if _is_identity(cm):
        return (CorrelationFixedPoint(math.nan, 1.0, "marginal"),), math.nan, 1.0
    found = {}
    minus, slope = cm(-1.0)
    if abs(minus + 1) <= 1e-12:
        found[-1.0] = slope
    cs, chi = _c_star(cm)
    found[cs] = chi
    found.setdefault(1.0, cm(1.0)[1])
    return tuple(CorrelationFixedPoint(c, float(found[c]), _label(found[c]))
                 for c in sorted(found)), cs, chi


def phase(chi_1):
    """``"ordered"`` (chi_1 < 1), ``"critical"`` (chi_1 = 1 to MARGINAL) or ``"chaotic"``
    (chi_1 > 1), with chi_1 = sigma_w^2 E[f'(u)^2] at q* (Poole et al. 2016)."""
    if abs(chi_1 - 1) <= MARGINAL:
        return "critical"
    return "ordered" if chi_1 < 1 else "chaotic"


def correlation_iteration(c0, q0, sigma_w2, sigma_b2, activations, depth=None):
    """(q^l, c^l) for l = 1..L of two inputs with correlation c0 and per-component second
    moment q0 (x_a . x_b / n_0 = q0 c0, |x|^2 / n_0 = q0), layer by layer:

        q^1 = sigma_w^2(1) q0 + sigma_b^2(1),  c^1 = (sigma_w^2(1) q0 c0 + sigma_b^2(1)) / q^1
        q^l = F_l(q^{l-1}),                    c^l = C_{q^{l-1}}(c^{l-1})   (l >= 2)

    with sigma_w^2(l) = n_{l-1} Var(W[l]), sigma_b^2(l) = Var(b[l]) and f_{l-1} in F_l and
    C_l (layer 1 is linear in x).  ``sigma_w2``, ``sigma_b2``: a number or one per layer
    1..L; ``activations``: f_1..f_{L-1} (a name repeats; ``depth`` = L then).

    Returns
    -------
    list of (q, c), slot 0 = (q0, c0)
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q0", q0)
    if isinstance(activations, str | _act.Activation):
        if depth is None:
            raise ValueError("give depth with a single activation")
        activations = [activations] * (depth - 1)
    L = len(activations) + 1 if depth is None else depth
    if len(activations) != L - 1:
        raise ValueError(f"need L - 1 = {L - 1} activations f_1..f_{{L-1}}, got "
                         f"{len(activations)}")
    w2, b2 = ([float(t) for t in per_layer(v, L, k)] for k, v in
              (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)))
    q = w2[0] * q0 + b2[0]
    out = [(float(q0), float(c0)), (q, (w2[0] * q0 * c0 + b2[0]) / q if q > 0 else c0)]
    for l in range(2, L + 1):
        q, c = out[-1]
        f = activations[l - 2]
        out.append((float(length_map(q, w2[l - 1], b2[l - 1], f)),
                    correlation_map(c, q, w2[l - 1], b2[l - 1], f)))
    return out



@dataclass(frozen=True)
class SignalTheory:
    """Everything :func:`signal_theory` computes for one (f, sigma_w^2, sigma_b^2).

    Attributes (the keys of :meth:`as_dict`, :data:`KEYS`)
    -------------------------------------------------------
    q_star : float
        q* reached from q0 (inf: the variance diverges; nan: every q is a fixed point).
    chi_1 : float
        sigma_w^2 E[f'(u)^2] at q*.
    c_star, chi_c : float
        The C-map's attracting fixed point in [0, 1] and the slope there (:func:`c_star`).
    xi_q, xi_c, gradient_depth_scale : float
        -1 / log F'(q*), -1 / log chi_c, -1 / log chi_1 (inf at 1; negative: growth).
    phase : str
        :func:`phase` of chi_1.
    fixed_points : dict
        ``"q"``: every fixed point of the length map (:class:`~.mean_field.FixedPoint`);
        ``"c"``: every fixed point of the C-map at q* (:class:`CorrelationFixedPoint`).
    edge_of_chaos : float or None
        sigma_w^2 with chi_1 = 1 at this sigma_b^2 (:func:`.mean_field.edge_of_chaos`);
        None where there is none, ``edge_note`` saying why.
    """

    activation: str
    sigma_w2: float
    sigma_b2: float
    q_star: float
    chi_1: float
    c_star: float
    chi_c: float
    xi_q: float
    xi_c: float
    gradient_depth_scale: float
    phase: str
    fixed_points: dict
    edge_of_chaos: float | None
    edge_note: str = ""

    @property
    def trainable_depth(self) -> float:
        """6 xi_c: about the deepest trainable network (Schoenholz et al. 2017, sec. 6)."""
        return TRAINABLE_DEPTH * self.xi_c if self.xi_c > 0 else 0.0

    def as_dict(self) -> dict:
        """The :data:`KEYS` as plain JSON: non-finite numbers as the strings ``"inf"``,
        ``"-inf"`` and ``"nan"`` (``float()`` reads them back)."""
        def num(x):
            return None if x is None else float(x) if math.isfinite(x) else str(float(x))

        fps = {"q": [{"q": num(p.q), "chi": num(p.chi), "slope": num(p.slope),
                      "stability": p.stability} for p in self.fixed_points["q"]],
               "c": [{"c": num(p.c), "chi_c": num(p.chi_c), "stability": p.stability}
                     for p in self.fixed_points["c"]]}
        out = {k: getattr(self, k) for k in KEYS}
        out["fixed_points"] = fps
        return {k: v if isinstance(v, str | dict) else num(v) for k, v in out.items()}


def signal_theory(f, sigma_w2, sigma_b2, q0=1.0, edge=True) -> SignalTheory:
    """q*, chi_1, c*, chi_c, xi_q, xi_c, the gradient depth scale, the phase, every fixed
    point and the edge of chaos for the mean-field network (formulas in the module
    docstring; q* is the fixed point reached from q^0 = ``q0``).  ``edge=False`` skips the
    edge of chaos (its own root search, the slowest part).
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q0", q0)
    act = _act.get(f)
    m = LengthMap(sigma_w2, sigma_b2, act)
    qpoints = fixed_points(sigma_w2, sigma_b2, act)
    reached = reached_point(m, q0)
    q = reached.q
    cpoints, cs, chi_c = _fixed_points(_CMap(1.0 if math.isnan(q) else q, sigma_w2, sigma_b2,
                                            act))
    if 0 < q < math.inf:  # C'(1) = chi_1: one number, mean_field's, wherever it is printed
        cpoints = tuple(replace(p, chi_c=reached.chi) if p.c == 1 else p for p in cpoints)
        chi_c = reached.chi if cs == 1 else chi_c
    edge_value, note = None, ""
    if edge:
        try:
            edge_value = edge_of_chaos(sigma_b2, act, q0=q0)
        except ValueError as exc:
            note = str(exc)
    return SignalTheory(act.name, float(sigma_w2), float(sigma_b2), q, reached.chi, cs,
                        chi_c, gradient_depth_scale(reached.slope), gradient_depth_scale(chi_c),
                        gradient_depth_scale(reached.chi), phase(reached.chi),
                        {"q": qpoints, "c": cpoints}, edge_value, note)


def phase_diagram(f, sigma_w2, sigma_b2, q0=1.0):
    """chi_1 and xi_c on the grid ``sigma_w2`` x ``sigma_b2`` (1-d arrays), and the edge of
    chaos at each sigma_b^2, for the figure the papers draw (Poole et al. 2016; Schoenholz
    et al. 2017): the chi_1 = 1 line between the ordered and chaotic phases, and xi_c.

    Returns
    -------
    dict with ``sigma_w2``, ``sigma_b2`` (the axes), ``chi_1`` and ``xi_c`` (arrays shaped
    (len(sigma_b2), len(sigma_w2))) and ``edge`` (one sigma_w^2 or nan per sigma_b^2).
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q0", q0)
    act = _act.get(f)
    w2s, b2s = np.asarray(sigma_w2, float), np.asarray(sigma_b2, float)
    chi1 = np.empty((b2s.size, w2s.size))
    xic = np.empty_like(chi1)
    edge = np.full(b2s.size, math.nan)
    for i, b2 in enumerate(b2s):
        start = 0.0
        for j in np.argsort(-w2s):  # c* grows as sigma_w^2 falls: Newton starts at the last
            p = reached_point(LengthMap(w2s[j], b2, act), q0)
            chi1[i, j] = p.chi
            if 0 < p.q < math.inf and p.chi <= 1 + MARGINAL:  # ordered: c* = 1, chi_c = chi_1
                xic[i, j] = gradient_depth_scale(p.chi)
                continue
            cs, chi_c = _c_star(_CMap(1.0 if math.isnan(p.q) else p.q, w2s[j], b2, act), start)
            start = cs if 0 <= cs < 1 else 0.0
            xic[i, j] = gradient_depth_scale(chi_c)
        try:
            edge[i] = edge_of_chaos(b2, act, q0=q0)
        except ValueError:
            pass
    return {"sigma_w2": w2s, "sigma_b2": b2s, "chi_1": chi1, "xi_c": xic, "edge": edge}


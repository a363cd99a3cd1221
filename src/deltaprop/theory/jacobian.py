"""The input-output Jacobian's spectrum in the free-probability limit (dynamical isometry).

The network's input-output Jacobian at depth l is the product

    J[l] = da[l]/dx = D[l] W[l] D[l-1] W[l-1] ... D[1] W[1],   D[l] = diag f_l'(z[l])

(Pennington, Schoenholz & Ganguli 2017, "Resurrecting the sigmoid in deep learning through
dynamical isometry", eq. 2).  Its squared singular values lambda are the eigenvalues of
J J^T; m_k = E[lambda^k] are the moments of their density (over the n_l eigenvalues).

Model and assumptions (theirs): square layers (n_0 = n_1 = ... = n_L = N -> inf); W[l] with
zero-mean entries of variance sigma_w^2(l) / N, either i.i.d. (``"gaussian"``: W W^T has the
Marchenko-Pastur law of ratio 1, whatever the entries' law) or ``"orthogonal"`` (W W^T =
sigma_w^2 I); z[l]_j ~ N(0, q^l) with q^l the length map's iterate; and D[l]^2 and W[l] W[l]^T
freely independent.  Then the S-transforms multiply (their eq. 12),

    S_{JJ^T}(z) = prod_l S_{W[l] W[l]^T}(z) S_{D[l]^2}(z),

with S_{WW^T}(z) = 1 / (sigma_w^2 (1 + z)) (gaussian), 1 / sigma_w^2 (orthogonal), and
S_{D^2} fixed by the moments mu_k = E[f'(u)^{2k}], u ~ N(0, q^l) (:func:`derivative_moments`).
Expanding S = (1 / m_1) (1 + s_1 z + O(z^2)) with s_1 = -(m_2 - m_1^2) / m_1^2 gives the
first two moments in closed form (their sec. 2.5):

    m_1 = prod_l sigma_w^2(l) mu_1(l)                     = chi_1^L at the fixed point
    m_2 = m_1^2 (1 + sum_l (mu_2(l) / mu_1(l)^2 - 1 - s_1^W))

with s_1^W = -1 for gaussian and 0 for orthogonal weights.  So at criticality (chi_1 = 1,
m_1 = 1) the variance of lambda, sigma^2 = m_2 - m_1^2, is

    gaussian:    sigma^2 = L mu_2 / mu_1^2           >= L: grows with depth for every f
    orthogonal:  sigma^2 = L (mu_2 / mu_1^2 - 1)     -> 0 as q* -> 0 for smooth f (tanh:
                                                       mu_2 / mu_1^2 - 1 = 8 q*^2 + O(q*^3))
    relu (either weights): mu_2 = mu_1 = 1/2, sigma^2 = 2 L (gaussian), L (orthogonal) at
    the only critical point sigma_w^2 = 2, sigma_b^2 = 0: no choice reaches isometry.

For a linear network (f' = 1) with gaussian weights at sigma_w^2 = 1 the moments are the
Fuss-Catalan numbers (:func:`fuss_catalan`), m_2 = L + 1, and the density is known in
closed form (:func:`fuss_catalan_density`): the small-q* limit of tanh.

At finite width every measured moment carries an O(L / N) correction (for one real
Gaussian layer E[m_2] = 2 + 1 / N), which these infinite-width formulas leave out.

NumPy only, like the rest of :mod:`deltaprop.theory`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .._checks import check_nonnegative
from .gaussian import SLOPES, expect, expectations, numpy_pair
from .signal import length_map

__all__ = ["WEIGHTS", "S1", "derivative_moments", "critical_point", "layer_variances",
           "mean_squared_singular_value", "second_moment", "free_moments", "fuss_catalan",
           "fuss_catalan_density", "JacobianTheory", "jacobian_theory", "weight_law"]

#: the weight ensembles of the free-probability predictions
WEIGHTS = ("gaussian", "orthogonal")
#: s_1 of S_{WW^T}(z) = (1 / sigma_w^2) (1 + s_1 z + ...): minus the normalised variance of
#: the spectrum of W W^T (Marchenko-Pastur of ratio 1: variance sigma_w^4; orthogonal: 0)
S1 = {"gaussian": -1.0, "orthogonal": 0.0}


def _check_weights(weights, L):
    weights = [weights] * L if isinstance(weights, str) else list(weights)
    if len(weights) != L or any(w not in WEIGHTS for w in weights):
        raise ValueError(f"weights must be one of {WEIGHTS} (or one per layer, {L}); got "
                         f"{weights!r}")
    return weights


def weight_law(init):
    """The free-probability ensemble of a named initialiser: ``"orthogonal"`` for
    ``orthogonal``, ``"gaussian"`` for every law with i.i.d. zero-mean entries (normal,
    uniform, Glorot, He, LeCun, standard, epsilon: W W^T tends to Marchenko-Pastur for any
    of them), None for the deterministic ``debug`` and for a trained (``empirical``) network."""
    if init == "orthogonal":
        return "orthogonal"
    return None if init in ("debug", "empirical", None) else "gaussian"


def derivative_moments(f, q, k_max=2):
    """mu_k = E[f'(u)^{2k}], u ~ N(0, q), for k = 1..k_max: the moments of D^2 = diag f'(z)^2.

    mu_1 = E[f'^2] is the chi_1 / sigma_w^2 of mean field.  Closed form for the
    piecewise-linear f (slopes alpha for u < 0, beta for u > 0): mu_k = (alpha^{2k} +
    beta^{2k}) / 2 for q > 0 (relu: 1/2 for every k); quadrature
    (:func:`deltaprop.theory.gaussian.expect`) otherwise.  q = 0 gives f'(0)^{2k}.

    Returns
    -------
    numpy.ndarray (k_max,)
    """
    act, _, dfz = numpy_pair(f)
    if not q >= 0 or not math.isfinite(q):
        raise ValueError(f"q must be finite and >= 0, got {q!r}")
    k = np.arange(1, k_max + 1)
    if q == 0:
        return float(dfz(np.zeros(1))[0]) ** (2 * k)
    if act.name in SLOPES:
        alpha, beta = SLOPES[act.name]
        return (alpha ** (2 * k) + beta ** (2 * k)) / 2
    return np.array([float(expect(lambda z, p=2 * kk: dfz(z) ** p, 0.0, q)) for kk in k])


def critical_point(f, q_star):
    """(sigma_w^2, sigma_b^2) on the edge of chaos with fixed point q*:

        sigma_w^2 = 1 / E[f'(u)^2],   sigma_b^2 = q* - sigma_w^2 E[f(u)^2],   u ~ N(0, q*)

    (chi_1 = sigma_w^2 E[f'^2] = 1 and q* = sigma_w^2 E[f^2] + sigma_b^2: the critical line
    parametrised by q*, as Pennington et al. 2017, sec. 2.2, draw it).  tanh: sigma_w^2 ->
    1 and sigma_b^2 -> 0 as q* -> 0; relu: (2, 0) for every q*.

    Raises
    ------
    ValueError
        when no sigma_b^2 >= 0 reaches that q* (sigma_w^2 E[f^2] > q*, e.g. sigmoid).
    """
    if not (q_star > 0 and math.isfinite(q_star)):
        raise ValueError(f"q* must be finite and > 0, got {q_star!r}")
    e = expectations(f, 0.0, q_star)
    w2 = 1.0 / float(e["df2"])
    b2 = q_star - w2 * float(e["f2"])
    if b2 < -1e-12 * q_star:
        raise ValueError(f"no critical point with q* = {q_star:g}: it would need sigma_b^2 = "
                         f"{b2:.4g} < 0 (give sigma_w^2 and sigma_b^2 instead)")
    return w2, max(b2, 0.0)


def layer_variances(q_in, sigma_w2, sigma_b2, activations):
    """q^l for l = 1..L: q^1 = sigma_w^2(1) q_in + sigma_b^2(1), q^l = sigma_w^2(l)
    E[f_{l-1}(u)^2] + sigma_b^2(l), u ~ N(0, q^{l-1}) (the length map).

    ``q_in`` = |x|^2 / n_0, the inputs' second moment per component (layer 1 is linear in
    x, so q^1 = q* only for inputs drawn with q_in = (q* - sigma_b^2) / sigma_w^2).
    ``activations``: f_1..f_L (f_L is not used); ``sigma_w2``, ``sigma_b2``: one per layer.
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q_in", q_in)
    q = [sigma_w2[0] * q_in + sigma_b2[0]]
    for l in range(1, len(activations)):
        q.append(float(length_map(q[-1], sigma_w2[l], sigma_b2[l], activations[l - 1])))
    return q


def mean_squared_singular_value(sigma_w2, mu1):
    """m_1(l) = E[lambda] = prod_{l'=1..l} sigma_w^2(l') mu_1(l'), for l = 1..L (Pennington
    et al. 2017, sec. 2.5; chi_1^l at the fixed point).

    The same as the mean-field gradient recursion: E[|J v|^2] / |v|^2 for one unit vector
    v.  Holds for any widths when sigma_w^2(l) = n_{l-1} Var(W[l]) and lambda runs over the
    n_l eigenvalues of J J^T.
    """
    return np.cumprod(np.asarray(sigma_w2, float) * np.asarray(mu1, float))


def second_moment(sigma_w2, mu1, mu2, weights):
    """m_2(l) = E[lambda^2] = m_1(l)^2 (1 + sum_{l'<=l} (mu_2(l') / mu_1(l')^2 - 1 - s_1^W)),
    s_1^W = -1 (gaussian) or 0 (orthogonal), for l = 1..L (Pennington et al. 2017, sec. 2.5;
    module docstring).  The variance of lambda is m_2 - m_1^2; with gaussian weights at
    criticality m_2 = 1 + L mu_2 / mu_1^2 (1 + L / p for relu-like D^2 in {0, 1},
    P(1) = p)."""
    mu1, mu2 = np.asarray(mu1, float), np.asarray(mu2, float)
    s1 = np.array([S1[w] for w in _check_weights(weights, len(mu1))])
    m1 = mean_squared_singular_value(sigma_w2, mu1)
    return m1 ** 2 * (1 + np.cumsum(mu2 / mu1 ** 2 - 1 - s1))


# --- the S-transform on truncated power series -----------------------------------------


def _mul(a, b, n):
    return np.convolve(a, b)[:n]


def _reverse(a):
    """Coefficients of chi, the compositional inverse of psi(z) = sum_k a_k z^k (a_0 = 0,
    a_1 != 0): psi(chi(w)) = w to the order of ``a``."""
    n = len(a)
    b = np.zeros(n)
    b[1] = 1.0 / a[1]
    for k in range(2, n):
        comp, power = np.zeros(n), np.zeros(n)
        power[0] = 1.0
        for j in range(1, n):  # sum_j a_j b^j, truncated
            power = _mul(power, b, n)
            comp += a[j] * power
        b[k] = -comp[k] / a[1]
    return b


def _s_transform(m):
    """S(z) = chi(z) (1 + z) / z to order z^{K-1} from the moments m_1..m_K (psi = sum m_k z^k,
    chi its inverse; Pennington et al. 2017, eqs. 7-10)."""
    chi = _reverse(np.concatenate([[0.0], m]))
    return _mul(chi[1:], [1.0, 1.0], len(m))


def _moments_from_s(S):
    """m_1..m_K from S(z) to order z^{K-1}: chi(z) = z S(z) / (1 + z), psi its inverse."""
    K = len(S)
    chi = np.concatenate([[0.0], _mul(S, (-1.0) ** np.arange(K), K)])
    return _reverse(chi)[1:]


def free_moments(sigma_w2, mu, weights):
    """m_1..m_K of lambda (eigenvalues of J J^T, J = D[l] W[l] ... D[1] W[1]) at every depth
    l = 1..L, from

        S_{JJ^T}(z) = prod_{l'<=l} S_{W[l']W[l']^T}(z) S_{D[l']^2}(z)   (Pennington et al.
                                                                     2017, eq. 12)

    on power series to order K: S_{D^2} from the moments mu_1..mu_K of D[l]^2
    (:func:`derivative_moments`), S_{WW^T} from W W^T's moments sigma_w^{2k} Cat(k) =
    sigma_w^{2k} binom(2k, k) / (k + 1) (gaussian) or sigma_w^{2k} (orthogonal).

    Parameters
    ----------
    sigma_w2 : sequence (L,)
    mu : array (L, K): mu[l - 1, k - 1] = mu_k of layer l.
    weights : ``"gaussian"``, ``"orthogonal"`` or one per layer.

    Returns
    -------
    numpy.ndarray (L, K): row l - 1 holds m_1..m_K at depth l (m_1, m_2 agree with
    :func:`mean_squared_singular_value` and :func:`second_moment`).
    """
    mu = np.atleast_2d(np.asarray(mu, float))
    L, K = mu.shape
    k = np.arange(1, K + 1)
    catalan = np.array([math.comb(2 * j, j) / (j + 1) for j in k])
    S, out = np.eye(1, K)[0], []
    for w2, w, row in zip(sigma_w2, _check_weights(weights, L), mu, strict=True):
        ww = w2 ** k * (catalan if w == "gaussian" else 1.0)
        S = _mul(_mul(S, _s_transform(ww), K), _s_transform(row), K)
        out.append(_moments_from_s(S))
    return np.array(out)


def fuss_catalan(L, k):
    """m_k = binom((L + 1) k, k) / (L k + 1): the k-th moment of lambda for a product of L
    square Gaussian matrices of variance 1 / N (a linear network at sigma_w^2 = 1), N -> inf
    (Fuss-Catalan numbers; L = 1: Catalan, Marchenko-Pastur)."""
    return math.comb((L + 1) * k, k) / (L * k + 1)


def fuss_catalan_density(L, n=400):
    """(lambda, rho(lambda)): the Fuss-Catalan density of order L on (0, (L+1)^{L+1} / L^L],
    in the parametrisation of Haagerup & Moller (2012) / Neuschel (2014), 0 < phi < pi/(L+1):

        lambda(phi) = sin((L+1) phi)^{L+1} / (sin(phi) sin(L phi)^L)
        rho         = sin(phi)^2 sin(L phi)^{L-1} / (pi sin((L+1) phi)^L)

    (L = 1: Marchenko-Pastur, rho = sqrt((4 - lambda) / lambda) / (2 pi)).  ``n`` points,
    lambda increasing.
    """
    phi = np.linspace(0, math.pi / (L + 1), n + 2)[1:-1]
    s, sL, s1 = np.sin(phi), np.sin(L * phi), np.sin((L + 1) * phi)
    lam = s1 ** (L + 1) / (s * sL ** L)
    rho = s ** 2 * sL ** (L - 1) / (math.pi * s1 ** L)
    return lam[::-1], rho[::-1]


@dataclass(frozen=True)
class JacobianTheory:
    """Predictions per depth l = 1..L (index l - 1): ``q`` (q^l), ``mu`` ((L, K) moments of
    D[l]^2), ``chi`` (sigma_w^2(l) mu_1(l)), ``m`` ((L, K) free moments m_1..m_K of lambda at
    depth l); ``m1``, ``m2`` and ``variance`` = m_2 - m_1^2 (None when the layers are not
    square, where only m_1 is predicted)."""

    q: tuple
    mu: np.ndarray
    chi: np.ndarray
    m1: np.ndarray
    m2: np.ndarray | None
    variance: np.ndarray | None
    m: np.ndarray | None
    weights: tuple


def jacobian_theory(activations, sigma_w2, sigma_b2, q_in, weights, k_max=3, square=True):
    """The free-probability predictions at every depth: q^l (:func:`layer_variances`), mu_k
    (:func:`derivative_moments`), m_1 (:func:`mean_squared_singular_value`), m_2 and the
    variance (:func:`second_moment`), m_1..m_{k_max} (:func:`free_moments`).

    ``activations``: f_1..f_L (a list: its length is the depth L); ``sigma_w2``,
    ``sigma_b2``: a number or one per layer; ``weights``: ``"gaussian"``, ``"orthogonal"``
    (or one per layer).  ``square=False`` (unequal widths) keeps only q, mu, chi and m_1.
    """
    check_nonnegative("sigma_w2", sigma_w2)
    check_nonnegative("sigma_b2", sigma_b2)
    check_nonnegative("q_in", q_in)
    acts = list(activations)
    L = len(acts)
    sigma_w2, b2 = ([float(v)] * L if np.isscalar(v) else [float(t) for t in v]
                    for v in (sigma_w2, sigma_b2))
    if len(sigma_w2) != L or len(b2) != L:
        raise ValueError(f"need one sigma_w^2 and one sigma_b^2 per layer ({L})")
    weights = tuple(_check_weights(weights, L))
    q = layer_variances(q_in, sigma_w2, b2, acts)
    mu = np.array([derivative_moments(f, ql, max(k_max, 2)) for f, ql in zip(acts, q,
                                                                            strict=True)])
    chi = np.asarray(sigma_w2, float) * mu[:, 0]
    m1 = mean_squared_singular_value(sigma_w2, mu[:, 0])
    if not square:
        return JacobianTheory(tuple(q), mu, chi, m1, None, None, None, weights)
    m2 = second_moment(sigma_w2, mu[:, 0], mu[:, 1], weights)
    m = free_moments(sigma_w2, mu[:, :k_max], weights)
    return JacobianTheory(tuple(q), mu, chi, m1, m2, m2 - m1 ** 2, m, weights)

"""Finite width: the spread of E[delta[l]^2] from network to network.

At finite width E[delta[l]^2] -- the average of delta[l]_ij^2 over the units j of layer l
(and the samples i) of *one* network -- is itself random: it changes from one draw of the
weights to the next.  Hanin (2018, "Which neural net architectures give rise to exploding
and vanishing gradients?") proves for ReLU networks at one input that the empirical
variance of the squared entries of the input-output Jacobian is exponential in
beta = sum_k 1/n_k over the hidden layers: the variance of log E[delta^2] grows like
depth / width.  This module gives that variance per layer, with constants derived here
for Gaussian weights (products of chi-squares):

* :func:`relu_layer_log_variance` -- the exact per-layer term for ReLU with Gaussian
  weights, V(n) = E[psi'(N/2)] + Var[psi(N/2)] ~ 5/n, N ~ Binomial(n, 1/2);
* :func:`relu_jacobian_log_variance` -- Hanin's setting in closed form: one input, a fixed
  output direction u (delta[L] = u), Var[log E[delta[l]^2]] = sum_{k=l}^{L-1} V(n_k);
* :func:`relu_law` / :func:`relu_spread` -- the exact law of E[delta[l]^2] of one ReLU
  network at one input, with the loss's delta[L] (MSE) or a fixed u, including the
  dependence that the closed form leaves out; integrated by Monte Carlo over a handful of
  scalars per draw (no matrices), its integration error reported;
* :func:`log_variance` -- any elementwise activation, one input, fixed u: the leading
  order in 1/n, sum_k (kappa_k + forward terms) / n_k, the activation-dependent constant
  kappa = 3 E[f'^4] / E[f'^2]^2 - 1 (:func:`layer_constant`; 5 for ReLU, 2 for linear);
* :func:`networks_needed` -- K = rel_var / rel_se^2 networks for a relative standard
  error rel_se of the K-network mean.

Assumptions (each function repeats those it needs): weights i.i.d. with mean 0, drawn
independently of everything (an untrained network; not orthogonal, not trained);
Gaussian weights and zero hidden biases for the exact ReLU results; ONE input per
network.  With m > 1 inputs averaged in each network the spread is smaller and no
formula here predicts it: gradient independence, which the leading-order pair covariances
would need, undercounts it by a factor up to 2 and more (docs/signal.md, "Finite width").

Notation: sizes n_0..n_L, ``weight_var[l]`` the raw variance of one entry of W[l] (slot 0
unused), B_l = ||delta[l]||^2 for one input, E[delta[l]^2] = B_l / n_l per network.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import special, stats

from .. import activations as _act
from .._checks import check_nonnegative
from .gaussian import SLOPES, expect, numpy_pair

__all__ = ["relu_layer_log_variance", "relu_jacobian_log_variance", "relu_law",
           "relu_spread", "gaussian_norm2", "spread_of", "layer_constant", "layer_noise",
           "log_variance", "networks_needed", "TOPS"]

#: delta[L] of the laws: the MSE loss's z[L] - y (identity output), or a fixed unit vector u
TOPS = ("mse", "jacobian")


# ----------------------------------------------------------------- ReLU, exact per layer
def relu_layer_log_variance(n) -> float:
    """V(n) = Var[log X],  X ~ chi^2_N,  N ~ Binomial(n, 1/2) given N >= 1
    = E[psi'(N/2)] + Var[psi(N/2)]  (psi the digamma function)  = 5/n + O(1/n^2).

    The log-variance of one ReLU layer's gain under Gaussian weights: for one input,
    ||a[k]||^2 = ||a[k-1]||^2 Var(W[k]) chi^2_{N_k} exactly (given a[k-1] the z[k]_j are
    i.i.d. N(0, Var(W[k]) ||a[k-1]||^2); N_k of them are positive), and backwards
    ||delta[k]||^2 = ||delta[k+1]||^2 Var(W[k+1]) chi^2_{N_k} when delta[k+1] is
    independent of W[k+1] (a fixed output direction; otherwise see :func:`relu_law`).
    log chi^2_N has mean psi(N/2) + log 2 and variance psi'(N/2); the law of total
    variance gives V(n).  Expanding, E[psi'(N/2)] = 4/n + O(1/n^2) and
    Var[psi(N/2)] = 1/n + O(1/n^2): the constant 5 = 4 (chi-square) + 1 (active count).
    N = 0 (probability 2^-n, a dead layer, log E[delta^2] = -inf) is excluded.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"width must be >= 1, got {n}")
    N = np.arange(1, n + 1)
    p = stats.binom.pmf(N, n, 0.5)
    p = p / p.sum()
    d1, d0 = special.polygamma(1, N / 2), special.digamma(N / 2)
    mean0 = p @ d0
    return float(p @ d1 + p @ (d0 - mean0) ** 2)


def relu_jacobian_log_variance(sizes) -> np.ndarray:
    """Var[log E[delta[l]^2]] = sum_{k=l}^{L-1} V(n_k),  l = 1..L  (index 0: nan).

    Hanin's setting: a ReLU network with i.i.d. Gaussian zero-mean weights (any variance,
    e.g. He's 2 / n_{k-1}), zero hidden biases, ONE input, and delta[L] = u a fixed vector
    (the row u^T dz[L]/dz[l] of the Jacobian).  Each layer k = L-1..l multiplies
    ||delta||^2 by Var(W[k+1]) chi^2_{N_k}, independent factors (:func:`relu_layer_log_variance`),
    so the variance is the sum ~ 5 sum_k 1/n_k = 5 beta_l (5 + about 22 / n per layer at
    width n).  Approximation: in the true network one coordinate of each chi^2 (along
    a[k]) is shared with the forward pass; :func:`relu_law` keeps it.  In every case tried
    (widths 16-64, 5-20 layers, beta up to 0.625) the two agree within 0.3%.
    """
    L = len(sizes) - 1
    out = np.full(L + 1, np.nan)
    out[L], acc = 0.0, 0.0
    for l in range(L - 1, 0, -1):
        acc += relu_layer_log_variance(sizes[l])
        out[l] = acc
    return out


# ----------------------------------------------------------------- ReLU, the exact law
def relu_law(sizes, weight_var, *, top="mse", x_norm2=1.0, targets=(0.0, 1.0),
             bias_out=(0.0, 0.0), draws=1 << 18, seed=0) -> np.ndarray:
    """Draws of log E[delta[l]^2] of one ReLU network at one input: shape (draws, L + 1).

    Exact law (column 0 is nan) for: i.i.d. Gaussian zero-mean weights W[l] with raw
    variances ``weight_var[l]``, ReLU hidden layers with zero biases, an identity output layer
    with biases N(bias_out) (mean, variance), one input x per network.  With a[0] = x,
    N_k ~ Binomial(n_k, 1/2) active units and independent chi-squares F_k, X_k:

        ||a[k]||^2 = ||a[k-1]||^2 weight_var[k] F_k,          F_k ~ chi^2_{N_k},  k = 1..L-1
        z[L] = ||a[L-1]|| zeta + b[L],  zeta ~ N(0, weight_var[L] I_{n_L})
        delta[L] = z[L] - y (top "mse")  or  u, ||u|| = 1 (top "jacobian")
        s = (z[L] - b[L]) . delta[L]                   (= z[k] . delta[k] at every k < L)
        B_L = ||delta[L]||^2,   B_k = s^2 / ||a[k]||^2 + weight_var[k+1] B_{k+1} X_k,
                                X_k ~ chi^2_{N_k - 1},  k = L-1..1
        E[delta[l]^2] = B_l / n_l.

    Derivation (docs/signal.md): split W[k+1] = zeta' a_hat[k]^T + W_perp with
    zeta' = W[k+1] a_hat[k] = z[k+1] / ||a[k]|| and W_perp independent of zeta' (Gaussian
    rows).  delta[k+1] depends on W[k+1] only through zeta' (the forward pass), so
    W_perp^T delta[k+1] is N(0, weight_var[k+1] B_{k+1}) on the complement of a[k], and masking
    by the active set (which contains a[k]) leaves chi^2_{N_k - 1}; the a[k] coordinate is
    zeta' . delta[k+1] = z[k+1] . delta[k+1] / ||a[k]||, and for ReLU without hidden
    biases z[k] . delta[k] = z[k+1] . delta[k+1] (Euler's identity for a positively
    homogeneous map), so it is s / ||a[k]|| at every layer.  That coordinate is the
    dependence that gradient independence drops; for the MSE top it is of relative size
    about n_L / n_k, not 1 / n_k.

    Parameters
    ----------
    sizes : [n_0, ..., n_L]
    weight_var : sequence, slot 0 unused
        Raw variance of one entry of W[l].
    top : {"mse", "jacobian"}
    x_norm2 : float or callable
        ||x||^2 of the input, or ``rng, n -> array`` of draws (:func:`gaussian_norm2`).
    targets : (mean, var) or callable
        y_k ~ N(mean, var) i.i.d., or ``rng, n -> (n, n_L)`` draws (top "mse" only).
    bias_out : (mean, var)
        b[L]_k ~ N(mean, var).
    draws : int
    seed : int or numpy seed

    Draws with a dead layer (some N_k = 0, probability about sum_k 2^-n_k) are dropped.
    """
    check_nonnegative("weight_var", weight_var)
    if top not in TOPS:
        raise ValueError(f"top must be one of {', '.join(TOPS)}; got {top!r}")
    sizes = [int(n) for n in sizes]
    L, D = len(sizes) - 1, int(draws)
    if L < 2:
        raise ValueError("the law needs at least one hidden layer (L >= 2)")
    rng = np.random.default_rng(seed)
    a2 = np.array(x_norm2(rng, D) if callable(x_norm2) else np.full(D, float(x_norm2)),
                  float)
    a2k, N = [a2], [None]
    for k in range(1, L):
        Nk = rng.binomial(sizes[k], 0.5, D)
        a2k.append(a2k[-1] * weight_var[k] * rng.gamma(Nk / 2, 2.0))
        N.append(Nk)
    M = sizes[L]
    zeta = math.sqrt(weight_var[L]) * rng.standard_normal((D, M))
    norm = np.sqrt(a2k[L - 1])[:, None]
    if top == "mse":
        y = targets(rng, D) if callable(targets) else \
            targets[0] + math.sqrt(targets[1]) * rng.standard_normal((D, M))
        b = bias_out[0] + math.sqrt(bias_out[1]) * rng.standard_normal((D, M))
        delta = norm * zeta + b - y
    else:
        u = rng.standard_normal((D, M))
        delta = u / np.linalg.norm(u, axis=1, keepdims=True)
    s = (norm * zeta * delta).sum(axis=1)
    B = [None] * (L + 1)
    B[L] = (delta * delta).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        for k in range(L - 1, 0, -1):
            X = rng.gamma(np.maximum(N[k] - 1, 0) / 2, 2.0)
            B[k] = s * s / a2k[k] + weight_var[k + 1] * B[k + 1] * X
        out = np.full((D, L + 1), np.nan)
        for l in range(1, L + 1):
            out[:, l] = np.log(B[l] / sizes[l])
    alive = np.all([N[k] > 0 for k in range(1, L)], axis=0)
    return out[alive]


def gaussian_norm2(n0, mean=0.0, var=1.0) -> Callable:
    """``rng, n -> ||x||^2`` draws for x with i.i.d. N(mean, var) components:
    var * noncentral chi^2 with n0 degrees of freedom and noncentrality n0 mean^2 / var."""
    check_nonnegative("var", var)
    def draw(rng, n):
        if mean == 0:
            return var * rng.chisquare(n0, n)
        return var * rng.noncentral_chisquare(n0, n0 * mean * mean / var, n)
    return draw


def spread_of(values, axis=0) -> dict:
    """Spread of per-network values Q (any shape; networks along ``axis``):

        log_var = Var[log Q],  rel_var = Var[Q] / E[Q]^2,

    each with its standard error sd(psi) / sqrt(K) from the influence function psi of the
    estimator (delta method): psi = (y - ybar)^2 - log_var for y = log Q, and
    psi = ((Q - Qbar)^2 - V) / Qbar^2 - 2 V (Q - Qbar) / Qbar^3 for rel_var.  Sample
    variances with ddof = 1.  ``log_var`` is nan where some Q <= 0.  These are large-K
    standard errors: with few networks and a heavy-tailed Q they are optimistic (for
    log-normal Q with sd(log Q) = 0.5, rel_var's se is 22% low at K = 80, 9% at K = 400).
    """
    Q = np.moveaxis(np.asarray(values, float), axis, 0)
    K = Q.shape[0]
    if K < 2:
        raise ValueError("the spread between networks needs at least 2 networks")
    mu, V = Q.mean(axis=0), Q.var(axis=0, ddof=1)
    psi = ((Q - mu) ** 2 - V) / mu**2 - 2 * V * (Q - mu) / mu**3
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.where(Q > 0, np.log(np.where(Q > 0, Q, 1.0)), np.nan)
    lv = y.var(axis=0, ddof=1)
    psi_l = (y - y.mean(axis=0)) ** 2 - lv
    return {"log_var": lv, "log_var_se": psi_l.std(axis=0, ddof=1) / math.sqrt(K),
            "rel_var": V / mu**2, "rel_var_se": psi.std(axis=0, ddof=1) / math.sqrt(K),
            "K": K}


def relu_spread(sizes, weight_var, **law) -> dict:
    """:func:`spread_of` the draws of :func:`relu_law` (``law``: its keywords) per layer:
    arrays (L + 1,) of log_var, log_var_se, rel_var, rel_var_se (slot 0 nan); the standard
    errors are the Monte Carlo integration error of the law, not a spread."""
    check_nonnegative("weight_var", weight_var)
    logs = relu_law(sizes, weight_var, **law)
    out = spread_of(np.exp(logs[:, 1:]))
    res = {k: np.concatenate([[np.nan], out[k]]) for k in
           ("log_var", "log_var_se", "rel_var", "rel_var_se")}
    res["draws"] = out["K"]
    return res


# ----------------------------------------------------------------- any activation, leading order
def _moments(f, var) -> dict:
    """E[f^2], E[f^4], E[f'^2], E[f'^4], E[f^2 f'^2] at z ~ N(0, var), and the
    elasticities theta = dlog E[f^2] / dlog var, eta = dlog E[f'^2] / dlog var."""
    act = _act.get(f)
    if act.name in SLOPES:  # f = alpha z (z < 0), beta z (z > 0): closed forms at mean 0
        al, be = SLOPES[act.name]
        p2, p4 = (al**2 + be**2) / 2, (al**4 + be**4) / 2
        return {"f2": p2 * var, "f4": 3 * p4 * var**2, "df2": p2, "df4": p4,
                "f2df2": p4 * var, "theta": 1.0, "eta": 0.0}
    _, fz, dfz = numpy_pair(act)
    g = {"f2": lambda z: fz(z) ** 2, "f4": lambda z: fz(z) ** 4,
         "df2": lambda z: dfz(z) ** 2, "df4": lambda z: dfz(z) ** 4,
         "f2df2": lambda z: (fz(z) * dfz(z)) ** 2}
    out = {k: float(expect(h, 0.0, var)) for k, h in g.items()}
    h = 1e-4  # central difference in log var; quadrature is smooth in var
    for name, key in (("theta", "f2"), ("eta", "df2")):
        up, down = (float(expect(g[key], 0.0, var * math.exp(s))) for s in (h, -h))
        out[name] = (math.log(up) - math.log(down)) / (2 * h)
    return out


def layer_constant(f, q) -> float:
    """kappa = 3 E[f'(z)^4] / E[f'(z)^2]^2 - 1,  z ~ N(0, q).

    n_k Var of one layer's backward gain ||delta[k]||^2 / ||delta[k+1]||^2 at leading
    order, for one input and delta[k+1] independent of W[k+1]: the gain is
    Var(W[k+1]) sum_j f'(z_j)^2 xi_j^2 with xi_j i.i.d. N(0, ||delta[k+1]||^2) (central
    limit over n_{k+1} terms), whose relative variance is (E[f'^4] E[xi^4] / E[xi^2]^2 -
    E[f'^2]^2) / (n_k E[f'^2]^2).  ReLU 3 (1/2) / (1/4) - 1 = 5; identity 2.  The full
    per-layer term also has the forward pass's fluctuation (:func:`log_variance`).
    """
    m = _moments(f, q)
    return 3 * m["df4"] / m["df2"] ** 2 - 1


def layer_noise(f, q) -> dict:
    """n_k times the variances and covariance of one layer's relative fluctuations at
    z ~ N(0, q): forward A = mean_j f(z_j)^2, backward G = mean_j f'(z_j)^2 xi_j^2:

        n Var(e_f) = E[f^4] / E[f^2]^2 - 1,      n Var(e_b) = kappa (:func:`layer_constant`),
        n Cov(e_f, e_b) = E[f^2 f'^2] / (E[f^2] E[f'^2]) - 1,

    with the elasticities ``theta`` = dlog E[f^2] / dlog q and ``eta`` = dlog E[f'^2] /
    dlog q.  ReLU: 5, 5, 1, theta 1, eta 0.
    """
    m = _moments(f, q)
    return {"ff": m["f4"] / m["f2"] ** 2 - 1, "bb": 3 * m["df4"] / m["df2"] ** 2 - 1,
            "fb": m["f2df2"] / (m["f2"] * m["df2"]) - 1, "theta": m["theta"],
            "eta": m["eta"], "f2": m["f2"], "df2": m["df2"]}


def log_variance(sizes, activations, weight_var, bias_var=None, *, input_second=1.0,
                 input_log_var=0.0) -> np.ndarray:
    """Var[log E[delta[l]^2]] for l = 1..L at leading order in 1/n: one input, delta[L] = u
    fixed (index 0 nan, index L 0).

    Assumptions: i.i.d. zero-mean weights (raw variances ``weight_var[l]``), biases N(0,
    ``bias_var[l]``), elementwise hidden activations, one input with E[||x||^2] / n_0 =
    ``input_second`` and Var[log(||x||^2 / n_0)] = ``input_log_var`` (0 for a fixed input,
    about 2 / n_0 for i.i.d. standard normal components), W[k+1] treated as independent
    of delta[k+1] (gradient independence; exact for ReLU up to one coordinate a layer,
    :func:`relu_law`).  Per network let A_k = ||a[k]||^2 / n_k and
    S_k = n_{k-1} weight_var[k] A_{k-1} + bias_var[k]: given layer k-1 the z[k]_j are i.i.d.
    N(0, S_k), so

        log A_k = log E[f^2](S_k) + e_f,k,
        log B_k = log B_{k+1} + log(n_k weight_var[k+1] E[f'^2](S_k)) + e_b,k,

    with the layer noises of :func:`layer_noise` (variances ~ 1/n_k, independent between
    layers).  Linearising around the mean-field S_k (d log S_k = w_k d log A_{k-1},
    w_k = n_{k-1} weight_var[k] A_{k-1} / S_k):

        lambda_0 = input noise,  lambda_k = theta_k w_k lambda_{k-1} + e_f,k
        log B_l = sum_{k=l}^{L-1} (eta_k w_k lambda_{k-1} + e_b,k) + const,

    a linear form in independent noises whose variance is returned.  For ReLU (theta = 1,
    eta = 0) it is sum_k 5 / n_k; for smooth activations the forward pass's fluctuation
    enters through eta_k (a larger q_k lowers E[f'^2] for tanh).  Neglected: O(1/n^2).
    """
    check_nonnegative("weight_var", weight_var)
    check_nonnegative("bias_var", bias_var)
    sizes = [int(n) for n in sizes]
    L = len(sizes) - 1
    acts = _layer_acts(activations, L)
    bias_var = [0.0] * (L + 1) if bias_var is None else list(bias_var)
    A = input_second
    lam = {0: 1.0}  # lambda_{k-1} = sum_i lam[i] e_i (i = 0 the input, i >= 1 e_f,i)
    var_e = {0: input_log_var}
    layers = []  # per hidden layer k: (k, eta_k w_k, lambda_{k-1}, its noises)
    for k in range(1, L):
        S = sizes[k - 1] * weight_var[k] * A + bias_var[k]
        if S <= 0:
            raise ValueError(f"layer {k}: pre-activation variance {S} <= 0")
        w = sizes[k - 1] * weight_var[k] * A / S
        nz = layer_noise(acts[k - 1], S)
        layers.append((k, nz["eta"] * w, dict(lam), nz))
        lam = {i: nz["theta"] * w * c for i, c in lam.items()}
        lam[k] = 1.0
        var_e[k] = nz["ff"] / sizes[k]
        A = nz["f2"]
    out = np.full(L + 1, np.nan)
    out[L] = 0.0
    for l in range(1, L):
        c, var = {}, 0.0  # c: the coefficient of each forward noise e_i in log B_l
        for k, ew, lam_prev, nz in layers[l - 1:]:
            for i, ci in lam_prev.items():
                c[i] = c.get(i, 0.0) + ew * ci
            var += nz["bb"] / sizes[k]
        for k, _, _, nz in layers[l - 1:]:  # e_f,k and e_b,k: the same units of layer k
            var += 2 * c.get(k, 0.0) * nz["fb"] / sizes[k]
        out[l] = var + sum(ci * ci * var_e[i] for i, ci in c.items())
    return out


def _layer_acts(activations, L):
    if isinstance(activations, str):
        return [activations] * (L - 1)
    acts = list(activations)
    if len(acts) == L:
        acts = acts[:-1]
    if len(acts) != L - 1:
        raise ValueError(f"give one activation or one per hidden layer ({L - 1})")
    return acts


# ----------------------------------------------------------------- planning K
def networks_needed(rel_var, rel_se) -> int:
    """K = ceil(rel_var / rel_se^2): networks for a relative standard error ``rel_se`` of
    the K-network mean of E[delta[l]^2].

    The mean of K independent per-network values Q has standard error sd(Q) / sqrt(K), so
    its relative standard error is sqrt(rel_var / K) with rel_var = Var[Q] / E[Q]^2 (for
    small spreads rel_var ~ Var[log Q]; for a log-normal Q exactly exp(Var[log Q]) - 1).
    The samples within a network do not replace networks: their error is part of Q's.
    """
    if not rel_se > 0:
        raise ValueError(f"rel_se must be > 0, got {rel_se}")
    if not rel_var >= 0:
        raise ValueError(f"rel_var must be >= 0, got {rel_var}")
    return max(int(math.ceil(rel_var / rel_se**2 - 1e-12)), 1)

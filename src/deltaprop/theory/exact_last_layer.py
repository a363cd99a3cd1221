"""The question's exact E[delta] of the last hidden layer (MSE, linear output, initialisation).

Setting: layer i = L - 1 has H units, the output layer L is linear with M units, loss MSE,
so delta[L] = z[L] - y = W[L] f(z[L-1]) + b[L] - y.  The weights W[L] are i.i.d. with mean
mu_w and variance sigma_w^2 (raw, per entry: the arguments ``weight_mean`` and
``weight_var``, not the width-scaled ``sigma_w2`` of the mean-field modules), independent
of z = z[L-1] (which depends on the inputs and the lower layers only) and of y; y is
independent of z (targets drawn apart from the inputs).  Then, for unit j,

    E[delta_j] = E[f'(z_j) sum_k W_kj (sum_l W_kl f(z_l) + b_k - y_k)]
               = sum_k sum_l E[W_kj W_kl] E[f'(z_j) f(z_l)]
                 + mu_w sum_k (E[b_k] - E[y_k]) E[f'(z_j)]

and E[W_kj W_kl] = sigma_w^2 [j = l] + mu_w^2 gives

    E[delta_j] = M sigma_w^2 E[f'(z_j) f(z_j)]
                 + mu_w sum_k ( mu_w sum_l E[f'(z_j) f(z_l)] - E[f'(z_j)] (E[y_k] - E[b_k]) ).

This is the question's last line (with an output bias added: E[y_k] -> E[y_k] - E[b_k]).
Checked here: the question's intermediate line writes sigma_w^2 e_i where e_j is meant, and
its last line keeps the cross terms E[f'(z_j) f(z_l)] for l != j unfactored, as it must: z_j
and z_l share the inputs, so they are *not* independent when mu_w != 0 in the lower layers.
The question's final formula is right; :func:`question_formula` implements it literally and
:func:`exact_mean` adds the bias; the tests compare both with Monte Carlo.

The independence approximation (:mod:`.independence`) instead gives
E[f'(z_j)] mu_w sum_k E[delta[L]_k], E[delta[L]_k] = mu_w sum_l E[f(z_l)] + E[b_k] - E[y_k].
The question's conditions for the two to agree are evaluated by :func:`independence_gap`.
"""

from __future__ import annotations

from .._checks import check_nonnegative

__all__ = ["question_formula", "exact_mean", "independence_mean", "independence_gap",
           "ForwardCross", "ForwardSecond", "forward_second", "exact_second_moment"]

from dataclasses import dataclass


@dataclass(frozen=True)
class ForwardCross:
    """Forward expectations of the last hidden layer the formula needs (per unit j).

    ``df`` = E[f'(z_j)], ``fdf`` = E[f'(z_j) f(z_j)], ``df_sum_f`` = sum_{l=1}^H E[f'(z_j)
    f(z_l)] (l = j included), ``f`` = E[f(z_j)], ``H`` = number of hidden units.
    """

    df: float
    fdf: float
    df_sum_f: float
    f: float
    H: int


def question_formula(M, weight_var, weight_mean, fw: ForwardCross, y_mean):
    """E[delta_j] = M sigma_w^2 E[f'(z_j) f(z_j)]
    + mu_w sum_{k=1}^M [mu_w sum_{l=1}^H E[f'(z_j) f(z_l)] - E[f'(z_j)] E[y_k]]   (the question).

    sigma_w^2 = ``weight_var`` and mu_w = ``weight_mean`` are the raw per-entry variance and
    mean of W[L]; ``y_mean``: E[y_k], a scalar (same for every k) or a sequence of M values.
    Assumes no output bias (or zero-mean biases are *not* enough: E[b] must be 0).
    """
    check_nonnegative("weight_var", weight_var)
    sum_y = _sum_over_outputs(y_mean, M)
    mu = weight_mean
    return M * weight_var * fw.fdf + mu * (M * mu * fw.df_sum_f - fw.df * sum_y)


def exact_mean(M, weight_var, weight_mean, fw: ForwardCross, y_mean, bias_mean=0.0):
    """The question's formula with an output bias of mean ``bias_mean``:
    E[y_k] -> E[y_k] - E[b_k]."""
    return question_formula(M, weight_var, weight_mean, fw,
                            _sum_over_outputs(y_mean, M) / M - bias_mean)


def independence_mean(M, weight_mean, fw: ForwardCross, y_mean, bias_mean=0.0):
    """E[f'(z_j)] mu_w sum_k (mu_w H E[f(z)] + E[b_k] - E[y_k])   (independence, one step)."""
    sum_y = _sum_over_outputs(y_mean, M)
    mu = weight_mean
    return fw.df * mu * (M * (mu * fw.H * fw.f + bias_mean) - sum_y)


def independence_gap(M, weight_var, weight_mean, fw: ForwardCross):
    """The question's conditions for independence to be good, as numbers.

    exact - independence = M sigma_w^2 E[f' f]                          ("variance term")
                          + M mu_w^2 (sum_l E[f'(z_j) f(z_l)] - H E[f'] E[f])
                                                                     ("covariance term")

    The question asks (1) M sigma_w^2 E[f'f] ~ 0 and (2) mu_w (E[f'f]/E[f'] + sum_{l != j}
    E[f(z_l)]) - E[y_k] ~ E[delta_k^(i+1)], i.e. Cov(f'(z_j), f(z_j)) ~ 0 with the other
    units independent of z_j; the second term above is that condition times M mu_w^2 (and
    keeps the l != j cross covariances the question drops).  Returns a dict with both terms
    and their sum.
    """
    check_nonnegative("weight_var", weight_var)
    var_term = M * weight_var * fw.fdf
    cov_term = M * weight_mean**2 * (fw.df_sum_f - fw.H * fw.df * fw.f)
    return {"variance_term": var_term, "covariance_term": cov_term, "total": var_term + cov_term}


@dataclass(frozen=True)
class ForwardSecond:
    """Forward expectations of the last hidden layer that E[delta_j^2] needs (per unit j).

    With d = f'(z_j), a = f(z_j), S = sum_l f(z_l), Q = sum_l f(z_l)^2: ``d2`` = E[d^2],
    ``d2a`` = E[d^2 a], ``d2a2`` = E[d^2 a^2], ``d2S`` = E[d^2 S], ``d2S2`` = E[d^2 S^2],
    ``d2Q`` = E[d^2 Q], ``d2aS`` = E[d^2 a S].
    """

    d2: float
    d2a: float
    d2a2: float
    d2S: float
    d2S2: float
    d2Q: float
    d2aS: float


def forward_second(df, f):
    """The :class:`ForwardSecond` of forward samples ``df`` = f'(z), ``f`` = f(z), (N, H)
    arrays (plug-in averages over samples and units)."""
    import numpy as np

    d2 = np.asarray(df, float) ** 2
    a = np.asarray(f, float)
    S, Q = a.sum(-1, keepdims=True), (a * a).sum(-1, keepdims=True)
    return ForwardSecond(*(float(np.mean(d2 * t)) for t in (1.0, a, a * a, S, S * S, Q, a * S)))


def exact_second_moment(M, weight_var, weight_mean, fw: ForwardSecond, y_mean, y_var,
                        bias_mean=0.0, bias_var=0.0):
    """E[delta_j^2] of the last hidden layer, exactly (MSE, linear output, Gaussian W[L]).

    delta_j = f'(z_j) sum_k W_kj e_k with e_k = sum_l W_kl a_l + b_k - y_k.  Given the layer
    below (a, S = sum_l a_l, Q = sum_l a_l^2), row k of (W[L], b[L]) is independent of the
    other rows, and (W_kj, e_k) is jointly Gaussian in the weights with means (mu, cbar),
    cbar = mu S + E[b] - E[y], variances (v, v Q + Var(b) + Var(y)) and covariance v a_j.
    Isserlis' theorem (fourth moments of a Gaussian pair) gives, for one row,

        E[W_kj^2 e_k^2] = (mu^2 + v)(cbar^2 + v Q + Var(b) + Var(y)) + 2 v^2 a_j^2
                          + 4 mu v a_j cbar,

    and two rows k != k' are independent with E[W_kj e_k] = v a_j + mu cbar, so

        E[delta_j^2 | a] = f'(z_j)^2 ( M E[W_kj^2 e_k^2] + M (M - 1) (v a_j + mu cbar)^2 ).

    Averaged over the forward pass this needs the seven moments of :class:`ForwardSecond`
    (the targets only through their mean and variance).  ``weight_var`` is the raw per-entry
    variance v of W[L] (the question's sigma_w^2), ``weight_mean`` its mean mu.
    """
    check_nonnegative("weight_var", weight_var)
    check_nonnegative("y_var", y_var)
    check_nonnegative("bias_var", bias_var)
    mu, v, c0 = weight_mean, weight_var, bias_mean - y_mean
    # E[d^2 cbar^2] and E[d^2 a cbar], cbar = mu S + c0
    d2c2 = mu * mu * fw.d2S2 + 2 * mu * c0 * fw.d2S + c0 * c0 * fw.d2
    d2ac = mu * fw.d2aS + c0 * fw.d2a
    one_row = ((mu * mu + v) * (d2c2 + v * fw.d2Q + (bias_var + y_var) * fw.d2)
               + 2 * v * v * fw.d2a2 + 4 * mu * v * d2ac)
    pairs = v * v * fw.d2a2 + 2 * v * mu * d2ac + mu * mu * d2c2
    return M * one_row + M * (M - 1) * pairs


def _sum_over_outputs(y_mean, M):
    try:
        vals = [float(v) for v in y_mean]
    except TypeError:
        return M * float(y_mean)
    if len(vals) != M:
        raise ValueError(f"y_mean needs M = {M} values, got {len(vals)}")
    return sum(vals)

"""Forward mean-field recursion: mean, variance and unit-unit covariance of z[l].

Assumptions (stated once, used by every function here)
------------------------------------------------------
* Weights W[l]_jk are i.i.d. with mean ``weight_mean[l]`` (mu_w) and variance ``weight_var[l]``
  (v_l, the *raw* variance of one entry); biases b[l]_j i.i.d. with mean ``bias_mean[l]`` and
  variance ``bias_var[l]``; all independent of each other and of the inputs.  The mean-field
  parametrisation of the literature, W ~ N(0, sigma_w^2 / n_{l-1}), is v_l =
  sigma_w^2 / n_{l-1}: see :func:`raw_variance`.
* Units of one layer are exchangeable: z[l]_j has mean m_l and variance q_l, two units
  j != j' have covariance c_l (c_l = 0 when mu_w = 0), and the pair is modelled as
  z_j = m + sqrt(c) u + sqrt(q - c) e_j with u, e_j i.i.d. standard normal (Gaussian by the
  central limit theorem over the n_{l-1} inputs of a unit).

The input to layer l enters only through three numbers (``InputStats``):

    s1 = E[sum_i a_i],   s2 = E[sum_i a_i^2],   S2 = E[(sum_i a_i)^2]

and then, writing mu = mu_w, v = v_l, beta = E[b], sb2 = Var(b),

    m_l        = mu s1 + beta
    E[z_j^2]   = (v + mu^2) s2 + mu^2 (S2 - s2) + 2 mu beta s1 + beta^2 + sb2
    E[z_j z_j'] = mu^2 S2 + 2 mu beta s1 + beta^2
    q_l = E[z_j^2] - m_l^2,      c_l = E[z_j z_j'] - m_l^2.

For mu_w = 0 this is the familiar q_l = n_{l-1} v_l E[f(z)^2] + sb2 = sigma_w^2 E[f(z)^2]
+ sigma_b^2 (Poole et al. 2016, with beta = 0).  The next layer's input statistics are

    s1 = n_l E[f(z)],  s2 = n_l E[f(z)^2],  S2 = s2 + n_l (n_l - 1) E[f(z_j) f(z_j')].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import activations as _act
from .._checks import check_finite, check_nonnegative
from ..network import per_layer
from .gaussian import bivariate, expectations, numpy_pair

__all__ = ["InputStats", "LayerForward", "gaussian_input_stats", "data_input_stats",
           "pre_activation_moments", "forward_recursion", "raw_variance"]


@dataclass(frozen=True)
class InputStats:
    """s1 = E[sum_i a_i], s2 = E[sum_i a_i^2], S2 = E[(sum_i a_i)^2] of a layer's input."""

    s1: float
    s2: float
    S2: float


@dataclass(frozen=True)
class LayerForward:
    """Predicted statistics of layer l: z ~ N(mean, var), unit-unit covariance ``cov``,
    and the Gaussian expectations of f at that z (keys of :data:`gaussian.NAMES`)."""

    mean: float
    var: float
    cov: float
    E: dict


def raw_variance(sigma_w2, n_in):
    """v = sigma_w^2 / n_in: the per-entry variance of the mean-field parametrisation."""
    check_nonnegative("sigma_w2", sigma_w2)
    return sigma_w2 / n_in


def gaussian_input_stats(n0, mean, var) -> InputStats:
    """Input statistics for x with i.i.d. components N(mean, var) (any distribution with
    those two moments): s1 = n mu, s2 = n (var + mu^2), S2 = n var + n^2 mu^2."""
    check_nonnegative("var", var)
    check_finite("mean", mean)
    return InputStats(n0 * mean, n0 * (var + mean**2), n0 * var + n0**2 * mean**2)


def data_input_stats(x) -> InputStats:
    """Input statistics measured on a data matrix x (m, n_0): row sums and squares."""
    x = np.asarray(x, float)
    rows = x.sum(axis=1)
    return InputStats(float(rows.mean()), float((x * x).sum(axis=1).mean()),
                      float((rows * rows).mean()))


def pre_activation_moments(inp: InputStats, weight_mean, weight_var, bias_mean=0.0, bias_var=0.0):
    """(m, q, c) of z = W a + b for one layer (formulas in the module docstring)."""
    check_nonnegative("weight_var", weight_var)
    check_nonnegative("bias_var", bias_var)
    mu, beta = weight_mean, bias_mean
    m = mu * inp.s1 + beta
    ez2 = (weight_var + mu**2) * inp.s2 + mu**2 * (inp.S2 - inp.s2) + 2 * mu * beta * inp.s1 \
        + beta**2 + bias_var
    ezz = mu**2 * inp.S2 + 2 * mu * beta * inp.s1 + beta**2
    q = max(ez2 - m * m, 0.0)
    return m, q, min(max(ezz - m * m, 0.0), q)


def forward_recursion(sizes, activations, inp: InputStats, weight_mean, weight_var, bias_mean=0.0,
                      bias_var=0.0) -> list:
    """Predicted z statistics of every layer: ``out[l]`` for l = 1..L (``out[0] = None``).

    Parameters
    ----------
    sizes : list of int
        [n_0, ..., n_L].
    activations : sequence
        f_1..f_L (names or Activation); the output layer's may be non-elementwise
        (softmax), then its ``E`` is empty.
    inp : InputStats
        Statistics of x (:func:`gaussian_input_stats` or :func:`data_input_stats`).
    weight_mean, weight_var, bias_mean, bias_var : float or sequence (one per layer 1..L)
        Raw per-entry weight mean and variance, bias mean and variance.

    Returns
    -------
    list of LayerForward
    """
    check_nonnegative("weight_var", weight_var)
    check_nonnegative("bias_var", bias_var)
    L = len(sizes) - 1
    per = [[float(t) for t in per_layer(v, L, k)] for k, v in
           (("weight_mean", weight_mean), ("weight_var", weight_var), ("bias_mean", bias_mean),
            ("bias_var", bias_var))]
    out = [None]
    for l in range(1, L + 1):
        m, q, c = pre_activation_moments(inp, *(p[l - 1] for p in per))
        act = _act.get(activations[l - 1])
        if not act.elementwise:
            out.append(LayerForward(m, q, c, {}))
            continue
        E = {k: float(v) for k, v in expectations(act, m, q).items()}
        out.append(LayerForward(m, q, c, E))
        if l < L:
            n = sizes[l]
            f = numpy_pair(act)[1]
            Eff = bivariate(f, f, m, q, c) if c > 0 else E["f"] ** 2
            inp = InputStats(n * E["f"], n * E["f2"], n * E["f2"] + n * (n - 1) * Eff)
    return out


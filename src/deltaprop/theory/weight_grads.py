"""The second moment of the weight gradient per layer, and Glorot & Bengio's eq. 14.

One sample i's gradient with respect to W[l] has the entries (Glorot & Bengio 2010, eq. 3)

    dJ_i/dW[l]_jk = delta[l]_ij a[l-1]_ik                    (a[0] = x)

and the laboratory records their mean square over the n_l n_{l-1} entries, ``dW2`` =
||delta[l]_i||^2 ||a[l-1]_i||^2 / (n_l n_{l-1}) (:mod:`deltaprop.stats.record`).  Its
expectation over weights and inputs, E[dW2[l]] = E[(dJ_i/dW[l]_jk)^2], is predicted three
ways, from the most to the least exact:

* **given the forward pass** (no factorisation).  a[l-1] is part of the forward pass F, so

      E[delta_j^2 a_k^2] = E_F[ E[delta[l]_j^2 | F] a[l-1]_k^2 ]

  and averaged over j and k, per sample, E[dW2 | F] = mean_j E[delta_j^2 | F] mean_k a_k^2
  (:func:`given_forward`), with E[delta_j^2 | F] the exact conditional second moment of
  :mod:`.conditional` (exact for Gaussian weights).  Its average over the forward law is the
  ``exact`` prediction (:func:`deltaprop.theory.conditional.average` returns it).
* **factorised** (gradient independence between delta[l] and a[l-1]):

      E[(dJ_i/dW[l]_jk)^2] ~= E[delta[l]^2] E[a[l-1]^2]              (:func:`factorised`)

  with E[delta[l]^2] from any theory (exact, independence, mean field) and E[a[l-1]^2] from
  the forward model.  What it drops is the covariance of delta[l]^2 and a[l-1]^2 across
  samples (a sample with large activations also has a large z[l] and, for saturating f,
  a small f'(z)).
* **the linear regime** of Glorot & Bengio (f(z) ~= z, f' ~= 1, zero-mean weights, no
  biases), where E[a[l]^2] = E[x^2] prod_{l'<=l} n_{l'-1} v_{l'} and E[delta[l]^2] =
  E[delta[L]^2] prod_{l'>l} n_{l'} v_{l'} (v_l = Var(W[l]_jk), raw), so

      E[dW2[l]] = E[x^2] E[delta[L]^2] prod_{l'=1}^{l-1} n_{l'-1} v_{l'}
                                       prod_{l'=l+1}^{L} n_{l'} v_{l'}    (:func:`linear_regime`)

  (their eq. 7, written in deltaprop's layer numbering).  For equal widths n and one v this
  is E[x^2] E[delta[L]^2] (n v)^(L-1) at every layer -- their eq. 14: **the weight
  gradients have the same variance in every layer, whatever v**, while E[delta[l]^2]
  vanishes or explodes like (n v)^(L-l).  Neighbouring layers differ by the factor
  (:func:`linear_ratio`)

      E[dW2[l+1]] / E[dW2[l]] = n_{l-1} v_l / (n_{l+1} v_{l+1}),

  which their normalised initialisation, v_l = 2 / (n_{l-1} + n_l), keeps near 1 when the
  widths change slowly.  Away from the linear regime the factors E[f'(z)^2] (backward) and
  E[f(z)^2] / E[z^2] (forward) differ from 1 and tilt the profile; the exact and factorised
  predictions include them.

With zero-mean weights and an odd activation E[dJ_i/dW_jk] = 0 (flipping the signs of
W[l] and b[l] flips delta[l] and keeps a[l-1]), so the second moment is the variance
Glorot & Bengio write; in general it is the second moment.  NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import check_nonnegative

__all__ = ["given_forward", "factorised", "linear_regime", "linear_ratio", "ratios"]


def given_forward(second_given_F, a_prev):
    """E[dW2[l] | F] = mean_j E[delta[l]_j^2 | F] * mean_k a[l-1]_k^2, per sample.

    Parameters
    ----------
    second_given_F : array (N,)
        mean_j E[delta[l]_j^2 | F] of N forward passes (what
        :func:`.conditional.backward_given_forward` returns for layer l).
    a_prev : array (N, n_{l-1})
        a[l-1] of the same passes (the inputs x for l = 1).

    Returns
    -------
    array (N,)
    """
    a_prev = np.asarray(a_prev, float)
    return np.asarray(second_given_F, float) * np.einsum("nk,nk->n", a_prev, a_prev) \
        / a_prev.shape[-1]


def factorised(E_delta2, E_a2_prev):
    """E[(dJ_i/dW[l]_jk)^2] ~= E[delta[l]^2] E[a[l-1]^2]  (gradient independence)."""
    return float(E_delta2) * float(E_a2_prev)


def linear_regime(sizes, weight_var, E_x2=1.0, E_deltaL2=1.0) -> list:
    """E[dW2[l]] = E[x^2] E[delta[L]^2] prod_{l'<l} n_{l'-1} v_{l'} prod_{l'>l} n_{l'} v_{l'}.

    Glorot & Bengio (2010), eq. 7 in deltaprop's numbering (eq. 14 for equal widths): the
    linear regime, zero-mean weights, no biases.

    Parameters
    ----------
    sizes : [n_0, ..., n_L]
    weight_var : sequence indexed by layer (slot 0 unused): raw Var(W[l]_jk).
    E_x2, E_deltaL2 : float
        E[x_k^2] and E[delta[L]_j^2] (1 gives the profile alone).

    Returns
    -------
    list, slot l for layer l (slot 0 = None)
    """
    check_nonnegative("weight_var", weight_var)
    L = len(sizes) - 1
    out = [None]
    for l in range(1, L + 1):
        up = math.prod(sizes[k - 1] * weight_var[k] for k in range(1, l))
        down = math.prod(sizes[k] * weight_var[k] for k in range(l + 1, L + 1))
        out.append(float(E_x2) * float(E_deltaL2) * up * down)
    return out


def linear_ratio(sizes, weight_var, l) -> float:
    """E[dW2[l+1]] / E[dW2[l]] = n_{l-1} v_l / (n_{l+1} v_{l+1})  (linear regime)."""
    check_nonnegative("weight_var", weight_var)
    return sizes[l - 1] * weight_var[l] / (sizes[l + 1] * weight_var[l + 1])


def ratios(values, ref=1) -> list:
    """values[l] / values[ref] for l = 1..L (slot 0 = None): the profile over the layers."""
    return [None] + [v / values[ref] for v in values[1:]]

"""The E[delta] question's independence approximation, layer by layer from the output.

    delta[l]_j = f'(z[l]_j) sum_k W[l+1]_kj delta[l+1]_k

Assume f'(z[l]_j), the weights W[l+1] and the error vector delta[l+1] independent, and the
n_{l+1} components of delta[l+1] independent of each other with common moments
(E[delta], E[delta^2]).  With mu = E[W[l+1]_kj] and v = Var(W[l+1]_kj):

    E[delta[l]]   ~= E[f'(z[l])] n_{l+1} mu E[delta[l+1]]                          (the question)
    E[delta[l]^2] ~= E[f'(z[l])^2] n_{l+1} ((v + mu^2) E[delta[l+1]^2]
                                            + (n_{l+1} - 1) mu^2 E[delta[l+1]]^2)

For mu = 0 the second line is the mean-field recursion of :mod:`.mean_field`.  What the
approximation drops is the dependence of delta[l+1] on W[l+1] and on z[l] (it is exact for
the weights of the output layer only when mu = 0 and E[f f'] = 0; see
:mod:`.exact_last_layer`).
"""

from __future__ import annotations

from .._checks import check_nonnegative

__all__ = ["independence_step", "independence_backward"]


def independence_step(E_df, E_df2, n_next, weight_mean, weight_var, mean_next, second_next):
    """One step down: (E[delta[l]], E[delta[l]^2]) from layer l+1 (formulas above)."""
    mean = E_df * n_next * weight_mean * mean_next
    second = E_df2 * n_next * ((weight_var + weight_mean**2) * second_next
                               + (n_next - 1) * weight_mean**2 * mean_next**2)
    return mean, second


def independence_backward(sizes, E_df, E_df2, weight_mean, weight_var, out_mean, out_second):
    """E[delta[l]] and E[delta[l]^2] for l = L..1 under independence.

    Parameters
    ----------
    sizes : list of int
        [n_0, ..., n_L].
    E_df, E_df2 : sequence indexed by layer (slot 0 unused)
        E[f_l'(z[l])] and E[f_l'(z[l])^2] per layer (theory or measured).
    weight_mean, weight_var : sequence indexed by layer (slot 0 unused)
        Raw per-entry weight mean and variance of W[l].
    out_mean, out_second : float
        E[delta[L]] and E[delta[L]^2] (from :func:`.output.output_delta_moments`).

    Returns
    -------
    (list, list)
        means and second moments, slot l for layer l (slot 0 = None).
    """
    check_nonnegative("weight_var", weight_var[1:])
    L = len(sizes) - 1
    mean, second = [None] * (L + 1), [None] * (L + 1)
    mean[L], second[L] = float(out_mean), float(out_second)
    for l in range(L - 1, 0, -1):
        mean[l], second[l] = independence_step(E_df[l], E_df2[l], sizes[l + 1], weight_mean[l + 1],
                                               weight_var[l + 1], mean[l + 1], second[l + 1])
    return mean, second

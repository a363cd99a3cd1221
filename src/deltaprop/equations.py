"""The equations of backpropagation, one small function each.

Open this file first: it is the whole algorithm.  Notation (see docs/derivation.md):
rows are samples, so for a batch of m samples

    x = a[0]  (m, n_0)      W[l]  (n_l, n_{l-1})      b[l]  (n_l,)
    z[l], a[l], delta[l]    (m, n_l)

and every function also takes a stack of K networks (a leading axis K on W, b, z, a,
delta), so K initialisations cost one batched matrix product per layer.

Scaling convention (loud, because it differs from autograd's): delta[l] is the
derivative of *one sample's* loss with respect to that sample's z[l], not divided by m.
The 1/m of the batch average appears only in dW[l] and db[l].
"""

from __future__ import annotations

__all__ = [
    "pre_activation", "activation", "output_delta", "hidden_delta", "weight_gradient",
    "bias_gradient", "l2_penalty", "l2_gradient", "gradient_step",
]


def pre_activation(a_prev, W, b):
    """z^l = W^l a^{l-1} + b^l   (seed 004, eq. 5; seed 001: v_j = sum_i w_ji y_i).

    Row-major form: ``z[l] = a[l-1] @ W[l].mT + b[l]``; (m, n_{l-1}) -> (m, n_l).
    """
    return a_prev @ W.mT + b[..., None, :]


def activation(f, z, xp):
    """a^l = f_l(z^l)   (seed 003: a^(l) = g(z^(l)); seed 004: h^l(z^l))."""
    return f.f(z, xp)


def output_delta(loss, f, z, a, y, xp):
    """delta^L = dJ_i / dz^L   (seed 004, eq. 20 / 42: h(z^L) - y for matched pairs).

    For MSE: (a - y) * f'(z) (seed 001's output rule, with the opposite sign); for
    sigmoid + sigmoid cross-entropy and softmax + softmax cross-entropy: a - y.
    """
    return loss.delta(z, a, y, f, xp)


def hidden_delta(W_next, delta_next, f, z, a, xp):
    """delta^l = (W^{l+1})^T delta^{l+1} .* f'(z^l)   (seed 004, eq. 48; seed 001, rule 2).

    Row-major form: ``(delta[l+1] @ W[l+1]) * df(z[l])``; (m, n_{l+1}) -> (m, n_l).
    ``a = f(z)`` is passed so sigmoid and tanh take f' from it (seed 004, eq. 15a).
    """
    return f.vjp(z, a, delta_next @ W_next, xp)


def weight_gradient(delta, a_prev, m):
    """dJ/dW^l = 1/m sum_i delta^l_i (a^{l-1}_i)^T   (seed 004, eq. 44; seed 003's Nabla).

    Row-major form: ``delta[l].mT @ a[l-1] / m``; shape (n_l, n_{l-1}).
    """
    return (delta.mT @ a_prev) / m


def bias_gradient(delta, xp):
    """dJ/db^l = 1/m sum_i delta^l_i   (seed 004, eq. 46: the bias column of theta)."""
    return xp.mean(delta, axis=-2)


def l2_penalty(W, lam, m, xp):
    """(lambda / 2m) sum_l sum_jk (W^l_jk)^2, biases excluded (seed 003's course convention).

    ``W`` is the per-layer tuple with slot 0 = None; returns () or (K,).
    """
    return (lam / (2 * m)) * sum(xp.sum(w * w, axis=(-2, -1)) for w in W[1:])


def l2_gradient(W, lam, m):
    """d/dW of the L2 penalty: (lambda / m) W^l."""
    return (lam / m) * W


def gradient_step(p, dp, eta):
    """p <- p - eta dJ/dp   (seed 001: Delta w_ji = -eta dE/dw_ji = eta delta_j y_i)."""
    return p - eta * dp

"""The equations of backpropagation, one small function each.

Open this file first: it is the whole algorithm, and the code that runs.  Every driver
(``forward``, ``backward``, ``step``, ``train_step``, ``gradcheck``, ``trace``, the
laboratory's ``record``) on every array library is a loop over these functions.
Notation (see docs/derivation.md): rows are samples, so for a batch of m samples

    x = a[0]  (m, n_0)      W[l]  (n_l, n_{l-1})      b[l]  (n_l,)
    z[l], a[l], delta[l]    (m, n_l)

and every function also takes a stack of K networks (a leading axis K on W, b, z, a,
delta), so K initialisations cost one batched matrix product per layer.

Scaling convention (loud, because it differs from autograd's): delta[l] is the
derivative of *one sample's* loss with respect to that sample's z[l], not divided by m.
The 1/m of the batch average appears only in dW[l] and db[l].

Speed without a second engine: a built-in activation or loss row may carry an in-place
NumPy kernel of its own f, f' or loss (``f.f_into``, ``f.df_into``, ``loss.fused``,
``loss.cost_into``; see :mod:`deltaprop._kernels`).  These functions call a row's kernel
when the arrays are NumPy (:func:`~deltaprop._backend.is_numpy`), otherwise the row's
array-API functions, so a user's own activation (any name) is computed by its own f and df.
``out=`` arguments are NumPy buffers a driver reuses (``train_step``'s
:class:`~deltaprop.backprop.Workspace`, ``record``'s sub-batch buffers); ``None``
allocates.
"""

from __future__ import annotations

from ._backend import is_numpy
from ._kernels import matmul_into

__all__ = [
    "pre_activation", "activation", "derivative", "cost", "output_and_cost", "output_delta",
    "hidden_delta", "weight_gradient", "bias_gradient", "l2_penalty", "l2_gradient",
    "gradient_step", "layer_step",
]


def pre_activation(a_prev, W, b, out=None):
    """z^l = W^l a^{l-1} + b^l   (Brawer, eq. 5; Haykin: v_j = sum_i w_ji y_i).

    Row-major form: ``z[l] = a[l-1] @ W[l].mT + b[l]``; (m, n_{l-1}) -> (m, n_l).
    The bias is added in place to the fresh product (one pass, no second array).
    """
    z = a_prev @ W.mT if out is None else matmul_into(a_prev, W.mT, out=out)
    z += b if b.ndim == 1 else b[..., None, :]
    return z


def activation(f, z, xp, out=None):
    """a^l = f_l(z^l)   (Ng's course: a^(l) = g(z^(l)); Brawer: h^l(z^l))."""
    if f.f_into is not None and is_numpy(z):
        return f.f_into(z, out)
    return f.f(z, xp)


def derivative(f, z, a, xp, out=None):
    """f_l'(z^l), given a^l = f_l(z^l) (sigmoid: a (1 - a), tanh: 1 - a^2; Brawer, eq. 15a)."""
    if f.df_into is not None and is_numpy(z):
        return f.df_into(z, a, out)
    return f.df(z, a, xp)


def cost(loss, z, a, y, xp):
    """J = 1/m sum_i J_i(z^L_i, y_i), the batch mean of the per-sample loss; () or (K,)."""
    if loss.cost_into is not None and is_numpy(z):
        return loss.cost_into(z, a, y)
    return xp.mean(loss.per_sample(z, a, y, xp), axis=-1)


def output_and_cost(loss, f, z, y, xp, out=None):
    """a^L = f_L(z^L) and J: :func:`activation` and :func:`cost` together.

    One pass where the loss has a fused kernel for this very output activation row
    (softmax cross-entropy: the log-sum-exp of J is softmax's normaliser).
    """
    if loss.fused is not None and loss.fused[0] is f and is_numpy(z):
        return loss.fused[1](z, y, out)
    a = activation(f, z, xp, out)
    return a, cost(loss, z, a, y, xp)


def output_delta(loss, f, z, a, y, xp):
    """delta^L = dJ_i / dz^L   (Brawer, eq. 20 / 42: h(z^L) - y for matched pairs).

    For MSE: (a - y) * f'(z) (Haykin's output rule, with the opposite sign); for
    sigmoid + sigmoid cross-entropy and softmax + softmax cross-entropy: a - y.
    """
    return loss.delta(z, a, y, f, xp)


def hidden_delta(W_next, delta_next, f, z, a, xp, out=None, df=None):
    """delta^l = (W^{l+1})^T delta^{l+1} .* f'(z^l)   (Brawer, eq. 48; Haykin, rule 2).

    Row-major form: ``(delta[l+1] @ W[l+1]) * df(z[l])``; (m, n_{l+1}) -> (m, n_l).
    ``a = f(z)`` is passed so sigmoid and tanh take f' from it (Brawer, eq. 15a);
    ``df`` is f'(z^l) when the caller has it already (:func:`derivative`).
    """
    g = delta_next @ W_next if out is None else matmul_into(delta_next, W_next, out=out)
    if df is None and f.df_into is not None and is_numpy(g):
        df = f.df_into(z, a)
    if df is None:
        return f.vjp(z, a, g, xp)
    g *= df  # g is this function's own array
    return g


def weight_gradient(delta, a_prev, m, out=None):
    """dJ/dW^l = 1/m sum_i delta^l_i (a^{l-1}_i)^T   (Brawer, eq. 44; Ng's Nabla).

    Row-major form: ``delta[l].mT @ a[l-1] / m``; shape (n_l, n_{l-1}).
    """
    dW = delta.mT @ a_prev if out is None else matmul_into(delta.mT, a_prev, out=out)
    dW /= m
    return dW


def bias_gradient(delta, xp):
    """dJ/db^l = 1/m sum_i delta^l_i   (Brawer, eq. 46: the bias column of theta)."""
    return xp.mean(delta, axis=-2)


def l2_penalty(W, lam, m, xp):
    """(lambda / 2m) sum_l sum_jk (W^l_jk)^2, biases excluded (Ng's course convention).

    ``W`` is the per-layer tuple with slot 0 = None; returns () or (K,).
    """
    return (lam / (2 * m)) * sum(xp.sum(w * w, axis=(-2, -1)) for w in W[1:])


def l2_gradient(W, lam, m):
    """d/dW of the L2 penalty: (lambda / m) W^l."""
    return (lam / m) * W


def gradient_step(p, dp, eta):
    """p <- p - eta dJ/dp   (Haykin: Delta w_ji = -eta dE/dw_ji = eta delta_j y_i).

    Written ``(-eta dp) + p``: bit-identical to ``p - eta dp`` (negation is exact), and the
    temporary ``-eta dp`` is the left operand, so NumPy adds p into it in place (temporary
    elision) instead of allocating the result.
    """
    return (-eta * dp) + p


def layer_step(W, b, delta, a_prev, eta, m, xp, lam=0.0, out=None, donate=False, ones=None):
    """W^l <- W^l - eta (dJ/dW^l + (lambda/m) W^l),  b^l <- b^l - eta dJ/db^l, from delta^l.

    Row-major form: ``beta W[l] + (-eta/m) delta[l].mT @ a[l-1]`` (beta = 1 - eta lambda/m)
    and ``b[l] + (-eta/m) sum_i delta[l]_i``: :func:`gradient_step` of
    :func:`weight_gradient` (plus :func:`l2_gradient`) and of :func:`bias_gradient`, with
    the scalar -eta/m applied once, to the smaller of delta (m, n_l) and the product
    (n_l, n_{l-1}): one product (into ``out``) and one addition, no dW kept; it rounds
    differently from the separate steps, by a few ulp.  ``delta`` may be scaled in place
    (the caller's scratch, used up); ``ones`` (optional, (m,) of ones) sums delta over the
    batch as one matrix-vector product; ``donate=True`` updates W and b in place.
    Returns the new (W, b).
    """
    c = -eta / m
    if m <= a_prev.shape[-1]:  # delta is the smaller array: scale it, and db with it
        delta *= c
    db = xp.sum(delta, axis=-2) if ones is None else ones @ delta
    step = delta.mT @ a_prev if out is None else matmul_into(delta.mT, a_prev, out=out)
    if m > a_prev.shape[-1]:
        step *= c
        db *= c
    beta = 1.0 - eta * lam / m
    if not donate:
        return (W * beta if beta != 1.0 else W) + step, b + db
    if beta != 1.0:
        W *= beta
    W += step
    b += db
    return W, b

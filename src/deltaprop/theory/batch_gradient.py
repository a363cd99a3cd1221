"""The gradient of a whole batch at initialisation: E[delta[l]^2], E||db[l]||^2, E||dW[l]||^2.

Over a batch of m samples (for Nielsen's "speed of learning" of a layer, ||db[l]||, the
training set; "Neural Networks and Deep Learning", ch. 5)

    db[l] = (1/m) sum_i delta[l]_i,            dW[l] = (1/m) sum_i delta[l]_i a[l-1]_i^T

(:func:`deltaprop.equations.bias_gradient`, :func:`~deltaprop.equations.weight_gradient`),
so, with T_ii' = delta[l]_i . delta[l]_i' and U_ii' = T_ii' (a[l-1]_i . a[l-1]_i'),

    ||db[l]||^2 = (1/m^2) sum_{i,i'} T_ii',       ||dW[l]||_F^2 = (1/m^2) sum_{i,i'} U_ii'.

Over the initialisation the m diagonal terms and the m (m - 1) pairs of distinct samples
average separately (:func:`batch_second_moment`):

    E||db[l]||^2 = (1/m) E_i[T_ii] + (1 - 1/m) E_{i != i'}[T_ii']
    E||dW[l]||^2 = (1/m) E_i[U_ii] + (1 - 1/m) E_{i != i'}[U_ii']

and E[delta[l]^2] = E_i[T_ii] / n_l.  The pairs are what make a layer's bias gradient large:
when the output errors of different samples share a direction (at initialisation every
sigmoid output is near 1/2 and most targets are 0), T_ii' stays of the order of T_ii and
||db|| does not average away like 1 / sqrt(m).

Model (the assumptions of every function here):

1. **Forward: the exact law of a pair's forward pass** for zero-mean Gaussian weights
   W[l]_jk ~ N(0, v_l) and biases b[l]_j ~ N(beta_l, u_l).  Given a[l-1] of samples i and
   i', the units j of z[l] are i.i.d. pairs, jointly Gaussian with means beta_l and
   covariance [[v Q_i + u, v C + u], [v C + u, v Q_i' + u]], Q = ||a[l-1]||^2,
   C = a[l-1]_i . a[l-1]_i' (:func:`pair_forward`; one sample is the pair (i, i)).  Other
   laws with the same two moments are approximated by the Gaussian one.
2. **Backward: exact given the forward pass** -- the pair version of
   :mod:`.conditional`: given the pair's forward pass F, W[l+1] is independent of
   delta[l+1] and Gaussian conditioned on the two samples' constraints z[l+1] = W[l+1]
   a[l] + b[l+1], so E[T[l] | F] follows from E[delta[l+1]_i delta[l+1]_i'^T | F] through
   2 x 2 matrices (:func:`pair_backward`), from T[L] = delta[L]_i . delta[L]_i' of the
   drawn z[L] and the samples' own targets.  No gradient independence: the dependence of
   delta[l+1] on W[l+1] (through z[l+1], e.g. delta[L] = z[L] - y for MSE) is kept, which
   matters at small width (for relu 8-32-32-3 with MSE, gradient independence puts
   E[delta[1]^2] 26% low).  For one sample (i = i') this is :mod:`.conditional`'s
   E[delta[l]^2 | F], to rounding.
3. U[l] = E_F[E[T[l] | F] (a[l-1]_i . a[l-1]_i')]: a[l-1] is part of F, nothing is
   factorised.

:func:`batch_gradient_theory` integrates by Monte Carlo over pairs and single samples
drawn from the batch, one forward draw each, and reports the Monte Carlo standard errors.
The average over the distinct pairs is stratified by class (same and different class for
one-hot targets, whose shares are counted exactly).  NumPy only.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations as _act
from .. import losses as _losses
from .._checks import one_hot

__all__ = ["pair_forward", "pair_backward", "batch_second_moment", "batch_gradient_theory"]


def pair_forward(prior, activations, x_a, x_b, rng):
    """z[l], a[l] of N pairs of samples drawn from the exact law of their forward pass.

    Given a[l-1] (rows: pairs), unit j of (z[l]_a, z[l]_b) is N(beta, [[v Q_a + u, v C + u],
    [v C + u, v Q_b + u]]) (the module's model, point 1), independently over j.  ``x_a``,
    ``x_b``: (N, n_0); ``x_b is x_a`` draws single samples (z_b = z_a).  Returns
    ``(z_a, a_a, z_b, a_b)``, lists with slot l = layer l (``z[0] = None``, ``a[0]`` the
    inputs).
    """
    same = x_b is x_a
    acts = [_act.get(f) for f in activations]
    za, aa, zb, ab = [None], [np.asarray(x_a, float)], [None], [np.asarray(x_b, float)]
    for l in range(1, prior.L + 1):
        if prior.weight_mean[l] != 0:
            raise ValueError("the batch-gradient theory assumes zero-mean weights (mu_w = 0)")
        v, u, beta, n = prior.weight_var[l], prior.bias_var[l], prior.bias_mean[l], prior.sizes[l]
        Qa, Qb = _dot(aa[-1], aa[-1]), _dot(ab[-1], ab[-1])
        C = _dot(aa[-1], ab[-1])
        sa, sb = np.sqrt(v * Qa + u), np.sqrt(v * Qb + u)
        rho = np.divide(v * C + u, sa * sb, out=np.ones_like(sa), where=sa * sb > 0)
        rho = np.clip(rho, -1.0, 1.0)
        e1, e2 = rng.standard_normal((2, len(sa), n))
        z1 = beta + sa[:, None] * e1
        z2 = z1 if same else \
            beta + sb[:, None] * (rho[:, None] * e1 + np.sqrt(1 - rho * rho)[:, None] * e2)
        za.append(z1)
        zb.append(z2)
        aa.append(acts[l - 1].f(z1, np))
        ab.append(acts[l - 1].f(z2, np))
    return za, aa, zb, ab


def pair_backward(prior, activations, loss, za, aa, ya, zb, ab, yb, rcond=1e-7) -> dict:
    """T[l] = E[delta[l]_a . delta[l]_b | F] per pair, l = L..1: exact for Gaussian weights.

    The pair version of :mod:`.conditional`'s (C2).  Given the pair's forward pass F, W[l+1]
    is independent of delta[l+1] (which depends on F and W[l+2..L] only), and its rows with
    their biases are independent Gaussians conditioned on two linear constraints,
    z[l+1]_sk - beta = W_k . a[l]_s + (b_k - beta) for s = a, b.  Whitened (w_k ~ N(0, I),
    W_k = sqrt(v) w_k[:n], b_k - beta = sqrt(u) w_k[n]) the constraints read r_k = B w_k with
    B = [a[l]_a, 1; a[l]_b, 1] diag(sqrt v, ..., sqrt u) = U S Q^T (its thin SVD, from the
    2 x 2 eigenproblem B B^T = U S^2 U^T and Q^T = S^-1 U^T B; directions with S below
    ``rcond`` S_max dropped: one constraint when a = b), R = [z[l+1]_a,
    z[l+1]_b] - beta (n_{l+1} x 2), and

        E[w_k | F] = Q S^-1 U^T r_k,        Cov(w_k | F) = I - Q Q^T.

    So with C' = E[delta[l+1]_a delta[l+1]_b^T | F], D_s = diag f'(z[l]_s) and Q_n the first
    n_l rows of Q (the weights' part),

        E[W^T C' W | F] = Q_n H Q_n^T + t I,   H = v (S^-1 U^T (R^T C' R) U S^-1 - tr(C') I),
        t = v tr(C'),     C[l] = D_a (Q_n H Q_n^T + t I) D_b,     T[l] = tr C[l],

    and the next step needs only the 2 x 2 matrix R_l^T C[l] R_l and tr C[l]: O(n_l) per
    pair, no matrix formed, and no cancellation for nearly collinear pairs (Q is
    orthonormal).  The top: C[L] = delta[L]_a delta[L]_b^T, the output errors of the drawn
    z[L] with the samples' own targets ``ya``, ``yb`` (rows (N, n_L), one-hot for class
    labels).  Zero-mean weights.  Returns ``{l: (N,)}``.
    """
    acts = [_act.get(f) for f in activations]
    loss, L = _losses.get(loss), prior.L
    if not all(f.elementwise for f in acts[:-1]):
        raise ValueError("the batch-gradient theory needs elementwise hidden activations")
    da = loss.delta(za[L], aa[L], np.asarray(ya, float), acts[-1], np)
    db = loss.delta(zb[L], ab[L], np.asarray(yb, float), acts[-1], np)
    T = {L: _dot(da, db)}
    if L == 1:
        return T
    R = _residuals(prior, za, zb, L)
    P = (R.mT @ da[:, :, None]) @ (db[:, None, :] @ R)              # R^T C[L] R: (N, 2, 2)
    for l in range(L - 1, 0, -1):
        v, u = prior.weight_var[l + 1], prior.bias_var[l + 1]
        A = math.sqrt(v) * np.stack([aa[l], ab[l]], 1)            # (N, 2, n_l)
        U, S = _eig2(A @ A.mT + u)                                  # B B^T = U S^2 U^T
        keep = S > rcond * S[:, :1]
        Sinv = np.where(keep, 1.0 / np.where(keep, S, 1.0), 0.0)
        Qn = Sinv[:, :, None] * (U.mT @ A)                          # Q_n^T = S^-1 U^T B[:, :n]
        M = Sinv[:, :, None] * (U.mT @ P @ U) * Sinv[:, None, :]
        H = v * (M - T[l + 1][:, None, None] * (keep[:, :, None] * np.eye(2)))
        t = v * T[l + 1]
        fa = acts[l - 1].df(za[l], aa[l], np)
        fb = acts[l - 1].df(zb[l], ab[l], np)
        diag = np.einsum("nsj,nst,ntj->nj", Qn, H, Qn) + t[:, None]  # diag(Q_n H Q_n^T + t I)
        T[l] = np.einsum("nj,nj,nj->n", fa, fb, diag)
        if l > 1:
            R = _residuals(prior, za, zb, l)
            Xa = Qn @ (fa[:, :, None] * R)                         # Q_n^T D_a R: (N, 2, 2)
            Xb = Qn @ (fb[:, :, None] * R)
            P = Xa.mT @ H @ Xb + t[:, None, None] * (R.mT @ ((fa * fb)[:, :, None] * R))
    return T


def _eig2(V):
    """(U, S) with V = U diag(S^2) U^T, S descending, for a stack of symmetric 2 x 2 V
    (the rotation by theta = atan2(2 V_01, V_00 - V_11) / 2, in closed form)."""
    p, q, r = V[:, 0, 0], V[:, 0, 1], V[:, 1, 1]
    th = 0.5 * np.arctan2(2 * q, p - r)
    c, s = np.cos(th), np.sin(th)
    l1 = p * c * c + 2 * q * s * c + r * s * s
    l2 = p * s * s - 2 * q * s * c + r * c * c
    U = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    return U, np.sqrt(np.maximum(np.stack([l1, l2], -1), 0.0))


def _residuals(prior, za, zb, l):
    """R = [z[l]_a, z[l]_b] - beta_l: (N, n_l, 2)."""
    return np.stack([za[l], zb[l]], -1) - prior.bias_mean[l]


def batch_second_moment(diag, off, m):
    """E||g||^2 = (1/m) E_i[g_i . g_i] + (1 - 1/m) E_{i != i'}[g_i . g_i'] for the mean
    g = (1/m) sum_i g_i of m per-sample gradients (``diag``, ``off``: the two averages)."""
    return diag / m + (1.0 - 1.0 / m) * off


def batch_gradient_theory(prior, activations, loss, x, y, *, m=None, pairs=16384,
                          max_pairs=1 << 18, rtol=0.03, seed=0, chunk=8192) -> dict:
    """E[delta[l]^2], E||db[l]||^2 and E||dW[l]||^2 at initialisation, l = 1..L.

    Parameters
    ----------
    prior : stats.ensemble.Prior
        Zero-mean weights (``weight_mean`` 0), raw per-entry variances.
    activations : sequence
        f_1..f_L (hidden layers elementwise).
    loss : str or Loss
    x : array (M, n_0)
        The batch's inputs (the training set), on the host.
    y : array (M, n_L) or (M,)
        Its targets; integer class labels are one-hot encoded.
    m : int, optional
        Samples averaged in the gradient (default M, the whole batch).
    pairs, max_pairs, rtol
        Monte Carlo draws: at least ``pairs`` pairs of distinct samples and as many single
        samples, one forward draw each, continued in rounds of ``chunk`` up to ``max_pairs``
        until every layer's E||db||^2 and E||dW||^2 has a relative standard error of at
        most ``rtol``.  With one-hot targets the pairs are stratified into same-class and
        different-class pairs, whose shares of the m (m - 1) pairs are known exactly: their
        means differ by much more than the spread within each (a near-cancellation for
        balanced classes), so the stratified mean is far less noisy.
    seed : int

    Returns
    -------
    dict
        ``{l: {"delta2", "db_norm2", "dW_norm2", "db_norm", "dW_norm", "db_pairs",
        "dW_pairs"}}`` each with ``_se`` (the Monte Carlo standard error) where it has one:
        ``*_norm2`` = E||.||^2, ``*_norm`` = sqrt(E||.||^2) (the root mean square over the
        initialisation; se by the delta method, ``nan`` when E||.||^2 is within noise of
        0), ``*_pairs`` the pairs' share of E||.||^2; and ``"pairs"``, the draws used.
    """
    x = np.asarray(x, float)
    M = x.shape[0]
    if M < 2:
        raise ValueError("the batch-gradient theory needs at least two samples")
    m = M if m is None else int(m)
    L, nL = prior.L, prior.sizes[-1]
    y = np.asarray(y)
    Y = one_hot(y.astype(int), nL) if y.ndim == 1 and nL > 1 else y.reshape(M, -1).astype(float)
    rng = np.random.default_rng(seed)
    strata = _strata(Y, M)
    draws = {"ii": []} | {h: [] for h in strata}

    def draw(tag, i, j):
        xi = x[i]
        za, aa, zb, ab = pair_forward(prior, activations, xi, xi if j is i else x[j], rng)
        T = pair_backward(prior, activations, loss, za, aa, Y[i], zb, ab, Y[j])
        draws[tag].append(np.stack([np.stack([T[l], T[l] * _dot(aa[l - 1], ab[l - 1])])
                                    for l in range(1, L + 1)]))       # (L, 2: T and U, n)

    done = 0
    while True:
        i = rng.integers(0, M, chunk)
        draw("ii", i, i)
        for h, (_, sample) in strata.items():
            draw(h, *sample(rng, chunk // len(strata)))
        done += chunk
        out = _moments(draws, strata, prior.sizes, m)
        worst = max(out[l][k + "_se"] / abs(out[l][k]) if out[l][k] else math.inf
                    for l in out for k in ("db_norm2", "dW_norm2"))
        if done >= max_pairs or (done >= pairs and worst <= rtol):
            break
    for e in out.values():
        e["pairs"] = done
    return out


def _strata(Y, M):
    """``{name: (share of the M (M - 1) ordered pairs, sampler(rng, n) -> (i, j))}``: same
    and different class for one-hot targets with classes of two or more, else all pairs."""
    def any_pair(rng, n):
        i = rng.integers(0, M, n)
        return i, (i + rng.integers(1, M, n)) % M  # a different sample, uniformly

    onehot = Y.ndim == 2 and Y.shape[1] > 1 and np.all((Y == 0) | (Y == 1)) and \
        np.all(Y.sum(1) == 1)
    if not onehot:
        return {"all": (1.0, any_pair)}
    labels = Y.argmax(1)
    count = np.bincount(labels, minlength=Y.shape[1])
    within = count * (count - 1)
    p_same = within.sum() / (M * (M - 1))
    if p_same == 0 or p_same == 1:
        return {"all": (1.0, any_pair)}
    order = np.argsort(labels, kind="stable")  # the samples class by class
    first = np.concatenate([[0], np.cumsum(count)[:-1]])

    def same(rng, n):
        c = rng.choice(len(count), size=n, p=within / within.sum())
        k = count[c]
        a = rng.integers(0, k)
        b = (a + rng.integers(1, k)) % k  # another member of class c, uniformly
        return order[first[c] + a], order[first[c] + b]

    def different(rng, n):
        i, j = np.empty(0, int), np.empty(0, int)
        while len(i) < n:  # uniform over different-class pairs by rejection
            a, b = any_pair(rng, 2 * n)
            keep = labels[a] != labels[b]
            i, j = np.concatenate([i, a[keep]]), np.concatenate([j, b[keep]])
        return i[:n], j[:n]

    return {"same": (p_same, same), "different": (1 - p_same, different)}


def _moments(draws, strata, sizes, m):
    """The estimates of :func:`batch_gradient_theory` from the draws so far."""
    diag = np.concatenate(draws["ii"], axis=-1)                     # (L, 2, n)
    off = {h: np.concatenate(draws[h], axis=-1) for h in strata}
    out = {}
    for l in range(1, len(sizes)):
        e = {"delta2": diag[l - 1, 0].mean() / sizes[l],
             "delta2_se": _se(diag[l - 1, 0]) / sizes[l]}
        for q, name in ((0, "db"), (1, "dW")):
            d = diag[l - 1, q]
            o = sum(p * off[h][l - 1, q].mean() for h, (p, _) in strata.items())
            o_se = math.sqrt(sum((p * _se(off[h][l - 1, q])) ** 2
                                 for h, (p, _) in strata.items()))
            sq = batch_second_moment(d.mean(), o, m)
            se = math.hypot(_se(d) / m, (1 - 1 / m) * o_se)
            e[name + "_norm2"], e[name + "_norm2_se"] = sq, se
            root = math.sqrt(max(sq, 0.0))
            e[name + "_norm"] = root
            e[name + "_norm_se"] = se / (2 * root) if sq > 2 * se else math.nan
            e[name + "_pairs"] = (1 - 1 / m) * o / sq if sq else math.nan
        out[l] = {k: float(v) for k, v in e.items()}
    return out


def _dot(x, y):
    return np.einsum("ni,ni->n", x, y)


def _se(v):
    return float(v.std(ddof=1) / math.sqrt(v.size))

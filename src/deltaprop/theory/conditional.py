"""E[delta[l]] and E[delta[l]^2] at every layer, keeping the dependence: the backward pass
averaged over the weights *given the forward pass*.

The question this answers (the E[delta] question of docs/laboratory.md) is why
E[delta[l]_j] = E[f'(z[l]_j) sum_k W[l+1]_kj delta[l+1]_k] does not factor: delta[l+1]
depends on W[l+1] and on z[l].  Condition on one sample's whole forward pass
F = (x, z[1], ..., z[L]).  With i.i.d. Gaussian weights W[l]_jk ~ N(mu_l, v_l) and biases
b[l]_j ~ N(beta_l, u_l), all independent a priori:

1. **The forward pass constrains each layer's weights separately.**  z[l] = W[l] a[l-1] +
   b[l] involves only (W[l], b[l]), and a[l-1] = f(z[l-1]) is part of F, so given F the
   layers' weights stay independent, and so do the rows of one W[l].  delta[l+1] depends
   on F, y and W[l+2], ..., W[L] only, hence **given F, W[l+1] is independent of
   delta[l+1]**: the dependence the question names is carried entirely by F.
2. **Each row's posterior is Gaussian** (a Gaussian conditioned on one linear constraint).
   Writing a = a[l], S = sum_i a_i, Q = sum_i a_i^2, and for row k of W[l+1]
   r_k = z[l+1]_k - mu S - beta (the residual of the constraint), V = v Q + u:

       E[W_kj | F]              = mu + (v / V) a_j r_k                  =: Wbar_kj
       Cov(W_kj, W_k'j' | F)    = [k = k'] (v [j = j'] - (v^2 / V) a_j a_j')

   (the Gaussian integration by parts of Stein's lemma, E[W g] = mu E[g] + v E[dg/dW],
   is this conditioning seen from the other side: dz_k/dW_kj = a_j.)
3. So with m[l] = E[delta[l] | F] and C[l] = E[delta[l] delta[l]^T | F], D = diag f'(z[l]):

       m[l] = D Wbar^T m[l+1]
            = f'(z[l]) * (mu (1 . m[l+1]) 1 + (v / V) (r . m[l+1]) a)              (C1)
       C[l] = D (Wbar^T C[l+1] Wbar + tr(C[l+1]) (v I - (v^2 / V) a a^T)) D           (C2)

   exactly, and E[delta[l]] = E_F[m[l]], E[delta[l]^2] = E_F[diag C[l]].  Wbar = P B U^T
   with P = [1, r], U = [1, a], B = diag(mu, v / V), so C[l] = D (U G U^T + t I) D with a
   2x2 G = B (P^T C[l+1] P) B - tr(C[l+1]) (v^2 / V) e_2 e_2^T and t = v tr(C[l+1]): each
   step costs O(n_l + n_{l+1}) per sample, no matrix is formed.
4. **The top.**  delta[L] = dJ/dz[L] is affine in the targets with a diagonal Jacobian
   (-f'(z[L]) for MSE, -1 for the cross-entropies), so with targets of conditional mean
   ybar and covariance Sigma_y given the inputs, m[L] = delta[L](z[L], ybar) and
   C[L] = m[L] m[L]^T + D_y Sigma_y D_y.

(C1) at l = L - 1 with MSE and a linear output, averaged over z[L] given z[L-1], is the
question's own exact formula (:mod:`.exact_last_layer`); its second moment is
:func:`.exact_last_layer.exact_second_moment`.

Nothing here is approximate for Gaussian weights: the only model left is the law of the
forward pass F, and an average over it.  Two are provided:

* :func:`sample_forward` draws F from its exact per-sample law under the prior: given
  a[l-1], the units of z[l] are i.i.d. N(mu S + beta, v Q + u) (their correlation comes
  only through the shared S and Q of the layer below, which is what makes mu_w != 0
  hard for mean field), so no weight matrix is drawn and no backward pass is run;
  :func:`exact_moments` averages (C1), (C2) over those draws and reports the integration
  error as a standard error.
* The recorded forward pass of the networks themselves (``forward_model="measured"`` in
  :func:`deltaprop.stats.report.predict_moments`): the same formulas at the measured z[l], a[l].

Weights drawn from a uniform law (the ``*_uniform`` initialisers) have the same first two
moments but are not Gaussian: there (C1)-(C2) are the Gaussian-weight approximation.
Everything is NumPy.
"""

from __future__ import annotations

import math

import numpy as np

from .. import activations as _act
from .. import losses as _losses
from . import weight_grads as _wg

__all__ = ["backward_given_forward", "sample_forward", "law_batches", "average", "exact_moments",
           "target_law"]


def sample_forward(prior, activations, x, rng):
    """z[l], a[l] of N independent samples from the exact per-sample law of the forward pass.

    Given a[l-1] (shape (N, n_{l-1})), z[l] has i.i.d. N(mu_l S + beta_l, v_l Q + u_l)
    units (S = sum_i a[l-1]_i, Q = sum_i a[l-1]_i^2): the law of W[l] a[l-1] + b[l] for
    W[l]_jk ~ N(mu_l, v_l), b[l]_j ~ N(beta_l, u_l).  ``x``: (N, n_0) inputs.  Returns
    lists z, a with slot l = layer l (z[0] = None, a[0] = x).
    """
    acts = [_act.get(f) for f in activations]
    a, z = [np.asarray(x, float)], [None]
    for l in range(1, prior.L + 1):
        S, Q = a[-1].sum(-1, keepdims=True), np.einsum("ni,ni->n", a[-1], a[-1])[:, None]
        scale = np.sqrt(prior.weight_var[l] * Q + prior.bias_var[l])
        zl = prior.weight_mean[l] * S + prior.bias_mean[l] + scale * rng.standard_normal(
            (a[-1].shape[0], prior.sizes[l]))
        z.append(zl)
        a.append(acts[l - 1].f(zl, np))
    return z, a


def target_law(loss, n_out, y_mean, y_second):
    """(ybar, Sigma_y) of targets drawn independently of the inputs, as the laboratory draws
    them: one-hot labels uniform over the classes for softmax cross-entropy
    (Sigma_y = diag(pi) - pi pi^T), otherwise i.i.d. entries (Sigma_y = Var(y) I)."""
    if _losses.get(loss).targets == "distribution":
        pi = np.full(n_out, 1.0 / n_out)
        return pi, np.diag(pi) - np.outer(pi, pi)
    return np.full(n_out, float(y_mean)), (float(y_second) - float(y_mean) ** 2) * np.eye(n_out)


def backward_given_forward(prior, activations, loss, z, a, y, y_cov=0.0):
    """Per sample, the unit averages of E[delta[l] | F] and E[delta[l]^2 | F], l = L..1.

    Implements (C1)-(C2) of the module docstring from the top (step 4).

    Parameters
    ----------
    prior : stats.ensemble.Prior
        Raw per-entry weight and bias means and variances per layer.
    activations : sequence
        f_1..f_L (hidden layers elementwise).
    loss : str or Loss
    z, a : lists indexed by layer
        The forward pass, z[l] and a[l] of shape (N, n_l) (a[0] the inputs).
    y : array, (N, n_L) or (n_L,)
        The targets' conditional mean given the inputs (the targets themselves when known).
    y_cov : float or (n_L, n_L) array
        Their conditional covariance (0 when ``y`` are the targets themselves).

    Returns
    -------
    (mean, second) : dicts layer -> (N,) arrays.
    """
    acts = [_act.get(f) for f in activations]
    loss = _losses.get(loss)
    L = prior.L
    if not all(f.elementwise for f in acts[:-1]):
        raise ValueError("the conditional backward pass needs elementwise hidden activations")
    zL, aL = np.asarray(z[L], float), np.asarray(a[L], float)
    y = np.broadcast_to(np.asarray(y, float), zL.shape)
    m = loss.delta(zL, aL, y, acts[-1], np)
    dy = loss.delta(zL, aL, np.zeros_like(zL), acts[-1], np) - \
        loss.delta(zL, aL, np.ones_like(zL), acts[-1], np)  # -d delta[L] / dy, diagonal
    cov = np.asarray(y_cov, float)
    cov = cov * np.eye(zL.shape[-1]) if cov.ndim == 0 else cov
    mean, second = {L: m.mean(-1)}, {L: (m * m + dy * dy * np.diag(cov)).mean(-1)}

    forms = _output_forms(m, dy, cov)
    for l in range(L - 1, 0, -1):
        al, d = np.asarray(a[l], float), acts[l - 1].df(np.asarray(z[l], float),
                                                         np.asarray(a[l], float), np)
        mu, v = prior.weight_mean[l + 1], prior.weight_var[l + 1]
        beta, u = prior.bias_mean[l + 1], prior.bias_var[l + 1]
        S, Q = al.sum(-1), np.einsum("nj,nj->n", al, al)
        V = v * Q + u
        ratio = np.divide(v, V, out=np.zeros_like(V), where=V > 0)  # v / V (0 if V = 0)
        r = np.asarray(z[l + 1], float) - (mu * S + beta)[:, None]  # P = [1, r]
        B = np.stack([np.full_like(ratio, mu), ratio], -1)          # (N, 2)
        Pm = np.stack([m.sum(-1), _dot(r, m)], -1) * B              # B P^T m[l+1]
        m = d * (Pm[:, :1] + Pm[:, 1:] * al)                        # (C1)
        PCP, trace = forms(r)                                       # of C[l+1]
        G = B[:, :, None] * PCP * B[:, None, :]                     # (C2): B P^T C P B
        G[:, 1, 1] -= trace * v * ratio
        t = v * trace
        mean[l] = m.mean(-1)
        second[l] = (d * d * (G[:, :1, 0] + 2 * G[:, :1, 1] * al + G[:, 1:, 1] * al * al
                              + t[:, None])).mean(-1)
        forms = _hidden_forms(d, al, G, t)
    return mean, second


def _dot(x, y):
    """Row-wise dot products: (N, n), (N, n) -> (N,)."""
    return np.einsum("ni,ni->n", x, y)


def _gram(x, y, w=None):
    """[[sum w, sum w y], [sum w x, sum w x y]] per row: (N, 2, 2) (U^T W P for U = [1, x],
    P = [1, y], W = diag w)."""
    w = np.ones_like(x) if w is None else w
    wy = w * y
    return np.stack([np.stack([w.sum(-1), wy.sum(-1)], -1),
                     np.stack([_dot(w, x), _dot(wy, x)], -1)], -2)


def _output_forms(m, dy, cov):
    """(P^T C P, tr C) for C = m m^T + D_y Sigma_y D_y (the top, step 4), P = [1, r]."""
    def forms(r):
        Pm = np.stack([m.sum(-1), _dot(r, m)], -1)
        DP = np.stack([dy, dy * r], -1)                             # (N, n_L, 2)
        return (Pm[:, :, None] * Pm[:, None, :] + DP.mT @ (cov @ DP),
                _dot(m, m) + (dy * dy) @ np.diag(cov))
    return forms


def _hidden_forms(d, a, G, t):
    """(P^T C P, tr C) for C = D (U G U^T + t I) D, U = [1, a], D = diag d, P = [1, r]."""
    diag = G[:, :1, 0] + 2 * G[:, :1, 1] * a + G[:, 1:, 1] * a * a + t[:, None]
    d2 = d * d

    def forms(r):
        UDP = _gram(a, r, d)                                        # U^T D P
        return (UDP.mT @ G @ UDP + t[:, None, None] * _gram(r, r, d2),
                _dot(d2, diag))
    return forms


def law_batches(prior, activations, draw_inputs, *, samples=65536, chunk=8192, seed=0):
    """Batches ``(z, a, y, y_cov, groups)`` of :func:`sample_forward` draws for :func:`average`.

    ``draw_inputs(rng, N)`` returns ``(x, y, y_cov)`` for N samples: inputs (N, n_0), the
    targets' conditional mean ((N, n_L) or (n_L,)) and covariance (see
    :func:`backward_given_forward`).  Every draw is its own group (they are independent).
    """
    rng = np.random.default_rng(seed)
    for start in range(0, samples, chunk):
        n = min(chunk, samples - start)
        x, y, y_cov = draw_inputs(rng, n)
        z, a = sample_forward(prior, activations, x, rng)
        yield z, a, y, y_cov, n


def average(prior, activations, loss, batches, *, rtol=None, min_groups=0):
    """Average (C1)-(C2) and the forward moments over batches of forward passes.

    ``batches`` yields ``(z, a, y, y_cov, groups)``: a forward pass of N samples whose rows
    fall into ``groups`` consecutive groups of equal size that are independent of each
    other (one group per sample for :func:`law_batches`; one per network for the recorded
    passes of an ensemble, whose samples share their network's weights).  Standard errors
    are sd(group averages) / sqrt(groups).  With ``rtol``, batches stop being read once
    at least ``min_groups`` groups are in and every layer's E[delta^2] has a standard error
    of at most ``rtol`` times its value (a budget for the law's Monte Carlo integral; the
    means are not used for this, since E[delta] may be 0).

    Returns ``(delta, forward)``: ``delta[l]`` = {"mean", "mean_se", "second_moment",
    "second_moment_se"} of delta[l], l = 1..L (the prediction and its integration error),
    and "dW2", "dW2_se": E[(dJ_i/dW[l]_jk)^2] = E_F[E[delta[l]_j^2 | F] a[l-1]_k^2]
    (:func:`.weight_grads.given_forward`, no factorisation);
    ``forward[l]`` = {"a2"} = E[a[l]_k^2] for l = 0..L-1 (a[0] = x), with
    {"df", "df2"} = E[f'(z[l])], E[f'(z[l])^2] for hidden l, and at the
    last hidden layer also "fdf", "dfS", "f" (E[f'(z_j) f(z_j)], E[f'(z_j) sum_l f(z_l)],
    E[f(z_j)]: the forward moments of the question's exact formula) and the seven of
    :class:`.exact_last_layer.ForwardSecond` (keys "df2", "d2a", ...: its second moment).
    """
    acts = [_act.get(f) for f in activations]
    L = prior.L
    parts = {}

    def add(key, per_sample, groups):
        parts.setdefault(key, []).append(per_sample.reshape(groups, -1).mean(-1))

    def precise():
        if sum(v.size for v in parts[("second_moment", L)]) < max(min_groups, 2):
            return False
        vals = (np.concatenate(parts[("second_moment", l)]) for l in range(1, L + 1))
        return all(_se_mean(v) <= rtol * abs(v.mean()) for v in vals)

    for z, a, y, y_cov, groups in batches:
        z = [None] + [np.asarray(v, float).reshape(-1, v.shape[-1]) for v in z[1:]]
        a = [np.asarray(v, float).reshape(-1, v.shape[-1]) for v in a]
        yy = np.asarray(y, float)
        yy = yy.reshape(-1, yy.shape[-1]) if yy.ndim > 1 else yy
        mean, second = backward_given_forward(prior, activations, loss, z, a, yy, y_cov)
        for l in mean:
            add(("mean", l), mean[l], groups)
            add(("second_moment", l), second[l], groups)
            add(("dW2", l), _wg.given_forward(second[l], a[l - 1]), groups)
            add(("a2", l - 1), (a[l - 1] * a[l - 1]).mean(-1), groups)
        for l in range(1, L):
            d = acts[l - 1].df(z[l], a[l], np)
            add(("df", l), d.mean(-1), groups)
            add(("df2", l), (d * d).mean(-1), groups)
            if l == L - 1:
                add(("fdf", l), (d * a[l]).mean(-1), groups)
                add(("dfS", l), d.mean(-1) * a[l].sum(-1), groups)
                add(("f", l), a[l].mean(-1), groups)
                S, Q, d2 = a[l].sum(-1), (a[l] * a[l]).sum(-1), d * d
                for key, t in (("d2a", a[l]), ("d2a2", a[l] * a[l]), ("d2aS", a[l] * S[:, None])):
                    add((key, l), (d2 * t).mean(-1), groups)
                for key, t in (("d2S", S), ("d2S2", S * S), ("d2Q", Q)):
                    add((key, l), d2.mean(-1) * t, groups)
        if rtol is not None and precise():
            break
    delta, forward = {}, {}
    for (q, l), vals in parts.items():
        v = np.concatenate(vals)
        if q in ("mean", "second_moment", "dW2"):
            delta.setdefault(l, {})[q] = float(v.mean())
            delta[l][q + "_se"] = _se_mean(v)
        else:
            forward.setdefault(l, {})[q] = float(v.mean())
    return dict(sorted(delta.items())), forward


def exact_moments(prior, activations, loss, draw_inputs, *, samples=65536, chunk=8192,
                  seed=0):
    """E[delta[l]] and E[delta[l]^2], l = 1..L, averaged over the exact forward law.

    The Monte Carlo integral of (C1)-(C2) over :func:`law_batches` (see there for
    ``draw_inputs``); its standard error is returned as ``mean_se`` /
    ``second_moment_se``.  Returns ``{l: {"mean", "mean_se", "second_moment",
    "second_moment_se"}}``.
    """
    batches = law_batches(prior, activations, draw_inputs, samples=samples, chunk=chunk,
                          seed=seed)
    return average(prior, activations, loss, batches)[0]


def _se_mean(v):
    """Standard error of the mean of independent values (nan for fewer than two)."""
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan

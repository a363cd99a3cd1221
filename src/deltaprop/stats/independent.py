"""Gradient independence, measured: the real forward pass back-propagated through an
independent copy of the weights.

Mean-field theory of the backward pass (Schoenholz et al. 2017, "Deep information
propagation"; Yang 2019, "gradient independence") treats W[l+1] in

    delta[l] = (delta[l+1] @ W[l+1]) * f_l'(z[l])          (equations.hidden_delta)

as if it were drawn afresh, independently of the forward pass that made z[l] and delta[L].
:func:`record_independent` makes exactly that pass and records it like the true one:

    delta_gi[L] = delta[L]                                  the real dJ_i/dz[L]
    delta_gi[l] = (delta_gi[l+1] @ W~[l+1]) * f_l'(z[l])    l = L-1..1, the real z[l]

with W~ independent of everything and of the same law as W.  Shapes as in
:mod:`deltaprop.equations` (rows are samples; a stack of K adds a leading axis).  The
statistics are a :class:`~deltaprop.stats.record.Record` whose ``delta`` is delta_gi, so
they come with the same standard errors as the true delta.  In a comparison,

    true - gi     is the gradient-independence assumption,
    gi - theory   is the forward model (Gaussian z, one q per layer, finite width).

The copy W~:

* for an ensemble drawn from a :class:`~deltaprop.stats.ensemble.Prior`: a second draw from
  the same prior with another seed (``run_study``);
* for one given network (a trained model, ``study_network``): :func:`permuted_copy`, a
  random permutation of the entries of each W[l].  It keeps W[l]'s empirical distribution
  (the theory is evaluated at its empirical mean and variance) and breaks the dependence on
  the data, on the forward pass and among the entries (rows, columns, low-rank structure).

The pass costs one more forward and backward pass (no weight gradients, delta only).
"""

from __future__ import annotations

import math

import numpy as np

from .. import _backend
from ..backprop import forward
from .record import Record, deltas, iter_batches, record_pass

__all__ = ["record_independent", "permuted_copy", "add_rows", "table", "KEY"]

#: the key of the comparison rows (and of ``deltaprop stats --json``) that carries the pass
KEY = "gradient_independence"


def permuted_copy(net, seed=0):
    """A copy of ``net`` whose W[l] are random permutations of its own entries.

    Each network of a stack is permuted separately; biases are kept (the backward pass does
    not read them).  The permutations are drawn on the host (``numpy.random.Generator``)
    and applied on the parameters' device.
    """
    rng = np.random.default_rng(seed)
    K = net.K or 1
    W = [None]
    for w in net.W[1:]:
        n = math.prod(w.shape[-2:])
        idx = np.concatenate([k * n + rng.permutation(n) for k in range(K)])
        xp = _backend.namespace(w)
        idx = _backend.asarray(idx, xp, device=_backend.device(w))
        W.append(xp.reshape(xp.take(xp.reshape(w, (-1,)), idx, axis=0), w.shape))
    return net.replace(W=W)


def record_independent(net, x, y, loss, copy, *, batch_size=None, bins=None) -> Record:
    """The :class:`Record` of delta_gi: ``net``'s forward pass back-propagated through
    ``copy``'s weights (see the module docstring).

    Parameters
    ----------
    net : Network
        The network (or stack of K) whose forward pass and output error are used.
    x, y, loss, batch_size
        As in :func:`deltaprop.stats.record` (same batches, so the two records pair up).
    copy : Network
        Independent weights W~ of the same sizes and activations (e.g. ``ensemble.draw``
        with another seed, or :func:`permuted_copy`).
    bins : int, optional
        Histogram bins for delta_gi (default none).

    Returns
    -------
    Record
        Quantity ``delta`` only (delta_gi[L] equals delta[L]).
    """
    if list(copy.sizes) != list(net.sizes) or copy.K != net.K or \
            copy.activation_names() != net.activation_names():
        raise ValueError(f"the copy ({copy!r}) must have the network's sizes, stack size and "
                         f"activations ({net!r})")
    rec = None
    for xb, yb in iter_batches(x, y, batch_size):
        trace = forward(net, xb)
        # deltas() reads W and the activations from its first argument and z, a from the
        # trace: the real forward pass and delta[L], back-propagated through copy's W~
        d = deltas(copy, trace, yb, loss)
        part = record_pass(net, trace, d, quantities=("delta",), bins=bins,
                           weight_grads=False, cross=False)
        rec = part if rec is None else rec.merge(part)
    if rec is None:
        raise ValueError("no data to record")
    return rec


def add_rows(rows, record, gi) -> list[dict]:
    """The comparison rows with ``row[KEY]``: delta_gi's ``mean``, ``mean_se``,
    ``second_moment``, ``second_moment_se``, and ``true_minus_gi`` = E[delta^2] -
    E[delta_gi^2] with its standard error ``true_minus_gi_se``.

    The two passes share networks and inputs, so the se of the difference is paired: the sd
    of the K per-network differences over sqrt(K) (K >= 2); with one network,
    sqrt(se_true^2 + se_gi^2), the larger value for the positively correlated passes.
    """
    out = []
    for r in rows:
        l = r["layer"]
        s = gi.layer_summary(l)
        diff = r["measured"]["second_moment"] - s["second_moment"]
        if record.K >= 2:
            per_net = record.network_means(l)[1] - gi.network_means(l)[1]
            se = float(per_net.std(ddof=1) / math.sqrt(record.K))
        else:
            se = math.hypot(r["measured"]["second_moment_se"], s["second_moment_se"])
        row = {k: s[k] for k in ("mean", "mean_se", "second_moment", "second_moment_se")}
        out.append({**r, KEY: {**row, "true_minus_gi": diff, "true_minus_gi_se": se}})
    return out


def _z(diff, se):
    return diff / se if se > 0 else (0.0 if diff == 0 else math.inf)


def table(rows) -> str:
    """Per layer: E[delta^2] true and through the independent copy (gi) with se, the theory
    (mean field, else independence), and the split of true / theory into true / gi (the
    gradient-independence assumption) and gi / theory (the forward model), each with z =
    difference / se.  With one network (K = 1) the se covers its samples only, not the spread
    between networks or between copies, so no z is printed there ("n/a")."""
    head = (f"{'layer':>5} {'units':>5} {'E[d^2] true':>11} {'se':>8} {'E[d^2] gi':>11} "
            f"{'se':>8} {'theory':>11} | {'true/gi':>8} {'z':>6} | {'gi/theory':>9} {'z':>6}")
    lines = ["gradient independence: E[delta^2] through the true W and through an independent "
             "copy (gi)", head, "-" * len(head)]
    names, one = set(), False
    for r in rows:
        m, g = r["measured"], r[KEY]
        within = bool(m.get("se_within_network_only"))
        one |= within

        def zt(diff, se, within=within):
            return f"{'n/a':>6}" if within else f"{_z(diff, se):>6.1f}"

        t, tg = m["second_moment"], g["second_moment"]
        line = (f"{r['layer']:>5} {r['units']:>5} {t:>11.4g} {m['second_moment_se']:>8.2g} "
                f"{tg:>11.4g} {g['second_moment_se']:>8.2g}")
        name = next((n for n in ("mean_field", "independence")
                     if "second_moment" in r["predicted"].get(n, {})), None)
        ratio = t / tg if tg else math.inf
        split = f" | {ratio:>8.3g} {zt(t - tg, g['true_minus_gi_se'])}"
        if name is None:
            line += f" {'-':>11}{split} | {'-':>9} {'':>6}"
        else:
            names.add(name)
            p = r["predicted"][name]
            se = math.hypot(g["second_moment_se"], p.get("second_moment_se", 0.0))
            p = p["second_moment"]
            line += (f" {p:>11.4g}{split} | {tg / p if p else math.inf:>9.3g} "
                     f"{zt(tg - p, se)}")
        lines.append(line)
    lines.append(f"theory: {' / '.join(sorted(names)) or 'none'}; true/gi = the "
                 "gradient-independence assumption, gi/theory = the forward model; "
                 "z = difference / se (true - gi: paired se; gi - theory: gi's se and the "
                 "prediction's, if it has one, in quadrature)")
    if one:
        lines.append("K = 1: the standard errors cover the samples of one network only, not "
                     "the spread between networks or copies; z is not shown")
    return "\n".join(lines)

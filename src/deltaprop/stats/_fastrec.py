"""NumPy fast path of :func:`deltaprop.stats.record`: forward, backward and statistics fused.

The generic path runs :func:`deltaprop.backprop.forward`, :func:`deltas` and
:func:`record_pass` on each batch: every z, a, f'(z) and delta is a fresh full-batch array,
and each recorded quantity is summarised by its own calls.  Here, for NumPy float arrays:

* each batch is split into sub-batches whose per-layer arrays stay below ``BUDGET`` bytes
  (K x m_sub x n_l x itemsize), so a stack of K networks works in cache-sized, reused
  buffers instead of freshly mapped (zero-filled by the kernel) 10-100 MB arrays;
* the forward and backward passes write z[l], a[l], f'(z[l]) and delta[l] straight into the
  slots of one stacked buffer per layer (Q, K, m_sub, n_l), f'(z) computed once and shared
  by delta and its own statistics;
* all quantities of a layer (and seed 000's cross terms) are summarised together: column
  sums of x and x^2 by one batched product with a vector of ones, row sums likewise, x^2
  squared in place for the sums of x^4 (:func:`_sums`); M2 from the sums, with the two-pass
  formula only where that would cancel (:func:`record._from_sums`);
* the sub-batch partials merge exactly (Chan's formula, :meth:`Moments.merge`).

The result has the same keys, shapes and numbers (to rounding) as the generic path, which
stays the reference (``tests/test_stats.py`` compares the two).
"""

from __future__ import annotations

import numpy as np

from .. import _fast
from .. import losses as _losses
from .histogram import Histogram
from .moments import Moments

#: bytes per (K, m_sub, n_l) layer array; sub-batches are sized to stay below it
BUDGET = 1 << 20
#: smallest sub-batch (per-call overhead dominates below it)
MIN_SUB = 32


def applies(net, x, y) -> bool:
    """True for NumPy float networks and inputs with elementwise hidden activations."""
    if not _fast.applies(net, x, y) or not hasattr(x, "dtype"):
        return False
    return all(f.elementwise for f in net.activations[1:-1])


def sub_batch(net, m, budget=None) -> int:
    """Samples per sub-batch: K m_sub max(n_l) itemsize <= budget (at least ``MIN_SUB``)."""
    K = net.K or 1
    n = max(net.sizes[1:])
    per = K * n * net.W[1].dtype.itemsize
    return max(MIN_SUB, min(m, int((BUDGET if budget is None else budget) // per)))


def _df_into(f, z, a, out):
    if f.name == "tanh":
        np.multiply(a, a, out=out)
        np.subtract(1, out, out=out)
    elif f.name == "sigmoid":
        np.subtract(1, a, out=out)
        out *= a
    elif f.name == "identity":
        out.fill(1)
    else:
        np.copyto(out, f.df(z, a, np))
    return out


def _act_into(f, z, out):
    fn = _fast._F_INTO.get(f.name)
    if fn is not None:
        return fn(z, out)
    np.copyto(out, _fast._activate(f, z))
    return out


def _sums(XX, ones_m, ones_n, Q, scaled=None):
    """Column sums of x, x^2, x^4 (Q, K, n) and row means of x, x^2 (Q, K, m).

    ``XX`` is (2, Qs, K, m, n) with x in ``XX[0, :Q]``; ``XX[1, :Q]`` is scratch.

    ``scaled = (i, S)`` appends the sums of x_i S (S (K, m, 1) per sample) as a last
    quantity without forming it: column sums S^T x_i, (S^2)^T x_i^2, (S^4)^T x_i^4 and row
    means S mean_j x_i, S^2 mean_j x_i^2 (seed 000's f'(z_j) sum_l f(z_l) term)."""
    X, X2 = XX[0, :Q], XX[1, :Q]
    np.multiply(X, X, out=X2)
    both = XX[:, :Q]
    s12 = np.matmul(ones_m, both)[..., 0, :]
    r12 = np.matmul(both, ones_n)[..., 0] * (1.0 / X.shape[-1])
    if scaled is not None:
        i, S = scaled
        St = S.mT
        St2 = St * St
        e1 = np.matmul(St, X[i])[..., 0, :]
        e2 = np.matmul(St2, X2[i])[..., 0, :]
    X2 *= X2
    s4 = np.matmul(ones_m, X2)[..., 0, :]
    out = [s12[0], s12[1], s4, r12[0], r12[1]]
    if scaled is not None:
        e4 = np.matmul(St2 * St2, X2[i])[..., 0, :]
        S1 = S[..., 0]
        extra = (e1, e2, e4, S1 * r12[0][i], S1 * S1 * r12[1][i])
        out = [np.concatenate([o, e[None]]) for o, e in zip(out, extra, strict=True)]
    return out


def _last(r):
    """:meth:`Moments.of` ``r`` along its last axis (two passes, NumPy only)."""
    n = r.shape[-1]
    mean = np.add.reduce(r, axis=-1) / n
    d = r - mean[..., None]
    d *= d
    return Moments(float(n), mean, np.add.reduce(d, axis=-1))


def _moments(values, m, s1, s2, s4, r1, r2):
    """Moments from :func:`_sums`; ``values()`` gives x (Q, K, m, n) for the two-pass M2."""
    from .record import _from_sums

    def squares():
        x = values()
        return x * x
    return (_from_sums(s1, s2, m, values, np), _from_sums(s2, s4, m, squares, np),
            _last(r1), _last(r2))


def record_batch(net, x, y, loss, *, quantities, bins, weight_grads, cross, budget=None):
    """The :class:`Record` parts of one batch: ``(layers, dW2, cross, hists)`` where
    ``layers[l] = (names, moments4)`` with moments stacked over ``names``; see the module
    docstring.  Inputs are checked here."""
    loss = _losses.get(loss)
    f, L = net.activations, net.L
    _losses.check_pair(loss, f[L])
    x = _fast._check_x(net, x)
    m = x.shape[-2]
    y = _fast._check_y(net, loss, y, m)
    K, stacked = net.K or 1, net.W[1].ndim == 3
    dt = net.W[1].dtype
    sizes = net.sizes
    mb = sub_batch(net, m, budget)

    # slots per layer: the recorded quantities first (then cross terms), then scratch
    plan = []
    for l in range(1, L + 1):
        rec = [q for q in quantities if q != "df" or (
            f[l].elementwise and not (l == L and f[l].name == "identity"))]
        ncross = 2 if (cross and l == L - 1 and f[l].elementwise) else 0
        # f'(z_j) sum_l f(z_l) is summarised without forming it where f'(z) is recorded
        slots = list(rec) + ["fdf", "dfS"][:ncross - (ncross and "df" in rec)]
        need = ["z", "a", "delta"] + (["df"] if l < L else [])
        slots += [q for q in need if q not in slots]
        plan.append((rec, ncross, {q: i for i, q in enumerate(slots)}, len(slots)))
    bufs = {}

    def buffers(mc):
        if mc not in bufs:
            bufs[mc] = [np.empty((2, ns, K, mc, sizes[l + 1]), dt)
                        for l, (_, _, _, ns) in enumerate(plan)]
        return bufs[mc]

    ones = {}

    def ones_of(k, shape):
        if (k, shape) not in ones:
            ones[(k, shape)] = np.ones(shape, dt)
        return ones[(k, shape)]

    acc = [None] * (L + 1)
    accw = [None] * (L + 1)
    hists = {l: Histogram.empty(bins) for l in range(1, L + 1)} if bins else {}
    nbig = K * min(mb, m) * max(sizes[1:])
    work = (np.empty(nbig, np.float64), np.empty(nbig, np.intp)) if bins else None
    for s in range(0, m, mb):
        e = min(s + mb, m)
        mc = e - s
        xc, yc = x[..., s:e, :], y[..., s:e, :]
        B = buffers(mc)

        def v(l, q, B=B):
            arr = B[l - 1][0, plan[l - 1][2][q]]
            return arr if stacked else arr[0]

        a_prev = xc
        for l in range(1, L + 1):  # forward, with f'(z) for hidden layers
            z, a = v(l, "z"), v(l, "a")
            np.matmul(a_prev, net.W[l].mT, out=z)
            z += net.b[l][..., None, :]
            _act_into(f[l], z, a)
            idx = plan[l - 1][2]
            if "df" in idx:
                _df_into(f[l], z, a, v(l, "df"))
            a_prev = a
        d = v(L, "delta")
        out = _fast._output_delta(loss, f[L], v(L, "z"), v(L, "a"), yc, out=d)
        if out is not d:
            np.copyto(d, out)
        for l in range(L - 1, 0, -1):  # backward
            d = v(l, "delta")
            np.matmul(v(l + 1, "delta"), net.W[l + 1], out=d)
            d *= v(l, "df")
        rows2_prev = None
        if weight_grads:
            x2 = np.matmul(np.square(xc), ones_of("n", (sizes[0], 1)))[..., 0] / sizes[0]
            rows2_prev = np.broadcast_to(x2, (K, mc))
        for l in range(1, L + 1):
            rec, ncross, idx, _ = plan[l - 1]
            scaled, Q, XX, n = None, len(rec) + ncross, B[l - 1], sizes[l]
            if ncross:
                df, a = v(l, "df"), v(l, "a")
                np.multiply(df, a, out=v(l, "fdf"))
                S = np.matmul(XX[0, idx["a"]], ones_of("n", (n, 1)))  # (K, mc, 1)
                if "dfS" in idx:
                    np.multiply(df, S if stacked else S[0], out=v(l, "dfS"))
                else:
                    scaled, Q = (rec.index("df"), S), Q - 1
            if Q:
                sums = _sums(XX, ones_of("m", (1, mc)), ones_of("n", (n, 1)), Q, scaled)
                X = XX[0, :Q]
                values = (lambda X=X: X) if scaled is None else (
                    lambda X=X, i=scaled[0], S=S: np.concatenate([X, (X[i] * S)[None]]))
                part = _moments(values, mc, *sums)
                acc[l] = part if acc[l] is None else tuple(
                    p.merge(q) for p, q in zip(acc[l], part, strict=True))
            if weight_grads:
                if "delta" in rec:
                    rd = sums[4][rec.index("delta")]
                else:
                    dd = XX[0, idx["delta"]]
                    rd = np.matmul(dd * dd, ones_of("n", (n, 1)))[..., 0] / n
                if "a" in rec:
                    ra = sums[4][rec.index("a")]
                else:
                    aa = XX[0, idx["a"]]
                    ra = np.matmul(aa * aa, ones_of("n", (n, 1)))[..., 0] / n
                g2 = rd * rows2_prev  # (K, mc): one value per sample, so the unit
                g4 = g2 * g2          # averages are the values themselves
                r1, r2 = _last(g2[None]), _last(g4[None])
                part = (Moments(r1.count, r1.mean[..., None], r1.m2[..., None]),
                        Moments(r2.count, r2.mean[..., None], r2.m2[..., None]), r1, r2)
                accw[l] = part if accw[l] is None else tuple(
                    p.merge(q) for p, q in zip(accw[l], part, strict=True))
                rows2_prev = ra
            if bins:
                hists[l] = hists[l].add(XX[0, idx["delta"]], work=work)
    layers = {l: (tuple(plan[l - 1][0]) + ("fdf", "dfS")[:plan[l - 1][1]], acc[l])
              for l in range(1, L + 1) if acc[l] is not None}
    return layers, accw, hists

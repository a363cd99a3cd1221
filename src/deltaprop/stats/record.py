"""Recording the statistics of the backward (and forward) pass, batch by batch.

For each layer l = 1..L and each recorded quantity q (``delta`` = delta[l], ``z`` = z[l],
``a`` = a[l], ``df`` = f_l'(z[l]) for elementwise hidden layers), a :class:`Record` keeps,
per network k and unit j (shape (K, n_l); a single network is K = 1),

* ``Moments`` of q over the samples seen, and ``Moments`` of q^2 (so the second moment
  E[q^2] has its own standard error);
* ``Moments`` over samples of the per-sample unit averages of q and q^2, shape (K,)
  (the standard error of a layer average within one network);

plus, per layer, the per-sample mean square of the weight gradient
``dW2`` = ||delta[l]_i||^2 ||a[l-1]_i||^2 / (n_l n_{l-1}) (the mean of (delta_j a_k)^2 over
the entries of sample i's dW: one row norm each, no extra matrix product), a
:class:`Histogram` of delta[l], and at the last hidden layer the forward cross moments
seed 000's exact formula needs (``fdf`` = f'(z_j) f(z_j), ``dfS`` = f'(z_j) sum_l f(z_l)).

Every statistic is a sum over the batch axis done with array operations (no per-sample
Python loop), in the arrays' own namespace (NumPy, torch, ...).  Records merge exactly
(:meth:`Record.merge`), so batches, processes or epochs combine into the same answer.

Standard errors (``Record.layer_summary``): with K >= 2 networks the K per-network
averages are independent, so se = sd(per-network averages) / sqrt(K) (samples within one
network share its weights and are not independent).  With one network, se treats the
samples as independent: sd(per-sample layer averages) / sqrt(m).  **That se is the error of
this one network's average only**: it leaves out the network-to-network variance, so it is
no error bar for a prediction over the weight distribution (the rows of
:func:`deltaprop.stats.report.compare` say ``"se_within_network_only": True`` and get no z).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from .. import _backend, _checks
from .. import equations as eq
from .. import losses as _losses
from ..backprop import forward
from . import _fastrec
from .histogram import Histogram
from .moments import Moments

__all__ = ["Record", "record", "record_pass", "deltas", "QUANTITIES"]

#: quantities recorded by default
QUANTITIES = ("delta", "z", "a", "df")


@dataclass(frozen=True, eq=False)
class Record:
    """Mergeable statistics of a network's passes.

    ``stats[(names, l)]`` holds the quantities ``names`` (a tuple) of layer l stacked on a
    leading axis: a tuple (moments of q, moments of q^2, row moments of q, row moments of
    q^2) with shapes (Q, K, n_l) and (Q, K) -- one stacked computation per layer instead
    of one per quantity.  :meth:`get` returns one quantity's four Moments.  ``hist[l]`` is
    a :class:`Histogram` of delta[l]; ``sizes`` the layer widths; ``K`` the stack size."""

    sizes: tuple
    K: int
    stats: dict = field(default_factory=dict)
    hist: dict = field(default_factory=dict)

    # ------------------------------------------------------------------ merging
    def merge(self, other: Record) -> Record:
        """Exact merge of two records of the same architecture and stack size."""
        if other is None or not other.stats:
            return self
        if not self.stats:
            return other
        if tuple(self.sizes) != tuple(other.sizes) or self.K != other.K:
            raise ValueError(f"cannot merge records of sizes {self.sizes} (K={self.K}) and "
                             f"{other.sizes} (K={other.K})")
        stats = dict(self.stats)
        for key, val in other.stats.items():
            stats[key] = val if key not in stats else \
                tuple(a.merge(b) for a, b in zip(stats[key], val, strict=True))
        hist = dict(self.hist)
        for l, h in other.hist.items():
            hist[l] = h if l not in hist else hist[l].merge(h)
        return Record(self.sizes, self.K, stats, hist)

    __add__ = merge

    def concat(self, other: Record) -> Record:
        """Stack the networks of two records (K_a + K_b networks, same samples per network):
        ensembles drawn in chunks combine into one, keeping memory constant in K."""
        if not self.stats:
            return other
        if tuple(self.sizes) != tuple(other.sizes) or set(self.stats) != set(other.stats):
            raise ValueError("cannot concatenate records of different networks or quantities")
        stats = {k: tuple(_concat(a, b) for a, b in zip(v, other.stats[k], strict=True))
                 for k, v in self.numpy().stats.items()}
        hist = dict(self.hist)
        for l, h in other.hist.items():
            hist[l] = h if l not in hist else hist[l].merge(h)
        return Record(self.sizes, self.K + other.K, stats, hist)

    @property
    def L(self) -> int:
        return len(self.sizes) - 1

    @property
    def count(self) -> float:
        """Samples seen per network."""
        key = next(iter(self.stats))
        return self.stats[key][0].count

    def quantities(self, l) -> list[str]:
        """Names of the quantities recorded at layer l."""
        return [q for (names, ll) in self.stats if ll == l for q in names]

    def has(self, q, l) -> bool:
        return q in self.quantities(l)

    def get(self, q, l) -> tuple:
        """(moments of q, of q^2, row moments of q, of q^2) of layer l, on the host:
        shapes (K, n_l), (K, n_l), (K,), (K,)."""
        for (names, ll), val in self.stats.items():
            if ll == l and q in names:
                i = names.index(q)
                return tuple(Moments(m.count, m.mean[i], m.m2[i]) for m in
                             (v.numpy() for v in val))
        raise KeyError(f"{q!r} was not recorded at layer {l}")

    def numpy(self) -> Record:
        """A host copy (for reports, files, pickling between processes)."""
        return Record(self.sizes, self.K,
                      {k: tuple(m.numpy() for m in v) for k, v in self.stats.items()},
                      dict(self.hist))

    # ------------------------------------------------------------------ summaries
    def layer_summary(self, l, q="delta") -> dict:
        """Pooled over networks, units and samples: mean, mean_se, second_moment,
        second_moment_se, var, count (see the module docstring for the se: with K = 1 it
        covers the samples of this one network only, not the spread between networks)."""
        mom, sq, rows, rows2 = self.get(q, l)
        pooled, pooled2 = mom.reduce((0, 1)), sq.reduce((0, 1))
        if self.K >= 2:
            net_mean, net_second = mom.mean.mean(axis=1), sq.mean.mean(axis=1)
            se = float(net_mean.std(ddof=1) / np.sqrt(self.K))
            se2 = float(net_second.std(ddof=1) / np.sqrt(self.K))
        else:
            se, se2 = float(rows.se[0]), float(rows2.se[0])
        return {"mean": float(pooled.mean), "mean_se": se,
                "second_moment": float(pooled2.mean), "second_moment_se": se2,
                "var": float(pooled.m2 / max(pooled.count - 1, 1)), "count": pooled.count}

    def unit_summary(self, l, q="delta") -> dict:
        """Per unit (n_l,): mean, mean_se, second_moment, second_moment_se over networks and
        samples (se over networks when K >= 2, else over samples)."""
        mom, sq = self.get(q, l)[:2]
        out = {}
        for name, m in (("mean", mom), ("second_moment", sq)):
            out[name] = m.mean.mean(axis=0)
            out[name + "_se"] = (m.mean.std(axis=0, ddof=1) / np.sqrt(self.K) if self.K >= 2
                                 else m.se[0])
        return out

    def network_means(self, l, q="delta"):
        """Per-network layer averages of q and q^2: two arrays (K,)."""
        mom, sq = self.get(q, l)[:2]
        return mom.mean.mean(axis=1), sq.mean.mean(axis=1)


def _concat(a: Moments, b: Moments) -> Moments:
    b = b.numpy()
    if a.count != b.count:
        raise ValueError(f"networks saw different sample counts ({a.count} and {b.count})")
    return Moments(a.count, np.concatenate([a.mean, b.mean], axis=1),
                   np.concatenate([a.m2, b.m2], axis=1))


# ---------------------------------------------------------------------- one pass
def _moments4(x, xp):
    """(Moments of x, of x^2) over samples -> (Q, K, n); of their unit averages -> (Q, K).

    ``x`` is (Q, K, m, n): Q quantities stacked.

    Sums over the sample axis and over the units are products with a vector of ones (a
    BLAS matrix-vector product, several times faster than a reduction along an inner axis);
    the batch's M2 is S2 - n mean^2 (and S4 - n mean2^2 for x^2), with the two-pass sum of
    squared deviations for any quantity where that would cancel (:func:`_from_sums`).
    Batches then merge exactly by Chan's formula (:meth:`Moments.merge`).
    """
    m, n = x.shape[-2], x.shape[-1]
    kw = {} if _backend.is_numpy(xp) else {"device": _backend.device(x)}
    ones_m = xp.ones((1, m), dtype=x.dtype, **kw)
    ones_n = xp.ones((n, 1), dtype=x.dtype, **kw)
    x2 = x * x  # the only full-size temporary: squared in place for S4 below
    s1, s2 = (ones_m @ x)[..., 0, :], (ones_m @ x2)[..., 0, :]
    rows1, rows2 = (x @ ones_n)[..., 0] / n, (x2 @ ones_n)[..., 0] / n
    x2 *= x2
    s4 = (ones_m @ x2)[..., 0, :]
    return (_from_sums(s1, s2, m, lambda: x, xp), _from_sums(s2, s4, m, lambda: x * x, xp),
            Moments.of(rows1, -1), Moments.of(rows2, -1))


def _from_sums(s1, s2, m, values, xp):
    """Moments from S1 = sum x, S2 = sum x^2 over m samples; shapes (Q, K, n).

    M2 = S2 - m mean^2 loses relative precision eps S2 / M2; quantities where that would
    exceed ``_RTOL`` (1e-7 in float64, 1e-3 in float32) take the two-pass formula on
    ``values()`` (the (Q, K, m, n) array, rebuilt only then).
    """
    n = float(m)
    mean = s1 / n
    m2 = s2 - n * mean * mean
    tol = _CANCEL_BY_DTYPE.get(s1.dtype) if isinstance(s1, np.ndarray) else None
    if tol is None:
        tol = _CANCEL[_backend.dtype_name(s1.dtype)]
    Q = s1.shape[0]
    bad = _backend.to_numpy(xp.any(xp.reshape(m2 < tol * s2, (Q, -1)), axis=1))
    if bad.any():
        x = values()
        m2 = xp.stack([Moments.of(x[i], -2).m2 if bad[i] else m2[i] for i in range(Q)],
                      axis=0)
    return Moments(n, mean, m2)


_RTOL = {"float64": 1e-7, "float32": 1e-3}
#: M2 / S2 below which the one-pass M2 is replaced by the two-pass one
_CANCEL = {k: float(np.finfo(k).eps) / v for k, v in _RTOL.items()}
_CANCEL_BY_DTYPE = {np.dtype(k): v for k, v in _CANCEL.items()}


def deltas(net, trace, y, loss, *, check=True) -> list:
    """delta[l] for l = 1..L (slot 0 None) without the weight gradients.

    delta[L] = dJ_i/dz[L] (:func:`equations.output_delta`), then
    delta[l] = (delta[l+1] W[l+1]) * f_l'(z[l]) (:func:`equations.hidden_delta`).
    """
    loss = _losses.get(loss)
    f, L = net.activations, net.L
    xp = _backend.namespace(net.W[1], trace.a[0])
    if check:
        _losses.check_pair(loss, f[L])
        y = _checks.check_y(net, loss, y, trace.a[0].shape[-2], xp)
    d = [None] * (L + 1)
    d[L] = eq.output_delta(loss, f[L], trace.z[L], trace.a[L], y, xp)
    for l in range(L - 1, 0, -1):
        d[l] = eq.hidden_delta(net.W[l + 1], d[l + 1], f[l], trace.z[l], trace.a[l], xp)
    return d


def record_pass(net, trace, delta, *, quantities=QUANTITIES, bins=None, weight_grads=True,
                cross=True) -> Record:
    """The :class:`Record` of one forward/backward pass (trace and delta of one batch).

    Parameters
    ----------
    net : Network
        The network (or stack) that made ``trace``.
    trace : Trace
        ``z[l]``, ``a[l]``: (m, n_l) or (K, m, n_l).
    delta : sequence
        ``delta[l]`` like ``z[l]`` (slot 0 None), e.g. ``Gradients.delta``.
    quantities : sequence of str
        Any of ``delta``, ``z``, ``a``, ``df``.
    bins : int or None
        Histogram bins for delta (a multiple of 4; counted on the host), ``None`` (default)
        for no histograms.
    weight_grads : bool
        Record the per-sample weight-gradient mean square ``dW2``.
    cross : bool
        Record ``fdf`` and ``dfS`` at the last hidden layer (seed 000's exact formula).
    """
    xp = _backend.namespace(net.W[1], trace.a[0])
    L, f = net.L, net.activations
    K = net.K or 1

    def st(v):
        return v if v.ndim == 3 else v[None, ...]

    stats, hist = {}, {}
    sq_rows = {}  # per-sample mean of a[l]^2 (for dW2)
    df_L1 = None
    for l in range(1, L + 1):
        z, a, d = st(trace.z[l]), st(trace.a[l]), st(delta[l])
        names, arrays = [], []
        for q in quantities:
            if q == "df":
                if not f[l].elementwise or l == L and f[l].name == "identity":
                    continue
                v = f[l].df(z, a, xp)
                if l == L - 1:
                    df_L1 = v
            else:
                v = {"delta": d, "z": z, "a": a}[q]
            names.append(q)
            arrays.append(v)
        for q, v in zip(names, arrays, strict=True):
            stats[((q,), l)] = _moments4(v[None, ...], xp)
        if weight_grads:
            # mean over the entries of sample i's dW[l] = delta_i a_i^T of its square:
            # mean_j delta_ij^2 * mean_k a[l-1]_ik^2
            if l - 1 not in sq_rows:
                a_prev = trace.a[l - 1]
                sq_rows[l - 1] = xp.mean(a_prev * a_prev, axis=-1)
            sq_rows[l] = xp.mean(a * a, axis=-1)
            g2 = xp.reshape(xp.mean(d * d, axis=-1) * sq_rows[l - 1], (1, K, -1, 1))
            stats[(("dW2",), l)] = _moments4(g2, xp)
        if bins:
            hist[l] = Histogram.empty(bins).add(d)
    l = L - 1
    if cross and l >= 1 and f[l].elementwise:
        z, a = st(trace.z[l]), st(trace.a[l])
        df = f[l].df(z, a, xp) if df_L1 is None else df_L1
        cr = xp.stack([df * a, df * xp.sum(a, axis=-1, keepdims=True)], axis=0)
        stats[(("fdf", "dfS"), l)] = _moments4(cr, xp)
    return Record(tuple(net.sizes), K, stats, hist)


# ---------------------------------------------------------------------- driver
def record(net, x, y=None, loss="mse", *, batch_size=None, into: Record | None = None,
           **options) -> Record:
    """Run forward and backward passes batch by batch and accumulate a :class:`Record`.

    Memory stays constant in the number of samples: one batch's trace at a time.

    Parameters
    ----------
    net : Network
        A network or a stack of K.
    x : array or iterable
        Inputs (m, n_0) (shared by a stack) or (K, m, n_0); or an iterable of ``(x, y)``
        batches (then ``y`` must be ``None``).
    y : array
        Targets matching ``x`` (see :func:`deltaprop.backward`).
    loss : str
        Loss name.
    batch_size : int, optional
        Samples per pass (default: all at once).
    into : Record, optional
        A record to merge the new statistics into.
    **options
        Passed to :func:`record_pass` (``quantities``, ``bins``, ``weight_grads``,
        ``cross``).
    """
    rec = into
    for xb, yb in _batches(x, y, batch_size):
        if _fastrec.applies(net, xb, yb):
            part = _record_fast(net, xb, yb, loss, **options)
        else:
            trace = forward(net, xb)
            part = record_pass(net, trace, deltas(net, trace, yb, loss), **options)
        rec = part if rec is None else rec.merge(part)
    if rec is None:
        raise ValueError("no data to record")
    return rec


def _record_fast(net, x, y, loss, *, quantities=QUANTITIES, bins=None, weight_grads=True,
                 cross=True) -> Record:
    """:func:`record_pass` of one batch on the NumPy fast path (:mod:`._fastrec`), with
    the generic path's keys and shapes."""
    layers, accw, hists = _fastrec.record_batch(net, x, y, loss, quantities=quantities,
                                                bins=bins, weight_grads=weight_grads,
                                                cross=cross)
    stats, cross_key = {}, None

    def part(moms, i, j):
        return tuple(Moments(mm.count, mm.mean[i:j], mm.m2[i:j]) for mm in moms)

    for l in range(1, net.L + 1):
        if l in layers:
            names, moms = layers[l]
            for i, q in enumerate(names):
                if q in ("fdf", "dfS"):
                    cross_key = ((("fdf", "dfS"), l), part(moms, i, i + 2))
                    break
                stats[((q,), l)] = part(moms, i, i + 1)
        if weight_grads:
            stats[(("dW2",), l)] = accw[l]
    if cross_key is not None:
        stats[cross_key[0]] = cross_key[1]
    return Record(tuple(net.sizes), net.K or 1, stats, hists)


def _batches(x, y, batch_size) -> Iterable:
    if not hasattr(x, "shape"):
        if y is not None:
            raise ValueError("give y inside the (x, y) batches when x is an iterable")
        yield from x
        return
    m = x.shape[-2]
    if m == 0:
        raise ValueError("x is an empty batch (m = 0 samples): no data to record")
    step = m if not batch_size else int(batch_size)
    if step < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    for s in range(0, m, step):
        sl = slice(s, min(s + step, m))
        xb = x[..., sl, :]
        yb = None if y is None else (y[..., sl] if y.ndim == x.ndim - 1 else y[..., sl, :])
        yield xb, yb

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
the question's exact formula needs (``fdf`` = f'(z_j) f(z_j), ``dfS`` = f'(z_j) sum_l f(z_l)).

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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .. import _backend, _checks, _compiled, _kernels
from .. import activations as _act
from .. import equations as eq
from .. import losses as _losses
from .histogram import Histogram
from .moments import Moments

__all__ = ["Record", "record", "record_pass", "deltas", "chunk", "sub_batch", "QUANTITIES"]

#: quantities recorded by default
QUANTITIES = ("delta", "z", "a", "df")


@dataclass(frozen=True, eq=False)
class Record:
    """Mergeable statistics of a network's passes.

    ``stats[(q, l)]`` holds quantity ``q`` of layer ``l``: a tuple (moments of q, moments
    of q^2, row moments of q, row moments of q^2) with shapes (K, n_l), (K, n_l), (K,),
    (K,) (row moments: of the per-sample averages over the units).  :meth:`get` returns
    them on the host.  ``hist[l]`` is a :class:`Histogram` of delta[l]; ``sizes`` the
    layer widths; ``K`` the stack size."""

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

    def concat(self, *others: Record) -> Record:
        """Stack the networks of records (K_a + K_b + ... networks, same samples per
        network): ensembles drawn in chunks combine into one, keeping memory constant in K.
        Any number at once, each array concatenated once (on the host)."""
        recs = [r for r in (self, *others) if r.stats]
        if len(recs) <= 1:
            return recs[0] if recs else others[-1] if others else self
        first = recs[0]
        for r in recs[1:]:
            if tuple(first.sizes) != tuple(r.sizes) or set(first.stats) != set(r.stats):
                raise ValueError("cannot concatenate records of different networks or "
                                 "quantities")
        stats = {k: tuple(_concat([r.stats[k][i] for r in recs]) for i in range(len(v)))
                 for k, v in first.stats.items()}
        hist = {}
        for r in recs:
            for l, h in r.hist.items():
                hist[l] = h if l not in hist else hist[l].merge(h)
        return Record(first.sizes, sum(r.K for r in recs), stats, hist)

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
        return [q for (q, ll) in self.stats if ll == l]

    def has(self, q, l) -> bool:
        return (q, l) in self.stats

    def get(self, q, l) -> tuple:
        """(moments of q, of q^2, row moments of q, of q^2) of layer l, on the host:
        shapes (K, n_l), (K, n_l), (K,), (K,)."""
        if (q, l) not in self.stats:
            raise KeyError(f"{q!r} was not recorded at layer {l}")
        return tuple(m.numpy() for m in self.stats[(q, l)])

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


def _concat(moments: list) -> Moments:
    """Moments of several networks' records, stacked along the network axis (host)."""
    ms = [m.numpy() for m in moments]
    counts = {m.count for m in ms}
    if len(counts) > 1:
        seen = ", ".join(map(str, sorted(counts)))
        raise ValueError(f"networks saw different sample counts ({seen})")
    return Moments(ms[0].count, np.concatenate([m.mean for m in ms], axis=0),
                   np.concatenate([m.m2 for m in ms], axis=0))


# ---------------------------------------------------------------------- one pass
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
        Record ``fdf`` and ``dfS`` at the last hidden layer (the E[delta] question's exact formula).
    """
    xp = _backend.namespace(net.W[1], trace.a[0])
    f, plan = net.activations, _plan(net, quantities, cross)
    v = [None] + [{"z": trace.z[l], "a": trace.a[l], "delta": delta[l]}
                  for l in range(1, net.L + 1)]
    for l in range(1, net.L + 1):
        if "df" in plan[l - 1].slot:
            v[l]["df"] = eq.derivative(f[l], v[l]["z"], v[l]["a"], xp)
    acc = _Accumulator(net, plan, bins, weight_grads)
    acc.add(v, trace.a[0], xp)
    return acc.record()


# ---------------------------------------------------------------------- driver
#: bytes per (K, m_sub, n_l) layer array: :func:`record` takes each batch in sub-batches
#: below it, so a stack of K networks works in cache-sized buffers (reused on NumPy)
#: instead of freshly mapped, zero-filled 10-100 MB arrays
BUDGET = 1 << 20
#: smallest sub-batch (per-call overhead dominates below it)
MIN_SUB = 32


def record(net, x, y=None, loss="mse", *, batch_size=None, into: Record | None = None,
           **options) -> Record:
    """Run forward and backward passes batch by batch and accumulate a :class:`Record`.

    Memory stays constant in the number of samples and of networks: a stack is taken a
    few networks at a time (:func:`chunk`: as many as fit ``BUDGET`` bytes per layer
    array with the whole batch; their records concatenate), and a part that does not fit
    in sub-batches of samples (K m_sub n_l at most ``BUDGET`` bytes), whose statistics
    merge exactly; on NumPy every array of the pass is written into buffers reused from
    one part and sub-batch to the next.

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
    rec, arena = into, {}
    for xb, yb in iter_batches(x, y, batch_size):
        part = _record_batch(net, xb, yb, loss, arena, **options)
        rec = part if rec is None else rec.merge(part)
    if rec is None:
        raise ValueError("no data to record")
    return rec


def sub_batch(net, m, budget=None) -> int:
    """Samples per sub-batch: K m_sub max(n_l) itemsize <= budget (at least ``MIN_SUB``)."""
    per = (net.K or 1) * max(net.sizes[1:]) * net.xp.finfo(net.dtype).bits // 8
    return max(MIN_SUB, min(m, int((BUDGET if budget is None else budget) // per)))


def chunk(net, m, budget=None) -> int:
    """Networks of a stack taken together, each with the whole batch of ``m`` samples:
    K when the stack's layer arrays fit ``budget`` (:data:`BUDGET`), else as many as fit,
    at least one (which then goes in sub-batches of samples, :func:`sub_batch`).

    A few networks with every sample make the matrix products few and large (one per
    network and layer), where sub-batches of the whole stack would make K small ones
    per sub-batch; the bookkeeping per part is the same.  (NumPy only: on other array
    libraries, a GPU's, :func:`record` keeps the stack whole, one batched product per
    layer.)"""
    K = net.K or 1
    one = m * max(net.sizes[1:]) * net.xp.finfo(net.dtype).bits // 8  # one network's array
    return max(1, min(K, int((BUDGET if budget is None else budget) // max(one, 1))))


def _record_batch(net, x, y, loss, arena, *, quantities=QUANTITIES, bins=None,
                  weight_grads=True, cross=True) -> Record:
    """The :class:`Record` of one batch, a few networks at a time (:func:`chunk`), each part
    sub-batch by sub-batch (see :func:`record`); ``arena`` holds the NumPy buffers that
    every part and batch of one ``record`` call reuses."""
    loss = _losses.get(loss)
    xp = _checks.check_library(net, x, "x")
    _losses.check_pair(loss, net.activations[net.L])
    x = _checks.check_x(net, x, xp)
    m = x.shape[-2]
    y = _checks.check_y(net, loss, y, m, xp)
    plan = _plan(net, quantities, cross)
    K = net.K or 1
    k = chunk(net, m) if _backend.is_numpy(x) else K  # other libraries: one batched pass
    if k >= K:
        return _record_part(net, x, y, loss, xp, plan, arena, bins, weight_grads)
    parts = []  # parts of the stack: records of k networks, concatenated
    for k0 in range(0, K, k):
        xs = x[k0:k0 + k] if x.ndim == 3 else x
        ys = y[k0:k0 + k] if y.ndim == 3 else y
        parts.append(_record_part(net[k0:k0 + k], xs, ys, loss, xp, plan, arena, bins,
                                  weight_grads))
    return parts[0].concat(*parts[1:])


def _record_part(net, x, y, loss, xp, plan, arena, bins, weight_grads) -> Record:
    """The :class:`Record` of (a part of) a stack on one batch, sub-batch by sub-batch."""
    acc = _Accumulator(net, plan, bins, weight_grads)
    m = x.shape[-2]
    mb = sub_batch(net, m)
    for s in range(0, m, mb):
        e = min(s + mb, m)
        xc, yc = x[..., s:e, :], y[..., s:e, :]
        blocks = _blocks(arena, plan, acc.K, e - s, net) if _backend.is_numpy(xc) else None
        acc.add(_pass(net, xc, yc, loss, xp, plan, blocks), xc, xp, blocks)
    return acc.record()


def _blocks(arena, plan, K, m, net) -> list:
    """Per layer l, a (2, slots, K, m, n_l) NumPy buffer: the front of a flat array that
    every batch and sub-batch size of one ``record`` call reuses (fresh memory costs page
    faults and zeroing)."""
    blocks = [None]
    for l, (p, n) in enumerate(zip(plan, net.sizes[1:], strict=True), start=1):
        shape = (2, len(p.slots), K, m, n)
        size = math.prod(shape)
        if l not in arena or arena[l].size < size:
            arena[l] = np.empty(size, net.dtype)
        blocks.append(arena[l][:size].reshape(shape))
    return blocks


class _Layer(NamedTuple):
    """What one layer records: ``rec`` (names), ``ncross`` (the question's cross terms, 0 or 2),
    ``slots`` (the names of its stacked array's slots, in order) and ``slot`` (name ->
    index)."""

    rec: list
    ncross: int
    slots: list
    slot: dict


def _plan(net, quantities, cross) -> list:
    """Per layer l, a :class:`_Layer`.

    The slots of a layer's stacked array hold the recorded quantities first, then seed
    000's cross terms fdf and dfS (dfS is summarised from f'(z)'s slot without being formed
    when f'(z) is recorded), then what the pass needs and nobody records (z, a, delta, and
    f'(z) of elementwise hidden layers)."""
    f, L = net.activations, net.L
    plan = []
    for l in range(1, L + 1):
        rec = [q for q in quantities if q != "df" or (
            f[l].elementwise and not (l == L and f[l] is _act.ACTIVATIONS["identity"]))]
        ncross = 2 if (cross and l == L - 1 and f[l].elementwise) else 0
        slots = rec + ["fdf", "dfS"][:ncross - (ncross and "df" in rec)]
        need = ["z", "a", "delta"] + (["df"] if l < L and f[l].elementwise else [])
        slots += [q for q in need if q not in slots]
        plan.append(_Layer(rec, ncross, slots, {q: i for i, q in enumerate(slots)}))
    return plan


def _pass(net, x, y, loss, xp, plan, blocks) -> list:
    """Forward and backward pass of one sub-batch through :mod:`deltaprop.equations`:
    ``v[l]`` maps z, a, delta (and f'(z) where planned) to their arrays, written into the
    slots of ``blocks`` (NumPy) when given."""
    W, b, f, L = net.W, net.b, net.activations, net.L
    stacked = W[1].ndim == 3

    def slot(l, q):
        if blocks is None:
            return None
        s = blocks[l][0, plan[l - 1].slot[q]]
        return s if stacked else s[0]

    v = [None] + [{} for _ in range(L)]
    a_prev = x
    for l in range(1, L + 1):
        z = eq.pre_activation(a_prev, W[l], b[l], out=slot(l, "z"))
        a = _into(eq.activation(f[l], z, xp, out=slot(l, "a")), slot(l, "a"))
        v[l].update(z=z, a=a)
        if "df" in plan[l - 1].slot:
            v[l]["df"] = _into(eq.derivative(f[l], z, a, xp, out=slot(l, "df")), slot(l, "df"))
        a_prev = a
    v[L]["delta"] = _into(eq.output_delta(loss, f[L], v[L]["z"], v[L]["a"], y, xp),
                          slot(L, "delta"))
    for l in range(L - 1, 0, -1):
        d = eq.hidden_delta(W[l + 1], v[l + 1]["delta"], f[l], v[l]["z"], v[l]["a"], xp,
                            out=slot(l, "delta"), df=v[l].get("df"))
        v[l]["delta"] = _into(d, slot(l, "delta"))
    return v


def _into(value, buffer):
    """``value``, copied into ``buffer`` unless there is none or it is already there."""
    if buffer is None or value is buffer:
        return value
    buffer[...] = value
    return buffer


# ---------------------------------------------------------------------- statistics
class _Accumulator:
    """The statistics of a :func:`_plan`'s layers, merged over (sub-)batches."""

    def __init__(self, net, plan, bins, weight_grads):
        self.sizes, self.K, self.plan = tuple(net.sizes), net.K or 1, plan
        self.weight_grads = weight_grads
        self.stats = [None] * len(self.sizes)  # per layer: stacked moments of the slots
        self.dW2 = [None] * len(self.sizes)
        self.hist = {l: Histogram.empty(bins) for l in range(1, len(self.sizes))} \
            if bins else {}
        self.work, self.ones = None, {}

    def _ones(self, shape, like, xp):
        """A vector of ones for the sums, made once per shape."""
        if shape not in self.ones:
            kw = {} if _backend.is_numpy(xp) else {"device": _backend.device(like)}
            self.ones[shape] = xp.ones(shape, dtype=like.dtype, **kw)
        return self.ones[shape]

    def add(self, v, x, xp, blocks=None):
        """Add one pass: ``v`` from :func:`_pass`, ``x`` its input; ``blocks`` the stacked
        buffers the pass wrote into (NumPy), else the quantities are stacked here."""
        K = self.K
        m = x.shape[-2]
        ones_m = self._ones((1, m), x, xp)
        rows2_prev = None
        if self.weight_grads:  # per-sample mean of x^2 (shared x: broadcast over the stack)
            rows2_prev = xp.mean(x * x, axis=-1)
            rows2_prev = rows2_prev if rows2_prev.ndim == 2 else rows2_prev[None, :]
        for l in range(1, len(self.sizes)):
            rec, ncross, slots, idx = self.plan[l - 1]
            n, Q = self.sizes[l], len(rec) + ncross
            ones_n = self._ones((n, 1), x, xp)
            st = {q: _stack(a) for q, a in v[l].items()}
            scaled = None
            if ncross:  # f'(z_j) f(z_j) and f'(z_j) sum_k f(z_k), S = sum_k f(z_k) (K, m, 1)
                S = st["a"] @ ones_n
                fdf = _slot(blocks, l, idx, "fdf")
                st["fdf"] = st["df"] * st["a"] if fdf is None else \
                    _kernels.multiply_into(st["df"], st["a"], out=fdf)
                if "dfS" in idx:
                    dfS = _slot(blocks, l, idx, "dfS")
                    st["dfS"] = st["df"] * S if dfS is None else \
                        _kernels.multiply_into(st["df"], S, out=dfS)
                else:
                    scaled, Q = (rec.index("df"), S), Q - 1
            names, rows2 = slots[:Q], {}
            if Q:  # the Q quantities stacked (and a buffer for their squares on NumPy)
                X, X2 = (blocks[l][0, :Q], blocks[l][1, :Q]) if blocks is not None else \
                    (xp.stack([st[q] for q in names]), None)
                part, r2 = _moments(X, X2, ones_m, ones_n, scaled, xp)
                self.stats[l] = _merge(self.stats[l], part)
                rows2 = {q: r2[i, ...] for i, q in enumerate(names)}
            if self.weight_grads:  # mean over sample i's dW entries: mean_j d_ij^2 mean_k a_ik^2
                for q in ("delta", "a"):  # per-sample means of squares, unless summarised
                    if q not in rows2:
                        rows2[q] = xp.mean(st[q] * st[q], axis=-1)
                g2 = rows2["delta"] * rows2_prev  # (K, m): one value per sample
                r1, r2 = Moments.of(g2, -1), Moments.of(g2 * g2, -1)
                part = (Moments(r1.count, r1.mean[..., None], r1.m2[..., None]),
                        Moments(r2.count, r2.mean[..., None], r2.m2[..., None]), r1, r2)
                self.dW2[l] = _merge(self.dW2[l], part)
                rows2_prev = rows2["a"]
            if self.hist:
                size = K * m * max(self.sizes[1:])  # host scratch for NumPy's binning
                if not _compiled.enabled() and (self.work is None or self.work[0].size < size):
                    self.work = (np.empty(size, np.float64), np.empty(size, np.intp))
                self.hist[l] = self.hist[l].add(st["delta"], work=self.work)

    def record(self) -> Record:
        """The merged statistics under plain ``(quantity, layer)`` keys."""
        stats, cross = {}, {}
        for l in range(1, len(self.sizes)):
            rec, ncross = self.plan[l - 1][:2]
            names = rec + ["fdf", "dfS"][:ncross]
            for i, q in enumerate(names):
                moms = tuple(Moments(m.count, m.mean[i, ...], m.m2[i, ...]) for m in self.stats[l])
                (cross if q in ("fdf", "dfS") else stats)[(q, l)] = moms
            if self.weight_grads:
                stats[("dW2", l)] = self.dW2[l]
        stats.update(cross)
        return Record(self.sizes, self.K, stats, dict(self.hist))


def _stack(a):
    """(K, m, n) for a stack, (1, m, n) for one network."""
    return a if a.ndim == 3 else a[None, ...]


def _slot(blocks, l, idx, q):
    return None if blocks is None else blocks[l][0, idx[q]]


def _merge(acc, part):
    return part if acc is None else tuple(p.merge(q) for p, q in zip(acc, part, strict=True))


#: bytes of one quantity's slab of networks whose sums :func:`_moments` takes together
#: while it is in cache: a whole sub-batch's quantity (:data:`BUDGET`) unless a sub-batch
#: exceeds it (``MIN_SUB``); 512 KiB and 256 KiB slabs measured no faster
CHUNK = BUDGET


def _moments(X, X2, ones_m, ones_n, scaled, xp):
    """(Moments of x, of x^2) over samples -> (Q, K, n); of their unit averages -> (Q, K);
    and the unit averages of x^2 themselves, (Q, K, m).

    ``X`` is (Q, K, m, n): Q quantities x stacked; ``X2`` (same shape) a NumPy buffer for
    their squares (``None``: fresh arrays).  ``scaled = (i, S)`` appends the moments of
    x_i S (S (K, m, 1) per sample) as a last quantity without forming it: column sums
    S^T x_i, (S^2)^T x_i^2, (S^4)^T x_i^4 and row means S mean_j x_i, S^2 mean_j x_i^2
    (the E[delta] question's f'(z_j) sum_k f(z_k) term).

    One pass per quantity: all the sums of a quantity are taken slab by slab of networks
    (:data:`CHUNK` bytes) while the slab is in cache (:func:`_sums`).  Sums over the
    samples and over the units are products with a vector of ones (a BLAS matrix-vector
    product, several times faster than a reduction along an inner axis); the batch's M2 is
    S2 - m mean^2 (and S4 - m mean2^2 for x^2), with the two-pass sum of squared deviations
    for any quantity where that would cancel (:func:`_from_sums`).  Batches then merge
    exactly by Chan's formula (:meth:`Moments.merge`).
    """
    Q, K, m, n = X.shape
    G = max(1, min(K, CHUNK // max(1, m * n * xp.finfo(X.dtype).bits // 8)))
    i, S = scaled if scaled is not None else (None, None)
    St = None if S is None else S.mT
    per_q, extra = [], None
    for q in range(Q):
        parts = [_sums(X[q, k:k + G, ...], None if X2 is None else X2[q, k:k + G, ...],
                       ones_m, ones_n, St[k:k + G, ...] if q == i else None)
                 for k in range(0, K, G)]
        sums = [xp.concat(p, axis=0) if len(p) > 1 else p[0] for p in zip(*parts, strict=True)]
        per_q.append(sums[:5])
        if q == i:
            extra = sums[5:]
    s1, s2, s4, r1, r2 = (xp.stack(c) for c in zip(*per_q, strict=True))

    def values():
        return X if scaled is None else \
            xp.concat([X, (X[scaled[0], ...] * scaled[1])[None, ...]])

    def squares():
        v = values()
        return v * v

    if scaled is not None:
        S1 = S[..., 0]
        extra = (*extra, S1 * r1[i, ...], S1 * S1 * r2[i, ...])
        s1, s2, s4, r1, r2 = (xp.concat([o, e[None, ...]]) for o, e in
                              zip((s1, s2, s4, r1, r2), extra, strict=True))
    return (_from_sums(s1, s2, m, values, xp), _from_sums(s2, s4, m, squares, xp),
            Moments.of(r1, -1), Moments.of(r2, -1)), r2


def _sums(x, x2, ones_m, ones_n, St):
    """The sums of one quantity over a slab x (G, m, n) of G networks, in one pass while it
    is in cache: column sums of x, x^2, x^4 (G, n) and row means of x, x^2 (G, m); with
    ``St`` (G, 1, m) also the column sums of S x, S^2 x^2, S^4 x^4.  ``x2`` is a buffer for
    x^2 (then x^4), or ``None``.  NumPy arrays with Numba: one compiled pass
    (:func:`slab_sums`)."""
    if type(x) is np.ndarray and x.dtype in _CANCEL_BY_DTYPE and _compiled.enabled():
        G, m, n = x.shape
        cols = np.empty((3 if St is None else 6, G, n), x.dtype)
        rows = np.empty((2, G, m), x.dtype)
        slab_sums(x, x if St is None else np.ascontiguousarray(St), cols, rows)
        return [cols[0], cols[1], cols[2], rows[0], rows[1], *cols[3:]]
    n = x.shape[-1]
    x2 = x * x if x2 is None else _kernels.multiply_into(x, x, out=x2)
    out = [(ones_m @ x)[..., 0, :], (ones_m @ x2)[..., 0, :], None,
           (x @ ones_n)[..., 0] / n, (x2 @ ones_n)[..., 0] / n]
    if St is not None:
        St2 = St * St
        out += [(St @ x)[..., 0, :], (St2 @ x2)[..., 0, :]]
    x2 *= x2  # x^4, in place
    out[2] = (ones_m @ x2)[..., 0, :]
    if St is not None:
        out.append(((St2 * St2) @ x2)[..., 0, :])
    return out


@_compiled.kernel
def slab_sums(x, St, cols, rows):
    """:func:`_sums` of a slab x (G, m, n) as one loop: ``cols`` (3, G, n) gets the column
    sums of x, x^2, x^4 (with ``cols`` (6, G, n) also those of S x, S^2 x^2, S^4 x^4, S =
    ``St`` (G, 1, m); ``St`` is not read otherwise), ``rows`` (2, G, m) the row means of x and
    x^2.  Column sums add the samples in order (as ``numpy.add.reduce`` along that axis);
    row sums take eight partial sums, added pairwise (as ``numpy.add.reduce`` along a row of
    up to 128 units): the same sums as the BLAS products of the NumPy path up to the last
    bits (another order of the same additions), in the arrays' dtype."""
    G, m, n = x.shape
    nb = n - n % 8
    for g in range(G):
        cols[:, g, :] = 0
        c0, c1, c2, r0, r1 = cols[0, g], cols[1, g], cols[2, g], rows[0, g], rows[1, g]
        zero = c0[0]  # of x's dtype
        for i in range(m):
            xi = x[g, i]
            for j in range(n):
                v = xi[j]
                v2 = v * v
                c0[j] += v
                c1[j] += v2
                c2[j] += v2 * v2
            if cols.shape[0] == 6:
                s = St[g, 0, i]
                s2 = s * s
                s4 = s2 * s2
                for j in range(n):
                    v = xi[j]
                    v2 = v * v
                    cols[3, g, j] += s * v
                    cols[4, g, j] += s2 * v2
                    cols[5, g, j] += s4 * (v2 * v2)
            p0 = p1 = p2 = p3 = p4 = p5 = p6 = p7 = zero
            q0 = q1 = q2 = q3 = q4 = q5 = q6 = q7 = p0
            for j in range(0, nb, 8):
                v0, v1, v2, v3 = xi[j], xi[j + 1], xi[j + 2], xi[j + 3]
                v4, v5, v6, v7 = xi[j + 4], xi[j + 5], xi[j + 6], xi[j + 7]
                p0, p1, p2, p3 = p0 + v0, p1 + v1, p2 + v2, p3 + v3
                p4, p5, p6, p7 = p4 + v4, p5 + v5, p6 + v6, p7 + v7
                q0, q1, q2, q3 = q0 + v0 * v0, q1 + v1 * v1, q2 + v2 * v2, q3 + v3 * v3
                q4, q5, q6, q7 = q4 + v4 * v4, q5 + v5 * v5, q6 + v6 * v6, q7 + v7 * v7
            t1 = ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))
            t2 = ((q0 + q1) + (q2 + q3)) + ((q4 + q5) + (q6 + q7))
            for j in range(nb, n):
                t1 += xi[j]
                t2 += xi[j] * xi[j]
            r0[i] = t1 / n
            r1[i] = t2 / n


def _from_sums(s1, s2, m, values, xp):
    """Moments from S1 = sum x, S2 = sum x^2 over m samples; shapes (Q, K, n).

    M2 = S2 - m mean^2 loses relative precision eps S2 / M2; quantities where that would
    exceed ``_RTOL`` (1e-7 in float64, 1e-3 in float32) take the two-pass formula on
    ``values()`` (the (Q, K, m, n) array, rebuilt only then).
    """
    n = float(m)
    mean = s1 / n
    m2 = s2 - n * mean * mean
    tol = _CANCEL_BY_DTYPE.get(s1.dtype) if _backend.is_numpy(s1) else None
    if tol is None:
        tol = _CANCEL[_backend.dtype_name(s1.dtype)]
    Q = s1.shape[0]
    bad = _backend.to_numpy(xp.any(xp.reshape(m2 < tol * s2, (Q, -1)), axis=1))
    if bad.any():
        x = values()
        m2 = xp.stack([Moments.of(x[i, ...], -2).m2 if bad[i] else m2[i, ...] for i in range(Q)],
                      axis=0)
    return Moments(n, mean, m2)


_RTOL = {"float64": 1e-7, "float32": 1e-3}
#: M2 / S2 below which the one-pass M2 is replaced by the two-pass one
_CANCEL = {k: float(np.finfo(k).eps) / v for k, v in _RTOL.items()}
_CANCEL_BY_DTYPE = {np.dtype(k): v for k, v in _CANCEL.items()}


def iter_batches(x, y, batch_size) -> Iterable:
    """(x, y) in slices of ``batch_size`` samples along the batch axis (all at once for
    0 or None); an iterable ``x`` of (x, y) batches is passed through."""
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

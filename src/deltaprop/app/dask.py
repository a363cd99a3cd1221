"""Data-parallel gradients and backward statistics over a Dask array chunked by rows.

A data set too large for memory (a memory-mapped ``.npy``, a zarr store, anything Dask
reads) is a Dask array ``x`` of shape (m, n_0) chunked by rows, every chunk spanning all
columns.  Each chunk c of m_c rows goes through :func:`deltaprop.forward` and
:func:`deltaprop.backward` with NumPy and returns **sums**, not means:

    S_J       = m_c J_c       = sum_i J_i                       () or (K,)
    S_dW[l]   = m_c dW_c[l]   = sum_i delta[l]_i^T a[l-1]_i      like W[l]
    S_db[l]   = m_c db_c[l]   = sum_i delta[l]_i                 like b[l]
    delta[l] per unit: count, mean and M2 = sum (delta - mean)^2 (the laboratory's
    mergeable :class:`~deltaprop.stats.Moments`), so E[delta^2] = mean^2 + M2 / count.

Sums of chunks are sums of the whole.  A fixed tree over the chunk index adds them
(:func:`merge`; :func:`record` merges the laboratory's full :class:`~deltaprop.stats.Record`
the same way), and only at the end are they divided by m = sum_c m_c and the L2 term,
which needs the total m, added.  Because the tree is fixed by chunk index and each chunk
is a pure function of its rows, the result does not depend on which worker ran which
chunk: a chunk lost with a killed worker is recomputed bit for bit.  In exact arithmetic
the result equals the in-memory one; in float64 they agree to ~1e-15 relative.

Scaling convention (loud): as everywhere in deltaprop, delta is per sample and unscaled;
the 1/m appears only in dW and db, and here only in :func:`gradients`.

Memory: a task holds one chunk and its activations (about m_c * (n_0 + 3 sum_l n_l) floats);
sums are the size of the parameters.  :class:`NpyRows` reads a ``.npy`` file chunk by chunk
without keeping the file mapped, so peak memory is set by the chunk size, not the file size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _backend
from .. import equations as eq
from ..backprop import Gradients
from ..backprop import gradients as _gradients
from ..network import Network

__all__ = ["ChunkSums", "NpyRows", "from_npy", "rows_for", "chunk_sums", "merge", "reduce_sums",
           "sums", "gradients", "delta_moments", "record", "iter_batches"]


# ----------------------------------------------------------------------------- sources
class NpyRows:
    """Rows of a ``.npy`` file, read on demand: a picklable source for ``dask.array.from_array``.

    Each ``self[rows, cols]`` maps the file, copies the rows asked for and unmaps it again,
    so a worker holds one chunk at a time and the graph carries only the path (pickling an
    ``np.memmap`` would copy the whole file into the graph).
    """

    def __init__(self, path):
        self.path = str(path)
        arr = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, arr.ndim
        del arr

    def __getitem__(self, index):
        arr = np.load(self.path, mmap_mode="r")
        try:
            return np.array(arr[index])  # a copy: the mapping is released below
        finally:
            del arr

    def __len__(self):
        return self.shape[0]


def rows_for(chunk_bytes, n_cols, dtype="float64") -> int:
    """Rows per chunk so one chunk of ``n_cols`` columns takes about ``chunk_bytes`` bytes."""
    row = int(n_cols) * np.dtype(dtype).itemsize
    return max(1, int(chunk_bytes) // max(row, 1))


def from_npy(path, chunk_rows=None, *, chunk_bytes=64 * 2**20):
    """A Dask array over the rows of a ``.npy`` file, chunked by rows.

    Parameters
    ----------
    path : str or path-like
        A ``.npy`` file of shape (m, n) or (m,).
    chunk_rows : int, optional
        Rows per chunk; by default chosen so a chunk holds about ``chunk_bytes`` bytes.
    """
    import dask.array as da

    src = NpyRows(path)
    if chunk_rows is None:
        chunk_rows = rows_for(chunk_bytes, int(np.prod(src.shape[1:], dtype=int)), src.dtype)
    chunks = (int(chunk_rows),) + tuple(-1 for _ in src.shape[1:])
    return da.from_array(src, chunks=chunks, meta=np.empty((0,) * src.ndim, src.dtype),
                         name=f"npy-rows-{_file_token(src.path)}")


def _file_token(path):
    import os

    from dask.base import tokenize

    st = os.stat(path)
    return tokenize(os.path.abspath(path), st.st_mtime_ns, st.st_size)


# ----------------------------------------------------------------------------- the sums
@dataclass(frozen=True, eq=False)
class ChunkSums:
    """Mergeable sums over m samples (NumPy arrays; slot 0 of every tuple is ``None``).

    ``J``: sum of per-sample losses, () or (K,).  ``dW[l]``, ``db[l]``: m dW[l], m db[l].
    ``delta[l]``: :class:`~deltaprop.stats.Moments` of delta[l] over the m samples, per
    unit: ``mean`` and ``m2`` (n_l,) or (K, n_l).
    """

    m: int
    J: np.ndarray
    dW: tuple
    db: tuple
    delta: tuple


def chunk_sums(net: Network, x, y, loss) -> ChunkSums:
    """Forward and backward on one chunk with NumPy; return its sums (no L2 term).

    Parameters
    ----------
    net : Network
        A NumPy network (or stack of K).
    x : ndarray (m_c, n_0)
    y : ndarray (m_c, n_L), or integer labels (m_c,)
    """
    from ..stats.moments import Moments

    net, x, y = net.numpy(), np.asarray(x), np.asarray(y)
    m, L = x.shape[0], net.L
    _, g = _gradients(net, x, y, loss)
    return ChunkSums(m, m * np.asarray(g.J),
                     (None, *(m * g.dW[l] for l in range(1, L + 1))),
                     (None, *(m * g.db[l] for l in range(1, L + 1))),
                     (None, *(Moments.of(g.delta[l], -2) for l in range(1, L + 1))))


def merge(a: ChunkSums, b: ChunkSums) -> ChunkSums:
    """The sums of two disjoint sets of samples: sums add; moments merge exactly.

    ``Moments.merge`` (Chan et al., 1979): mean = mean_a + d m_b / m,
    M2 = M2_a + M2_b + d^2 m_a m_b / m, d = mean_b - mean_a.
    """
    L = len(a.dW) - 1
    return ChunkSums(
        a.m + b.m, a.J + b.J,
        (None, *(a.dW[l] + b.dW[l] for l in range(1, L + 1))),
        (None, *(a.db[l] + b.db[l] for l in range(1, L + 1))),
        (None, *(a.delta[l].merge(b.delta[l]) for l in range(1, L + 1))))


def reduce_sums(*parts):
    """Merge ``parts`` left to right (one node of the reduction tree): ChunkSums or Records."""
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p) if isinstance(out, ChunkSums) else out.merge(p)
    return out


def _row_blocks(x, y, chunk_rows):
    """x and y as Dask arrays with the same row chunks, x one chunk wide."""
    import dask.array as da

    if not isinstance(x, da.Array):
        x = da.from_array(np.asarray(x), chunks=(chunk_rows or 4096, -1))
    if x.ndim != 2:
        raise ValueError(f"x must be (m, n_0), got shape {tuple(x.shape)}")
    if x.numblocks[1] != 1:
        x = x.rechunk({1: -1})
    rows = x.chunks[0]
    if not isinstance(y, da.Array):
        y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != x.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {(y.shape or (0,))[0]}")
    if not isinstance(y, da.Array):
        y = da.from_array(y, chunks=(rows,) + tuple(-1 for _ in y.shape[1:]))
    y = y.rechunk((rows,) + tuple(-1 for _ in y.shape[1:]))
    return x.to_delayed().ravel(), y.to_delayed().ravel()


def sums(net: Network, x, y, loss, *, split_every=8, chunk_rows=None, compute=True,
         scheduler=None):
    """The :class:`ChunkSums` of a whole data set: a map over row chunks and a tree reduction.

    Parameters
    ----------
    net : Network
        Any backend (moved to NumPy for the chunks).
    x : dask.array.Array (m, n_0), chunked by rows (or an in-memory array, then chunked by
        ``chunk_rows``)
    y : dask.array.Array or array, (m, n_L) or integer labels (m,)
    split_every : int
        Fan-in of each node of the reduction tree.
    compute : bool
        If False, return the ``dask.delayed`` result (to compute with other work or
        ``client.compute``).  Otherwise compute it on ``scheduler``.
    scheduler : optional
        A ``dask.distributed.Client`` or a scheduler name ("threads", "synchronous", ...);
        default: Dask's current one (the default ``Client`` if one is active).
    """
    return _map_reduce(chunk_sums, net, x, y, loss, {}, split_every, chunk_rows, compute,
                       scheduler)


def _map_reduce(fn, net, x, y, loss, options, split_every, chunk_rows, compute, scheduler):
    """fn(host_net, x_chunk, y_chunk, loss, **options) per row chunk, then a fixed tree."""
    import dask

    from .. import losses as _losses

    if split_every < 2:
        raise ValueError(f"split_every must be >= 2, got {split_every}")
    _losses.check_pair(_losses.get(loss), net.activations[-1])  # fail before any task runs
    if len(getattr(x, "shape", ())) != 2 or x.shape[1] != net.sizes[0]:
        raise ValueError(f"x has shape {tuple(getattr(x, 'shape', ()))}; expected "
                         f"(m, {net.sizes[0]}) rows of the network's inputs")
    host = net.numpy()
    xb, yb = _row_blocks(x, y, chunk_rows)
    node = dask.delayed(host, traverse=False)
    parts = [dask.delayed(fn, pure=True)(node, xc, yc, loss, **options)
             for xc, yc in zip(xb, yb, strict=True)]
    while len(parts) > 1:
        parts = [dask.delayed(reduce_sums, pure=True)(*parts[i:i + split_every])
                 for i in range(0, len(parts), split_every)]
    return parts[0].compute(scheduler=scheduler) if compute else parts[0]


def _record_chunk(net, x, y, loss, **options):
    from ..stats.record import record as _record

    return _record(net, np.asarray(x), np.asarray(y), loss, **options).numpy()


def record(net: Network, x, y, loss, *, split_every=8, chunk_rows=None, compute=True,
           scheduler=None, **options):
    """The laboratory's :class:`~deltaprop.stats.Record` of a whole data set, chunk by chunk.

    Each row chunk is recorded with :func:`deltaprop.stats.record` (NumPy) and the records
    are merged (``Record.merge``, exact) along the same fixed tree as :func:`sums`, so the
    result equals recording the data in memory.  ``**options`` go to
    :func:`deltaprop.stats.record_pass` (``quantities``, ``bins``, ``weight_grads``,
    ``cross``); the other arguments are those of :func:`sums`.
    """
    return _map_reduce(_record_chunk, net, x, y, loss, options, split_every, chunk_rows,
                       compute, scheduler)


def gradients(net: Network, x, y, loss, l2=0.0, *, split_every=8, chunk_rows=None,
              scheduler=None, result=None) -> Gradients:
    """J, dW[l], db[l] of the whole data set (as :func:`deltaprop.gradients` would give in memory).

    J = S_J / m + (l2 / 2m) sum ||W||^2,  dW[l] = S_dW[l] / m + (l2 / m) W[l],  db[l] = S_db[l] / m.
    ``delta`` of the returned :class:`~deltaprop.Gradients` is all ``None`` (per-sample
    errors of a data set larger than memory are not kept); pass it to
    :func:`deltaprop.step` as usual.  Arrays come back in the network's library and device.

    ``result``: already computed :class:`ChunkSums` (e.g. from ``client.compute``).
    """
    if l2 < 0:  # before the pass over the data, not after it
        raise ValueError(f"l2 must be >= 0, got {l2}")
    s = sums(net, x, y, loss, split_every=split_every, chunk_rows=chunk_rows,
             scheduler=scheduler) if result is None else result
    host, m, L = net.numpy(), s.m, net.L
    J = s.J / m
    dW = [None] + [s.dW[l] / m for l in range(1, L + 1)]
    db = [None] + [s.db[l] / m for l in range(1, L + 1)]
    if l2:
        J = J + eq.l2_penalty(host.W, l2, m, np)
        dW = [None] + [dW[l] + eq.l2_gradient(host.W[l], l2, m) for l in range(1, L + 1)]
    xp, like = net.xp, net.W[1]

    def back(a):
        return None if a is None else _backend.asarray(np.asarray(a), xp, like=like)

    return Gradients(back(J), (None,) * (L + 1), tuple(map(back, dW)), tuple(map(back, db)))


def delta_moments(s: ChunkSums) -> dict:
    """Per-layer moments of delta from :class:`ChunkSums`, NumPy, slot 0 ``None``.

    ``mean[l]``, ``var[l]`` (population, M2 / m) and ``sq[l]`` = E[delta^2] = mean^2 + var,
    each (n_l,) or (K, n_l); ``sq_layer[l]``: E[delta^2] averaged over units, () or (K,).
    """
    L = len(s.dW) - 1
    mean = [None] + [s.delta[l].mean for l in range(1, L + 1)]
    var = [None] + [s.delta[l].m2 / s.m for l in range(1, L + 1)]
    sq = [None] + [mean[l] ** 2 + var[l] for l in range(1, L + 1)]
    return {"m": s.m, "mean": tuple(mean), "var": tuple(var), "sq": tuple(sq),
            "sq_layer": (None, *(np.mean(sq[l], axis=-1) for l in range(1, L + 1)))}


# ----------------------------------------------------------------------------- streaming
def iter_batches(x, y=None, batch_size=128, *, seed=None, drop_last=False, scheduler=None):
    """Mini-batches (NumPy) streamed from a Dask array chunked by rows, one chunk in memory.

    Chunks are computed one at a time (on the current scheduler); rows left over at the
    end of a chunk are carried into the next batch, so every batch but perhaps the last
    has ``batch_size`` rows.  With ``seed``, the chunk order and the rows inside each
    chunk are shuffled (a chunk-local shuffle: memory stays bounded by one chunk).

    Yields
    ------
    xb : ndarray (batch_size, n_0)  or  (xb, yb) when ``y`` is given.
    """
    import dask
    import dask.array as da

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(x, da.Array):
        x = np.asarray(x)
        x = da.from_array(x, chunks=(max(batch_size, 4096),) + (-1,) * (x.ndim - 1))
    if y is not None:
        if not isinstance(y, da.Array):
            y = da.from_array(np.asarray(y))
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
        y = y.rechunk((x.chunks[0],) + (-1,) * (y.ndim - 1))
    rng = None if seed is None else np.random.default_rng(seed)
    order = np.arange(x.numblocks[0]) if rng is None else rng.permutation(x.numblocks[0])
    carry_x = carry_y = None
    for i in order:
        if y is None:
            xc, yc = np.asarray(x.blocks[int(i)].compute(scheduler=scheduler)), None
        else:
            xc, yc = map(np.asarray, dask.compute(x.blocks[int(i)], y.blocks[int(i)],
                                                  scheduler=scheduler))
        if rng is not None:
            p = rng.permutation(xc.shape[0])
            xc, yc = xc[p], None if yc is None else yc[p]
        if carry_x is not None:
            xc = np.concatenate([carry_x, xc])
            yc = None if yc is None else np.concatenate([carry_y, yc])
        n = (xc.shape[0] // batch_size) * batch_size
        for s in range(0, n, batch_size):
            yield xc[s:s + batch_size] if y is None else (xc[s:s + batch_size],
                                                          yc[s:s + batch_size])
        carry_x = xc[n:] if n < xc.shape[0] else None
        carry_y = None if yc is None or carry_x is None else yc[n:]
    if carry_x is not None and not drop_last:
        yield carry_x if y is None else (carry_x, carry_y)

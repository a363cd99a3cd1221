"""Adaptive histograms that merge exactly.

A :class:`Histogram` has ``bins`` equal bins on the symmetric range [-R, R] with
R = 2^e (an integer exponent e).  The first batch picks the smallest power of two that
covers it, so vanishing (1e-12) and exploding (1e6) error vectors get a useful range
without a hand-set one.  When later data exceed R, the range doubles: with ``bins``
divisible by 4, each pair of old bins becomes one new bin of the inner half, exactly.
Two histograms merge by doubling the narrower one to the wider range and adding counts:
the result equals a histogram of all the data at that range, whatever the order (merging
is exact and associative).  Counting runs on the host: ``numpy.bincount`` over the bin
indices, or, with Numba (:mod:`deltaprop._compiled`), one compiled loop (:func:`bin_counts`)
that gives the very same counts without the index array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _backend, _compiled

__all__ = ["Histogram", "bin_counts"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True, eq=False)
class Histogram:
    """Counts (bins,) on [-2^exponent, 2^exponent]; ``exponent is None`` when empty."""

    counts: np.ndarray
    exponent: int | None

    @classmethod
    def empty(cls, bins=64) -> Histogram:
        if bins % 4 or bins < 4:
            raise ValueError(f"bins must be a positive multiple of 4, got {bins}")
        return cls(np.zeros(bins, np.int64), None)

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def edges(self) -> np.ndarray:
        """Bin edges (bins + 1,) on [-R, R] (R = 1 while empty)."""
        R = 2.0 ** (self.exponent or 0)
        return np.linspace(-R, R, self.bins + 1)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def widen(self, exponent: int) -> Histogram:
        """The same counts on [-2^exponent, 2^exponent] (exponent >= self.exponent)."""
        if self.exponent is None:
            return Histogram(self.counts.copy(), exponent)
        c, e = self.counts, self.exponent
        while e < exponent:
            half = c.reshape(-1, 2).sum(axis=1)  # bins/2 merged pairs
            q = self.bins // 4
            c = np.concatenate([np.zeros(q, np.int64), half, np.zeros(q, np.int64)])
            e += 1
        return Histogram(c, e)

    def add(self, x, *, work=None) -> Histogram:
        """A histogram with the values of array ``x`` (any shape, any backend) added.

        ``work``: optional reused scratch ``(float64 array, intp array)`` of at least
        ``x.size`` entries each (the NumPy recording path passes them: fresh megabyte-sized
        temporaries cost page faults on every call)."""
        x = np.asarray(_backend.to_numpy(x))
        if x.dtype not in _FLOATS:
            x = x.astype(np.float64)
        x = x.reshape(-1)
        if x.size == 0:
            return self
        lo, hi = float(np.minimum.reduce(x)), float(np.maximum.reduce(x))
        if not (math.isfinite(lo) and math.isfinite(hi)):  # drop NaN and +-inf
            x = x[np.isfinite(x)]
            if x.size == 0:
                return self
            lo, hi = float(np.minimum.reduce(x)), float(np.maximum.reduce(x))
        top = max(-lo, hi)
        need = math.frexp(top)[1] if top > 0 else -1074  # 2^need > top
        h = self.widen(max(need, self.exponent if self.exponent is not None else need))
        # bin index floor((x + R) bins / 2R) = floor((x / 2R + 1/2) bins): dividing by 2R (a
        # power of two, in two steps where 1/2R overflows) is exact, so the roundings are
        # those of the formula; the index is >= 0, so truncation by astype is the floor; the
        # values x = R exactly land in an extra bin, folded into the last one
        c = -1 - h.exponent
        pow2 = h.bins & (h.bins - 1) == 0  # then x bins / 2R is exact too: one pass fewer
        if pow2:
            c += h.bins.bit_length() - 1
        if _compiled.enabled():  # one compiled pass, the same indices (tests/test_compiled_stats)
            counts = h.counts.copy()
            bin_counts(x, counts, 2.0 ** min(c, 1000), 2.0 ** max(c - 1000, 0), pow2)
            return Histogram(counts, h.exponent)
        return Histogram(h.counts + _numpy_counts(x, h.bins, c, pow2, work), h.exponent)

    def merge(self, other: Histogram) -> Histogram:
        """Exact merge: widen both to the larger range, add counts."""
        if self.bins != other.bins:
            raise ValueError(f"cannot merge histograms with {self.bins} and {other.bins} bins")
        if other.exponent is None:
            return self
        if self.exponent is None:
            return other
        e = max(self.exponent, other.exponent)
        return Histogram(self.widen(e).counts + other.widen(e).counts, e)

    __add__ = merge


def _numpy_counts(x, bins, c, pow2, work):
    """Counts (bins,) of the finite values x (n,) in the bins of :meth:`Histogram.add`
    (scale 2^c, see there): the bin indices as one array, then ``numpy.bincount``."""
    if work is not None and work[0].size >= x.size:
        t, idx = work[0][:x.size], work[1][:x.size]
    else:
        t, idx = np.empty(x.size, np.float64), None
    np.multiply(x, 2.0 ** min(c, 1000), out=t, dtype=np.float64)
    if c > 1000:
        t *= 2.0 ** (c - 1000)
    if pow2:
        t += bins // 2
    else:
        t += 0.5
        t *= bins
    if idx is None:
        idx = t.astype(np.intp)
    else:
        np.copyto(idx, t, casting="unsafe")
    counts = np.bincount(idx, minlength=bins + 1)
    counts[bins - 1] += counts[bins]
    return counts[:bins]


@_compiled.kernel
def bin_counts(x, counts, s1, s2, pow2):
    """Add the values of x (n,), finite and within [-R, R], to ``counts`` (bins,) in place:
    the bins of :meth:`Histogram.add` by the same float64 operations in the same order as
    its NumPy path (:func:`_numpy_counts`): x s1 s2, then + bins/2 when bins is a power of
    two (``pow2``), else (+ 1/2) bins; truncated to an integer; index bins (x = R) folded
    into the last bin.  ``s1 s2`` = 2^c, in two exact steps where 2^c overflows (else
    ``s2 = 1``, which changes no bit).  One pass, no index array, no ``numpy.bincount``
    (2.5 times faster compiled; the indices are not checked, the caller's range bounds
    them)."""
    bins = counts.size
    half, fbins, last = float(bins // 2), float(bins), bins - 1
    for i in range(x.size):
        t = float(x[i]) * s1 * s2
        if pow2:
            t += half
        else:
            t = (t + 0.5) * fbins
        counts[min(int(t), last)] += 1

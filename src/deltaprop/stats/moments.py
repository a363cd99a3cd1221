"""Streaming, mergeable moments: count, mean and M2 (sum of squared deviations).

A :class:`Moments` holds, elementwise over some shape S (e.g. (K, n_l): per network and
unit), the count n, the mean and M2 = sum (x - mean)^2 of the values seen so far.

* :meth:`Moments.of` summarises a batch along given axes in one vectorised pass
  (mean by a sum, M2 by a sum of squared deviations: no per-sample Python loop);
* :meth:`Moments.merge` combines two summaries exactly (Chan, Golub & LeVeque 1979):

      n = n_a + n_b,   d = mean_b - mean_a,
      mean = mean_a + d n_b / n,    M2 = M2_a + M2_b + d^2 n_a n_b / n

  so merging batch partials equals one pass over all the data (to rounding), in any order:
  batches, processes or machines combine into the same answer;
* :meth:`Moments.reduce` merges along an axis of S (e.g. over units, or over the K
  networks) with the same formula generalised to many groups.

Arrays may be NumPy, torch, ... (the caller's namespace); :meth:`numpy` copies to the host
for reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _backend

__all__ = ["Moments"]


@dataclass(frozen=True, eq=False)
class Moments:
    """count n, mean and M2 = sum (x - mean)^2, elementwise over a shape S."""

    count: object
    mean: object
    m2: object

    @classmethod
    def of(cls, x, axis) -> Moments:
        """Moments of ``x`` along ``axis`` (int or tuple): one vectorised pass."""
        xp = _backend.namespace(x)
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        n = 1
        for a in axes:
            n *= x.shape[a]
        mean = xp.mean(x, axis=axes)
        d = x - _expand(xp, mean, axes, x.ndim)
        return cls(float(n), mean, xp.sum(d * d, axis=axes))

    @classmethod
    def empty(cls) -> Moments:
        """The identity of :meth:`merge`."""
        return cls(0.0, None, None)

    def merge(self, other: Moments) -> Moments:
        """Chan et al.'s exact pairwise merge (see the module docstring)."""
        if self.mean is None:
            return other
        if other.mean is None:
            return self
        n = self.count + other.count
        d = other.mean - self.mean
        wb = other.count / n
        return Moments(n, self.mean + d * wb, self.m2 + other.m2 + d * d * (self.count * wb))

    __add__ = merge

    def reduce(self, axis) -> Moments:
        """Merge the groups along ``axis`` of S (equal counts): pooled moments.

        mean = average of the group means; M2 = sum M2_g + n_g sum (mean_g - mean)^2.
        """
        xp = _backend.namespace(self.mean)
        axes = (axis,) if isinstance(axis, int) else tuple(axis)
        g = 1
        for a in axes:
            g *= self.mean.shape[a]
        mean = xp.mean(self.mean, axis=axes)
        d = self.mean - _expand(xp, mean, axes, self.mean.ndim)
        m2 = xp.sum(self.m2, axis=axes) + self.count * xp.sum(d * d, axis=axes)
        return Moments(self.count * g, mean, m2)

    # ------------------------------------------------------------------ summaries
    @property
    def var(self):
        """Sample variance M2 / (n - 1)."""
        return self.m2 / max(self.count - 1.0, 1.0)

    @property
    def se(self):
        """Standard error of the mean, sqrt(var / n), for n independent values."""
        return (self.var / self.count) ** 0.5

    def numpy(self) -> Moments:
        """A host (NumPy) copy."""
        return Moments(self.count, _np(self.mean), _np(self.m2))


def _expand(xp, a, axes, ndim):
    """``a`` reduced over ``axes`` of an ndim-array, with those axes back as length 1."""
    axes = {ax % ndim for ax in axes}
    shape, dims = [], iter(a.shape)
    for i in range(ndim):
        shape.append(1 if i in axes else next(dims))
    return xp.reshape(a, tuple(shape))


def _np(a):
    return None if a is None else np.asarray(_backend.to_numpy(a), dtype=np.float64)

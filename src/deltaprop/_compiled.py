"""Compiled kernels (Numba): optional, for NumPy arrays, never a second engine.

A handful of deltaprop's NumPy kernels cost many array passes for one line of algebra:
Adam's update is 13 ufunc calls per parameter array, a histogram's binning four passes and
a ``numpy.bincount``.  With Numba installed (``pip install "deltaprop[fast]"``) each of
them runs as one compiled loop instead.  The loop is an ordinary Python function written
next to the NumPy code it replaces (``optim.adam_into``, ``stats.histogram.bin_counts``),
with the same formula in the same order of operations, the scalars cast to the arrays'
dtype first: its results are bit for bit those of the NumPy kernel (``tests/test_compiled.py``
runs both, and runs the plain Python function too, so the formula is tested without Numba).

Nothing else changes: every other array library, and NumPy without Numba, takes the NumPy
path.  ``DELTAPROP_NUMBA=0`` in the environment switches the compiled kernels off.  A kernel
compiles on its first call (about a second) and is cached on disk (Numba's ``cache=True``:
in ``__pycache__`` beside the source, or Numba's per-user cache where that is read-only),
so later processes load it at once.  Importing deltaprop never imports Numba.
"""

from __future__ import annotations

import functools
import importlib.util
import os

__all__ = ["enabled", "kernel"]


@functools.cache
def enabled() -> bool:
    """True when the compiled kernels run: Numba is installed and ``DELTAPROP_NUMBA`` is
    not ``0`` (read once; ``enabled.cache_clear()`` reads it again)."""
    return os.environ.get("DELTAPROP_NUMBA") != "0" and \
        importlib.util.find_spec("numba") is not None


class kernel:  # noqa: N801 - used as a decorator, like numba.njit
    """A Python loop that runs compiled by Numba.

    ``@kernel`` on a function of NumPy arrays and scalars: calling the result compiles the
    function on first use (``numba.njit(cache=True)``, NumPy's error model: division by
    zero gives inf or NaN as in NumPy, no exception) and calls the compiled code.  Callers
    ask :func:`enabled` first; ``.py`` is the plain Python function (slow; for tests).
    """

    def __init__(self, fn):
        self.py = fn
        self._compiled = None
        functools.update_wrapper(self, fn)

    def __call__(self, *args):
        f = self._compiled
        if f is None:
            import numba

            f = self._compiled = numba.njit(cache=True, error_model="numpy")(self.py)
        return f(*args)

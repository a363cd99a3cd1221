"""Compiled kernels (Numba): optional, for NumPy arrays, never a second engine.

A handful of deltaprop's NumPy kernels cost many array passes for one line of algebra:
Adam's update is 13 ufunc calls per parameter array, a histogram's binning four passes and
a ``numpy.bincount``, the record's sums of x, x^2 and x^4 seven passes per quantity.  With
Numba installed (``pip install "deltaprop[fast]"``) each of them runs as one compiled loop
instead.  The loop is an ordinary Python function written next to the NumPy code it
replaces (``optim.adam_into``, ``stats.histogram.bin_counts``, ``stats.record.slab_sums``),
with the same formula, the scalars cast to the arrays' dtype first.

* ``adam_into`` and ``bin_counts`` do the same operations in the same order: their
  results are bit for bit those of the NumPy path.
* ``slab_sums`` adds the same terms as the NumPy path's products with vectors of ones, in
  another order (a BLAS product's order is the BLAS build's own): the record's moments
  agree to rounding (6e-14 relative in float64, 2e-5 in float32, measured), not to the bit.

``tests/test_compiled.py`` and ``tests/test_compiled_stats.py`` run each kernel compiled,
as its plain Python function (so the formula is tested without Numba too) and against the
NumPy path.

Nothing else changes: every other array library, and NumPy without Numba, takes the NumPy
path.  ``DELTAPROP_NUMBA=0`` in the environment switches the compiled kernels off.  A kernel
compiles on its first call (0.2 to 1.5 s) and is cached on disk (Numba's ``cache=True``:
in ``__pycache__`` beside the source, or Numba's per-user cache where that is read-only),
so later processes load it at once (where no cache is writable, each process compiles).
Importing deltaprop never imports Numba; the first kernel that would run does, and that
costs about 0.4 s in each process (importing Numba 0.16 s, starting its compiler 0.24 s,
measured): the kernels pay in runs of more than a few seconds (a training run with Adam, a
study or sweep of real size), not in a one-second command; ``DELTAPROP_NUMBA=0`` for many
short ones.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import warnings

__all__ = ["enabled", "describe", "kernel"]


@functools.cache
def enabled() -> bool:
    """True when the compiled kernels run: ``DELTAPROP_NUMBA`` is not ``0`` and Numba
    imports (read once; ``enabled.cache_clear()`` reads again).  A Numba that is installed
    but fails to import (one built for another NumPy, say) leaves the NumPy kernels
    running, with one :class:`RuntimeWarning` saying why."""
    if os.environ.get("DELTAPROP_NUMBA") == "0" or importlib.util.find_spec("numba") is None:
        return False
    try:
        import numba  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any failure means: run the NumPy kernels
        warnings.warn(f"Numba is installed but does not import ({exc}); deltaprop runs its "
                      f"NumPy kernels instead", RuntimeWarning, stacklevel=2)
        return False
    return True


def describe() -> str:
    """One line for ``deltaprop --version``: whether the compiled kernels run, and why not."""
    if os.environ.get("DELTAPROP_NUMBA") == "0":
        return "compiled kernels off (DELTAPROP_NUMBA=0)"
    if not enabled():
        return 'compiled kernels off (pip install "deltaprop[fast]" for Numba)'
    from importlib.metadata import version

    return f"compiled kernels on (Numba {version('numba')})"


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

            try:
                f = numba.njit(cache=True, error_model="numpy")(self.py)
            except RuntimeError:  # no writable cache anywhere: compile in every process
                f = numba.njit(error_model="numpy")(self.py)
            self._compiled = f
        return f(*args)

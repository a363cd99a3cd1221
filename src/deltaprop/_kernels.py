"""NumPy in-place kernels: the only backend-specific arithmetic in deltaprop.

Each kernel computes what a built-in :class:`~deltaprop.activations.Activation` or
:class:`~deltaprop.losses.Loss` row already defines (its ``f``, ``df``, ``per_sample``), with
ufuncs that write into a given array (``out=``) instead of allocating one per operation.
The rows carry them as optional fields (``Activation.f_into``, ``Activation.df_into``,
``Loss.fused``, ``Loss.cost_into``), and :mod:`deltaprop.equations` calls a row's kernel
when the arrays are NumPy (:func:`deltaprop._backend.is_numpy`), otherwise the row's
generic array-API functions.  No kernel is chosen by a row's *name*: an activation or loss
without kernels (a user's own, whatever it is called) is always computed by its own
functions.

A kernel's ``out`` may be ``None`` (a new array, as for a ufunc) or a NumPy array of the
result's shape and dtype; the result is returned.

The reductions at the end (``sum``, ``mean``, ``max``, ``min``) replace NumPy's own in the
namespace :func:`deltaprop._backend.namespace` hands out for NumPy arrays: the same ufunc
reductions and the same numbers, without ``np.sum``'s Python dispatch layer, which costs
more than a small array's whole reduction.
"""

from __future__ import annotations

import functools
import math

import numpy as np

__all__ = ["matmul_into", "multiply_into", "sigmoid", "dsigmoid", "tanh", "dtanh",
           "relu", "drelu", "softmax", "softmax_cross_entropy", "mse_cost", "sum", "mean",
           "max", "min"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


#: ``matmul_into(x1, x2, out=buf)``, ``multiply_into(x1, x2, out=buf)``: x1 @ x2 and
#: x1 * x2 written into a NumPy buffer
matmul_into = np.matmul
multiply_into = np.multiply


def sigmoid(z, out=None):
    """1 / (1 + e^{-z}) in four in-place ufuncs.

    Accurate to a few ulp in relative terms on the whole line (e^{-z} overflowing to inf
    gives exactly 0).  ``scipy.special.expit`` gives the same numbers but is several times
    slower (no SIMD; docs/performance.md); ``0.5 tanh(z/2) + 0.5`` is faster still but
    loses the relative accuracy of small a.
    """
    out = np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)


def dsigmoid(z, a, out=None):
    """f'(z) = a (1 - a), in the generic order: (1 - a), then times a."""
    out = np.subtract(1, a, out=out)
    out *= a
    return out


def tanh(z, out=None):
    return np.tanh(z, out=out)


def dtanh(z, a, out=None):
    """f'(z) = 1 - a^2."""
    out = np.multiply(a, a, out=out)
    return np.subtract(1, out, out=out)


def relu(z, out=None):
    return np.maximum(z, 0, out=out)


def drelu(z, a, out=None):
    """f'(z) = [z > 0] as 0.0 / 1.0."""
    return (z > 0).astype(z.dtype) if out is None else np.greater(z, 0, out=out)


def softmax(z, out=None):
    """e^{z - max z} / sum e^{z - max z} along the last axis, in one array."""
    out = np.subtract(z, np.maximum.reduce(z, axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= np.add.reduce(out, axis=-1, keepdims=True)
    return out


def softmax_cross_entropy(z, y, out=None):
    """(a, J): a = softmax(z) and J = 1/m sum_i sum_k y_k (logsumexp(z_i) - z_ik), sharing
    the normaliser sum_k e^{z_k - max z} between the two; the double sum is one dot
    product (one per network of a stack)."""
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    a = np.subtract(z, zmax, out=out)
    np.exp(a, out=a)
    s = np.add.reduce(a, axis=-1, keepdims=True)
    a /= s
    np.log(s, out=s)
    s += zmax  # logsumexp(z)
    return a, _batch_sum(np.subtract(s, z), y) / z.shape[-2]


def _batch_sum(r, y=None):
    """sum over samples and units of r (times y), one value per network: () or (K,)."""
    if r.ndim == 2:
        return np.vdot(r if y is None else y, r)
    if y is not None:
        r = r * y
    return np.add.reduce(np.reshape(r, (*r.shape[:-2], -1)), axis=-1)


def mse_cost(z, a, y):
    """J = 1/m sum_i 1/2 sum_k (a_ik - y_ik)^2: the sum of squares as one dot product."""
    r = np.subtract(a, y)
    if r.ndim == 2:
        return 0.5 * np.vdot(r, r) / z.shape[-2]
    r *= r
    return 0.5 * _batch_sum(r) / z.shape[-2]


# --- the NumPy namespace's reductions (array API signatures; they shadow the builtins
# sum, max and min in this module, which uses none of them) -------------------------------

#: the ufunc reductions, with the array API's default axis=None (all axes)
sum = functools.partial(np.add.reduce, axis=None)  # noqa: A001
max = functools.partial(np.maximum.reduce, axis=None)  # noqa: A001
min = functools.partial(np.minimum.reduce, axis=None)  # noqa: A001


def mean(x, /, *, axis=None, keepdims=False):
    if type(x) is not np.ndarray or x.dtype not in _FLOATS:
        return np.mean(x, axis=axis, keepdims=keepdims)
    n = x.size if axis is None else x.shape[axis] if isinstance(axis, int) else \
        math.prod(x.shape[a] for a in axis)
    return np.add.reduce(x, axis=axis, keepdims=keepdims) / n

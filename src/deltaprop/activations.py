"""Activation functions f and their derivatives f', one registry.

Shapes: every function is elementwise on ``z`` of any shape, e.g. (m, n_l) or
(K, m, n_l), except ``softmax``, which works along the last axis (units).

Each :class:`Activation` holds

* ``f(z, xp)``       -- a = f(z)
* ``df(z, a, xp)``   -- f'(z), given ``a = f(z)`` as well (sigmoid and tanh use it:
  ``f'(z) = a (1 - a)`` and ``1 - a**2``, Brawer eq. 15a)
* ``vjp(z, a, g, xp)`` -- g * f'(z) for elementwise f; the Jacobian-vector product
  for softmax.  The backward pass uses this, so softmax needs no special case there.

The built-in rows also carry optional in-place NumPy kernels of the same f and f'
(``f_into(z, out)``, ``df_into(z, a, out)``, from :mod:`deltaprop._kernels`), as
scikit-learn pairs its activations with in-place derivatives; :mod:`deltaprop.equations`
calls them on NumPy arrays.  A user's own :class:`Activation` has none (whatever its
name), so it is always computed by its own ``f`` and ``df``.  (A row copied with
``dataclasses.replace(row, f=...)`` keeps the row's kernels: give ``f_into=None,
df_into=None`` too.)

Names are looked up with :func:`get` (``"leaky-relu"`` and ``"leaky_relu"`` are the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from . import _kernels
from ._backend import namespace
from ._checks import registry_key

__all__ = ["Activation", "ACTIVATIONS", "get", "names"]


@dataclass(frozen=True)
class Activation:
    """A named activation: ``f``, its derivative ``df`` and its backward product ``vjp``.

    ``f_into`` and ``df_into`` (optional) are in-place NumPy kernels of the same ``f`` and
    ``df``: ``f_into(z, out=None)`` and ``df_into(z, a, out=None)`` return the result,
    written into ``out`` when one is given."""

    name: str
    f: Callable
    df: Callable
    formula: str
    elementwise: bool = True
    output_only: bool = False
    f_into: Callable | None = None
    df_into: Callable | None = None

    def __call__(self, z):
        """a = f(z)."""
        return self.f(z, namespace(z))

    def derivative(self, z):
        """f'(z) (elementwise activations only)."""
        if not self.elementwise:
            raise ValueError(f"{self.name} is not elementwise: its derivative is a Jacobian")
        xp = namespace(z)
        return self.df(z, self.f(z, xp), xp)

    def vjp(self, z, a, g, xp):
        """g * f'(z): the error vector through this activation (a = f(z) given)."""
        return g * self.df(z, a, xp)

    def __reduce__(self):
        # a registry row pickles by name, so it stays that very row (its kernels, and the
        # identity that Loss.fused checks, survive a trip to another process)
        if ACTIVATIONS.get(self.name) is self:
            return get, (self.name,)
        return super().__reduce__()


# --- the functions ------------------------------------------------------------------


def _identity(z, xp):
    return z


def _ones(z, a, xp):
    return xp.ones_like(z)


def _sigmoid(z, xp):
    # exp(-|z|) never overflows; both branches are exact in their own half-line
    e = xp.exp(-xp.abs(z))
    return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _dsigmoid(z, a, xp):
    return a * (1 - a)


def _tanh(z, xp):
    return xp.tanh(z)


def _dtanh(z, a, xp):
    return 1 - a * a


def _relu(z, xp):
    return xp.where(z > 0, z, xp.zeros_like(z))


def _drelu(z, a, xp):
    return xp.astype(z > 0, z.dtype)


LEAKY_SLOPE = 0.01


def _leaky_relu(z, xp):
    return xp.where(z > 0, z, LEAKY_SLOPE * z)


def _dleaky_relu(z, a, xp):
    one = xp.ones_like(z)
    return xp.where(z > 0, one, LEAKY_SLOPE * one)


def _softplus(z, xp):
    # log(1 + e^z) = max(z, 0) + log1p(e^{-|z|})
    return xp.maximum(z, xp.zeros_like(z)) + xp.log1p(xp.exp(-xp.abs(z)))


def _dsoftplus(z, a, xp):
    return _sigmoid(z, xp)


def _silu(z, xp):
    return z * _sigmoid(z, xp)


def _dsilu(z, a, xp):
    s = _sigmoid(z, xp)
    return s * (1 + z * (1 - s))


_GELU_C = math.sqrt(2 / math.pi)


def _gelu(z, xp):
    # tanh form (PyTorch approximate="tanh"): the array API has no erf
    return 0.5 * z * (1 + xp.tanh(_GELU_C * (z + 0.044715 * z**3)))


def _dgelu(z, a, xp):
    t = xp.tanh(_GELU_C * (z + 0.044715 * z**3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _GELU_C * (1 + 3 * 0.044715 * z * z)


def _softmax(z, xp):
    e = xp.exp(z - xp.max(z, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def _dsoftmax(z, a, xp):
    raise ValueError("softmax is not elementwise: its derivative is the Jacobian diag(a) - a a^T")


class _Identity(Activation):
    def vjp(self, z, a, g, xp):
        """g * f'(z) = g (f' = 1: no product)."""
        return g


class _Softmax(Activation):
    def vjp(self, z, a, g, xp):
        """J^T g with J = diag(a) - a a^T: a * (g - sum(a * g))."""
        return a * (g - xp.sum(a * g, axis=-1, keepdims=True))


_TABLE = [
    _Identity("identity", _identity, _ones, "f(z) = z"),
    Activation("sigmoid", _sigmoid, _dsigmoid, "f(z) = 1 / (1 + e^{-z}),  f' = f (1 - f)",
               f_into=_kernels.sigmoid, df_into=_kernels.dsigmoid),
    Activation("tanh", _tanh, _dtanh, "f(z) = tanh z,  f' = 1 - f^2",
               f_into=_kernels.tanh, df_into=_kernels.dtanh),
    Activation("relu", _relu, _drelu, "f(z) = max(z, 0),  f' = [z > 0]",
               f_into=_kernels.relu, df_into=_kernels.drelu),
    Activation(
        "leaky_relu", _leaky_relu, _dleaky_relu, f"f(z) = z if z > 0 else {LEAKY_SLOPE} z"
    ),
    Activation("softplus", _softplus, _dsoftplus, "f(z) = log(1 + e^z),  f' = sigmoid(z)"),
    Activation("silu", _silu, _dsilu, "f(z) = z sigmoid(z),  f' = s (1 + z (1 - s))"),
    Activation(
        "gelu", _gelu, _dgelu, "f(z) = z/2 (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))"
    ),
    _Softmax(
        "softmax", _softmax, _dsoftmax, "f(z)_k = e^{z_k} / sum_j e^{z_j}",
        elementwise=False, output_only=True, f_into=_kernels.softmax,
    ),
]

#: name -> :class:`Activation`
ACTIVATIONS: dict[str, Activation] = {act.name: act for act in _TABLE}


def names() -> list[str]:
    """Names of all registered activations."""
    return list(ACTIVATIONS)


_ALIASES = {"linear": "identity", "logistic": "sigmoid", "swish": "silu"}


def get(name) -> Activation:
    """The activation called ``name`` (an :class:`Activation` passes through)."""
    if isinstance(name, Activation):
        return name
    return ACTIVATIONS[registry_key(name, ACTIVATIONS, "activation", _ALIASES,
                                    accepts="a name or an Activation")]

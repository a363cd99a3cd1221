"""The NumPy fast path: the same equations as :mod:`.equations`, with fused, in-place work.

:func:`deltaprop.backprop.forward` and :func:`~deltaprop.backprop.backward` call
:func:`forward` and :func:`backward` here when the network and the inputs are NumPy
float32/float64 arrays and the fast path is enabled (``ENABLED``, or ``fast=`` on those
functions).  Every other library goes through the generic array-API code, which stays the
reference: ``tests/test_fast.py`` checks that both paths agree (float64 to ~1e-13,
float32 to ~1e-6) for every activation, every loss and stacks of K networks.

What is faster here, and why it is still the same algorithm:

* ``z[l] = a[l-1] @ W[l].mT`` is written straight into a fresh array and ``b[l]`` added in
  place (one pass less than ``a @ W.T + b``);
* f(z) uses one ufunc with ``out=`` where one exists (``scipy.special.expit`` for the
  sigmoid, ``np.tanh``, ``np.maximum``), and f'(z) is formed from a in a small scratch
  array and multiplied into ``delta[l+1] @ W[l+1]`` in place;
* ``dW[l] = delta[l].mT @ a[l-1] / m`` divides in place;
* :func:`train_step` (the training-loop step, no trace returned) fuses the weight gradient
  and the update into one BLAS call, ``W - (eta / m) delta^T a`` (``gemm`` with
  ``beta = 1``), and keeps its z, a and delta buffers from one step to the next.

Buffer contract: :func:`forward` and :func:`backward` return freshly allocated arrays
(never reused later), so a :class:`~deltaprop.backprop.Trace` or
:class:`~deltaprop.backprop.Gradients` a user keeps is never overwritten.  Only
:func:`train_step` reuses memory, and only its private scratch buffers (a
:class:`Workspace`), which it never returns; with ``donate=True`` it may also overwrite the
parameters of the network passed in (the caller promises not to use that network again,
as a training loop that replaces ``net`` by the returned one does).
"""

from __future__ import annotations

import numpy as np

from .losses import LOSSES as _LOSSES

__all__ = ["ENABLED", "applies", "forward", "backward", "train_step", "Workspace"]

#: Use the fast path for NumPy inputs by default (``fast=`` on the drivers overrides it).
ENABLED = True

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def applies(net, *arrays, fast=None) -> bool:
    """True if the fast path should run: enabled and every array a NumPy float32/64 array."""
    if not (ENABLED if fast is None else fast):
        return False
    W1 = net.W[1]
    if type(W1) is not np.ndarray or W1.dtype not in _FLOATS:
        return False
    return all(a is None or type(a) is np.ndarray for a in arrays)


# --- SciPy, imported on first use (``import deltaprop`` needs NumPy alone) -----------------

_SCIPY = {}


def _scipy(name):
    """``scipy.special.expit`` or ``scipy.linalg.blas`` (``None`` without SciPy)."""
    if not _SCIPY:
        try:
            from scipy.linalg import blas
            from scipy.special import expit
        except ImportError:  # pragma: no cover - SciPy is a dependency
            blas = expit = None
        _SCIPY.update(expit=expit, blas=blas)
    return _SCIPY[name]


def _expit(z, out=None):
    """The logistic sigmoid 1 / (1 + e^{-z}), one ufunc (into ``out`` if given)."""
    expit = _scipy("expit")
    if expit is not None:
        return expit(z, out=out)
    e = np.exp(-np.abs(z))  # pragma: no cover - SciPy is a dependency
    return np.divide(np.where(z >= 0, 1, e), 1 + e, out=out)  # pragma: no cover


# --- activations: a = f(z) into a fresh array, g * f'(z) in place on g -------------------

def _f_sigmoid(z):
    return _expit(z)


def _f_tanh(z):
    return np.tanh(z)


def _f_relu(z):
    return np.maximum(z, 0)


def _f_softmax(z):
    a = np.subtract(z, z.max(axis=-1, keepdims=True))
    np.exp(a, out=a)
    a /= a.sum(axis=-1, keepdims=True)
    return a


_F = {"identity": lambda z: z, "sigmoid": _f_sigmoid, "tanh": _f_tanh, "relu": _f_relu,
      "softmax": _f_softmax}


def _vjp_sigmoid(z, a, g, tmp):
    # g * (a (1 - a)), in the generic path's order: tmp = 1 - a; tmp *= a; g *= tmp
    np.subtract(1, a, out=tmp)
    tmp *= a
    g *= tmp
    return g


def _vjp_tanh(z, a, g, tmp):
    # g * (1 - a a)
    np.multiply(a, a, out=tmp)
    np.subtract(1, tmp, out=tmp)
    g *= tmp
    return g


def _vjp_relu(z, a, g, tmp):
    # g * [z > 0]; multiplying (not masking) keeps NaN and -0.0 exactly as the generic path
    np.multiply(g, z > 0, out=g)
    return g


#: f(z) written into a given buffer (used by train_step's reused buffers)
_F_INTO = {"sigmoid": lambda z, out: _expit(z, out=out), "tanh": lambda z, out: np.tanh(z, out=out),
           "relu": lambda z, out: np.maximum(z, 0, out=out)}


_VJP = {"identity": lambda z, a, g, tmp: g, "sigmoid": _vjp_sigmoid, "tanh": _vjp_tanh,
        "relu": _vjp_relu}


def _activate(f, z):
    fn = _F.get(f.name)
    return fn(z) if fn is not None else f.f(z, np)


def _vjp(f, z, a, g, tmp=None):
    """g * f'(z), overwriting g (which the caller owns) where a fused version exists."""
    fn = _VJP.get(f.name)
    if fn is None:
        return f.vjp(z, a, g, np)
    if tmp is None or tmp.shape != g.shape:
        tmp = np.empty_like(g)
    return fn(z, a, g, tmp)


def _output_delta(loss, f, z, a, y, out=None):
    """delta[L]: a - y for the matched pairs; (a - y) * f'(z) for MSE."""
    if _LOSSES.get(loss.name) is not loss:  # a user's own Loss object: its own delta
        return loss.delta(z, a, y, f, np)
    d = np.subtract(a, y, out=out)
    if loss.name == "mse":
        d = _vjp(f, z, a, d)
    return d


# --- the drivers ---------------------------------------------------------------------------

def forward(net, x):
    """Fast :func:`deltaprop.backprop.forward`: returns the lists (z, a), slot 0 the input."""
    z, a = [None], [x]
    for l in range(1, net.L + 1):
        zl = np.matmul(a[l - 1], net.W[l].mT)
        zl += net.b[l][..., None, :]
        z.append(zl)
        a.append(_activate(net.activations[l], zl))
    return z, a


def backward(net, z, a, y, loss, l2=0.0):
    """Fast :func:`deltaprop.backprop.backward` (inputs already checked).

    Returns ``(J, delta, dW, db)`` as lists with slot 0 = None; every array is new.
    """
    f, L = net.activations, net.L
    m = a[0].shape[-2]
    J = np.mean(loss.per_sample(z[L], a[L], y, np), axis=-1)
    delta = [None] * (L + 1)
    delta[L] = _output_delta(loss, f[L], z[L], a[L], y)
    tmp = None
    for l in range(L - 1, 0, -1):
        g = np.matmul(delta[l + 1], net.W[l + 1])
        if tmp is None or tmp.shape != g.shape:
            tmp = np.empty_like(g)
        delta[l] = _vjp(f[l], z[l], a[l], g, tmp)
    dW, db = [None] * (L + 1), [None] * (L + 1)
    for l in range(1, L + 1):
        w = np.matmul(delta[l].mT, a[l - 1])
        w /= m
        if l2:
            w += (l2 / m) * net.W[l]
        dW[l] = w
        db[l] = np.mean(delta[l], axis=-2)
    if l2:
        J = J + (l2 / (2 * m)) * sum(np.sum(w * w, axis=(-2, -1)) for w in net.W[1:])
    return J, delta, dW, db


# --- the training-loop step ----------------------------------------------------------------

class Workspace:
    """Scratch buffers that :func:`train_step` reuses from one step to the next.

    Keyed by shape and dtype, so one workspace serves any batch size (a smaller last
    batch gets its own buffers).  Never shared between threads.  Its arrays are never
    returned to the caller.
    """

    def __init__(self):
        self._buf = {}

    def get(self, key, shape, dtype):
        """A scratch array of ``shape`` and ``dtype`` (contents undefined)."""
        k = (key, tuple(shape), np.dtype(dtype))
        buf = self._buf.get(k)
        if buf is None:
            buf = self._buf[k] = np.empty(shape, dtype)
        return buf


def _gemm(dtype):
    blas = _scipy("blas")
    if blas is None:  # pragma: no cover - SciPy is a dependency
        return None
    return blas.sgemm if dtype == np.float32 else blas.dgemm


def _update_W(W, delta, a_prev, alpha, l2, m, eta, donate):
    """W - eta (delta^T a_prev / m + (l2 / m) W) as a new array (or in place if donated).

    For a single network this is one BLAS call, ``gemm(alpha, a_prev^T, delta, beta, W^T)``
    on the Fortran-order views of the C-order arrays: no dW is ever formed.
    """
    beta = 1.0 - eta * l2 / m
    out = W if donate else np.array(W, order="C", copy=True)
    gemm = _gemm(out.dtype)
    if gemm is not None and out.ndim == 2 and out.flags.c_contiguous \
            and a_prev.flags.c_contiguous and delta.flags.c_contiguous:
        # C-order (n, k) == Fortran-order (k, n): compute out^T += alpha a_prev^T delta
        r = gemm(alpha, a_prev.T, delta.T, beta=beta, c=out.T, trans_b=True,
                 overwrite_c=True)
        return r.T  # a view of out (f2py writes in place into the F-contiguous out.T)
    dW = np.matmul(delta.mT, a_prev)
    dW *= alpha
    if beta != 1.0:
        out *= beta
    out += dW
    return out


def train_step(net, x, y, loss, eta, l2=0.0, *, workspace=None, donate=False):
    """One gradient-descent step on one batch; returns ``(new_net, J)`` (inputs checked).

    The update is that of :func:`deltaprop.backprop.step` after
    :func:`deltaprop.backprop.gradients`, W[l] <- W[l] - eta dW[l], b[l] <- b[l] - eta db[l],
    computed without keeping the trace or the gradients.
    """
    ws = Workspace() if workspace is None else workspace
    f, L, W, b = net.activations, net.L, net.W, net.b
    m = x.shape[-2]
    dt = W[1].dtype
    lead = W[1].shape[:-2]
    sizes = net.sizes
    # forward into reused buffers
    z, a = [None] * (L + 1), [x] + [None] * L
    for l in range(1, L + 1):
        shape = (*lead, m, sizes[l])
        zl = ws.get(("z", l), shape, dt)
        np.matmul(a[l - 1], W[l].mT, out=zl)
        zl += b[l][..., None, :]
        z[l] = zl
        into = _F_INTO.get(f[l].name)
        a[l] = _activate(f[l], zl) if into is None else into(zl, ws.get(("a", l), shape, dt))
    J = np.mean(loss.per_sample(z[L], a[L], y, np), axis=-1)
    if l2:
        J = J + (l2 / (2 * m)) * sum(np.sum(w * w, axis=(-2, -1)) for w in W[1:])
    # backward, updating layer l as soon as delta[l] is known (W[l] is read before it changes)
    d = _output_delta(loss, f[L], z[L], a[L], y, out=ws.get(("d", L), z[L].shape, dt))
    newW, newb = [None] * (L + 1), [None] * (L + 1)
    for l in range(L, 0, -1):
        d_prev = None
        if l > 1:
            g = ws.get(("d", l - 1), (*lead, m, sizes[l - 1]), dt)
            np.matmul(d, W[l], out=g)
            d_prev = _vjp(f[l - 1], z[l - 1], a[l - 1], g,
                          ws.get(("t", l - 1), g.shape, dt))
        newW[l] = _update_W(W[l], d, a[l - 1], -eta / m, l2, m, eta, donate)
        db = np.mean(d, axis=-2)
        if donate:
            newb[l] = b[l]
            newb[l] -= eta * db
        else:
            newb[l] = b[l] - eta * db
        d = d_prev
    return net.replace(W=newW, b=newb), J

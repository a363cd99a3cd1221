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
* f(z) is computed with ufuncs writing in place (``np.tanh``, ``np.maximum``,
  1 / (1 + e^{-z}) for the sigmoid), and f'(z) is formed from a in a scratch array and
  multiplied into ``delta[l+1] @ W[l+1]`` in place;
* ``dW[l] = delta[l].mT @ a[l-1] / m`` divides in place;
* :func:`train_step` (the training-loop step, no trace returned) scales delta[l] by
  -eta / m in place once db is taken, so the update is one matrix product into a reused
  buffer plus one addition, ``W + (-eta/m delta)^T a``; it keeps its z, a, delta and dW
  buffers from one step to the next and checks its inputs in one pass each.

NumPy's own BLAS does every product: fusing the update into SciPy's ``gemm`` (beta = 1)
was tried and measured no faster with one thread, and with two threads SciPy's separate
OpenBLAS thread pool fought NumPy's (a 100-layer step became 40x slower).

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


# --- activations: a = f(z) into a fresh array, g * f'(z) in place on g -------------------

def _expit(z, out=None):
    """The logistic sigmoid 1 / (1 + e^{-z}) in three in-place ufuncs.

    Accurate to a few ulp in relative terms on the whole line (e^{-z} overflowing to inf
    gives exactly 0).  ``scipy.special.expit`` gives the same numbers but measured 5-8x
    slower here (no SIMD); ``0.5 tanh(z/2) + 0.5`` is faster still but loses the relative
    accuracy of small a.
    """
    out = np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(out, out=out)
    out += 1
    return np.reciprocal(out, out=out)



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


def step(net, dW, db, eta):
    """Fast :func:`deltaprop.backprop.step`: p - eta dp as (-eta dp) + p, one new array per
    parameter instead of two (bit-identical: a + (-b) == a - b).  ``None`` if the gradients
    do not match the parameters (the generic path then reports it)."""
    L, W, b = net.L, net.W, net.b
    if len(dW) != L + 1 or len(db) != L + 1 or any(
            g is None or g.shape != p.shape or g.dtype != p.dtype
            for ps, gs in ((W, dW), (b, db)) for p, g in zip(ps[1:], gs[1:], strict=True)):
        return None
    newW, newb = [None] * (L + 1), [None] * (L + 1)
    for new, ps, gs in ((newW, W, dW), (newb, b, db)):
        for l in range(1, L + 1):
            out = np.multiply(gs[l], -eta)
            out += ps[l]
            new[l] = out
    return _rebuild(net, newW, newb)


# --- the training-loop step ----------------------------------------------------------------

class Workspace:
    """Scratch buffers that :func:`train_step` reuses from one step to the next.

    Keyed by role, shape and dtype, so one workspace serves any batch size (a smaller last
    batch gets its own buffers).  Never share one between threads.  Its arrays are never
    returned to the caller.
    """

    def __init__(self):
        self._buf = {}

    def get(self, key, shape, dtype):
        """A scratch array of ``shape`` and ``dtype`` (contents undefined)."""
        k = (key, shape, dtype)
        buf = self._buf.get(k)
        if buf is None:
            buf = self._buf[k] = np.empty(shape, dtype)
        return buf


def _update_W_scaled(W, d, a_prev, alpha, beta, donate, buf):
    """beta W + (alpha d)^T a_prev with NumPy alone, scaling the scratch ``d`` in place.

    ``d`` is overwritten (the caller owns it and is done with it); the product goes into the
    reused buffer ``buf``, so the only new array is the returned one (none if donated).
    """
    d *= alpha
    dW = np.matmul(d.mT, a_prev, out=buf)
    if donate:
        if beta != 1.0:
            W *= beta
        W += dW
        return W
    if beta != 1.0:
        out = np.multiply(W, beta)
        out += dW
        return out
    return np.add(W, dW)


_EYE = {}


def _finite(x) -> bool:
    """True if every entry is finite: a finite sum proves it in one pass without a temporary
    (an overflowing sum of finite values only sends the caller to the exact check)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.add.reduce(x, axis=None)))


def _check_x(net, x):
    """:func:`deltaprop._checks.check_x` for the common case, falling back to it otherwise."""
    W1 = net.W[1]
    if x.dtype == W1.dtype and x.shape[-1] == W1.shape[-1] and x.shape[-2] > 0 and (
            x.ndim == 2 or (x.ndim == 3 and W1.ndim == 3 and x.shape[0] == W1.shape[0])) \
            and _finite(x):
        return x
    from . import _checks
    return _checks.check_x(net, x, np)


def _check_y(net, loss, y, m):
    """:func:`deltaprop._checks.check_y` for labels and well-formed targets, else it."""
    WL = net.W[-1]
    nL, dt = WL.shape[-2], WL.dtype
    if loss.targets == "distribution" and y.ndim == 1 and y.shape[0] == m \
            and y.dtype.kind in "iu" and m > 0 and y.min() >= 0 and y.max() < nL:
        eye = _EYE.get((nL, dt))
        if eye is None:
            eye = _EYE[(nL, dt)] = np.eye(nL, dtype=dt)
        return eye[y]
    if y.dtype == dt and y.shape[-2:] == (m, nL) and (
            y.ndim == 2 or (y.ndim == 3 and WL.ndim == 3 and y.shape[0] == WL.shape[0])) \
            and loss.targets != "distribution" and _finite(y) \
            and (loss.targets == "real" or (y.min() >= 0 and y.max() <= 1)):
        return y
    from . import _checks
    return _checks.check_y(net, loss, y, m, np)


def _rebuild(net, W, b):
    """``net.replace(W=W, b=b)`` without re-validating: same shapes, dtype and library."""
    new = object.__new__(type(net))
    new.__dict__.update(net.__dict__)
    object.__setattr__(new, "W", tuple(W))
    object.__setattr__(new, "b", tuple(b))
    return new


def _softmax_ce_into(z, y, a):
    """a = softmax(z) into ``a`` and J = mean_i sum_k y_k (logsumexp(z) - z_k), fused."""
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    np.subtract(z, zmax, out=a)
    np.exp(a, out=a)
    s = np.add.reduce(a, axis=-1, keepdims=True)
    a /= s
    np.log(s, out=s)
    s += zmax  # logsumexp(z)
    r = np.subtract(s, z)
    r *= y
    per = np.add.reduce(r, axis=-1)
    return np.add.reduce(per, axis=-1) / z.shape[-2]


def train_step(net, x, y, loss, eta, l2=0.0, *, check=True, workspace=None, donate=False):
    """One gradient-descent step on one batch; returns ``(new_net, J)``.

    The update is that of :func:`deltaprop.backprop.step` after
    :func:`deltaprop.backprop.gradients`, W[l] <- W[l] - eta dW[l], b[l] <- b[l] - eta db[l],
    computed without keeping the trace or the gradients; J is the loss before the step.
    """
    f, L, W, b = net.activations, net.L, net.W, net.b
    if check:
        from . import _checks, losses
        losses.check_pair(loss, f[L])
        _checks.check_l2(l2)
        x = _check_x(net, x)
        y = _check_y(net, loss, y, x.shape[-2])
    ws = Workspace() if workspace is None else workspace
    fused = loss.name if _LOSSES.get(loss.name) is loss else None  # not a user's own Loss
    m = x.shape[-2]
    dt = W[1].dtype
    lead = W[1].shape[:-2]
    # forward into reused buffers
    z, a = [None] * (L + 1), [x] + [None] * L
    for l in range(1, L + 1):
        shape = (*lead, m, W[l].shape[-2])
        zl = ws.get(("z", l), shape, dt)
        np.matmul(a[l - 1], W[l].mT, out=zl)
        zl += b[l][..., None, :]
        z[l] = zl
        name = f[l].name
        if name == "identity":
            a[l] = zl
        elif name in _F_INTO:
            a[l] = _F_INTO[name](zl, ws.get(("a", l), shape, dt))
        elif l == L and fused == "softmax-cross-entropy" and name == "softmax":
            a[l] = ws.get(("a", l), shape, dt)
            J = _softmax_ce_into(zl, y, a[l])
        else:
            a[l] = f[l].f(zl, np)
    # J and delta[L]
    if fused == "mse":
        d = np.subtract(a[L], y, out=ws.get(("d", L), z[L].shape, dt))
        sq = np.multiply(d, d, out=ws.get(("t", L), d.shape, dt))
        J = np.add.reduce(np.add.reduce(sq, axis=-1), axis=-1) * (0.5 / m)
        d = _vjp(f[L], z[L], a[L], d, sq)
    else:
        if not (fused == "softmax-cross-entropy" and f[L].name == "softmax"):
            J = np.mean(loss.per_sample(z[L], a[L], y, np), axis=-1)
        d = _output_delta(loss, f[L], z[L], a[L], y, out=ws.get(("d", L), z[L].shape, dt))
    if l2:
        J = J + (l2 / (2 * m)) * sum(np.add.reduce(w * w, axis=(-2, -1)) for w in W[1:])
    # backward, updating layer l as soon as delta[l] is known (W[l] is read before it changes)
    alpha, beta, step_b = -eta / m, 1.0 - eta * l2 / m, eta / m
    newW, newb = [None] * (L + 1), [None] * (L + 1)
    for l in range(L, 0, -1):
        d_prev = None
        if l > 1:
            g = np.matmul(d, W[l], out=ws.get(("d", l - 1), z[l - 1].shape, dt))
            d_prev = _vjp(f[l - 1], z[l - 1], a[l - 1], g, ws.get(("t", l - 1), g.shape, dt))
        db = np.add.reduce(d, axis=-2)
        db *= step_b
        newb[l] = np.subtract(b[l], db, out=b[l] if donate else None)
        newW[l] = _update_W_scaled(W[l], d, a[l - 1], alpha, beta, donate,
                                   ws.get(("dW", l), W[l].shape, dt))
        d = d_prev
    return _rebuild(net, newW, newb), J

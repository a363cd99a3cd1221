"""Input validation shared by every entry point: clear errors that name the argument."""

from __future__ import annotations

import functools
import math

import numpy as np

from . import _backend


def _lazy(x) -> bool:
    return type(x).__module__.startswith("dask")


def _finite(x, xp, name):
    """ValueError unless every entry of x is finite, in one pass: a finite sum proves it
    (a sum that overflows, or NaN/inf, takes the exact elementwise check)."""
    if not _backend.is_numpy(xp) and _lazy(x):
        return  # never force a lazy array here
    with np.errstate(over="ignore", invalid="ignore"):
        if math.isfinite(float(xp.sum(x))):
            return
    if not bool(xp.all(xp.isfinite(x))):
        raise ValueError(f"{name} contains NaN or inf")


def _kind(a) -> str:
    return type(a).__module__.split(".")[0] + "." + type(a).__name__


def check_library(net, arr, name):
    """TypeError naming ``name`` unless ``arr`` is an array of the network's library;
    returns the namespace of both."""
    try:
        return _backend.namespace(net.W[1], arr)
    except TypeError:
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            raise TypeError(f"{name} must be an array, got {type(arr).__name__}") from None
        raise TypeError(
            f"{name} is a {_kind(arr)} but the network's parameters are {_kind(net.W[1])}: "
            f"convert {name}, or move the network with Network.to(...)") from None


def check_x(net, x, xp):
    """x: (m, n_0), or (K, m, n_0) for a stack; cast to the network's dtype."""
    W1 = net.W[1]
    n0, lead = W1.shape[-1], W1.shape[:-2]  # lead: () or (K,)
    if not hasattr(x, "shape"):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    if x.ndim not in (2, 2 + len(lead)) or x.shape[-1] != n0 or \
            (x.ndim == 3 and tuple(x.shape[:1]) != lead):
        want = f"(m, {n0})" + ("" if not lead else f" or ({lead[0]}, m, {n0})")
        raise ValueError(f"x has shape {tuple(x.shape)}; expected {want}")
    if x.shape[-2] == 0:
        raise ValueError(f"x is an empty batch (m = 0 samples); expected (m, {n0}) with m >= 1")
    if x.dtype != W1.dtype:
        if not (xp.isdtype(x.dtype, "real floating") or xp.isdtype(x.dtype, "integral")
                or x.dtype == xp.bool):
            raise TypeError(f"x must hold real numbers, got dtype {x.dtype}")
        x = xp.astype(x, net.dtype)
    _finite(x, xp, "x")
    return x


def check_y(net, loss, y, m, xp):
    """y: (m, n_L) targets (or stacked); integer labels (m,) for softmax cross-entropy."""
    nL = net.W[-1].shape[-2]
    if type(y) is not type(net.W[1]):
        check_library(net, y, "y")
    shape = y.shape
    labels = loss.targets == "distribution" and (
        y.ndim == 1 or (y.ndim == 2 and tuple(y.shape) != (m, nL))) and _integral(xp, y.dtype)
    if labels:
        y = one_hot(y, nL, net.dtype, xp=xp, name="y")
    elif y.ndim == 1 and nL == 1 and y.shape[0] == m:
        y = xp.reshape(y, (m, 1))
    if y.ndim not in (2, 3) or tuple(y.shape[-2:]) != (m, nL) or \
            (y.ndim == 3 and (net.K is None or y.shape[0] != net.K)):
        stack = "" if net.K is None else f" or ({net.K}, {m}, {nL})"
        raise ValueError(f"y has shape {tuple(shape)}; expected (m, n_L) = ({m}, {nL}){stack}"
                         + (" or integer labels (m,)" if loss.targets == "distribution" else ""))
    if labels:
        return y  # one-hot rows of checked labels
    if y.dtype != net.dtype:
        y = xp.astype(y, net.dtype)
    _finite(y, xp, "y")
    if loss.targets != "real" and not _lazy(y):
        if not (bool(xp.min(y) >= 0) and bool(xp.max(y) <= 1)):
            raise ValueError(f"y must lie in [0, 1] for {loss.name}")
    if loss.targets == "distribution" and not _lazy(y):
        # delta[L] = a - y needs sum_k y_k = 1 (in general it is a sum(y) - y)
        tol = max(1e-6, float(xp.finfo(y.dtype).eps) ** 0.5)
        if not bool(xp.all(xp.abs(xp.sum(y, axis=-1) - 1) <= tol)):
            raise ValueError(f"y: each row must sum to 1 for {loss.name} (a distribution over "
                             f"the n_L = {nL} classes), or give integer labels (m,)")
    return y


def on_network(net, v, labels=False):
    """Data ``v`` (list, NumPy or any supported library's array: a torch tensor on a GPU or
    with ``requires_grad`` included) as an array of the network's library, on its device, in
    its dtype; integer class labels stay integers when ``labels``.  Copied through the host
    once per call."""
    v = np.asarray(_backend.to_numpy(v))
    if labels and v.dtype.kind in "iu":  # class labels stay integers (one-hot later)
        return _backend.asarray(v, net.xp, device=_backend.device(net.W[1]))
    return _backend.asarray(v, net.xp, like=net.W[1])


def prepare_data(net, loss, x, y, name):
    """x, y moved to the network's library (:func:`on_network`) and checked
    (:func:`check_x`, :func:`check_y`: y one-hot for class labels); a ValueError starts with
    ``name`` (such as "training data").  ``loss`` is a :class:`~deltaprop.losses.Loss`."""
    xp = net.xp
    x, y = on_network(net, x), on_network(net, y, labels=True)
    try:
        x = check_x(net, x, xp)
        y = check_y(net, loss, y, x.shape[0], xp)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return x, y


@functools.lru_cache(maxsize=64)
def _integral(xp, dtype) -> bool:
    return xp.isdtype(dtype, "integral")


def parse_batch_size(value) -> int:
    """A batch size as an integer: 1 = online, 0 = the full batch, else minibatches.

    Accepts an integer, ``None``, ``"full"`` (both -> 0) or a string of an integer (as a
    command line or a config file gives it).  Raises ``ValueError`` on anything else.  The
    one batch-size check: :func:`deltaprop.app.train.parse_batch_size` and
    :func:`deltaprop.app.data.batches` use it.
    """
    if value is None:
        return 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "full":
            return 0
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"batch_size must be a positive integer, 0 or 'full', "
                             f"got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, int | np.integer | float) or \
            int(value) != value or value < 0:
        raise ValueError(f"batch_size must be a positive integer, 0 or 'full', got {value!r}")
    return int(value)


def check_l2(l2):
    """lambda of the L2 penalty: a finite number >= 0."""
    if not 0 <= l2 < math.inf:
        raise ValueError(f"l2 must be a finite number >= 0, got {l2}")


def one_hot(y, n_classes, dtype=None, *, xp=None, name=None):
    """Integer labels y (m,) in 0..n_classes-1 -> one-hot rows (m, n_classes): 1 in column
    y[i] of row i (stacked labels (K, m) give (K, m, n_classes)).

    The one one-hot helper of deltaprop (:func:`deltaprop.app.data.one_hot` is this function).
    ``xp``: the array namespace of ``y`` (``None``: NumPy, ``y`` taken with
    ``numpy.asarray``); ``dtype`` float64 unless given.  Labels outside 0..n_classes-1 raise
    ``ValueError`` (its message starts with ``name``, such as "y", when given); on a lazy
    (Dask) array the range is not checked, to keep it lazy.
    """
    numpy = xp is None or _backend.is_numpy(xp)
    if xp is None:
        xp, y = np, np.asarray(y)
    if y.ndim == 0 or not (_integral(xp, y.dtype) or y.shape[-1] == 0):
        raise ValueError(f"{name + ': ' if name else ''}labels must be an integer array (m,), "
                         f"got {y.dtype} {tuple(y.shape)}")
    n = int(n_classes)
    dtype = xp.float64 if dtype is None else dtype
    if y.shape[-1] and (numpy or not _lazy(y)):
        lo, hi = xp.min(y), xp.max(y)
        if lo < 0 or hi >= n:
            raise ValueError(f"{name + ': ' if name else ''}labels must lie in 0..{n - 1} "
                             f"(n_L = {n} classes), got {int(lo)}..{int(hi)}")
    if numpy:
        return _numpy_eye(n, dtype)[y.astype(np.intp, copy=False)]
    classes = xp.arange(n, dtype=y.dtype, device=_backend.device(y))
    return xp.astype(y[..., None] == classes, dtype)


@functools.lru_cache(maxsize=64)
def _numpy_eye(n, dtype):
    return np.eye(n, dtype=dtype)


def _values(value):
    """The numbers of ``value``: a number, None, or a (nested) sequence or array of them."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _values(item)]
    arr = np.asarray(value)
    return arr.reshape(-1).tolist() if arr.ndim else [arr.item()]


def check_nonnegative(name, value, finite=True):
    """ValueError naming ``name`` and the value unless every number of ``value`` (a number,
    None, or a sequence or array of them, e.g. one per layer) is >= 0 and, with ``finite``,
    finite: a standard deviation or a variance."""
    for v in _values(value):
        if v is not None and (not float(v) >= 0 or (finite and float(v) == math.inf)):
            raise ValueError(f"{name} must be a {'finite ' if finite else ''}number >= 0 (a "
                             f"standard deviation or variance), got {v}")


def check_finite(name, value):
    """ValueError naming ``name`` and the value unless every number of ``value`` is finite
    (a mean)."""
    for v in _values(value):
        if v is not None and not math.isfinite(float(v)):
            raise ValueError(f"{name} must be a finite number, got {v}")


def registry_key(name, table, kind, aliases=None, sep="_", accepts="a name"):
    """The key of ``table`` that ``name`` means, or a clear error.

    Case and surrounding space are ignored, ``-`` and ``_`` are interchangeable (keys use
    ``sep``), and ``aliases`` maps other spellings to keys.  The name registries of
    activations, losses, initialisers, optimisers and schedules all look names up here.
    """
    if not isinstance(name, str):
        raise TypeError(f"{kind} must be {accepts}, got {type(name).__name__}")
    key = name.strip().lower().replace("_" if sep == "-" else "-", sep)
    key = (aliases or {}).get(key, key)
    if key not in table:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(table)}")
    return key

"""Update rules and learning-rate schedules, as pure functions (JAX ``optimizers`` style).

An :class:`Optimizer` is a pair of pure functions::

    state = opt.init(net)                                   # dict of named arrays / scalars
    net, state = opt.update(net, grads, state, lr=None)     # new network, new state

Nothing is mutated: ``update`` returns a new :class:`~deltaprop.network.Network` and a new
state dict.  The state's keys name the parameter they belong to (``"v.W.1"``,
``"m.b.2"``, ``"t"``), so a checkpoint stores it as it is.  ``lr`` overrides the
optimiser's learning rate for one step (that is how schedules act).

Each rule is one small function whose first docstring line is its equation, for one
parameter array ``p`` (any ``W[l]`` or ``b[l]``) with gradient ``g = dJ/dp``:

* gradient descent:  p <- p - eta g  (this is :func:`deltaprop.backprop.step`, i.e.
  :func:`deltaprop.equations.gradient_step` for every layer);
* momentum (heavy ball, PyTorch's convention): v <- mu v + g,  p <- p - eta v;
* Nesterov (PyTorch's convention): v <- mu v + g,  p <- p - eta (g + mu v);
* Adam (Kingma & Ba): m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2,
  p <- p - eta m_hat / (sqrt(v_hat) + eps) with m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t).

These are the updates of ``torch.optim.SGD`` (momentum, nesterov) and
``torch.optim.Adam`` with default options, and ``tests/test_optim.py`` checks them against
PyTorch step for step.

Each optimiser also carries its rule for one parameter, ``opt.rule(p, g, state, key, t,
eta, donate)``: the same arithmetic, which ``update`` runs on every parameter; with
``donate=True`` it writes p, its state arrays and g (scratch) in place, so that
:func:`deltaprop.backprop.train_step` can apply any optimiser layer by layer without
allocating (``train_step(..., optimizer=opt, state=state)``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import _compiled, backprop
from ._backend import namespace
from ._checks import registry_key
from .equations import gradient_step  # p - eta d, written (-eta d) + p

__all__ = ["Optimizer", "get", "names", "schedule", "schedule_names", "is_plain_gd",
           "momentum_update", "nesterov_update", "adam_moments", "adam_update", "adam_into"]


class Optimizer(NamedTuple):
    """``init(net) -> state`` and ``update(net, grads, state, lr=None) -> (net, state)``.

    ``rule(p, g, state, key, t, eta, donate) -> p`` is the update of one parameter array
    ``p`` (state key ``key``, e.g. ``"W.1"``) with gradient ``g`` at step ``t`` (1-based):
    it returns the new ``p`` and puts the parameter's new state arrays into the dict
    ``state``; with ``donate=True`` it overwrites ``p``, those state arrays and ``g``
    (scratch) in place instead of allocating.
    """

    init: Callable
    update: Callable
    name: str = ""
    hyper: dict = {}
    rule: Callable | None = None


# --- the update rules, one parameter array at a time ------------------------------------

def momentum_update(p, g, v, eta, mu, donate=False):
    """v <- mu v + g,  p <- p - eta v   (heavy-ball momentum, PyTorch's form).

    Returns ``(p_new, v_new)``; ``donate=True`` writes p, v and g (scratch) in place, with
    the same roundings.
    """
    if not donate:
        v = (mu * v) + g
        return gradient_step(p, v, eta), v
    v *= mu
    v += g
    g[...] = v
    g *= -eta
    p += g
    return p, v


def nesterov_update(p, g, v, eta, mu, donate=False):
    """v <- mu v + g,  p <- p - eta (g + mu v)   (Nesterov momentum, PyTorch's form)."""
    if not donate:
        v = (mu * v) + g
        return gradient_step(p, (mu * v) + g, eta), v
    v *= mu
    v += g
    d = mu * v
    d += g
    d *= -eta
    p += d
    return p, v


def adam_moments(g, m, v, beta1, beta2, donate=False):
    """m <- b1 m + (1 - b1) g,  v <- b2 v + (1 - b2) g^2   (Kingma & Ba, Algorithm 1).

    ``donate=True`` writes m, v and g (scratch) in place, with the same roundings.
    """
    if not donate:
        return beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * (g * g)
    m *= beta1
    v *= beta2
    g1 = (1 - beta1) * g
    m += g1
    g *= g
    g *= 1 - beta2
    v += g
    return m, v


def adam_update(p, m, v, t, eta, beta1, beta2, eps, xp, donate=False):
    """p <- p - eta/(1 - b1^t) m / (sqrt(v)/sqrt(1 - b2^t) + eps)   (bias-corrected Adam).

    ``donate=True`` writes p in place, with the same roundings."""
    step = eta / (1 - beta1 ** t)
    denom = xp.sqrt(v)
    denom /= math.sqrt(1 - beta2 ** t)
    denom += eps
    if not donate:
        return (-step * (m / denom)) + p  # = p - step (m / denom), see gradient_step
    r = m / denom
    r *= -step
    p += r
    return p


@_compiled.kernel
def adam_into(p, g, m, v, c):
    """:func:`adam_moments` then :func:`adam_update` with ``donate=True``, as one loop.

    The same operations in the same order, element by element, with the scalars
    ``c = (b1, 1 - b1, b2, 1 - b2, sqrt(1 - b2^t), eps, -eta / (1 - b1^t))`` given as an
    array of the parameters' dtype (as NumPy casts a Python float):
    m <- m b1 + (1 - b1) g,  v <- v b2 + (g g)(1 - b2),
    p <- p + (m / (sqrt(v) / sqrt(1 - b2^t) + eps)) (-eta / (1 - b1^t)).
    p, m and v are updated in place (C contiguous arrays of one dtype and size); g is only
    read.  Compiled by Numba where it is installed (:mod:`deltaprop._compiled`): one pass
    instead of 13 ufunc calls.
    """
    p, g, m, v = p.ravel(), g.ravel(), m.ravel(), v.ravel()
    b1, one_minus_b1, b2, one_minus_b2, c2, eps, neg_step = c[0], c[1], c[2], c[3], c[4], \
        c[5], c[6]
    for i in range(p.size):
        gi = g[i]
        mi = m[i] * b1 + one_minus_b1 * gi
        vi = v[i] * b2 + (gi * gi) * one_minus_b2
        m[i] = mi
        v[i] = vi
        p[i] += (mi / (np.sqrt(vi) / c2 + eps)) * neg_step


def _one_block(p, g, m, v):
    """True if p, g, m and v are C contiguous NumPy arrays of one dtype and size (what
    :func:`adam_into` needs)."""
    nd = np.ndarray
    if not (type(p) is nd and type(g) is nd and type(m) is nd and type(v) is nd):
        return False
    dt, n = p.dtype, p.size
    return (g.dtype == dt and m.dtype == dt and v.dtype == dt and g.size == n and m.size == n
            and v.size == n and p.flags.c_contiguous and g.flags.c_contiguous
            and m.flags.c_contiguous and v.flags.c_contiguous)


# --- the optimisers -------------------------------------------------------------------

def _params(net):
    """(key, layer, kind) for every parameter: ("W.1", 1, "W"), ("b.1", 1, "b"), ..."""
    return [(f"{kind}.{l}", l, kind) for l in range(1, net.L + 1) for kind in ("W", "b")]


def _zeros_like(net, prefix):
    xp = net.xp
    return {f"{prefix}.{key}": xp.zeros_like(getattr(net, kind)[l])
            for key, l, kind in _params(net)}


def _grad(grads, kind, l):
    return (grads.dW if kind == "W" else grads.db)[l]


def _rebuild(net, new):
    """``net.replace`` with the new parameters (keys ``"W.1"``, ``"b.1"``, ...)."""
    L = net.L
    return net.replace(W=(None, *(new[f"W.{l}"] for l in range(1, L + 1))),
                       b=(None, *(new[f"b.{l}"] for l in range(1, L + 1))))


def _check_lr(lr):
    if not (isinstance(lr, numbers.Real) and not isinstance(lr, bool) and math.isfinite(lr)
            and lr > 0):
        raise ValueError(f"learning rate must be a finite number > 0, got {lr!r}")
    return float(lr)


def gd(learning_rate=0.1) -> Optimizer:
    """Plain gradient descent: W[l] <- W[l] - eta dW[l] (:func:`deltaprop.backprop.step`)."""
    eta0 = _check_lr(learning_rate)

    def init(net):
        return {"t": 0}

    def update(net, grads, state, lr=None):
        eta = eta0 if lr is None else lr
        return backprop.step(net, grads, eta), {"t": state["t"] + 1}

    return Optimizer(init, update, "gd", {"learning_rate": eta0}, _gd_rule)


def _gd_rule(p, g, state, key, t, eta, donate=False):
    """p <- p - eta g (:func:`~deltaprop.equations.gradient_step`; in place: g is scratch)."""
    if not donate:
        return gradient_step(p, g, eta)
    g *= -eta
    p += g
    return p


def is_plain_gd(opt: Optimizer) -> bool:
    """True if ``opt`` is this module's :func:`gd` (its rule is plain gradient descent), so
    that a training loop may replace ``update(net, gradients(...)[1], state, lr)`` by
    :func:`deltaprop.backprop.train_step` (the same rule W[l] <- W[l] - eta dW[l]) and the
    state by ``{"t": t + 1}``."""
    return isinstance(opt, Optimizer) and opt.rule is _gd_rule


def _momentum(learning_rate=0.1, momentum=0.9, nesterov=False) -> Optimizer:
    eta0 = _check_lr(learning_rate)
    mu = float(momentum)
    if not 0 <= mu < 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
    law = nesterov_update if nesterov else momentum_update

    def init(net):
        return {"t": 0, **_zeros_like(net, "v")}

    def rule(p, g, state, key, t, eta, donate=False):
        p, state[f"v.{key}"] = law(p, g, state[f"v.{key}"], eta, mu, donate)
        return p

    name = "nesterov" if nesterov else "momentum"
    return Optimizer(init, _update(rule, eta0), name, {"learning_rate": eta0, "momentum": mu},
                     rule)


def momentum(learning_rate=0.1, momentum=0.9) -> Optimizer:
    """Heavy-ball momentum: v <- mu v + dW, W <- W - eta v."""
    return _momentum(learning_rate, momentum, nesterov=False)


def nesterov(learning_rate=0.1, momentum=0.9) -> Optimizer:
    """Nesterov momentum: v <- mu v + dW, W <- W - eta (dW + mu v)."""
    return _momentum(learning_rate, momentum, nesterov=True)


def adam(learning_rate=0.001, beta1=0.9, beta2=0.999, eps=1e-8) -> Optimizer:
    """Adam with bias correction (``torch.optim.Adam`` defaults)."""
    eta0 = _check_lr(learning_rate)
    b1, b2, eps = float(beta1), float(beta2), float(eps)
    if not (0 <= b1 < 1 and 0 <= b2 < 1 and eps > 0):
        raise ValueError(f"Adam needs 0 <= beta1, beta2 < 1 and eps > 0, got {b1}, {b2}, {eps}")

    def init(net):
        return {"t": 0, **_zeros_like(net, "m"), **_zeros_like(net, "v")}

    last = [None, None]  # adam_into's scalars for the last (t, eta, dtype): one per step

    def rule(p, g, state, key, t, eta, donate=False):
        m, v = state[f"m.{key}"], state[f"v.{key}"]
        if donate and _compiled.enabled() and _one_block(p, g, m, v):
            if last[0] != (t, eta, p.dtype):
                last[:] = (t, eta, p.dtype), np.array(
                    [b1, 1 - b1, b2, 1 - b2, math.sqrt(1 - b2 ** t), eps, -(eta / (1 - b1 ** t))],
                    p.dtype)
            adam_into(p, g, m, v, last[1])
            return p
        m, v = adam_moments(g, m, v, b1, b2, donate)
        state[f"m.{key}"], state[f"v.{key}"] = m, v
        return adam_update(p, m, v, t, eta, b1, b2, eps, namespace(p), donate)

    return Optimizer(init, _update(rule, eta0), "adam",
                     {"learning_rate": eta0, "beta1": b1, "beta2": b2, "eps": eps}, rule)


def _update(rule, eta0):
    """The optimiser's ``update``: ``rule`` on every parameter, into a new state dict."""

    def update(net, grads, state, lr=None):
        eta = eta0 if lr is None else lr
        t = state["t"] + 1
        new, out = {}, {**state, "t": t}
        for key, l, kind in _params(net):
            new[key] = rule(getattr(net, kind)[l], _grad(grads, kind, l), out, key, t, eta)
        return _rebuild(net, new), out

    return update


_OPTIMIZERS = {"gd": gd, "momentum": momentum, "nesterov": nesterov, "adam": adam}
_ALIASES = {"sgd": "gd", "gradient-descent": "gd", "heavy-ball": "momentum", "nag": "nesterov"}


def names() -> list[str]:
    """Names of the optimisers."""
    return list(_OPTIMIZERS)


def get(name, learning_rate=None, **hyper) -> Optimizer:
    """The optimiser called ``name``: ``"gd"`` (alias ``"sgd"``), ``"momentum"``,
    ``"nesterov"`` or ``"adam"``.

    ``learning_rate`` defaults to 0.1, except for Adam (0.001).  Other keywords are the rule's
    hyper-parameters: ``momentum`` (momentum, nesterov; default 0.9), ``beta1``, ``beta2``,
    ``eps`` (adam).  An :class:`Optimizer` is returned unchanged.
    """
    if isinstance(name, Optimizer):
        return name
    key = registry_key(name, _OPTIMIZERS, "optimizer", _ALIASES, sep="-",
                       accepts="a name or an Optimizer")
    if learning_rate is None:
        learning_rate = 0.001 if key == "adam" else 0.1
    try:
        return _OPTIMIZERS[key](learning_rate, **hyper)
    except TypeError as exc:
        raise ValueError(f"bad hyper-parameters for optimizer {key!r}: {exc}") from None


# --- learning-rate schedules: epoch (0-based) -> learning rate ---------------------------

def _constant(lr):
    return lambda epoch: lr


def _step(lr, step_size=10, gamma=0.5):
    """eta_e = eta_0 gamma^floor(e / step_size)."""
    return lambda epoch: lr * gamma ** (epoch // step_size)


def _exponential(lr, gamma=0.95):
    """eta_e = eta_0 gamma^e."""
    return lambda epoch: lr * gamma ** epoch


def _cosine(lr, epochs=100, min_lr=0.0):
    """eta_e = min + (eta_0 - min) (1 + cos(pi e / epochs)) / 2."""
    return lambda epoch: min_lr + (lr - min_lr) * 0.5 * (1 + math.cos(math.pi * min(epoch, epochs)
                                                                     / epochs))


def _inverse_time(lr, decay=0.1):
    """eta_e = eta_0 / (1 + decay e)."""
    return lambda epoch: lr / (1 + decay * epoch)


_SCHEDULES = {"constant": _constant, "step": _step, "exponential": _exponential,
              "cosine": _cosine, "inverse-time": _inverse_time}


def schedule_names() -> list[str]:
    """Names of the learning-rate schedules."""
    return list(_SCHEDULES)


def schedule(name, learning_rate, **kw) -> Callable[[int], float]:
    """Learning rate as a function of the epoch (0-based).

    ``"constant"``; ``"step"`` (``step_size=10``, ``gamma=0.5``); ``"exponential"``
    (``gamma=0.95``); ``"cosine"`` (``epochs=100``, ``min_lr=0``); ``"inverse-time"``
    (``decay=0.1``).  Keywords a schedule does not take are ignored only if they are
    ``epochs`` (so callers may always pass it); others raise ``ValueError``.
    """
    if callable(name):
        return name
    key = registry_key(str(name), _SCHEDULES, "schedule", sep="-")
    lr = _check_lr(learning_rate)
    if key != "cosine":
        kw.pop("epochs", None)
    elif int(kw.get("epochs", 100)) < 1:
        raise ValueError("the cosine schedule needs epochs >= 1")
    try:
        return _SCHEDULES[key](lr, **kw)
    except TypeError as exc:
        raise ValueError(f"bad options for schedule {key!r}: {exc}") from None

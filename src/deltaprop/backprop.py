"""Forward and backward drivers: short loops over the functions of :mod:`.equations`.

Shapes (single network; a stack of K adds a leading K axis everywhere):
x (m, n_0); y (m, n_L) or integer labels (m,) for softmax cross-entropy;
``Trace.z[l]``, ``Trace.a[l]``, ``Gradients.delta[l]``: (m, n_l); ``dW[l]`` like W[l];
``db[l]`` like b[l]; ``J``: () or (K,).  Slot 0 is the input layer: ``a[0] = x``,
``z[0]``, ``delta[0]``, ``dW[0]``, ``db[0]`` are ``None``.

One path for every array library: NumPy differs only inside the equations, where a
built-in activation's in-place kernel replaces its generic form.  Buffer contract:
:func:`forward`, :func:`backward` and :func:`step` return freshly allocated arrays (never
reused later), so a :class:`Trace` or :class:`Gradients` a user keeps is never
overwritten.  Only :func:`train_step` reuses memory, and only its scratch buffers (a
:class:`Workspace`), which it never returns; with ``donate=True`` it may also overwrite
the parameters of the network passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _backend, _checks
from . import equations as eq
from . import losses as _losses
from ._backend import is_numpy
from .network import Network

__all__ = ["Trace", "Gradients", "Workspace", "forward", "backward", "gradients", "loss_value",
           "step", "predict", "output_and_loss", "train_step"]


@dataclass(frozen=True, eq=False)
class Trace:
    """The forward pass: ``z[l]`` and ``a[l]`` for l = 0..L (``z[0] is None``, ``a[0] = x``)."""

    z: tuple
    a: tuple

    def _repr_html_(self):
        from ._display import trace_html

        return trace_html(self)

    def to_pandas(self):
        """z[l] and a[l] as a tidy DataFrame (needs pandas; columns in :mod:`._display`)."""
        from ._display import trace_frame

        return trace_frame(self)


@dataclass(frozen=True, eq=False)
class Gradients:
    """The backward pass: J, the error vectors delta[l] and the averaged gradients."""

    J: object
    delta: tuple
    dW: tuple
    db: tuple

    def _repr_html_(self):
        from ._display import gradients_html

        return gradients_html(self)

    def to_pandas(self):
        """delta[l], dW[l], db[l] as a tidy DataFrame, J in ``attrs`` (needs pandas)."""
        from ._display import gradients_frame

        return gradients_frame(self)


def _xp(net, *arrays):
    return _backend.namespace(net.W[1], *arrays)


def _check_eta(eta):
    if not 0 < eta < math.inf:
        raise ValueError(f"learning rate eta must be a finite number > 0, got {eta}")


def forward(net: Network, x, *, check=True) -> Trace:
    """Run z[l] = a[l-1] W[l]^T + b[l], a[l] = f_l(z[l]) for l = 1..L, keeping every z and a."""
    xp = _checks.check_library(net, x, "x") if check else _xp(net, x)
    if check:
        x = _checks.check_x(net, x, xp)
    z, a = [None], [x]
    for l in range(1, net.L + 1):
        z.append(eq.pre_activation(a[l - 1], net.W[l], net.b[l]))
        a.append(eq.activation(net.activations[l], z[l], xp))
    return Trace(tuple(z), tuple(a))


def predict(net: Network, x):
    """The network's output a[L] for inputs x."""
    return forward(net, x).a[-1]


def output_and_loss(net: Network, x, y, loss, *, workspace=None):
    """(a[L], J): the output and the batch loss J (no L2 term), keeping no other layer.

    :func:`train_step`'s forward pass (z[l] = a[l-1] W[l]^T + b[l], a[l] = f_l(z[l]), then
    :func:`~deltaprop.equations.output_and_cost`): on NumPy the hidden layers' z and a are
    written into ``workspace``'s buffers (a :class:`Workspace`; pass the same one every
    time, e.g. an evaluation after every epoch: no fresh megabytes per call); z[L] and
    a[L] (m, n_L) are fresh arrays, so the a[L] returned is never overwritten.  The data
    are taken as checked, as by ``train_step(check=False)``: x (m, n_0) and targets y
    (m, n_L) of the network's dtype.  A stack of K adds a leading K axis.
    """
    loss = _losses.get(loss)
    f, W, b = net.activations, net.W, net.b
    L = len(W) - 1
    xp = _backend.namespace(W[1], x)
    ws = Workspace() if workspace is None or not is_numpy(x) else workspace
    a, m = x, x.shape[-2]
    buffers = is_numpy(x)
    for l in range(1, L):
        shape, dt = (*W[l].shape[:-2], m, W[l].shape[-2]), W[l].dtype
        z = eq.pre_activation(a, W[l], b[l], out=ws.get(("eval z", l), shape, dt)
                              if buffers else None)
        a = eq.activation(f[l], z, xp, out=ws.get(("eval a", l), shape, dt)
                          if buffers else None)
    # z[L] fresh: the identity's a[L] is z[L] itself, and a[L] is the caller's
    return eq.output_and_cost(loss, f[L], eq.pre_activation(a, W[L], b[L]), y, xp)


def loss_value(net: Network, trace: Trace, y, loss, l2=0.0, *, check=True):
    """J = mean over the batch of the per-sample loss, plus (l2 / 2m) sum ||W||^2."""
    loss = _losses.get(loss)
    xp = _xp(net, trace.a[0])
    m = trace.a[0].shape[-2]
    if check:
        _losses.check_pair(loss, net.activations[net.L])
        _checks.check_l2(l2)
        y = _checks.check_y(net, loss, y, m, xp)
    J = eq.cost(loss, trace.z[-1], trace.a[-1], y, xp)
    return J + eq.l2_penalty(net.W, l2, m, xp) if l2 else J


def backward(net: Network, trace: Trace, y, loss, l2=0.0, *, check=True) -> Gradients:
    """delta[L] from the loss, delta[l] = (delta[l+1] W[l+1]) * f_l'(z[l]), then dW and db.

    Parameters
    ----------
    net : Network
    trace : Trace
        The forward pass of ``net`` on the batch.
    y : array
        Targets (m, n_L), or integer class labels (m,) for softmax cross-entropy.
    loss : str or Loss
        ``"mse"``, ``"sigmoid-cross-entropy"`` or ``"softmax-cross-entropy"``.
    l2 : float
        lambda of the penalty (lambda / 2m) sum ||W||^2 (biases excluded).
    """
    loss = _losses.get(loss)
    f, L = net.activations, net.L
    if check:
        _losses.check_pair(loss, f[L])
        _checks.check_l2(l2)
    xp = _xp(net, trace.a[0])
    z, a = trace.z, trace.a
    m = a[0].shape[-2]
    if check:
        y = _checks.check_y(net, loss, y, m, xp)
    J = eq.cost(loss, z[L], a[L], y, xp)
    ws = Workspace() if is_numpy(a[0]) else _NoBuffers()  # f'(z) scratch, shared by layers
    delta = [None] * (L + 1)
    delta[L] = eq.output_delta(loss, f[L], z[L], a[L], y, xp)
    for l in range(L - 1, 0, -1):
        df = eq.derivative(f[l], z[l], a[l], xp, out=ws.get("df", z[l].shape, z[l].dtype)) \
            if f[l].elementwise else None
        delta[l] = eq.hidden_delta(net.W[l + 1], delta[l + 1], f[l], z[l], a[l], xp, df=df)
    dW = [None] + [eq.weight_gradient(delta[l], a[l - 1], m) for l in range(1, L + 1)]
    db = [None] + [eq.bias_gradient(delta[l], xp) for l in range(1, L + 1)]
    if l2:
        J = J + eq.l2_penalty(net.W, l2, m, xp)
        for l in range(1, L + 1):
            dW[l] += eq.l2_gradient(net.W[l], l2, m)
    return Gradients(J, tuple(delta), tuple(dW), tuple(db))


def gradients(net: Network, x, y, loss, l2=0.0, *, check=True) -> tuple[Trace, Gradients]:
    """Forward then backward on one batch: returns (trace, gradients)."""
    trace = forward(net, x, check=check)
    return trace, backward(net, trace, y, loss, l2, check=check)


def step(net: Network, grads: Gradients, eta) -> Network:
    """One gradient-descent update W[l] -= eta dW[l], b[l] -= eta db[l] (a new network)."""
    _check_eta(eta)
    L = net.L
    return net.replace(
        W=(None, *(eq.gradient_step(net.W[l], grads.dW[l], eta) for l in range(1, L + 1))),
        b=(None, *(eq.gradient_step(net.b[l], grads.db[l], eta) for l in range(1, L + 1))))


class Workspace:
    """Scratch buffers that :func:`train_step` reuses from one call to the next (NumPy).

    Pass the same workspace to every step of a training loop.  Keyed by role, shape and
    dtype, so one workspace serves any batch size and network (a smaller last batch gets
    its own buffers).  Never share one between threads.  Its arrays are never returned to
    the caller.  Other array libraries get no buffers (each step allocates).
    """

    def __init__(self):
        self._buf = {}
        self._last = (None, None, None)  # (W, m, buffers) of the last step

    def get(self, key, shape, dtype):
        """A scratch NumPy array of ``shape`` and ``dtype`` (contents undefined)."""
        k = (key, shape, dtype)
        buf = self._buf.get(k)
        if buf is None:
            buf = self._buf[k] = np.empty(shape, dtype)
        return buf

    def step_buffers(self, W, m, remember=False):
        """:func:`train_step`'s buffers for parameters ``W`` and a batch of ``m``, in one
        lookup: ``(ones, layers)``, ``ones`` of shape (m,) and ``layers[l]`` the tuple
        (z, a, f'(z), delta, product) of layer l (``None`` where a layer needs none).
        z and a are each layer's own; f'(z), delta (two, alternating) and the product are
        shared by the layers of one shape, so a deep network's scratch stays in cache.
        ``remember=True`` (a donating step, whose network comes back as it went in) keeps
        ``W`` so that the next call with the same tuple skips the lookup."""
        if W is self._last[0] and m == self._last[1]:  # the same network object: donated
            return self._last[2]
        dt = W[1].dtype
        key = ("step", m, dt, *(w.shape for w in W[1:]))
        plan = self._buf.get(key)
        if plan is None:
            L, lead, shared = len(W) - 1, W[1].shape[:-2], {}

            def one(role, shape):  # a scratch array shared by the layers of one shape
                if (role, shape) not in shared:
                    shared[role, shape] = np.empty(shape, dt)
                return shared[role, shape]

            layers = [None]
            for l in range(1, L + 1):
                shape = (*lead, m, W[l].shape[-2])
                hidden = l < L  # f'(z[l]) and delta[l] (two alternating per shape)
                layers.append((np.empty(shape, dt), np.empty(shape, dt),
                               one("df", shape) if hidden else None,
                               one(("delta", l % 2), shape) if hidden else None,
                               one("dW", W[l].shape)))
            plan = self._buf[key] = (np.ones(m, dt), layers)
        self._last = (W, m, plan) if remember else (None, None, None)
        return plan


class _NoBuffers:
    """The workspace of array libraries other than NumPy: every buffer is ``None``."""

    def get(self, key, shape, dtype):
        return None

    def step_buffers(self, W, m, remember=False):
        return None, [(None,) * 5] * len(W)


def train_step(net: Network, x, y, loss, eta, l2=0.0, *, check=True, workspace=None,
               donate=False, optimizer=None, state=None):
    """One training step, ``step(net, gradients(net, x, y, loss, l2)[1], eta)``, and its J.

    Returns ``(new_net, J)``, J the loss before the step; the trace and the gradients are
    not kept.  Each layer is updated as soon as its delta is known, by
    :func:`~deltaprop.equations.layer_step` (-eta/m folded into delta or the weight
    product: a few ulp from ``step``).  On NumPy the z, a, f'(z), delta and product
    buffers come from ``workspace`` (a :class:`Workspace`; pass the same one to every step
    to reuse them).  ``donate=True`` lets the step overwrite ``net``'s own parameters (only
    for a training loop that never uses the old network again; the network returned is
    then ``net`` itself); otherwise ``net`` is left untouched.  ``check=False`` skips the
    input checks, for a caller that checked its data once (``fit``): then ``y`` must be
    what the checks give, (m, n_L) targets of the network's dtype (one-hot rows for labels).

    ``optimizer`` (an :class:`~deltaprop.optim.Optimizer`; default plain gradient descent)
    and its ``state`` dict: each layer's dW[l] and db[l] (the equations'
    :func:`~deltaprop.equations.weight_gradient` and
    :func:`~deltaprop.equations.bias_gradient`, L2 term included) go through the
    optimiser's ``rule`` as soon as they are known, ``eta`` being its learning rate for
    this step; ``state`` is updated in place (its ``"t"`` and its arrays: the training
    loop owns it), so ``opt.update(net, grads, state, eta)`` and this step agree.
    """
    _check_eta(eta)
    loss = _losses.get(loss)
    f, W, b = net.activations, net.W, net.b
    L = len(W) - 1
    xp = _checks.check_library(net, x, "x") if check else _backend.namespace(W[1], x)
    if check:
        _losses.check_pair(loss, f[L])
        _checks.check_l2(l2)
        x = _checks.check_x(net, x, xp)
        y = _checks.check_y(net, loss, y, x.shape[-2], xp)
    m = x.shape[-2]
    ws = _NoBuffers() if not is_numpy(x) else Workspace() if workspace is None else workspace
    ones, buf = ws.step_buffers(W, m, remember=donate)
    z, a = [None] * (L + 1), [x] + [None] * L
    for l in range(1, L + 1):
        z[l] = eq.pre_activation(a[l - 1], W[l], b[l], out=buf[l][0])
        if l < L:
            a[l] = eq.activation(f[l], z[l], xp, out=buf[l][1])
    a[L], J = eq.output_and_cost(loss, f[L], z[L], y, xp, out=buf[L][1])
    if l2:
        J = J + eq.l2_penalty(W, l2, m, xp)
    d = eq.output_delta(loss, f[L], z[L], a[L], y, xp)
    rule, t = _rule(optimizer, state)
    new_W, new_b = [None] * (L + 1), [None] * (L + 1)
    for l in range(L, 0, -1):  # W[l] is read for delta[l-1] before it is updated
        d_prev = None
        if l > 1:
            k = l - 1
            _, _, df, delta, _ = buf[k]
            df = eq.derivative(f[k], z[k], a[k], xp, out=df) if f[k].elementwise else None
            d_prev = eq.hidden_delta(W[l], d, f[k], z[k], a[k], xp, out=delta, df=df)
        if rule is None:  # gradient descent, -eta/m folded into the one product
            new_W[l], new_b[l] = eq.layer_step(W[l], b[l], d, a[l - 1], eta, m, xp, l2,
                                               out=buf[l][4], donate=donate, ones=ones)
        else:
            dW = eq.weight_gradient(d, a[l - 1], m, out=buf[l][4])
            if l2:
                dW += eq.l2_gradient(W[l], l2, m)
            new_W[l] = rule(W[l], dW, state, f"W.{l}", t, eta, donate)
            new_b[l] = rule(b[l], eq.bias_gradient(d, xp), state, f"b.{l}", t, eta, donate)
        d = d_prev
    if state is not None:
        state["t"] = state["t"] + 1
    return (net if donate else net.replace(W=new_W, b=new_b)), J


def _rule(optimizer, state):
    """(rule, t): the optimiser's per-parameter rule (``None`` for plain gradient descent,
    which :func:`~deltaprop.equations.layer_step` fuses) and this step's number."""
    if optimizer is None:
        return None, None
    from . import optim  # optim builds on this module

    if optim.is_plain_gd(optimizer):
        return None, None
    if optimizer.rule is None:
        raise ValueError(f"optimizer {optimizer.name!r} has no per-parameter rule; use "
                         "gradients() and optimizer.update(...) for it")
    if state is None:
        raise ValueError(f"train_step with optimizer {optimizer.name!r} needs its state "
                         "dict (optimizer.init(net))")
    return optimizer.rule, state["t"] + 1

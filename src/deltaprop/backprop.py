"""Forward and backward drivers: short loops over the functions of :mod:`.equations`.

Shapes (single network; a stack of K adds a leading K axis everywhere):
x (m, n_0); y (m, n_L) or integer labels (m,) for softmax cross-entropy;
``Trace.z[l]``, ``Trace.a[l]``, ``Gradients.delta[l]``: (m, n_l); ``dW[l]`` like W[l];
``db[l]`` like b[l]; ``J``: () or (K,).  Slot 0 is the input layer: ``a[0] = x``,
``z[0]``, ``delta[0]``, ``dW[0]``, ``db[0]`` are ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _backend, _checks, _fast
from . import equations as eq
from . import losses as _losses
from .network import Network

__all__ = ["Trace", "Gradients", "forward", "backward", "gradients", "loss_value", "step",
           "predict", "train_step"]


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


def forward(net: Network, x, *, check=True, fast=None) -> Trace:
    """Run z[l] = a[l-1] W[l]^T + b[l], a[l] = f_l(z[l]) for l = 1..L, keeping every z and a.

    ``fast`` (default ``deltaprop._fast.ENABLED``): take the NumPy fast path for NumPy
    inputs; ``False`` forces the generic array-API path (same numbers to rounding).
    """
    if check:
        _checks.check_library(net, x, "x")
    xp = _xp(net, x)
    if check:
        x = _checks.check_x(net, x, xp)
    if _fast.applies(net, x, fast=fast):
        return Trace(*map(tuple, _fast.forward(net, x)))
    z, a = [None], [x]
    for l in range(1, net.L + 1):
        z.append(eq.pre_activation(a[l - 1], net.W[l], net.b[l]))
        a.append(eq.activation(net.activations[l], z[l], xp))
    return Trace(tuple(z), tuple(a))


def predict(net: Network, x):
    """The network's output a[L] for inputs x."""
    return forward(net, x).a[-1]


def loss_value(net: Network, trace: Trace, y, loss, l2=0.0, *, check=True):
    """J = mean over the batch of the per-sample loss, plus (l2 / 2m) sum ||W||^2."""
    loss = _losses.get(loss)
    xp = _xp(net, trace.a[0])
    m = trace.a[0].shape[-2]
    if check:
        _losses.check_pair(loss, net.activations[net.L])
        _checks.check_l2(l2)
        y = _checks.check_y(net, loss, y, m, xp)
    J = xp.mean(loss.per_sample(trace.z[-1], trace.a[-1], y, xp), axis=-1)
    return J + eq.l2_penalty(net.W, l2, m, xp) if l2 else J


def backward(net: Network, trace: Trace, y, loss, l2=0.0, *, check=True,
             fast=None) -> Gradients:
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
    if _fast.applies(net, a[0], y, fast=fast):
        return Gradients(*(v if i == 0 else tuple(v) for i, v in
                           enumerate(_fast.backward(net, z, a, y, loss, l2))))
    J = xp.mean(loss.per_sample(z[L], a[L], y, xp), axis=-1)
    delta = [None] * (L + 1)
    delta[L] = eq.output_delta(loss, f[L], z[L], a[L], y, xp)
    for l in range(L - 1, 0, -1):
        delta[l] = eq.hidden_delta(net.W[l + 1], delta[l + 1], f[l], z[l], a[l], xp)
    dW = [None] + [eq.weight_gradient(delta[l], a[l - 1], m) for l in range(1, L + 1)]
    db = [None] + [eq.bias_gradient(delta[l], xp) for l in range(1, L + 1)]
    if l2:
        J = J + eq.l2_penalty(net.W, l2, m, xp)
        dW = [None] + [dW[l] + eq.l2_gradient(net.W[l], l2, m) for l in range(1, L + 1)]
    return Gradients(J, tuple(delta), tuple(dW), tuple(db))


def gradients(net: Network, x, y, loss, l2=0.0, *, check=True,
              fast=None) -> tuple[Trace, Gradients]:
    """Forward then backward on one batch: returns (trace, gradients)."""
    trace = forward(net, x, check=check, fast=fast)
    return trace, backward(net, trace, y, loss, l2, check=check, fast=fast)


def step(net: Network, grads: Gradients, eta, *, fast=None) -> Network:
    """One gradient-descent update W[l] -= eta dW[l], b[l] -= eta db[l] (a new network)."""
    if not 0 < eta < float("inf"):
        raise ValueError(f"learning rate eta must be a finite number > 0, got {eta}")
    if _fast.applies(net, *grads.dW, *grads.db, fast=fast):
        new = _fast.step(net, grads.dW, grads.db, eta)
        if new is not None:
            return new
    L = net.L
    return net.replace(
        W=(None, *(eq.gradient_step(net.W[l], grads.dW[l], eta) for l in range(1, L + 1))),
        b=(None, *(eq.gradient_step(net.b[l], grads.db[l], eta) for l in range(1, L + 1))))


def train_step(net: Network, x, y, loss, eta, l2=0.0, *, check=True, fast=None,
               workspace=None, donate=False):
    """One training step, ``step(net, gradients(net, x, y, loss, l2)[1], eta)``, and its J.

    Returns ``(new_net, J)``; the trace and gradients are not kept.  On the NumPy fast path
    the weight gradient and the update are one fused BLAS call and scratch memory is reused
    across calls that pass the same ``workspace`` (a ``deltaprop._fast.Workspace``).
    ``donate=True`` lets the step overwrite ``net``'s own parameters (only for a training
    loop that never uses the old network again); otherwise ``net`` is left untouched.
    """
    if not 0 < eta < float("inf"):
        raise ValueError(f"learning rate eta must be a finite number > 0, got {eta}")
    loss = _losses.get(loss)
    if _fast.applies(net, x, y, fast=fast):  # checks its inputs itself, as below
        return _fast.train_step(net, x, y, loss, eta, l2, check=check, workspace=workspace,
                                donate=donate)
    if check:
        _checks.check_library(net, x, "x")
    xp = _xp(net, x)
    if check:
        _losses.check_pair(loss, net.activations[net.L])
        _checks.check_l2(l2)
        x = _checks.check_x(net, x, xp)
        y = _checks.check_y(net, loss, y, x.shape[-2], xp)
    grads = backward(net, forward(net, x, check=False, fast=fast), y, loss, l2, check=False,
                     fast=fast)
    return step(net, grads, eta), grads.J

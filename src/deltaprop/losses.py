"""Losses: the batch-averaged cost J and the output error vector delta[L].

Shapes: ``z``, ``a``, ``y`` are (m, n_L) or stacked (K, m, n_L); ``per_sample`` returns
(m,) or (K, m) and J is its mean over the batch, shape () or (K,).

Scaling convention (the derivations'): ``delta[L]`` is the derivative of *one sample's* loss
with respect to its ``z[L]``; it is **not** divided by m.  The 1/m appears only in
``dW`` and ``db`` (see :mod:`deltaprop.equations`).

Every loss is computed from the logits ``z[L]``: the cross-entropies use log-sum-exp
and ``log1p(exp(-|z|))`` and never form ``log(a)``, so they stay finite at |z| = 1e4.

MSE carries a NumPy kernel of its J (``Loss.cost_into``: the sum of squares as one dot
product), and softmax cross-entropy one (``Loss.fused``) that computes its softmax output
and J together; :func:`deltaprop.equations.output_and_cost`
uses it only when the output activation is the registry's own softmax row (the object,
not the name), so a user's own loss or activation is computed by its own functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import _kernels
from ._checks import registry_key
from .activations import ACTIVATIONS as _ACTIVATIONS

__all__ = ["Loss", "LOSSES", "get", "names"]


@dataclass(frozen=True)
class Loss:
    """A named loss: ``per_sample(z, a, y, xp)`` and ``delta(z, a, y, act, xp)``.

    ``output`` names the output activation the loss requires (``None``: any).
    ``targets`` is ``"real"``, ``"probability"`` (0 <= y <= 1) or ``"distribution"``
    (rows of y sum to one; integer labels are accepted and one-hot encoded).
    ``fused`` (optional) is ``(activation, kernel)``: an in-place NumPy kernel
    ``kernel(z, y, out=None) -> (a, J)`` computing that :class:`Activation` row's
    a = f(z) and the batch mean J together.  ``cost_into`` (optional) is a NumPy kernel
    ``cost_into(z, a, y) -> J`` of the batch mean of ``per_sample``.  (A row copied
    with ``dataclasses.replace(row, per_sample=...)`` keeps the row's kernels: give
    ``fused=None, cost_into=None`` too.)
    """

    name: str
    per_sample: Callable
    delta: Callable
    formula: str
    output: str | None = None
    targets: str = "real"
    fused: tuple | None = None
    cost_into: Callable | None = None

    def __reduce__(self):
        # a registry row pickles by name, so it stays that very row (see Activation)
        if LOSSES.get(self.name) is self:
            return get, (self.name,)
        return super().__reduce__()


def _mse(z, a, y, xp):
    """(1/2) sum_k (a_k - y_k)^2 for each sample."""
    r = a - y
    return 0.5 * xp.sum(r * r, axis=-1)


def _mse_delta(z, a, y, act, xp):
    """delta[L] = (a - y) * f'(z)   (Haykin: e_j phi'_j(v_j), with the sign flipped)."""
    return act.vjp(z, a, a - y, xp)


def _sigmoid_ce(z, a, y, xp):
    """-sum_k [y ln h(z) + (1 - y) ln(1 - h(z))] = sum_k [max(z,0) - y z + log1p(e^{-|z|})]."""
    zero = xp.zeros_like(z)
    return xp.sum(xp.maximum(z, zero) - y * z + xp.log1p(xp.exp(-xp.abs(z))), axis=-1)


def _a_minus_y(z, a, y, act, xp):
    """delta[L] = h(z[L]) - y   (Brawer, eq. 20): f' cancels, nothing is divided."""
    return a - y


def _softmax_ce(z, a, y, xp):
    """-sum_k y_k ln softmax(z)_k = sum_k y_k (logsumexp(z) - z_k)."""
    zmax = xp.max(z, axis=-1, keepdims=True)
    lse = zmax + xp.log(xp.sum(xp.exp(z - zmax), axis=-1, keepdims=True))
    return xp.sum(y * (lse - z), axis=-1)


_TABLE = [
    Loss("mse", _mse, _mse_delta, "J = 1/m sum_i 1/2 sum_k (a_k - y_k)^2",
         cost_into=_kernels.mse_cost),
    Loss(
        "sigmoid-cross-entropy", _sigmoid_ce, _a_minus_y,
        "J = -1/m sum_i sum_k [y ln a + (1 - y) ln(1 - a)]   (Brawer, eq. 18)",
        output="sigmoid", targets="probability",
    ),
    Loss(
        "softmax-cross-entropy", _softmax_ce, _a_minus_y,
        "J = -1/m sum_i sum_k y_k ln a_k,  a = softmax(z)",
        output="softmax", targets="distribution",
        fused=(_ACTIVATIONS["softmax"], _kernels.softmax_cross_entropy),
    ),
]

#: name -> :class:`Loss`
LOSSES: dict[str, Loss] = {loss.name: loss for loss in _TABLE}

_ALIASES = {
    "squared-error": "mse", "bce": "sigmoid-cross-entropy", "binary-cross-entropy":
    "sigmoid-cross-entropy", "cross-entropy": "softmax-cross-entropy",
    "ce": "softmax-cross-entropy",
}


def names() -> list[str]:
    """Names of all registered losses."""
    return list(LOSSES)


def get(name) -> Loss:
    """The loss called ``name`` (``_`` and ``-`` are interchangeable)."""
    if isinstance(name, Loss):
        return name
    if type(name) is str and name in LOSSES:  # spelt as in the registry (every step looks)
        return LOSSES[name]
    return LOSSES[registry_key(name, LOSSES, "loss", _ALIASES, sep="-",
                               accepts="a name or a Loss")]


def check_pair(loss: Loss, output_activation) -> None:
    """Raise ``ValueError`` unless the output activation suits the loss."""
    out = output_activation.name
    if loss.output is not None and out != loss.output:
        raise ValueError(
            f"loss {loss.name!r} needs a {loss.output!r} output layer, got {out!r} "
            f"(delta[L] = a - y holds only for that pair)"
        )

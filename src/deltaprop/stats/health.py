"""Training that says when it went wrong: a health check of a network's backward pass.

After training, one forward and backward pass over (a bounded sample of) the training data
gives, per layer l, the pre-activations ``z[l]``, the activations ``a[l]`` and the error
vectors ``delta[l] = dJ/dz[l]`` per sample (:func:`deltaprop.backprop.gradients`).  From them
:func:`check` reports, one :class:`Finding` each:

* ``dead``: hidden units whose delta is zero for every sample (a ReLU unit with z <= 0 on
  every input): they get no gradient and never learn again;
* ``saturated``: hidden units with f'(z) below ``saturation`` (1%) of f'(0) on at least
  99% of the samples (a sigmoid or tanh unit pinned at its ends); activations with
  f'(0) = 0, such as ReLU, are not checked;
* ``vanishing`` / ``exploding``: the per-unit mean E[delta[l]^2] (over samples and units)
  falls below ``1 / ratio`` or rises above ``ratio`` (default 100) times E[delta[l+1]^2]
  from one layer to the one below it;
* ``constant_output``: the network's output a[L] has (relative) standard deviation below
  1e-6 across the samples: it ignores its input;
* ``underfit`` (only for a trained network, ``trained=True``, and only where none of the
  above explains it): the training loss J is within ``fall`` (5%) of J_0, the loss of the
  best constant output (the class frequencies for a classifier, whose J_0 is their entropy;
  the mean target for mse, J_0 = (1/2) sum_k Var y_k), or a classifier's training accuracy
  is no better than always answering the most frequent class: training hardly moved it
  (``deltaprop train --data xor`` at Adam's default learning rate ends at J / J_0 = 0.98).

A healthy network gives an empty list.  This is the idea of Cockpit (Schneider, Dangel and
Hennig, "Cockpit: A Practical Debugging Tool for the Training of Deep Neural Networks"),
built from the quantities this project measures.  Results are computed on the network's
backend and copied to the host only for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import _backend, backprop
from .. import losses as _losses

__all__ = ["Finding", "HealthWarning", "check", "underfit", "KINDS"]

#: kinds of :class:`Finding`
KINDS = ("dead", "saturated", "vanishing", "exploding", "constant_output", "underfit")


class HealthWarning(UserWarning):
    """Emitted by :func:`deltaprop.app.train.fit` for each finding of :func:`check`."""


@dataclass(frozen=True)
class Finding:
    """One warning of the health check: its ``kind``, the ``layer`` l (``None`` for the
    whole network), the measured ``value`` and a one-line ``message``."""

    kind: str
    layer: int | None
    value: float
    message: str

    def __str__(self):
        return self.message

    def to_dict(self) -> dict:
        return {"kind": self.kind, "layer": self.layer, "value": self.value,
                "message": self.message}


def _sample(m, max_samples, seed):
    if m <= max_samples:
        return None
    return np.sort(np.random.default_rng(seed).choice(m, size=max_samples, replace=False))


def _host(v):
    return np.asarray(_backend.to_numpy(v), dtype=np.float64)


def _dead_and_saturated(net, l, z, delta, saturation):
    """Findings of hidden layer l: dead units (delta = 0 on every sample), saturated ones."""
    out, act, n = [], net.activations[l], delta.shape[1]
    m = delta.shape[0]
    dead = np.all(delta == 0, axis=0)
    if dead.any():
        out.append(Finding("dead", l, float(dead.sum()), f"layer {l}: {int(dead.sum())} of {n} "
                           f"{act.name} units are dead (delta = 0 for all {m} samples)"))
    if not act.elementwise:
        return out
    ref = float(_host(act.derivative(np.zeros(1))).max())
    if not ref > 0:
        return out
    df = _host(act.derivative(z))
    sat = (np.mean(df < saturation * ref, axis=0) >= 0.99) & ~dead
    if sat.any():
        out.append(Finding("saturated", l, float(sat.sum()),
                           f"layer {l}: {int(sat.sum())} of {n} {act.name} units are saturated "
                           f"(f'(z) < {saturation:g} f'(0) on >= 99% of {m} samples)"))
    return out


def _depth_ratios(q, ratio):
    """Vanishing or exploding E[delta^2] from layer l+1 to layer l."""
    out = []
    for l in range(len(q) - 1, 0, -1):
        below, above = q[l - 1], q[l]
        if not (above > 0 and below > 0):  # a layer with no delta at all: its units are dead
            continue
        r = below / above
        if r < 1 / ratio:
            out.append(Finding("vanishing", l, r, f"layer {l}: E[delta^2] vanishes, "
                               f"{below:.3g} = {r:.3g} x layer {l + 1}'s {above:.3g} "
                               f"(threshold 1/{ratio:g})"))
        elif r > ratio:
            out.append(Finding("exploding", l, r, f"layer {l}: E[delta^2] explodes, "
                               f"{below:.3g} = {r:.3g} x layer {l + 1}'s {above:.3g} "
                               f"(threshold {ratio:g})"))
    return out


def _constant_output(a, tol):
    if a.shape[0] < 2:
        return []
    spread = float(np.max(np.std(a, axis=0)))
    scale = max(1.0, float(np.max(np.abs(a))))
    if spread > tol * scale:
        return []
    return [Finding("constant_output", None, spread, f"the output a[L] is the same for all "
                    f"{a.shape[0]} inputs (std {spread:.3g}): the network ignores its input")]


def _constant_loss(loss, y):
    """J_0: the loss of the best constant output on targets y (m, n_L) in the loss's
    encoding, and the best constant accuracy (None for mse)."""
    p = np.mean(y, axis=0)
    if loss.targets == "real":
        return 0.5 * float(np.sum(np.var(y, axis=0))), None
    with np.errstate(divide="ignore", invalid="ignore"):
        h = np.where(p > 0, -p * np.log(p), 0.0)
        if loss.targets == "distribution":  # softmax: the entropy of the class frequencies
            return float(np.sum(h)), float(np.max(p))
        h2 = h + np.where(p < 1, -(1 - p) * np.log1p(-p), 0.0)  # sigmoid: per output
    return float(np.sum(h2)), float(np.mean(np.maximum(p, 1 - p)))


def underfit(loss, z, a, y, *, fall=0.05) -> list[Finding]:
    """The ``underfit`` finding of a trained network from its output on the training data
    (host arrays: z[L], a[L] and the targets y in the loss's encoding, each (m, n_L)): J
    within ``fall`` of the constant output's J_0, or a classifier's accuracy no better than
    the most frequent class's share.  Empty when training moved the loss."""
    loss = _losses.get(loss)
    m = y.shape[0]
    J = float(np.mean(loss.per_sample(z, a, y, np)))
    J0, share = _constant_loss(loss, y)
    if loss.targets == "distribution":
        acc = float(np.mean(np.argmax(a, axis=-1) == np.argmax(y, axis=-1)))
    elif loss.targets == "probability":
        acc = float(np.mean((a > 0.5) == (y > 0.5)))
    else:
        acc = None
    flat = J0 > 0 and J >= (1 - fall) * J0
    chance = acc is not None and m >= 20 and acc <= share
    if not (flat or chance):
        return []
    what = "the class frequencies" if acc is not None else "the mean target"
    score = f"; training accuracy {acc:.3f}, {share:.3f} by always answering the most " \
        f"frequent class" if acc is not None else ""
    return [Finding("underfit", None, J / J0 if J0 > 0 else float("inf"),
                    f"the network underfits: its training loss {J:.4g} is {J / J0:.3g} x "
                    f"{J0:.4g}, the loss of always predicting {what}{score}; try a larger "
                    f"learning rate (--lr) or more epochs")]


def check(net, x, y, loss, *, max_samples=1024, seed=0, ratio=100.0, saturation=0.01,
          tol=1e-6, trained=False) -> list[Finding]:
    """The health check of ``net`` on (x, y): a list of :class:`Finding` (empty if healthy).

    Parameters
    ----------
    net : Network
        A single network (any backend).
    x : array (m, n_0)
        Inputs, in the network's library (as :func:`deltaprop.app.train.prepare` gives them).
    y : array
        Targets in the loss's encoding (one-hot or (m, n_L)).
    loss : str or Loss
    max_samples : int
        At most this many samples (drawn without replacement by ``seed``) are used.
    ratio : float
        Threshold of the layer-to-layer ratio of E[delta^2] (per unit).
    saturation : float
        A unit is saturated where f'(z) < saturation * f'(0) on >= 99% of the samples.
    tol : float
        Outputs whose largest std across samples is below tol * max(1, max |a[L]|) are
        constant.
    trained : bool
        The network was trained on (x, y): also check that it learned something
        (:func:`underfit`, reported only when no other finding explains it).
    """
    loss = _losses.get(loss)
    idx = _sample(x.shape[0], int(max_samples), seed)
    if idx is not None:
        xp = net.xp
        ix = _backend.asarray(idx, xp, device=_backend.device(x))
        x, y = xp.take(x, ix, axis=0), xp.take(y, ix, axis=0)
    trace, grads = backprop.gradients(net, x, y, loss, check=False)
    deltas = [None, *(_host(d) for d in grads.delta[1:])]
    found = []
    for l in range(1, net.L):
        found += _dead_and_saturated(net, l, _host(trace.z[l]), deltas[l], saturation)
    q = [float(np.mean(d ** 2)) for d in deltas[1:]]
    found += _depth_ratios(q, ratio)
    found += _constant_output(_host(trace.a[-1]), tol)
    if trained and not found:
        found += underfit(loss, _host(trace.z[-1]), _host(trace.a[-1]), _host(y))
    return found

"""Gradient checking: the backward pass against finite differences of J.

The numeric derivative is the fourth-order central difference

    dJ/dp ~ [J(p - 2h) - 8 J(p - h) + 8 J(p + h) - J(p + 2h)] / (12 h)

(``order=2`` gives the plain [J(p + h) - J(p - h)] / 2h), evaluated in float64 NumPy
whatever the network's backend.  The relative error of one entry is

    |analytic - numeric| / max(|analytic|, |numeric|, floor)

where ``floor`` (default 1e-5) keeps entries that are zero up to rounding from being
divided by rounding noise.  With ``h = 1e-3`` and order 4 the truncation error is
O(h^4) and the rounding error O(1e-16 / h), so smooth networks check to ~1e-8.

Kinks: relu and leaky relu are not differentiable at 0.  An entry whose stencil moves
any of their z across 0 is skipped (and counted in ``skipped``) rather than reported
as a false failure.  For a stack of K networks one perturbation serves all K:
network k's J depends only on its own parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import _backend
from .backprop import forward as _forward
from .backprop import gradients, loss_value

__all__ = ["GradcheckResult", "gradcheck", "memory_needed"]

_STENCILS = {2: ((-1, 1), (-0.5, 0.5)), 4: ((-2, -1, 1, 2), (1 / 12, -8 / 12, 8 / 12, -1 / 12))}


@dataclass
class GradcheckResult:
    """Worst relative error per layer: ``layers[l-1] = {"layer": l, "W": err, "b": err}``."""

    layers: list = field(default_factory=list)
    checked: int = 0
    skipped: int = 0

    @property
    def max_rel_error(self) -> float:
        return max(max(r["W"], r["b"]) for r in self.layers)

    def as_dict(self) -> dict:
        return {"max_rel_error": self.max_rel_error, "checked": self.checked,
                "skipped": self.skipped, "layers": self.layers}


def gradcheck(net, x, y, loss, l2=0.0, *, h=1e-3, order=4, floor=1e-5, max_entries=None,
              seed=0) -> GradcheckResult:
    """Compare ``backward``'s dW[l], db[l] with finite differences of J, layer by layer.

    Parameters
    ----------
    net : Network
        Any backend; a stack of K networks is checked network by network at once.
    x, y, loss, l2
        As for :func:`deltaprop.backward`.
    h, order
        Step and order (2 or 4) of the central difference.
    max_entries : int, optional
        Check at most this many randomly chosen entries of each W[l] and b[l].
    """
    if order not in _STENCILS:
        raise ValueError(f"order must be 2 or 4, got {order}")
    if not 0 < h < float("inf"):
        raise ValueError(f"h must be a finite step > 0, got {h}")
    if max_entries is not None and max_entries < 1:  # 0 would check nothing and pass
        raise ValueError(f"max_entries must be >= 1 (or None for all), got {max_entries}")
    _, g = gradients(net, x, y, loss, l2)
    ref = net.numpy().to(dtype="float64")
    xh = np.asarray(_backend.to_numpy(x), dtype=np.float64)
    yh = _backend.to_numpy(y)
    yh = yh if np.issubdtype(yh.dtype, np.integer) else np.asarray(yh, dtype=np.float64)
    steps, weights = _STENCILS[order]
    rng = np.random.default_rng(seed)

    kinked = [l for l in range(1, net.L + 1) if ref.activations[l].name in _KINKED]

    def J(params, which, l):
        """J at the perturbed parameters, and the sign pattern of z at the kinks."""
        W, b = list(ref.W), list(ref.b)
        (W if which == "W" else b)[l] = params
        test = ref.replace(W=W, b=b)
        trace = _forward(test, xh)
        signs = [trace.z[k] > 0 for k in kinked]
        return np.asarray(loss_value(test, trace, yh, loss, l2)), signs

    signs0 = J(ref.W[1], "W", 1)[1]  # the unperturbed network

    result = GradcheckResult()
    for l in range(1, net.L + 1):
        row = {"layer": l}
        for which, analytic in (("W", g.dW[l]), ("b", g.db[l])):
            analytic = np.asarray(_backend.to_numpy(analytic), dtype=np.float64)
            base = (ref.W if which == "W" else ref.b)[l]
            idx = _entries(base.shape[-2:] if which == "W" else base.shape[-1:], max_entries, rng)
            worst = 0.0
            for i in idx:
                num, smooth = 0.0, True
                for s, w in zip(steps, weights, strict=True):
                    p = base.copy()
                    p[(..., *i)] += s * h
                    Jp, signs = J(p, which, l)
                    num = num + w * Jp
                    smooth &= _same_side(signs, signs0)
                num = num / h
                a = analytic[(..., *i)]
                den = np.maximum(np.maximum(np.abs(a), np.abs(num)), floor)
                err = np.abs(a - num) / den
                # a stack: skip only the networks whose stencil crossed a kink
                ok = smooth if np.ndim(smooth) else np.full(np.shape(err), smooth)
                worst = max(worst, float(np.max(err[ok], initial=0.0)))
                result.checked += int(np.sum(ok))
                result.skipped += int(np.size(ok) - np.sum(ok))
            row[which] = worst
        result.layers.append(row)
    return result


_KINKED = {"relu", "leaky_relu"}


def memory_needed(sizes, m, K=None) -> int:
    """Bytes :func:`gradcheck` holds, about, for layer widths ``sizes`` (n_0..n_L), ``m``
    samples and a stack of ``K``: the network, its float64 copy, the gradients and a
    perturbed array (5 copies of the parameters), and z, a, delta of two passes (float64)."""
    params = sum(sizes[l] * (sizes[l - 1] + 1) for l in range(1, len(sizes)))
    units = m * sum(sizes)
    return 8 * (K or 1) * (5 * params + 6 * units)


def _same_side(signs, signs0):
    """Per network (leading K axis) or scalar: no z at a kink changed sign."""
    same = True
    for s, s0 in zip(signs, signs0, strict=True):
        same = same & np.all(s == s0, axis=(-2, -1))
    return same


def _entries(shape, max_entries, rng):
    idx = list(np.ndindex(*shape))
    if max_entries is not None and len(idx) > max_entries:
        idx = [idx[i] for i in rng.choice(len(idx), max_entries, replace=False)]
    return idx

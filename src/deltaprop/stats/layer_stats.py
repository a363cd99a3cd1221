"""Per-layer statistics during training, with the theory at initialisation beside epoch 0.

After every epoch (and once at initialisation, epoch 0), on a fixed data set (the training
set), per layer l = 1..L:

* ``delta2``      E[delta[l]^2], the mean of delta[l]_ij^2 over samples i and units j
  (:func:`mean_square`);
* ``db_norm``     ||db[l]||, db[l] = (1/m) sum_i delta[l]_i: Nielsen's "speed of learning"
  of the layer ("Neural Networks and Deep Learning", ch. 5) (:func:`bias_gradient_norm`);
* ``dW_norm``     ||dW[l]||_F, dW[l] = (1/m) sum_i delta[l]_i a[l-1]_i^T
  (:func:`weight_gradient_norm`);
* ``W_distance``  ||W[l]_t - W[l]_0||_F / ||W[l]_0||_F, how far the weights moved from their
  initial values (:func:`relative_distance`): small in the lazy (kernel) regime of wide
  networks, of order one when the layer learns features.

The gradients are those of the data loss J over the whole set (no L2 term, no minibatch
noise), from the engine's own backward pass (:func:`deltaprop.backprop.gradients`, taken
in chunks of ``batch_size`` samples and averaged).  :class:`LayerStatsCallback` measures them
for :func:`deltaprop.app.train.fit` and writes them into each epoch's history row under the keys
``"delta2[l]"``, ``"db_norm[l]"``, ``"dW_norm[l]"``, ``"W_distance[l]"`` (:func:`flat`), so
they reach ``History``, the checkpoint and the run folder's metrics; the theory at
initialisation (:func:`deltaprop.theory.batch_gradient.batch_gradient_theory`: the exact
forward law of pairs of samples and, given it, the exact backward pass for Gaussian
weights) stands beside epoch 0.
:func:`plot` draws the four over the epochs; :func:`table` prints epoch 0 beside the theory
and the last epoch.
"""

from __future__ import annotations

import math
import re

from .. import _backend, _checks, backprop
from .. import losses as _losses
from ..theory.batch_gradient import batch_gradient_theory

__all__ = ["QUANTITIES", "mean_square", "bias_gradient_norm", "weight_gradient_norm",
           "relative_distance", "layer_stats", "flat", "unflat", "LayerStatsCallback", "plot",
           "table"]

#: the per-layer quantities, in the order of the plot's panels
QUANTITIES = ("delta2", "db_norm", "dW_norm", "W_distance")
LABELS = {"delta2": "E[delta[l]^2]", "db_norm": "||db[l]||", "dW_norm": "||dW[l]||_F",
          "W_distance": "||W[l] - W[l]_0|| / ||W[l]_0||"}


def mean_square(delta, xp):
    """E[delta[l]^2] = 1/(m n_l) sum_i sum_j delta[l]_ij^2 over a batch (m, n_l)."""
    return xp.mean(delta * delta)


def bias_gradient_norm(db, xp):
    """||db[l]|| = sqrt(sum_j db[l]_j^2), db[l] = (1/m) sum_i delta[l]_i."""
    return xp.sqrt(xp.sum(db * db))


def weight_gradient_norm(dW, xp):
    """||dW[l]||_F = sqrt(sum_jk dW[l]_jk^2), dW[l] = (1/m) sum_i delta[l]_i a[l-1]_i^T."""
    return xp.sqrt(xp.sum(dW * dW))


def relative_distance(W, W0, xp):
    """||W - W_0||_F / ||W_0||_F: the relative distance of W from its initial value W_0."""
    d = W - W0
    return xp.sqrt(xp.sum(d * d) / xp.sum(W0 * W0))


def layer_stats(net, x, y, loss, initial=None, *, batch_size=4096) -> dict:
    """``{l: {"delta2", "db_norm", "dW_norm"[, "W_distance"]}}`` of one network on (x, y).

    The full-set gradients are the chunk gradients weighted by their share of the samples,
    db = sum_c (m_c / m) db_c and dW likewise (each chunk's from
    :func:`deltaprop.backprop.gradients`, data loss only); E[delta^2] likewise.
    ``initial``: the network at initialisation (for ``W_distance``).
    """
    xp, L = net.xp, net.L
    m = x.shape[0]
    step = m if not batch_size else int(batch_size)
    sq, db, dW = [0.0] * (L + 1), [0.0] * (L + 1), [0.0] * (L + 1)
    for s in range(0, m, step):
        _, g = backprop.gradients(net, x[s:s + step, ...], y[s:s + step, ...], loss, 0.0,
                                  check=False)
        w = min(step, m - s) / m
        for l in range(1, L + 1):
            sq[l] = sq[l] + w * mean_square(g.delta[l], xp)
            db[l] = db[l] + w * g.db[l]
            dW[l] = dW[l] + w * g.dW[l]
    out = {}
    for l in range(1, L + 1):
        e = {"delta2": sq[l], "db_norm": bias_gradient_norm(db[l], xp),
             "dW_norm": weight_gradient_norm(dW[l], xp)}
        if initial is not None:
            e["W_distance"] = relative_distance(net.W[l], initial.W[l], xp)
        out[l] = {k: float(_backend.to_numpy(v)) for k, v in e.items()}
    return out


def flat(stats) -> dict:
    """``{l: {q: v}}`` as one flat dict ``{"q[l]": v}`` (metrics columns, history keys)."""
    return {f"{q}[{l}]": v for l, e in stats.items() for q, v in e.items()}


_KEY = re.compile(r"^(\w+)\[(\d+)\]$")


def unflat(row) -> dict:
    """The inverse of :func:`flat` for one history row (other keys ignored)."""
    out = {}
    for k, v in row.items():
        match = _KEY.match(k)
        if match and match[1] in QUANTITIES:
            out.setdefault(int(match[2]), {})[match[1]] = v
    return dict(sorted(out.items()))


class LayerStatsCallback:
    """Per epoch and per layer: E[delta^2], ||db||, ||dW||, ||W - W_0|| / ||W_0||.

    Parameters
    ----------
    x, y : arrays
        The data to measure on (the training set: its full-set gradient), as for
        :func:`deltaprop.app.train.fit` (labels are one-hot encoded for softmax).
    loss : str or Loss
    initial : Network
        The network at initialisation (the one given to ``fit``): epoch 0 and W_0.
    prior : stats.ensemble.Prior, optional
        The initialisation's weight law, for the theory.  Default: the empirical per-layer
        mean and variance of ``initial``'s weights (:func:`ensemble.empirical_prior`), with
        the weight mean taken as 0 where it is within chance of 0.
    theory : bool
        Compute the theory at initialisation (:func:`batch_gradient_theory`).
    batch_size : int
        Samples per forward/backward chunk (memory).
    pairs, max_pairs, seed
        Monte Carlo draws (at least, at most) and seed of the theory
        (:func:`~deltaprop.theory.batch_gradient.batch_gradient_theory`).

    After ``fit(..., callbacks=[cb])``: ``cb.initial_stats`` (epoch 0), ``cb.theory``
    (``None`` with ``cb.theory_note`` saying why, where the theory does not apply),
    ``cb.history`` (``[(epoch, {l: {...}})]``, epoch 0 first) and :meth:`rows`.  Each epoch's
    numbers are also written into ``info.row`` (:func:`flat` keys), i.e. into the run's
    ``History`` rows, its checkpoint and its metrics.  ``fit`` itself is unchanged (the
    callback has no ``on_step``: the fused step stays on).
    """

    def __init__(self, x, y, loss, initial, *, prior=None, theory=True, batch_size=4096,
                 pairs=16384, max_pairs=1 << 16, seed=0):
        self.loss = _losses.get(loss)
        self.x, self.y = _checks.prepare_data(initial, self.loss, x, y,
                                             "layer statistics data")
        self.batch_size = batch_size
        self.initial = initial.replace(W=[None] + [w * 1 for w in initial.W[1:]])  # a copy
        self.initial_stats = layer_stats(initial, self.x, self.y, self.loss, self.initial,
                                         batch_size=batch_size)
        self.history = [(0, self.initial_stats)]
        self.theory, self.theory_note = None, "not computed"
        if theory:
            self.theory, self.theory_note = init_theory(initial, self.x, self.y, self.loss,
                                                        prior, pairs=pairs,
                                                        max_pairs=max_pairs, seed=seed)

    def on_epoch(self, info) -> None:
        s = layer_stats(info.net, self.x, self.y, self.loss, self.initial,
                        batch_size=self.batch_size)
        info.row.update(flat(s))
        self.history.append((info.epoch, s))

    def rows(self) -> list[dict]:
        """Tidy rows ``{"epoch", "layer", q...}`` (epoch 0 with ``theory_<q>`` beside)."""
        out = []
        for epoch, s in self.history:
            for l, e in s.items():
                row = {"epoch": epoch, "layer": l, **e}
                if epoch == 0 and self.theory:
                    row.update({f"theory_{q}": self.theory[l][q]
                                for q in ("delta2", "db_norm", "dW_norm")})
                out.append(row)
        return out

    def summary(self) -> dict:
        """JSON-able: the initial values, the theory (or why none) and every epoch."""
        return summary(self.initial_stats, self.theory, self.theory_note)

    def plot(self, title=None):
        """:func:`plot` of the callback's epochs."""
        return plot([{"epoch": e, **flat(s)} for e, s in self.history], self.theory,
                    title=title)


def summary(initial, theory, note) -> dict:
    """The ``layer_stats`` entry of the run folder's metrics.json."""
    return {"quantities": dict(LABELS), "data": "the training set, full-set gradients of J",
            "initial": {str(l): e for l, e in initial.items()},
            "theory": None if theory is None else {str(l): e for l, e in theory.items()},
            "theory_model": note}


def init_theory(net, x, y, loss, prior=None, *, pairs=16384, max_pairs=1 << 16, seed=0):
    """(theory, note): :func:`batch_gradient_theory` for the network's initialisation on
    (x, y), or ``(None, why)`` where it does not apply."""
    from .ensemble import empirical_prior
    from .report import mean_field_applies

    if prior is None:
        prior = empirical_prior(net)
        if not mean_field_applies(prior):
            return None, "the initial weights have a mean the theory (mu_w = 0) leaves out"
        prior = _zero_mean(prior)
    elif any(v != 0 for v in prior.weight_mean[1:]):
        return None, "weights with a non-zero mean (the theory assumes mu_w = 0)"
    acts = net.activation_names()
    try:
        th = batch_gradient_theory(prior, acts, loss, _backend.to_numpy(x),
                                   _backend.to_numpy(y), pairs=pairs,
                                   max_pairs=max(pairs, max_pairs), seed=seed)
    except ValueError as exc:
        return None, str(exc)
    return th, ("theory at initialisation: pairs of samples through the exact forward law "
                "and, given it, the exact backward pass for Gaussian weights, "
                f"{th[1]['pairs']} Monte Carlo pairs (deltaprop.theory.batch_gradient)")


def _zero_mean(prior):
    from dataclasses import replace

    return replace(prior, weight_mean=(None,) + (0.0,) * prior.L)


def plot(rows, theory=None, *, title=None):
    """Four panels over the epochs (log scale), one line per layer: E[delta^2], ||db||,
    ||dW||, ||W - W_0|| / ||W_0||; the theory at initialisation as open markers at epoch 0
    (error bars: 2 se).  ``rows``: history rows with :func:`flat` keys (an epoch-0 row
    first where there is one).  Returns a ``matplotlib.figure.Figure``."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    per_epoch = [(r["epoch"], unflat(r)) for r in rows if unflat(r)]
    L = max(max(s) for _, s in per_epoch)
    cmap = colormaps["viridis"]
    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, q in zip(axes, QUANTITIES, strict=True):
        for l in range(1, L + 1):
            col = cmap(0.9 * (l - 1) / max(L - 1, 1))
            pts = [(e, s[l][q]) for e, s in per_epoch if q in s.get(l, {}) and s[l][q] > 0]
            if pts:
                ax.plot(*zip(*pts, strict=True), "-", color=col, lw=1.5, label=f"layer {l}",
                        marker="." if len(pts) < 40 else None)
            if theory and q in theory.get(l, {}):
                ax.errorbar([0], [theory[l][q]], yerr=[2 * theory[l].get(q + "_se", 0.0)],
                            fmt="o", mfc="none", mec=col, ecolor=col, ms=9, mew=1.5)
        ax.set_yscale("log")
        ax.set_title(LABELS[q])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[2:]:
        ax.set_xlabel("epoch")
    axes[0].legend(fontsize=8)
    if theory:
        axes[1].plot([], [], "o", mfc="none", mec="k", label="theory at initialisation")
        axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def table(rows, theory=None) -> str:
    """Epoch 0 beside the theory at initialisation, the last epoch, and the ratios
    ||db[l]|| / ||db[l+1]|| (how much slower each layer learns than the next)."""
    per_epoch = [(r["epoch"], unflat(r)) for r in rows if unflat(r)]
    first, last = per_epoch[0], per_epoch[-1]
    L = max(first[1])
    head = (f"{'layer':>5} | {'E[d^2] ep 0':>11} {'theory':>10} | {'||db|| ep 0':>11} "
            f"{'theory':>10} | {'||dW|| ep 0':>11} {'theory':>10} || "
            f"{'E[d^2]':>9} {'||db||':>9} {'||dW||':>9} {'dist W':>8}  (epoch {last[0]})")
    lines = [f"per-layer statistics on the training set (full-set gradients), epoch "
             f"{first[0]} and {last[0]}", head, "-" * len(head)]
    for l in range(1, L + 1):
        a, b = first[1][l], last[1][l]
        t = theory.get(l, {}) if theory else {}

        def th(q, t=t):
            return f"{t[q]:>10.4g}" if q in t else f"{'-':>10}"

        lines.append(f"{l:>5} | {a['delta2']:>11.4g} {th('delta2')} | {a['db_norm']:>11.4g} "
                     f"{th('db_norm')} | {a['dW_norm']:>11.4g} {th('dW_norm')} || "
                     f"{b['delta2']:>9.3g} {b['db_norm']:>9.3g} {b['dW_norm']:>9.3g} "
                     f"{b.get('W_distance', math.nan):>8.3g}")
    speed = [f"{_ratio(first[1], l):.3g}" for l in range(1, L)]
    line = ("speed of learning, ||db[l]|| / ||db[l+1]|| for l = 1.." + str(L - 1)
            + f": epoch {first[0]} " + ", ".join(speed))
    if theory:
        line += ", theory " + ", ".join(f"{theory[l]['db_norm'] / theory[l + 1]['db_norm']:.3g}"
                                        for l in range(1, L))
    line += f"; epoch {last[0]} " + ", ".join(f"{_ratio(last[1], l):.3g}" for l in range(1, L))
    lines.append(line)
    return "\n".join(lines)


def _ratio(s, l):
    return s[l]["db_norm"] / s[l + 1]["db_norm"] if s[l + 1]["db_norm"] else math.nan

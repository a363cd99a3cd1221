"""The correlation map, measured: pairs of inputs with a chosen correlation through K networks.

For each network and each layer l, over its m pairs (x_a, x_b) and n_l units,

    c^l = sum_ij z[l]_iaj z[l]_ibj / sqrt(sum_ij z[l]_iaj^2  sum_ij z[l]_ibj^2)
    q^l = sum_ij (z[l]_iaj^2 + z[l]_ibj^2) / (2 m n_l)

(q_ab / sqrt(q_aa q_bb) with each q a mean over pairs and units: a ratio of means, so its
bias is O(1 / (m n_l)), where the mean of per-pair correlations would be biased by
c (1 - c^2) / (2 n_l)).  These are averaged over the K networks of a stack, with standard
errors from the spread between networks (K >= 2; for one network, from the spread of the
per-pair correlations).  Beside them: the mean-field iteration of the length and
correlation maps, :func:`deltaprop.theory.signal.correlation_iteration`, at the prior's
per-layer sigma_w^2(l) = n_{l-1} Var(W[l]) and sigma_b^2(l) = Var(b[l]) (zero-mean weights
and biases only), and the trainability rule of Schoenholz et al. (2017): networks train up to
about 6 xi_c layers, xi_c = -1 / log chi_c at the hidden layers' (sigma_w^2, sigma_b^2, f).

The inputs: x_a with i.i.d. N(0, var) components and x_b = c0 x_a + sqrt(1 - c0^2) e, e
independent of x_a with the same law, so that each component pair has correlation c0 and
x_a . x_b / n_0 -> var c0.  Fresh pairs for every network of a stack (shape (K, m, n_0)).

One forward pass of 2m samples; nothing is recorded unless asked for (``deltaprop stats
--correlation C0``, ``Study(correlation=C0)``), so the default study costs what it did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import _backend
from .. import activations as _act
from ..backprop import forward

__all__ = ["correlated_inputs", "CorrelationRecord", "record_correlation", "predict_correlation",
           "trainability", "add_rows", "table", "KEY"]

#: the key of the comparison rows (and of ``deltaprop stats --json``) that carries the map
KEY = "correlation"


def correlated_inputs(m, n0, c0, var=1.0, seed=0, K=None):
    """(x_a, x_b), each (m, n0) or (K, m, n0): x_a ~ N(0, var) i.i.d., x_b = c0 x_a +
    sqrt(1 - c0^2) e with e an independent copy of x_a's law."""
    if not -1 <= c0 <= 1:
        raise ValueError(f"the input correlation must lie in [-1, 1], got {c0}")
    if not var > 0:
        raise ValueError(f"the input variance must be > 0, got {var}")
    rng = np.random.default_rng(seed)
    shape = (m, n0) if K is None else (K, m, n0)
    xa = math.sqrt(var) * rng.standard_normal(shape)
    xb = c0 * xa + math.sqrt(1 - c0 * c0) * math.sqrt(var) * rng.standard_normal(shape)
    return xa, xb


@dataclass(frozen=True)
class CorrelationRecord:
    """Per network k and layer l = 0..L (l = 0: the inputs) ``c[k, l]`` and ``q[k, l]``
    (module docstring), and ``c_pairs[l]``, every pair's own correlation in network 0 (for
    the se of a single network).  ``K`` is None for a single network."""

    c: np.ndarray
    q: np.ndarray
    c_pairs: tuple
    m: int
    K: int | None

    @property
    def L(self) -> int:
        return self.c.shape[1] - 1

    def concat(self, other) -> CorrelationRecord:
        """The record of both stacks' networks together (e.g. chunks of one ensemble)."""
        return CorrelationRecord(np.concatenate([self.c, other.c]),
                                 np.concatenate([self.q, other.q]), self.c_pairs, self.m,
                                 (self.K or 1) + (other.K or 1))

    def summary(self, l) -> dict:
        """Layer l: c and q averaged over networks and pairs, with their standard errors
        (between networks for K >= 2, else between the pairs of the one network)."""
        c, q = self.c[:, l], self.q[:, l]
        if c.size >= 2:
            se_c, se_q = (float(v.std(ddof=1) / math.sqrt(v.size)) for v in (c, q))
        else:
            p = self.c_pairs[l]
            se_c = float(p.std(ddof=1) / math.sqrt(p.size)) if p.size >= 2 else math.nan
            se_q = math.nan
        return {"c": float(c.mean()), "c_se": se_c, "q": float(q.mean()), "q_se": se_q,
                "se_within_network_only": c.size < 2}


def record_correlation(net, x_a, x_b) -> CorrelationRecord:
    """c^l and q^l (module docstring) of the pairs through ``net`` (or each network of a
    stack).  ``x_a``, ``x_b``: (m, n_0), or (K, m, n_0) for a
    stack; on the network's backend (host arrays are moved there)."""
    xp = net.xp
    if not _backend.is_numpy(xp):
        x_a, x_b = (_backend.asarray(v, xp, like=net.W[1]) for v in (x_a, x_b))
    m = x_a.shape[-2]
    trace = forward(net, xp.concat([x_a, x_b], axis=-2))
    cs, qs, pairs = [], [], []
    for l in range(net.L + 1):
        v = trace.a[0] if l == 0 else trace.z[l]
        za, zb = v[..., :m, :], v[..., m:, :]
        saa, sbb, sab = (_backend.to_numpy(xp.sum(s * t, axis=-1))
                         for s, t in ((za, za), (zb, zb), (za, zb)))
        saa, sbb, sab = (np.atleast_2d(t) for t in (saa, sbb, sab))  # (K, m)
        with np.errstate(invalid="ignore", divide="ignore"):
            paa, pbb, pab = (t.sum(axis=1) for t in (saa, sbb, sab))
            cs.append(np.where(paa * pbb > 0, pab / np.sqrt(paa * pbb), 1.0))
            one = saa[0] * sbb[0]
            pairs.append(np.where(one > 0, sab[0] / np.sqrt(one), 1.0))
        qs.append((paa + pbb) / (2 * m * v.shape[-1]))
    return CorrelationRecord(np.stack(cs, axis=1), np.stack(qs, axis=1), tuple(pairs), m,
                             net.K)


def _mean_field_parameters(prior):
    """sigma_w^2(l) = n_{l-1} Var(W[l]), sigma_b^2(l) = Var(b[l]) for l = 1..L, or None
    (with why) when a weight or bias mean is not 0 (the maps assume zero means)."""
    L = prior.L
    if any(prior.weight_mean[l] != 0 or prior.bias_mean[l] != 0 for l in range(1, L + 1)):
        return None, "the maps assume zero-mean weights and biases"
    return ([prior.sigma_w2(l) for l in range(1, L + 1)],
            [prior.bias_var[l] for l in range(1, L + 1)]), ""


def predict_correlation(prior, activations, c0, var=1.0):
    """The mean-field (q^l, c^l) for l = 0..L (:func:`~deltaprop.theory.signal.
    correlation_iteration`), or None with a note where the maps do not apply (nonzero
    means, a non-elementwise hidden activation).

    ``activations``: f_1..f_L (f_L, the output's, is not used: the map ends at z[L])."""
    from ..theory.signal import correlation_iteration

    params, note = _mean_field_parameters(prior)
    acts = [_act.get(f) for f in activations][: prior.L - 1]
    if params is None:
        return None, note
    if not all(f.elementwise for f in acts):
        return None, "a hidden activation is not elementwise"
    return correlation_iteration(c0, var, *params, acts, depth=prior.L), ""


def trainability(prior, activations):
    """Schoenholz et al.'s rule for this prior: ``(rule, note)``.

    ``rule`` is a dict with the hidden layers' ``sigma_w2``, ``sigma_b2`` and
    ``activation``, ``xi_c``, ``c_star``, ``phase``, ``trainable_depth`` = 6 xi_c and the
    network's depth ``L`` (``note`` empty); it is None, with ``note`` saying why, when the
    hidden layers 2..L-1 (layers 2..L for L = 2) do not share one (sigma_w^2, sigma_b^2, f)
    or the means are not 0."""
    from ..theory.signal import TRAINABLE_DEPTH, signal_theory

    params, note = _mean_field_parameters(prior)
    if params is None:
        return None, note
    L = prior.L
    layers = range(2, L) if L >= 3 else range(2, L + 1)
    if L < 2:
        return None, "one layer: no correlation map"
    acts = [_act.get(f) for f in activations]
    keys = {(params[0][l - 1], params[1][l - 1], acts[l - 2].name) for l in layers}
    if len(keys) != 1:
        return None, "the hidden layers differ in sigma_w^2, sigma_b^2 or activation"
    w2, b2, name = keys.pop()
    if not acts[layers[0] - 2].elementwise:
        return None, "a hidden activation is not elementwise"
    th = signal_theory(name, w2, b2, edge=False)
    depth = TRAINABLE_DEPTH * th.xi_c if th.xi_c > 0 else 0.0
    return {"sigma_w2": w2, "sigma_b2": b2, "activation": name, "xi_c": th.xi_c,
            "c_star": th.c_star, "phase": th.phase, "trainable_depth": depth, "L": L}, ""


def add_rows(rows, rec: CorrelationRecord, predicted, rule=None) -> list[dict]:
    """The comparison rows with ``row[KEY]``: measured ``c``, ``c_se``, ``q``, ``q_se``;
    where the maps apply ``c_predicted`` and ``q_predicted`` (the iteration at layer l);
    with a rule (:func:`trainability`) its ``xi_c`` and ``trainable_depth``.  Non-finite
    numbers are the strings ``"inf"``, ``"-inf"``, ``"nan"`` (valid JSON)."""
    out = []
    for r in rows:
        l = r["layer"]
        s = rec.summary(l)
        if predicted is not None:
            s["q_predicted"], s["c_predicted"] = (float(v) for v in predicted[l])
        if isinstance(rule, dict):
            s["xi_c"], s["trainable_depth"] = rule["xi_c"], rule["trainable_depth"]
        s = {k: v if isinstance(v, bool) or math.isfinite(v) else str(float(v))
             for k, v in s.items()}
        out.append({**r, KEY: s})
    return out


def table(rec: CorrelationRecord, predicted, c0, rule=None, note="") -> str:
    """Per layer (0 = the inputs): c measured with se, the C-map iteration's c^l and z =
    (predicted - measured) / se, q measured and the length map's q^l; then the rule."""
    K = rec.K or 1
    head = (f"{'layer':>5} {'c measured':>11} {'se':>8} {'c^l C-map':>10} {'z':>6} "
            f"{'q measured':>11} {'q^l':>10}")
    lines = [f"correlation map: {rec.m} pairs of inputs with correlation c0 = {c0:g} through "
             f"{K} network{'s' if K > 1 else ''}", head, "-" * len(head)]
    for l in range(rec.L + 1):
        s = rec.summary(l)
        line = f"{l:>5} {s['c']:>11.5f} {s['c_se']:>8.2g}"
        if predicted is None:
            line += f" {'-':>10} {'':>6} {s['q']:>11.4g} {'-':>10}"
        else:
            q_p, c_p = predicted[l]
            z = (c_p - s["c"]) / s["c_se"] if s["c_se"] > 0 else math.nan
            line += f" {c_p:>10.5f} {z:>6.1f} {s['q']:>11.4g} {q_p:>10.4g}"
        lines.append(line)
    if predicted is None:
        lines.append(f"no mean-field prediction: {note}")
    else:
        lines.append("z = (prediction - measurement) / se; the maps are the infinite-width "
                     "limit, finite widths add a bias of order 1 / n_l")
    lines.append(_rule_line(rule, rec.L))
    return "\n".join(lines)


def _rule_line(rule, L):
    if rule is None or isinstance(rule, str):
        why = f": {rule}" if rule else ""
        return f"trainability rule (Schoenholz et al. 2017, depth up to about 6 xi_c): n/a{why}"
    xi, depth = rule["xi_c"], rule["trainable_depth"]
    where = (f"{rule['activation']}, sigma_w^2 = {rule['sigma_w2']:.4g}, sigma_b^2 = "
             f"{rule['sigma_b2']:.4g}, {rule['phase']}")
    verdict = "within" if L <= depth else "beyond"
    shown = "inf" if math.isinf(depth) else f"{depth:.1f}"
    return (f"trainability rule (Schoenholz et al. 2017): xi_c = {xi:.4g} ({where}); depth up "
            f"to about 6 xi_c = {shown} layers; L = {L} is {verdict} it")

"""Weight-gradient statistics beside the theory, and Glorot & Bengio's eq. 14 checked.

The record keeps, per layer, the per-sample mean square of the weight gradient
``dW2`` = ||delta[l]_i||^2 ||a[l-1]_i||^2 / (n_l n_{l-1}) (:mod:`.record`), whose expectation is
E[(dJ_i/dW[l]_jk)^2].  :func:`predict_weight_grads` puts the predictions of
:mod:`deltaprop.theory.weight_grads` beside it:

* ``exact``       E_F[E[delta[l]_j^2 | F] a[l-1]_k^2]: the conditional theory, no
  factorisation (needs the forward law's or the recorded passes' average,
  :func:`deltaprop.theory.conditional.average`), with its integration error;
* ``factorised``  the exact E[delta[l]^2] times E[a[l-1]^2] (gradient independence between
  delta[l] and a[l-1] only);
* ``independence``, ``mean_field``  those recursions' E[delta[l]^2] times E[a[l-1]^2];
* ``linear_regime``  Glorot & Bengio's eq. 7 (f(z) = z), anchored at the best E[x^2] and
  E[delta[L]^2] available: a profile over the layers, printed as a ratio only.

E[a[l-1]^2] comes from the same forward model as the delta predictions (the law's or the
recorded passes' average, else the Gaussian recursion).  :func:`add_rows` gives each
comparison row ``row["weight_grads"]``::

    {"measured": {"second_moment", "second_moment_se", "se_within_network_only",
                  "ratio", "ratio_se"},
     "predicted": {name: {"second_moment"[, "second_moment_se"][, "anchored"], "ratio"}}}

``ratio`` is E[dW2[l]] / E[dW2[1]]: the profile over the layers that Glorot & Bengio's eq. 14
says is flat in the linear regime (the ``deltaprop stats --weight-grads`` section).
"""

from __future__ import annotations

import math

from .. import activations as _act
from ..theory import weight_grads as _wg
from ..theory.forward import forward_recursion

__all__ = ["predict_weight_grads", "add_rows", "table", "eq14_line", "KEY", "THEORIES"]

#: the key of the comparison rows (and of ``deltaprop stats --json``)
KEY = "weight_grads"
#: predictions with an absolute value to test (``linear_regime`` is a profile only)
THEORIES = ("exact", "factorised", "independence", "mean_field")


def second_moments_a(prior, activations, input_stats, law=None) -> list:
    """E[a[l]_k^2] for l = 0..L-1 (a[0] = x): from the law's (or the recorded passes')
    average when given, else the Gaussian forward recursion (E[f(z[l])^2], E[x^2] = s2 / n_0);
    ``None`` where neither applies (a non-elementwise hidden layer)."""
    L = prior.L
    if law is not None and all(l in law[1] and "a2" in law[1][l] for l in range(L)):
        return [law[1][l]["a2"] for l in range(L)]
    acts = [_act.get(f) for f in activations]
    fwd = forward_recursion(list(prior.sizes), acts, input_stats, prior.weight_mean[1:],
                            prior.weight_var[1:], prior.bias_mean[1:], prior.bias_var[1:])
    return [input_stats.s2 / prior.sizes[0]] + [fwd[l].E.get("f2") for l in range(1, L)]


def predict_weight_grads(prior, activations, input_stats, predictions, law=None) -> dict:
    """``{l: {name: {"second_moment"[, "second_moment_se"][, "anchored"]}}}`` for l = 1..L.

    ``predictions`` are :func:`deltaprop.stats.report.predict_moments`'s (their E[delta[l]^2]);
    ``law`` is the same :func:`deltaprop.theory.conditional.average` they used (``None``
    for the Gaussian forward model: then no ``exact`` or ``factorised``).
    """
    L = prior.L
    a2 = second_moments_a(prior, activations, input_stats, law)
    out = {l: {} for l in range(1, L + 1)}
    for l in range(1, L + 1):
        if a2[l - 1] is None:
            continue
        if law is not None and "dW2" in law[0].get(l, {}):
            out[l]["exact"] = {"second_moment": law[0][l]["dW2"],
                               "second_moment_se": law[0][l]["dW2_se"]}
        for name in ("exact", "independence", "mean_field"):
            p = predictions.get(name, {}).get(l, {})
            if "second_moment" not in p:
                continue
            key = "factorised" if name == "exact" else name
            e = {"second_moment": _wg.factorised(p["second_moment"], a2[l - 1])}
            if "second_moment_se" in p:  # the delta's integration error (E[a^2]'s neglected)
                e["second_moment_se"] = p["second_moment_se"] * a2[l - 1]
            if p.get("anchored"):
                e["anchored"] = True
            out[l][key] = e
    top = next((predictions[n][L]["second_moment"] for n in ("exact", "mean_field",
                "independence") if "second_moment" in predictions.get(n, {}).get(L, {})), None)
    if top is not None and a2[0] is not None and all(v == 0 for v in prior.weight_mean[1:]):
        lin = _wg.linear_regime(prior.sizes, prior.weight_var, a2[0], top)
        for l in range(1, L + 1):
            out[l]["linear_regime"] = {"second_moment": lin[l]}
    return out


def add_rows(rows, record, predicted) -> list[dict]:
    """The comparison rows with ``row[KEY]`` (see the module docstring).

    The measured ratio's standard error pairs the layers network by network: with K >= 2,
    r = mean_k A_k / mean_k B_k (A: layer l, B: layer 1) has se = sd_k(A_k - r B_k) /
    (sqrt(K) mean_k B_k) (the delta method); with one network it is ``None``.  A predicted
    ratio's se treats the two layers' integration errors as independent.
    """
    K = record.K
    ref = record.network_means(1, "dW2")[0]
    out = []
    for r in rows:
        l = r["layer"]
        s = record.layer_summary(l, "dW2")
        per_net = record.network_means(l, "dW2")[0]
        ratio = float(per_net.mean() / ref.mean())
        ratio_se = float((per_net - ratio * ref).std(ddof=1) / (math.sqrt(K) * ref.mean())) \
            if K >= 2 else None
        meas = {"second_moment": s["mean"], "second_moment_se": s["mean_se"],
                "se_within_network_only": K < 2, "ratio": ratio, "ratio_se": ratio_se}
        pred = {}
        for name, p in predicted.get(l, {}).items():
            p1 = predicted.get(1, {}).get(name)
            e = dict(p)
            if p1:
                e["ratio"] = p["second_moment"] / p1["second_moment"]
                if "second_moment_se" in p and "second_moment_se" in p1:
                    e["ratio_se"] = e["ratio"] * math.hypot(
                        p["second_moment_se"] / p["second_moment"],
                        p1["second_moment_se"] / p1["second_moment"])
            pred[name] = e
        out.append({**r, KEY: {"measured": meas, "predicted": pred}})
    return out


def z_scores(entry) -> dict:
    """(prediction - measurement) / se for each predicted second moment and ratio of one
    row's ``row[KEY]``; ``None`` for anchored entries, the linear regime (a profile, not a
    prediction of this network) and one network's rows (K = 1)."""
    m, out = entry["measured"], {}
    for name, p in entry["predicted"].items():
        for k in ("second_moment", "ratio"):
            if k not in p or m.get(k + "_se") is None:
                out[(name, k)] = None
                continue
            if p.get("anchored") or name == "linear_regime" or m["se_within_network_only"]:
                out[(name, k)] = None
                continue
            se = math.hypot(m[k + "_se"], p.get(k + "_se", 0.0))
            d = p[k] - m[k]
            out[(name, k)] = d / se if se > 0 else (0.0 if d == 0 else math.inf)
    return out


def table(rows, prior=None) -> str:
    """Per layer: measured E[(dJ_i/dW[l]_jk)^2] with se, each prediction with z, and the
    ratio to layer 1 measured (se) beside the exact theory's and the linear regime's;
    then :func:`eq14_line`."""
    short = {"exact": "exact", "factorised": "fact", "independence": "indep",
             "mean_field": "mf"}
    names = [n for n in THEORIES if any(n in r[KEY]["predicted"] for r in rows)]
    if "mean_field" in names and "independence" in names:  # equal for mu_w = 0: one column
        names.remove("independence")
    rname = next((n for n in ("exact", "mean_field", "independence")
                  if any(n in r[KEY]["predicted"] for r in rows)), None)
    head = f"{'layer':>5} {'W[l]':>9} {'E[dW^2]':>10} {'se':>8}"
    for n in names:
        head += f" | {short[n]:>10} {'z':>5}"
    head += f" || {'ratio':>7} {'se':>6} {'z':>5}"
    if rname:
        head += f" {short[rname]:>7}"
    head += f" {'linear':>7}"
    lines = ["weight gradients: E[(dJ_i/dW[l]_jk)^2] per sample, averaged over the entries "
             "of dW[l]; ratio = to layer 1", head, "-" * len(head)]
    one = False
    for r in rows:
        e = r[KEY]
        m, z = e["measured"], z_scores(e)
        one |= m["se_within_network_only"]
        shape = f"{r['units']}x{_n_in(r, rows, prior)}"
        line = f"{r['layer']:>5} {shape:>9} {m['second_moment']:>10.4g} " \
               f"{m['second_moment_se']:>8.2g}"
        for n in names:
            p = e["predicted"].get(n)
            line += f" | {p['second_moment']:>10.4g} {_zt(z[(n, 'second_moment')], p):>5}" \
                if p else f" | {'-':>10} {'':>5}"
        se = "n/a" if m["ratio_se"] is None else f"{m['ratio_se']:.2g}"
        zr = z.get((rname, "ratio")) if rname in e["predicted"] else None
        if r["layer"] == 1:
            se, zr = "ref", "ref"
        line += f" || {m['ratio']:>7.3g} {se:>6} {_zt(zr, None):>5}"
        if rname:
            p = e["predicted"].get(rname, {})
            line += f" {p['ratio']:>7.3g}" if "ratio" in p else f" {'-':>7}"
        lin = e["predicted"].get("linear_regime", {})
        line += f" {lin['ratio']:>7.3g}" if "ratio" in lin else f" {'-':>7}"
        lines.append(line)
    lines.append("exact = E_F[E[delta_j^2 | F] a_k^2] (no factorisation); fact = exact "
                 "E[delta^2] x E[a[l-1]^2]; mf / indep = that recursion's E[delta^2] x "
                 "E[a[l-1]^2]; linear = Glorot & Bengio's linear regime (eq. 7); "
                 "z = (prediction - measurement) / se" + (f" (ratio: against {short[rname]})"
                                                           if rname else ""))
    lines.append(eq14_line(rows, prior))
    if one:
        lines.append("K = 1: the standard errors cover the samples of one network only; z "
                     "is not shown")
    return "\n".join(lines)


def eq14_line(rows, prior=None) -> str:
    """The check of Glorot & Bengio's eq. 14 in words: max/min of E[dW2] over the layers,
    measured, by the exact (else mean-field) theory and in the linear regime, and what the
    linear regime says for these widths and weight variances."""
    def spread(vals):
        vals = [v for v in vals if v is not None]
        return max(vals) / min(vals) if vals and min(vals) > 0 else math.nan

    meas = spread([r[KEY]["measured"]["second_moment"] for r in rows])
    parts = [f"measured {meas:.3g}"]
    for n in ("exact", "mean_field", "independence"):
        if all(n in r[KEY]["predicted"] for r in rows):
            parts.append(f"{n.replace('_', ' ')} theory "
                         f"{spread([r[KEY]['predicted'][n]['second_moment'] for r in rows]):.3g}")
            break
    lin = [r[KEY]["predicted"].get("linear_regime", {}).get("second_moment") for r in rows]
    text = "Glorot & Bengio eq. 14 (weight-gradient variance the same in every layer): " \
           "max/min over the layers " + ", ".join(parts)
    if all(v is not None for v in lin):
        text += f", linear regime {spread(lin):.3g}"
        if prior is not None:
            flat = [l for l in range(1, prior.L) if abs(
                _wg.linear_ratio(prior.sizes, prior.weight_var, l) - 1) < 1e-9]
            steps = [f"{l}->{l + 1} x{_wg.linear_ratio(prior.sizes, prior.weight_var, l):.3g}"
                     for l in range(1, prior.L) if l not in flat]
            text += (" (flat where n_{l-1} v_l = n_{l+1} v_{l+1}; steps here: "
                     + (", ".join(steps) if steps else "none") + ")")
    return text


def _n_in(row, rows, prior):
    if prior is not None:
        return prior.sizes[row["layer"] - 1]
    prev = [r for r in rows if r["layer"] == row["layer"] - 1]
    return prev[0]["units"] if prev else "n0"


def _zt(z, p):
    if p is not None and p.get("anchored"):
        return "anch"
    if isinstance(z, str):
        return z
    return "n/a" if z is None else f"{z:.1f}"

"""Measurement beside theory: predictions per layer, the comparison table, CSV and JSON.

:func:`predict_moments` evaluates every applicable theory of :mod:`deltaprop.theory` for one
ensemble (its :class:`~deltaprop.stats.ensemble.Prior`, input and target statistics):

* ``exact``          E[delta[l]] and E[delta[l]^2] at every layer, exact for Gaussian weights
  given the forward pass (:mod:`deltaprop.theory.conditional`), averaged over the forward
  model, with that average's integration error (``mean_se``, ``second_moment_se``);
* ``independence``   the E[delta] question's approximation: E[delta[l]] and E[delta[l]^2], l = L..1;
* ``mean_field``     E[delta[l]^2] by the gradient-independence recursion (mu_w = 0, or
  negligible against the width: max(n_{l-1}, n_l) mu_w^2 <= 0.05 Var(W[l]) in every layer,
  see :func:`mean_field_applies`);
* ``exact_last_layer`` the question's exact E[delta[L-1]] and its second moment by Isserlis'
  theorem (MSE, linear output, L >= 2).

Forward statistics come from one of :data:`FORWARDS`: the exact per-sample law of the
forward pass under the prior (``"law"``, the default, no measurement used), the record
(``"measured"``: the plug-in form of each formula on the same passes), or the Gaussian
mean-field recursion (``"gaussian"``).  The independence and mean-field recursions start
from the output-layer moments of that forward model (or from the measured delta[L] where no
theory applies: softmax with the Gaussian model, or with "measured").  Their layer-L
entries then equal the measurement by construction, as does ``exact`` at layer L with
"measured" (delta[L] is a function of the measured z[L] and the targets): such entries
carry ``"anchored": True`` and are no test of any theory.

:func:`compare` turns a record and predictions into rows, one per layer::

    {"layer": l, "units": n_l,
     "measured": {"mean", "mean_se", "second_moment", "second_moment_se",
                  "se_within_network_only"},
     "predicted": {"independence": {"mean", "second_moment"[, "anchored": True]},
                   "mean_field": {"second_moment"[, "anchored": True]}, ...}}

(the ``--json`` output of ``deltaprop stats``); :func:`z_scores` gives (prediction -
measurement) / se for each entry.

**With one network (K = 1) the standard error is over the samples of that one network**: it
leaves out the network-to-network variance (at finite width E[delta^2] itself differs from
network to network, Hanin 2018), which is larger (see docs/laboratory.md).  Such rows carry
``"se_within_network_only": True``; they and anchored entries get no z (:func:`z_scores`
gives ``None``, :func:`table` prints "n/a" or "anchored" with a footnote).
"""

from __future__ import annotations

import csv
import io
import json
import math

from .. import activations as _act
from .. import losses as _losses
from ..theory import exact_last_layer as _exact
from ..theory.forward import forward_recursion
from ..theory.gaussian import bivariate, numpy_pair
from ..theory.independence import independence_backward
from ..theory.mean_field import mean_field_backward
from ..theory.output import output_delta_moments

__all__ = ["predict_moments", "compare", "z_scores", "table", "flat", "to_csv", "to_json",
           "THEORIES", "question_conditions", "mean_field_applies"]

THEORIES = ("exact", "independence", "mean_field", "exact_last_layer")

MOMENTS = ("mean", "second_moment")

#: forward models: the exact per-sample law of the forward pass (integrated by Monte Carlo),
#: the recorded forward pass, the Gaussian mean-field recursion
FORWARDS = ("law", "measured", "gaussian")
FORWARD_TEXT = {"law": "the exact forward law under the prior, integrated by Monte Carlo",
                "measured": "the recorded forward passes",
                "gaussian": "the Gaussian mean-field recursion"}

#: the footnotes of :func:`table`
ANCHORED_NOTE = ("anchored: the prediction is the measured delta[L] (the recursions start "
                 "from it) or a function of the measured z[L]; not a test of the theory")
K1_NOTE = ("K = 1: the standard error covers the samples of one network only, not the "
           "spread between networks; z is not shown")


def predict_moments(prior, activations, loss, input_stats, y_mean, y_second, *, record=None,
                    forward_model="law", law=None) -> dict:
    """Predictions ``{theory: {layer: {"mean": .., "second_moment": ..}}}``.

    Parameters
    ----------
    prior : Prior
        Raw per-layer weight and bias means and variances.
    activations : sequence
        f_1..f_L.
    loss : str
    input_stats : theory.forward.InputStats
    y_mean, y_second : float
        E[y_k] and E[y_k^2] of the targets (assumed independent of the inputs).
    record : Record, optional
        Needed for ``forward_model="measured"`` and for softmax outputs with the Gaussian forward
        model (anchor at the measured delta[L]).
    forward_model : {"law", "measured", "gaussian"}
        Where the forward statistics come from: the exact per-sample law of the forward
        pass under the prior (``law``, the default: every formula is then exact up to its
        Monte Carlo integration error), the recorded passes (``measured``), or the Gaussian
        mean-field recursion of :mod:`deltaprop.theory.forward` (``gaussian``).
    law : (delta, forward), optional
        :func:`deltaprop.theory.conditional.average` over forward passes: the law's draws
        (:func:`~deltaprop.theory.conditional.law_batches`; required for ``forward_model="law"``)
        or the recorded networks' own passes.  It gives the ``exact`` prediction of
        E[delta[l]] and E[delta[l]^2] at every layer (with its integration error as
        ``mean_se`` / ``second_moment_se``) and, for ``law``, the forward moments.
    """
    if forward_model not in FORWARDS:
        raise ValueError(f"forward_model must be one of {', '.join(FORWARDS)}; "
                         f"got {forward_model!r}")
    if forward_model == "measured" and record is None:
        raise ValueError("forward_model='measured' needs a record")
    if forward_model == "law" and law is None:
        raise ValueError("forward_model='law' needs law=theory.conditional.average(...) over "
                         "theory.conditional.law_batches(...)")
    acts = [_act.get(f) for f in activations]
    sizes, L = list(prior.sizes), prior.L
    loss = _losses.get(loss)
    fwd = forward_recursion(sizes, acts, input_stats, prior.weight_mean[1:], prior.weight_var[1:],
                            prior.bias_mean[1:], prior.bias_var[1:])
    hidden_ok = all(f.elementwise for f in acts[:-1])
    E_df, E_df2 = _slope_moments(forward_model, record, law, fwd, acts, L)
    out = None
    if forward_model == "gaussian":
        out = output_delta_moments(loss, acts[-1], fwd[L].mean, fwd[L].var, y_mean, y_second)
    elif forward_model == "law":
        out = (law[0][L]["mean"], law[0][L]["second_moment"])
    anchored = out is None and record is not None  # start from the measured delta[L]
    if anchored:
        s = record.layer_summary(L, "delta")
        out = (s["mean"], s["second_moment"])
    preds = {}
    if law is not None:
        preds["exact"] = {l: {k: v for k, v in law[0][l].items() if not k.startswith("dW2")}
                          for l in range(1, L + 1)}  # dW2: stats.weight_grads
        if forward_model == "measured":  # delta[L] given the measured z[L]: the measurement
            preds["exact"][L]["anchored"] = True
    if out is None or not hidden_ok or any(v is None for v in E_df[1:L]):
        return preds
    mean, second = independence_backward(sizes, E_df, E_df2, prior.weight_mean,
                                         prior.weight_var, *out)
    preds["independence"] = {l: {"mean": mean[l], "second_moment": second[l]}
                             for l in range(1, L + 1)}
    if mean_field_applies(prior):
        sec = mean_field_backward(sizes, E_df2, prior.weight_var, out[1])
        preds["mean_field"] = {l: {"second_moment": sec[l]} for l in range(1, L + 1)}
    if anchored:  # equal to the measurement by construction
        for name in ("independence", "mean_field"):
            if name in preds:
                preds[name][L]["anchored"] = True
    if loss.name == "mse" and acts[-1].name == "identity" and L >= 2:
        preds["exact_last_layer"] = {L - 1: _exact_last_layer(
            prior, acts, fwd, forward_model, record, law, y_mean, y_second)}
    return preds


def _slope_moments(forward_model, record, law, fwd, acts, L):
    """(E[f'(z[l])], E[f'(z[l])^2]) for hidden l from the forward model (None where unknown)."""
    E_df, E_df2 = [None] * (L + 1), [None] * (L + 1)
    for l in range(1, L):
        if forward_model == "measured":
            s = record.layer_summary(l, "df") if record.has("df", l) else None
            E_df[l], E_df2[l] = (s["mean"], s["second_moment"]) if s else (None, None)
        elif forward_model == "law" and l in law[1]:
            E_df[l], E_df2[l] = law[1][l]["df"], law[1][l]["df2"]
        elif forward_model == "gaussian" and acts[l - 1].elementwise:
            E_df[l], E_df2[l] = fwd[l].E["df"], fwd[l].E["df2"]
    return E_df, E_df2


def _exact_last_layer(prior, acts, fwd, forward_model, record, law, y_mean, y_second):
    """The question's exact formula at layer L - 1 (MSE, identity output): the mean, and the
    second moment where the law's or the recorded passes' forward moments are known."""
    sizes, L = list(prior.sizes), prior.L
    fw = _forward_cross(fwd, acts, sizes, L - 1,
                        record if forward_model == "measured" else None,
                        law[1].get(L - 1) if forward_model == "law" else None)
    last = {"mean": _exact.exact_mean(sizes[L], prior.weight_var[L], prior.weight_mean[L], fw,
                                      y_mean, prior.bias_mean[L])}
    if law is not None and forward_model != "gaussian":  # its forward moments: law or measured
        f2 = law[1][L - 1]
        last["second_moment"] = _exact.exact_second_moment(
            sizes[L], prior.weight_var[L], prior.weight_mean[L], _exact.ForwardSecond(
                f2["df2"], *(f2[k] for k in ("d2a", "d2a2", "d2S", "d2S2", "d2Q", "d2aS"))),
            y_mean, y_second - y_mean**2, prior.bias_mean[L], prior.bias_var[L])
    return last


def mean_field_applies(prior, tol=0.05) -> bool:
    """max(n_{l-1}, n_l) mu_w^2 <= tol Var(W[l]) for l = 1..L: mean field may drop mu_w.

    Write W[l]_jk = mu + sqrt(v) e_jk.  Forward, z[l]_j = sum_k W_jk a_k has a part shared by
    every unit j, mu sum_k a_k, beside an independent part of second moment n_{l-1} v E[a^2];
    the shared part's second moment mu^2 E[(sum_k a_k)^2] lies between n_{l-1}^2 mu^2 E[a]^2
    and n_{l-1}^2 mu^2 E[a^2] (Cauchy-Schwarz).  Backward, sum_k W[l]_kj delta[l]_k has the
    shared part mu sum_k delta[l]_k beside n_l v E[delta^2].  So the shared parts, which
    mean field (v only) leaves out, are at most n mu^2 / v of the rest, n = n_{l-1} forward
    and n_l backward.  They also correlate the units, and the correlated part is amplified
    layer after layer, so a bound by E[a]^2 would not do: it is 0 for tanh with inputs of
    mean 0, where 5 tanh layers of width 256 with mu_w^2 = 0.009 v (n mu_w^2 = 2.4 v) put
    mean field 17-28% low at layer 1.  The rule is on mu_w^2 against v / n, not against v.

    For a network's own weights (``prior.init == "empirical"``: :func:`ensemble.empirical_prior`)
    mu_w is the mean of n_l n_{l-1} entries, and i.i.d. zero-mean weights give it a chance part
    of standard error sqrt(v / (n_l n_{l-1})), which mean field averages over: the rule is
    then applied to |mu_w| less 3 of those standard errors.
    """
    for l in range(1, prior.L + 1):
        mu, v = abs(prior.weight_mean[l]), prior.weight_var[l]
        n_in, n_out = prior.sizes[l - 1], prior.sizes[l]
        if prior.init == "empirical":
            mu = max(mu - 3 * math.sqrt(v / (n_in * n_out)), 0.0)
        if max(n_in, n_out) * mu * mu > tol * v:
            return False
    return True


def question_conditions(prior, activations, input_stats, *, record=None, forward_model="law",
                       law=None):
    """The question's conditions for the independence approximation at layer L-1, as numbers.

    Returns :func:`deltaprop.theory.exact_last_layer.independence_gap` (``variance_term``
    M v E[f'f], ``covariance_term``, ``total`` = exact - independence) for a linear output
    layer, or ``None`` when the setting does not apply (L < 2, non-elementwise layer).
    """
    acts = [_act.get(f) for f in activations]
    sizes, L = list(prior.sizes), prior.L
    if L < 2 or not acts[L - 2].elementwise or acts[-1].name != "identity":
        return None
    fwd = forward_recursion(sizes, acts, input_stats, prior.weight_mean[1:], prior.weight_var[1:],
                            prior.bias_mean[1:], prior.bias_var[1:])
    fw = _forward_cross(fwd, acts, sizes, L - 1, record if forward_model == "measured" else None,
                        law[1].get(L - 1) if forward_model == "law" and law is not None else None)
    return _exact.independence_gap(sizes[L], prior.weight_var[L], prior.weight_mean[L], fw)


def _forward_cross(fwd, acts, sizes, l, record, law=None):
    """The ForwardCross of layer l: from the law's draws, the record (measured) or the
    Gaussian model."""
    H = sizes[l]
    if law is not None:
        return _exact.ForwardCross(law["df"], law["fdf"], law["dfS"], law["f"], H)
    if record is not None:
        def mean(q):
            return record.layer_summary(l, q)["mean"]
        return _exact.ForwardCross(mean("df"), mean("fdf"), mean("dfS"), mean("a"), H)
    st, E = fwd[l], fwd[l].E
    _, f, df = numpy_pair(acts[l - 1])
    cross = bivariate(df, f, st.mean, st.var, st.cov) if st.cov > 0 else E["df"] * E["f"]
    return _exact.ForwardCross(E["df"], E["fdf"], E["fdf"] + (H - 1) * cross, E["f"], H)


def compare(record, predictions, q="delta", forward_model=None) -> list[dict]:
    """Rows (one per layer 1..L) of measurement and every applicable prediction;
    ``forward_model`` (the forward model the predictions used, see :data:`FORWARDS`) is
    stated in every row (key ``"forward"``) when given."""
    rows = []
    for l in range(1, record.L + 1):
        s = record.layer_summary(l, q)
        rows.append({
            "layer": l, "units": int(record.sizes[l]),
            **({"forward": forward_model} if forward_model else {}),
            "measured": {**{k: s[k] for k in ("mean", "mean_se", "second_moment",
                                              "second_moment_se")},
                         "se_within_network_only": record.K < 2},
            "predicted": {name: dict(p[l]) for name, p in predictions.items() if l in p},
        })
    return rows


def z_scores(row) -> dict:
    """(prediction - measurement) / se for every predicted entry of a row.

    ``None`` where a z would be no evidence: an anchored entry (equal to the measurement by
    construction) and a row whose se covers the samples of one network only (K = 1).
    """
    meas, out = row["measured"], {}
    for name, p in row["predicted"].items():
        for k in MOMENTS:
            if k not in p:
                continue
            if p.get("anchored") or meas.get("se_within_network_only"):
                out[(name, k)] = None
                continue
            # the prediction's own integration error (the exact law's) adds in quadrature
            se = math.hypot(meas[k + "_se"], p.get(k + "_se", 0.0))
            diff = p[k] - meas[k]
            out[(name, k)] = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
    return out


def table(rows) -> str:
    """A text table: measured mean and E[delta^2] with se, each prediction and its z."""
    short = {"exact": "exact", "independence": "indep", "mean_field": "mf",
             "exact_last_layer": "seed"}
    cols = [(n, k) for n in THEORIES for k in ("mean", "second_moment")
            if any(k in r["predicted"].get(n, {}) for r in rows)]
    head = f"{'layer':>5} {'units':>5} {'E[delta]':>11} {'se':>9} {'E[delta^2]':>11} {'se':>9}"
    for n, k in cols:
        label = short[n] + (" E[d]" if k == "mean" else " E[d^2]")
        head += f" | {label:>12} {'z':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        m, z = r["measured"], z_scores(r)
        line = (f"{r['layer']:>5} {r['units']:>5} {m['mean']:>11.4g} {m['mean_se']:>9.2g} "
                f"{m['second_moment']:>11.4g} {m['second_moment_se']:>9.2g}")
        for n, k in cols:
            p = r["predicted"].get(n, {})
            line += (f" | {p[k] + 0.0:>12.4g} {_z_text(z[(n, k)], p.get('anchored')):>8}"
                     if k in p else f" | {'-':>12} {'':>8}")
        lines.append(line)
    lines.append("z = (prediction - measurement) / standard error (the measurement's and, for "
                 "exact, its own integration error)")
    forward = {r["forward"] for r in rows if "forward" in r}
    if forward:
        lines.append("forward model of the predictions: " + ", ".join(
            f"{f} ({FORWARD_TEXT[f]})" for f in sorted(forward)))
    if any(p.get("anchored") for r in rows for p in r["predicted"].values()):
        lines.append(ANCHORED_NOTE)
    if any(r["measured"].get("se_within_network_only") for r in rows):
        lines.append(K1_NOTE)
    return "\n".join(lines)


def _z_text(z, anchored) -> str:
    return "anchored" if anchored else "n/a" if z is None else f"{z:.1f}"


def to_json(rows) -> str:
    """The rows as JSON (the format of ``deltaprop stats --json``)."""
    return json.dumps(rows, indent=2)


#: the columns of :func:`flat` (and of ``deltaprop stats --csv``)
FLAT_COLUMNS = ("layer", "units", "theory", "moment", "measured", "se", "predicted", "z",
                "note")


def flat(rows) -> list[dict]:
    """One dict per (layer, theory, moment), keys :data:`FLAT_COLUMNS`: measured, se,
    predicted, z (``None`` where :func:`z_scores` gives none; the measurement's own rows have
    theory "" and no prediction) and a note ("anchored", or "se within one network")."""
    out = []
    for r in rows:
        m, z = r["measured"], z_scores(r)
        within = "se within one network" if m.get("se_within_network_only") else ""
        base = {"layer": r["layer"], "units": r["units"]}
        for k in MOMENTS:
            out.append({**base, "theory": "", "moment": k, "measured": m[k],
                        "se": m[k + "_se"], "predicted": None, "z": None, "note": within})
        for name, p in r["predicted"].items():
            for k in MOMENTS:
                if k in p:
                    out.append({**base, "theory": name, "moment": k, "measured": m[k],
                                "se": m[k + "_se"], "predicted": p[k], "z": z[(name, k)],
                                "note": "anchored" if p.get("anchored") else within})
    return out


def to_csv(rows) -> str:
    """:func:`flat` as CSV (empty cells where a value is ``None``)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, FLAT_COLUMNS)
    w.writeheader()
    w.writerows(flat(rows))
    return buf.getvalue()

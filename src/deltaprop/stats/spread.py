"""The spread of E[delta[l]^2] between networks, measured and predicted; how many networks.

Each network k of an ensemble has its own average Q_l^(k) = E[delta[l]^2] over its units
and samples (:meth:`Record.network_means`).  At finite width Q_l differs from network to
network (Hanin 2018); the ensemble's mean estimates E[delta[l]^2] over the weights with
relative standard error sqrt(rel_var / K), rel_var = Var[Q_l] / E[Q_l]^2.  So

* :func:`measured` -- the spread over the K >= 2 recorded networks: Var[log Q_l] and
  rel_var with standard errors (:func:`deltaprop.theory.finite_width.spread_of`);
* :func:`predicted` -- finite-width theory, where it applies (:func:`applies`): one input
  per network (``--samples 1``), i.i.d. zero-mean weights (an untrained ensemble), and
  either the MSE loss's delta[L] with ReLU hidden layers (zero hidden biases, Gaussian
  weights: the exact law, :func:`~deltaprop.theory.finite_width.relu_law`) or the probe
  delta[L] = u (:func:`probe_record`; the exact law for ReLU, the leading order in 1/n,
  :func:`~deltaprop.theory.finite_width.log_variance`, for any elementwise activation);
* :func:`add_rows`, :func:`table`, :func:`plan_line` -- the rows' ``"spread"`` entry, the
  table and the line "to resolve E[delta[1]^2] to 1% takes about K = ... networks"
  (``K = rel_var / rel_se^2``, :func:`~deltaprop.theory.finite_width.networks_needed`).

With K = 1 nothing is measured (the table's se is within one network) and only the
prediction, where it applies, is shown.  With more than one sample per network no theory
here applies: averaging over samples shrinks the spread by an amount that gradient
independence gets wrong (docs/signal.md, "Finite width").
"""

from __future__ import annotations

import math

import numpy as np

from .. import _backend
from .. import activations as _act
from .. import losses as _losses
from .._checks import one_hot
from ..backprop import forward as _forward
from ..theory import finite_width as _fw
from . import ensemble as _ens

__all__ = ["measured", "predicted", "applies", "add_rows", "table", "plan_line",
           "study_spread", "probe_record", "probe_study", "probe_spread", "KEY", "GAUSSIAN_LAWS"]

#: the key of the comparison rows (and of ``deltaprop stats --spread --json``)
KEY = "spread"
#: initialisers whose weights are Gaussian (the exact ReLU law needs them)
GAUSSIAN_LAWS = ("normal", "glorot_normal", "he_normal", "lecun_normal")
_FIELDS = ("log_var", "log_var_se", "rel_var", "rel_var_se")
_GIVEN = "no prediction for a given (trained) network: the theory is for i.i.d. weights"


def measured(record, q="delta") -> dict | None:
    """{l: spread of Q_l = the per-network E[q[l]^2]} for l = 1..L, or None when K < 2.

    Each entry has ``log_var`` = Var[log Q_l] and ``rel_var`` = Var[Q_l] / E[Q_l]^2 over
    the K networks (ddof 1) with their standard errors (delta method,
    :func:`~deltaprop.theory.finite_width.spread_of`).
    """
    if record.K < 2:
        return None
    out = {}
    for l in range(1, record.L + 1):
        s = _fw.spread_of(record.network_means(l, q)[1])
        out[l] = {k: float(s[k]) for k in _FIELDS}
    return out


def applies(prior, activations, loss=None, *, samples, top="mse") -> tuple[str | None, str]:
    """(method, note): ``"law"`` (exact), ``"leading"`` (leading order) or ``None`` with
    the reason no prediction applies.

    ``activations`` are f_1..f_L; ``top`` is "mse" (the loss's delta[L]) or "jacobian"
    (the probe, delta[L] = u).  Conditions: one sample per network; weights i.i.d. with
    mean 0 (not orthogonal, not a trained network's); hidden biases of mean 0.  With the
    loss: MSE, identity output, ReLU hidden layers without hidden biases, Gaussian
    weights.  With the probe: elementwise hidden layers (exact for ReLU without hidden
    biases with Gaussian weights, else leading order).
    """
    acts = [_act.get(f) for f in activations]
    L = prior.L
    if samples != 1:
        return None, ("no prediction with more than one sample per network: averaging over "
                      "samples shrinks the spread by an amount no formula here predicts "
                      "(docs/signal.md); --samples 1 gives one input per network")
    if prior.init == "empirical":
        return None, _GIVEN
    if prior.init == "orthogonal":
        return None, "no prediction for orthogonal weights: the theory is for i.i.d. weights"
    if any(prior.weight_mean[l] != 0 for l in range(1, L + 1)):
        return None, "no prediction with mu_w != 0: the theory is for zero-mean weights"
    if any(prior.bias_mean[l] != 0 for l in range(1, L)):
        return None, "no prediction with hidden biases of nonzero mean"
    if not all(f.elementwise for f in acts[:-1]):
        return None, "no prediction for a non-elementwise hidden layer"
    exact = (all(f.name == "relu" for f in acts[:-1]) and prior.init in GAUSSIAN_LAWS
             and all(prior.bias_var[l] == 0 for l in range(1, L)))
    if top == "jacobian":
        return ("law", "exact law") if exact else \
            ("leading", "leading order in 1/n (its O(1/n^2) is not in the se)")
    loss = _losses.get(loss)
    if loss.name != "mse" or acts[-1].name != "identity":
        return None, "no prediction for this loss: the theory's delta[L] is MSE's z[L] - y"
    if not exact:
        return None, ("with the loss's delta[L] only ReLU hidden layers (no hidden biases, "
                      "Gaussian weights) have a prediction; --probe gives the leading order "
                      "for any activation")
    return "law", "exact law"


def predicted(prior, activations, loss=None, *, samples, top="mse", x=None, y=None,
              input_mean=0.0, input_var=1.0, target_mean=0.0, target_var=1.0,
              draws=1 << 18, seed=0) -> tuple[dict | None, str]:
    """({l: {"log_var", "log_var_se", "rel_var", "rel_var_se", "method"}} or None, note).

    Inputs: ``x`` the one input row shared by every network (a data set; with ``y`` its
    target row), or ``None`` for Gaussian inputs N(input_mean, input_var) fresh per network
    with targets N(target_mean, target_var).  ``"law"``: :func:`~deltaprop.theory.
    finite_width.relu_spread` (``draws`` draws; the se is its integration error);
    ``"leading"``: :func:`~deltaprop.theory.finite_width.log_variance` (no se; rel_var =
    exp(log_var) - 1, the log-normal value).
    """
    method, note = applies(prior, activations, loss, samples=samples, top=top)
    if method is None:
        return None, note
    sizes, L, n0 = list(prior.sizes), prior.L, prior.sizes[0]
    if x is not None:
        x = np.asarray(x, float).reshape(-1)
        norm2, second, log_var_x = float(x @ x), float(x @ x) / n0, 0.0
        targets = None if y is None else _fixed_targets(np.asarray(y, float).reshape(-1))
    else:
        norm2 = _fw.gaussian_norm2(n0, input_mean, input_var)
        second = input_var + input_mean**2
        log_var_x = (2 * input_var**2 + 4 * input_mean**2 * input_var) / (n0 * second**2)
        targets = (target_mean, target_var)
    if method == "law":
        s = _fw.relu_spread(sizes, prior.weight_var, top=top, x_norm2=norm2,
                            targets=targets if targets is not None else (0.0, 0.0),
                            bias_out=(prior.bias_mean[L], prior.bias_var[L]), draws=draws,
                            seed=seed)
        return {l: {**{k: float(s[k][l]) for k in _FIELDS}, "method": method}
                for l in range(1, L + 1)}, note
    v = _fw.log_variance(sizes, list(activations), prior.weight_var, prior.bias_var,
                         input_second=second, input_log_var=log_var_x)
    return {l: {"log_var": float(v[l]), "log_var_se": 0.0,
                "rel_var": float(math.expm1(v[l])), "rel_var_se": 0.0, "method": method}
            for l in range(1, L + 1)}, note


def _fixed_targets(y):
    """``rng, n -> (n, n_L)``: the one target row y for every draw."""
    def draw(rng, n):
        return np.broadcast_to(y, (n, y.size))
    return draw


def add_rows(rows, meas, pred, rel_se=0.01) -> list[dict]:
    """The rows with ``row["spread"]``: ``measured`` and ``predicted`` (each a dict of
    :data:`_FIELDS` or None), ``z`` = (predicted - measured) Var[log Q] / se (None where
    either is missing), ``rel_se`` and ``networks`` = K for that relative standard error,
    from the measured rel_var when there is one, else the predicted (``networks_from``)."""
    if not rel_se > 0:
        raise ValueError(f"rel_se (--rel-se) must be > 0, got {rel_se}")
    out = []
    for r in rows:
        l = r["layer"]
        m = None if meas is None else meas.get(l)
        p = None if pred is None else pred.get(l)
        z = None
        if m is not None and p is not None:
            se = math.hypot(m["log_var_se"], p["log_var_se"])
            diff = p["log_var"] - m["log_var"]
            z = diff / se if se > 0 else (0.0 if diff == 0 else math.inf)
        src = m if m is not None else p
        out.append({**r, KEY: {
            "measured": m, "predicted": p, "z": z, "rel_se": rel_se,
            "networks": None if src is None else _fw.networks_needed(src["rel_var"], rel_se),
            "networks_from": None if src is None else ("measured" if m is not None else
                                                       "predicted")}})
    return out


def table(rows, note="") -> str:
    """A text table of the rows' spread: measured Var[log E[delta^2]] with se, predicted
    with se and z, and K for the rows' relative standard error."""
    p = rows[0][KEY]["rel_se"]
    head = (f"{'layer':>5} {'units':>5} {'Var[log]':>10} {'se':>8} {'rel var':>9} | "
            f"{'theory':>10} {'se':>8} {'z':>6} | {f'K for {100 * p:g}%':>11}")
    lines = ["between networks: Var[log E[delta[l]^2]] of the per-network averages", head,
             "-" * len(head)]
    for r in rows:
        s = r[KEY]
        m, pr = s["measured"], s["predicted"]
        line = f"{r['layer']:>5} {r['units']:>5} "
        line += (f"{m['log_var']:>10.4g} {m['log_var_se']:>8.2g} {m['rel_var']:>9.4g}" if m
                 else f"{'n/a':>10} {'':>8} {'':>9}")
        z = "" if s["z"] is None else f"{s['z']:.1f}"
        line += (f" | {pr['log_var']:>10.4g} {pr['log_var_se']:>8.2g} {z:>6}" if pr
                 else f" | {'-':>10} {'':>8} {'':>6}")
        line += f" | {s['networks'] if s['networks'] is not None else '-':>11}"
        lines.append(line)
    if any(r[KEY]["measured"] is None for r in rows):
        lines.append("n/a: K = 1, the spread between networks is not measured")
    if note:
        lines.append("theory: " + note)
    return "\n".join(lines)


def plan_line(meas, pred, rel_se=0.01, K=1, layer=1, note="") -> str:
    """"to resolve E[delta[1]^2] to 1% takes about K = ... networks", from the measured
    spread (K >= 2, with its relative uncertainty) or the prediction, or why neither."""
    what = f"to resolve E[delta[{layer}]^2] to {100 * rel_se:g}% (relative standard error)"
    if meas is not None:
        m = meas[layer]
        k = _fw.networks_needed(m["rel_var"], rel_se)
        unc = m["rel_var_se"] / m["rel_var"] if m["rel_var"] > 0 else 0.0
        return (f"{what} takes about K = {k} networks (the spread measured over {K} "
                f"networks, +-{100 * unc:.0f}% at one large-K se)")
    if pred is not None:
        k = _fw.networks_needed(pred[layer]["rel_var"], rel_se)
        return f"{what} takes about K = {k} networks (finite-width theory, {note})"
    return (f"{what}: not known with K = 1 -- the spread between networks is not measured, "
            f"and {note[0].lower() + note[1:] if note else 'no theory applies'}")


def study_spread(record, prior, activations, study=None, *, top="mse", draws=1 << 18):
    """(measured, predicted, note) for a recorded study: :func:`measured` on the record,
    :func:`predicted` for the study's prior and inputs (``study`` a
    :class:`~deltaprop.stats.study.Study`; None, e.g. a model file: no prediction)."""
    meas = measured(record)
    if study is None:
        return meas, None, _GIVEN
    samples = int(record.count)
    x = y = None
    if study.inputs != "gaussian" and samples == 1:  # the one data row every network sees
        from .study import load_inputs

        xs, ys, _, _, _, nL = load_inputs(study)
        x = xs.reshape(-1, xs.shape[-1])[0]
        y = np.asarray(ys, float).reshape(-1)[:1] if np.ndim(ys) == 1 else \
            np.asarray(ys, float).reshape(-1, nL)[0]
        if np.ndim(ys) == 1:  # class labels: one-hot
            y = one_hot(y[:1].astype(int), nL)[0]
    pred, note = predicted(prior, activations, study.loss, samples=samples, top=top, x=x,
                           y=y, input_mean=study.input_mean, input_var=study.input_var,
                           target_mean=study.target_mean, target_var=study.target_var,
                           draws=draws, seed=study.seed + 5)
    return meas, pred, note


# ----------------------------------------------------------------- the probe: delta[L] = u
def probe_record(net, x, u, *, batch_size=None, bins=None):
    """The :class:`~deltaprop.stats.record.Record` of the backward pass of the probe
    u . z[L]: delta[L] = u for every sample (Hanin's setting: a row of the Jacobian).

    ``u`` is (n_L,) or, for a stack, (K, n_L) (one direction per network).  Made with the
    MSE loss and an identity output: delta[L] = z[L] - y with y = z[L] - u, then
    delta[l] = (delta[l+1] W[l+1]) * f_l'(z[l]) as always; the forward statistics are the
    network's own.
    """
    from .record import record as _record

    if net.activations[-1].name != "identity":
        raise ValueError("the probe needs an identity output layer")
    xp = net.xp
    zL = _forward(net, x).z[net.L]
    u = _backend.asarray(np.asarray(u, float), xp, like=zL)
    u = u[..., None, :] if net.K else u
    return _record(net, x, zL - u, "mse", batch_size=batch_size, bins=bins)


def probe_study(study):
    """``(record, prior, activations)`` of a study's ensemble under the probe: K networks
    drawn from the study's prior with an identity output, each with its own random unit
    vector u, the study's inputs; drawn ``study.K_chunk`` networks at a time (seeds as in
    :func:`~deltaprop.stats.study.run_study`)."""
    from .study import layer_activations, load_inputs

    x, _, _, _, n0, nL = load_inputs(study)
    sizes = list(study.sizes)
    sizes[0], sizes[-1] = sizes[0] or n0, sizes[-1] or nL
    acts = layer_activations(study.activations, "identity", len(sizes) - 1)
    acts[-1] = _act.get("identity")
    pr = _ens.prior(sizes, init=study.init, weight_mean=study.weight_mean,
                    weight_std=study.weight_std, sigma_w2=study.sigma_w2,
                    sigma_b2=study.sigma_b2, bias_mean=study.bias_mean)
    chunk = min(study.K_chunk or study.K, study.K)
    rec = None
    for i, k0 in enumerate(range(0, study.K, chunk)):
        k = min(chunk, study.K - k0)
        seed = study.seed if chunk == study.K else np.random.default_rng([study.seed, i])
        net = _ens.draw(pr, acts, K=k, seed=seed, dtype=study.dtype, backend=study.backend,
                        device=study.device)
        xx = x if x.ndim == 2 else x[k0:k0 + k]
        if study.backend not in (None, "numpy"):
            xx = _backend.asarray(xx, net.xp, like=net.W[1])
        u = np.random.default_rng([study.seed, i, 4]).standard_normal((k, sizes[-1]))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        part = probe_record(net, xx, u, batch_size=study.batch_size)
        rec = part if rec is None else rec.concat(part)
    return rec, pr, acts


def probe_spread(study, rel_se=0.01) -> tuple[list[dict], str]:
    """(rows, text) of ``deltaprop stats --probe``: :func:`probe_study`, the measured and
    predicted spread of layers 1..L-1 (delta[L] = u has none), the table and the K line."""
    rec, prior, acts = probe_study(study)
    x = None
    if study.inputs != "gaussian" and rec.count == 1:  # the one data row every network sees
        from .study import load_inputs

        xs = load_inputs(study)[0]
        x = xs.reshape(-1, xs.shape[-1])[0]
    meas = measured(rec)
    pred, note = predicted(prior, acts, samples=int(rec.count), top="jacobian", x=x,
                           input_mean=study.input_mean, input_var=study.input_var,
                           seed=study.seed + 5)
    rows = add_rows([{"layer": l, "units": int(rec.sizes[l])} for l in range(1, rec.L)],
                    meas, pred, rel_se)
    text = (f"probe u . z[L]: K = {rec.K} networks, sizes {list(rec.sizes)}, "
            f"{int(rec.count)} samples per network\n" + table(rows, note) + "\n"
            + plan_line(meas, pred, rel_se, rec.K, note=note))
    return rows, text

"""The E[delta] question at every layer: deltaprop's predictions against an independent
plain-NumPy Monte Carlo over many networks.

    python examples/edelta_every_layer.py                 # 20000 networks per setting
    python examples/edelta_every_layer.py --networks 2000 --markdown table.md

Settings (the question's, one layer deeper): 16-32-32-4 and 16-32-32-32-4, sigmoid and
tanh hidden layers, a linear output and MSE, every weight i.i.d. N(mu_w, 0.3^2) with
mu_w in {-0.2, 0.05, 0.1}, no biases, inputs N(0.5, 1), targets N(1, 0.25).  The Monte
Carlo below uses nothing of deltaprop; the predictions come from ``deltaprop stats``'s
own study (``run_study``) recording only 32 networks.  Acceptance: every hidden layer's
``exact`` prediction within max(2%, 3 standard errors) of the Monte Carlo.  The Monte
Carlo results are cached (``--cache``) so the table can be remade quickly.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np


def _sig(z):
    return 0.5 * (1 + np.tanh(z / 2))


F = {"sigmoid": (_sig, lambda z: _sig(z) * (1 - _sig(z))),
     "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}


def monte_carlo(sizes, act, mu, s, K, m, out="mse", seed=0, chunk=1000):
    """Per-network averages of delta[l] and delta[l]^2 by plain NumPy.

    Weights N(mu, s^2), no biases, inputs N(0.5, 1); the output error is z - y with
    y ~ N(1, 0.25) (``out="mse"``, linear output), softmax(z) - one-hot of a uniform label
    (``"softmax"``) or sigmoid(z) - U(0, 1) (``"sigmoid"``).  Returns
    ``{l: (mean, se, second, se)}`` with se = sd(per-network averages) / sqrt(K).
    """
    f, df = F[act]
    rng = np.random.default_rng(seed)
    L, nL = len(sizes) - 1, sizes[-1]
    per = {l: [] for l in range(1, L + 1)}
    for k0 in range(0, K, chunk):
        k = min(chunk, K - k0)
        W = [None] + [mu + s * rng.standard_normal((k, sizes[l], sizes[l - 1]))
                      for l in range(1, L + 1)]
        a, z = [0.5 + rng.standard_normal((k, m, sizes[0]))], [None]
        for l in range(1, L + 1):
            z.append(a[-1] @ W[l].transpose(0, 2, 1))
            a.append(f(z[-1]) if l < L else z[-1])
        if out == "mse":
            d = z[L] - (1 + 0.5 * rng.standard_normal((k, m, nL)))
        elif out == "softmax":
            e = np.exp(z[L] - z[L].max(-1, keepdims=True))
            d = e / e.sum(-1, keepdims=True) - np.eye(nL)[rng.integers(0, nL, (k, m))]
        else:
            d = _sig(z[L]) - rng.uniform(size=(k, m, nL))
        for l in range(L, 0, -1):
            per[l].append(np.stack([d.mean((1, 2)), (d * d).mean((1, 2))], 1))
            if l > 1:
                d = (d @ W[l]) * df(z[l - 1])
    res = {}
    for l, v in per.items():
        v = np.concatenate(v)
        mean, se = v.mean(0), v.std(0, ddof=1) / math.sqrt(len(v))
        res[l] = (float(mean[0]), float(se[0]), float(mean[1]), float(se[1]))
    return res


SETTINGS = [(sizes, act, mu) for sizes in ((16, 32, 32, 4), (16, 32, 32, 32, 4))
            for act in ("sigmoid", "tanh") for mu in (-0.2, 0.05, 0.1)]

#: (label, theory key, forward model); each predictor as deltaprop stats prints it
PREDICTORS = [("exact (law)", "exact", "law"), ("exact (measured, K = 32)", "exact", "measured"),
              ("question's formula (law)", "exact_last_layer", "law"),
              ("question's formula (Gaussian)", "exact_last_layer", "gaussian"),
              ("independence (law)", "independence", "law"),
              ("independence (Gaussian)", "independence", "gaussian")]


def predictions(sizes, act, mu, K=32, seed=0):
    """{forward: rows} of deltaprop's own study (``deltaprop stats``) on K networks."""
    from deltaprop.stats import Study, run_study

    out = {}
    for fwd in ("law", "measured", "gaussian"):
        res = run_study(Study(sizes=sizes, activations=act, inputs="gaussian", input_mean=0.5,
                              input_var=1.0, target_mean=1.0, target_var=0.25, weight_std=0.3,
                              weight_mean=mu, K=K, m=64, bins=None, seed=seed, forward_model=fwd))
        out[fwd] = {r["layer"]: r["predicted"] for r in res.rows}
    return out


def compare(mc, preds, sizes):
    """Rows (layer, moment, predictor, value, error %, z, within max(2%, 3 se))."""
    rows = []
    for l in range(1, len(sizes) - 1):  # hidden layers
        mean, se, second, se2 = mc[l]
        for moment, meas, s in (("mean", mean, se), ("second_moment", second, se2)):
            for label, key, fwd in PREDICTORS:
                p = preds[fwd][l].get(key, {})
                if moment not in p:
                    continue
                v, ps = p[moment], p.get(moment + "_se", 0.0)
                err = 100 * (v / meas - 1)
                z = (v - meas) / math.hypot(s, ps)
                ok = abs(v - meas) <= max(0.02 * abs(meas), 3 * math.hypot(s, ps))
                rows.append((l, moment, label, meas, s, v, err, z, ok))
    return rows


def summary(results):
    """Markdown: per setting and predictor, the worst error and z over the hidden layers."""
    lines = ["| network | f | mu_w | predictor | worst error | worst abs z | within |",
             "|---|---|---|---|---|---|---|"]
    for (sizes, act, mu), rows in results:
        for label, _, _ in PREDICTORS:
            mine = [r for r in rows if r[2] == label]
            if not mine:
                continue
            err = max(mine, key=lambda r: abs(r[6]))[6]
            z = max(abs(r[7]) for r in mine)
            ok = sum(r[8] for r in mine)
            lines.append(f"| {'-'.join(map(str, sizes))} | {act} | {mu} | {label} | "
                         f"{err:+.1f}% | {z:.1f} | {ok} of {len(mine)} |")
    return "\n".join(lines)


def full(results):
    """Markdown: every setting, hidden layer, moment and predictor."""
    lines = ["| network | f | mu_w | layer | moment | Monte Carlo | predictor | predicted "
             "| error | z | within |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (sizes, act, mu), rows in results:
        for l, moment, label, meas, s, v, err, z, ok in rows:
            lines.append(f"| {'-'.join(map(str, sizes))} | {act} | {mu} | {l} | "
                         f"{'E[d]' if moment == 'mean' else 'E[d^2]'} | {meas:.4g} +- {s:.1g} | "
                         f"{label} | {v:.4g} | {err:+.1f}% | {z:+.1f} | "
                         f"{'yes' if ok else '**no**'} |")
    return "\n".join(lines)


def run(networks=20000, samples=64, only=None, cache=None):
    """[(setting, rows)] for the chosen settings (indices into SETTINGS)."""
    cache = {} if cache is None else cache
    results = []
    for i, (sizes, act, mu) in enumerate(SETTINGS):
        if only is not None and i not in only:
            continue
        key = f"{','.join(map(str, sizes))}|{act}|{mu}|{networks}|{samples}"
        if key not in cache:
            cache[key] = {str(l): v for l, v in monte_carlo(
                sizes, act, mu, 0.3, networks, samples, seed=1000 + i).items()}
        mc = {int(l): v for l, v in cache[key].items()}
        results.append(((sizes, act, mu), compare(mc, predictions(sizes, act, mu), sizes)))
        print(f"{sizes} {act} mu_w = {mu}: done", file=sys.stderr)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", type=int, default=20000, help="Monte Carlo networks (20000)")
    ap.add_argument("--samples", type=int, default=64, help="inputs per network (64)")
    ap.add_argument("--only", default=None, help="comma list of setting indices (0-11)")
    ap.add_argument("--cache", default=None, help="JSON file for the Monte Carlo results")
    args = ap.parse_args(argv)
    path = Path(args.cache) if args.cache else None
    cache = json.loads(path.read_text()) if path and path.exists() else {}
    only = None if args.only is None else {int(i) for i in args.only.split(",")}
    results = run(args.networks, args.samples, only, cache)
    if path:
        path.write_text(json.dumps(cache, indent=1))
    print("## Summary\n\n" + summary(results) + "\n\n## Every layer\n\n" + full(results))
    failures = sum(not r[8] for _, rows in results for r in rows if r[2] == "exact (law)")
    print(f"exact (law) outside max(2%, 3 se): {failures}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

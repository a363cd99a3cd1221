"""The figure and tables of docs/signal.md's section "Finite width: how many networks".

    python examples/finite_width.py [--force] [--out docs/img/finite_width.png]

Measures Var[log E[delta[l]^2]] between networks (E[delta[l]^2] averaged over each
network's units and samples; ``deltaprop.stats.spread``) for networks of width 32, 64 and
128 with 8 hidden layers and Gaussian inputs (n_0 = 32, 10 outputs), and draws it against
beta_l = sum_{k=l}^{L-1} 1 / n_k (depth / width):

* left, one input per network (K = 2000): ReLU (sigma_w^2 = 2) with delta[L] = u, Hanin's
  setting, beside sum_k V(n_k); ReLU with the MSE loss beside its exact law; tanh
  (sigma_w^2 = 1, the edge of chaos) with delta[L] = u beside the leading order in 1/n;
* right, 128 samples per network (K = 400): ReLU with the MSE loss, the true backward pass
  and the same forward pass back-propagated through an independent copy of the weights
  (gradient independence), beside the one-input law.

Prints the tables of the docs in Markdown.  About three minutes on one core.  An existing
figure is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deltaprop.app import files as dio
from deltaprop.stats import spread as sp
from deltaprop.stats.study import Study, run_study
from deltaprop.theory import finite_width as fw

ROOT = Path(__file__).resolve().parents[1]
WIDTHS = (32, 64, 128)
HIDDEN = 8
COLOURS = {32: "C0", 64: "C1", 128: "C2"}


def _study(n, act, sigma_w2, m, K, **kw):
    return Study(sizes=(32, *[n] * HIDDEN, 10), activations=act, sigma_w2=sigma_w2,
                 inputs="gaussian", m=m, K=K, K_chunk=200, forward_model="gaussian", bins=None,
                 seed=n, **kw)


def _beta(sizes):
    """beta_l = sum_{k=l}^{L-1} 1 / n_k for l = 1..L (0 at the output)."""
    inv = 1 / np.array(sizes[1:-1], float)
    return np.append(np.cumsum(inv[::-1])[::-1], 0.0)


def measure():
    from threadpoolctl import threadpool_limits

    out = {}
    with threadpool_limits(1, user_api="blas"):
        for n in WIDTHS:
            st = _study(n, "relu", 2.0, 1, 2000)
            rec, prior, acts = sp.probe_study(st)
            out[("relu probe", n)] = (rec, prior, *sp.predicted(prior, acts, samples=1,
                                                               top="jacobian", seed=1))
            res = run_study(st)
            out[("relu mse", n)] = (res.record, res.extra["prior"], *sp.predicted(
                res.extra["prior"], res.extra["activations"], "mse", samples=1, seed=2))
            if n > 32:
                rec, prior, acts = sp.probe_study(_study(n, "tanh", 1.0, 1, 2000))
                out[("tanh probe", n)] = (rec, prior, *sp.predicted(prior, acts, samples=1,
                                                                   top="jacobian"))
            res = run_study(_study(n, "relu", 2.0, 128, 400, gradient_independence=True))
            out[("relu mse m=128", n)] = (res.record, res.extra["prior"], None, "")
            out[("relu mse m=128 gi", n)] = (res.extra["gradient_independence"],
                                             res.extra["prior"], None, "")
    return out


def _series(entry, last):
    rec, prior = entry[:2]
    meas = sp.measured(rec)
    layers = range(1, last + 1)
    v = np.array([meas[l]["log_var"] for l in layers])
    se = np.array([meas[l]["log_var_se"] for l in layers])
    p = None if entry[2] is None else np.array([entry[2][l]["log_var"] for l in layers])
    return _beta(prior.sizes)[: last], v, se, p


def figure(res):
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    one, many = fig.subplots(1, 2)
    L = HIDDEN + 1
    for (kind, n), entry in res.items():
        c = COLOURS[n]
        if kind == "relu probe":
            b, v, se, p = _series(entry, L - 1)
            one.errorbar(b, v, 2 * se, fmt="o", ms=3, color=c, label=f"relu, u, n = {n}")
            one.plot(b, p, color=c, lw=1)
        elif kind == "relu mse":
            b, v, se, p = _series(entry, L)
            one.errorbar(b, v, 2 * se, fmt="s", ms=3, mfc="none", color=c,
                         label=f"relu, MSE, n = {n}")
            one.plot(b, p, color=c, lw=1, ls="--")
        elif kind == "tanh probe":
            b, v, se, p = _series(entry, L - 1)
            one.errorbar(b, v, 2 * se, fmt="^", ms=3, color=c, label=f"tanh, u, n = {n}")
            one.plot(b, p, color=c, lw=1, ls=":")
        elif kind == "relu mse m=128":
            b, v, se, _ = _series(entry, L)
            many.errorbar(b, v, 2 * se, fmt="s", ms=3, color=c, label=f"true, n = {n}")
            law = res[("relu mse", n)][2]
            many.plot(b, [law[l]["log_var"] for l in range(1, L + 1)], color=c, lw=1,
                      ls="--", label=f"one input: exact law, n = {n}")
        else:
            b, v, se, _ = _series(entry, L)
            many.errorbar(b, v, 2 * se, fmt="x", ms=4, color=c,
                          label=f"gradient independence, n = {n}")
    x = np.linspace(0, HIDDEN / 32, 50)
    one.plot(x, 5 * x, color="k", lw=0.6, label=r"$5\beta$ (Hanin's ReLU constant)")
    one.set_title("one input per network, K = 2000: measured (2 se) and theory (lines)",
                  fontsize=9)
    many.set_title("128 inputs per network, K = 400: no theory (gradient independence fails)",
                   fontsize=9)
    for ax in (one, many):
        ax.set_xlabel(r"$\beta_l = \sum_{k=l}^{L-1} 1/n_k$ (depth / width)")
        ax.set_ylabel(r"Var[log E[$\delta[l]^2$]] between networks")
        ax.legend(fontsize=6.5, ncol=2)
    return fig


def _pm(v, se):
    return f"{v:.4g} ({se:.2g})"


def tables(res):
    L = HIDDEN + 1
    lines = []
    for kind, last in (("relu probe", L - 1), ("relu mse", L), ("tanh probe", L - 1)):
        widths = [n for n in WIDTHS if (kind, n) in res]
        lines += ["", f"{kind}: measured (se) | theory | z", "| layer | " + " | ".join(
            f"n = {n}: measured (se) | theory | z" for n in widths) + " |",
            "|---" * (1 + 3 * len(widths)) + "|"]
        for l in range(1, last + 1):
            row = [str(l)]
            for n in widths:
                rec, _, pred, _ = res[(kind, n)]
                m = sp.measured(rec)[l]
                se = np.hypot(m["log_var_se"], pred[l]["log_var_se"])
                row += [_pm(m["log_var"], m["log_var_se"]), f"{pred[l]['log_var']:.4g}",
                        f"{(pred[l]['log_var'] - m['log_var']) / se:.1f}"]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| layer | " + " | ".join(f"n = {n}: true (se) | gi (se) | one-input law"
                                            for n in WIDTHS) + " |",
              "|---" * (1 + 3 * len(WIDTHS)) + "|"]
    for l in range(1, L + 1):
        row = [str(l)]
        for n in WIDTHS:
            t, g = (sp.measured(res[(k, n)][0])[l] for k in ("relu mse m=128",
                                                             "relu mse m=128 gi"))
            row += [_pm(t["log_var"], t["log_var_se"]), _pm(g["log_var"], g["log_var_se"]),
                    f"{res[('relu mse', n)][2][l]['log_var']:.4g}"]
        lines.append("| " + " | ".join(row) + " |")
    rel = {n: sp.measured(res[("relu mse m=128", n)][0])[1]["rel_var"] for n in WIDTHS}
    lines += ["", "K for 1% at layer 1, 128 inputs per network: " + ", ".join(
        f"n = {n}: {fw.networks_needed(r, 0.01)}" for n, r in rel.items())]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "finite_width.png"))
    p.add_argument("--force", action="store_true", help="replace an existing figure")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; use --force to replace it", file=sys.stderr)
        return 2
    res = measure()
    buf = io.BytesIO()
    figure(res).savefig(buf, format="png", dpi=90)
    dio.atomic_write_bytes(out, buf.getvalue())
    print(tables(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())

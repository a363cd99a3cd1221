"""The figure and tables of docs/training.md's section "Per-layer statistics during training".

    python examples/layer_stats.py [--force] [--out docs/img/layer_stats.png]

Nielsen's experiment ("Neural Networks and Deep Learning", ch. 5) on the digits: a
[64, 30, 30, 30, 10] sigmoid network with cross-entropy, weights N(0, 1/n_in) and biases
N(0, 1) (his initialisation: ``lecun_normal``, ``bias_std=1``), trained by gradient descent
(eta = 0.1, minibatches of 10) for 30 epochs on 1000 standardised digits, with
:class:`deltaprop.stats.layer_stats.LayerStatsCallback` recording E[delta^2], ||db||, ||dW||
and ||W - W_0|| / ||W_0|| per layer after every epoch.  Then 200 networks drawn at
initialisation against the theory (the batch-gradient theory of
:mod:`deltaprop.theory.batch_gradient`), and the relative distance the weights travel at
widths 30 and 300 (lazy against feature learning).  Prints the tables of the docs in
Markdown.  About a minute on one core.  An existing figure is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from pathlib import Path

import numpy as np

from deltaprop import Network
from deltaprop.app import data
from deltaprop.app import files as dio
from deltaprop.app.train import fit
from deltaprop.stats.ensemble import prior
from deltaprop.stats.layer_stats import LayerStatsCallback, layer_stats, table

ROOT = Path(__file__).resolve().parents[1]
LOSS = "sigmoid-cross-entropy"
OPTS = dict(optimizer="gd", learning_rate=0.1, batch_size=10, epochs=30, seed=0)


def digits(m=1000):
    ds = data.load("digits")
    x = (ds.x - ds.x.mean(0)) / np.where(ds.x.std(0) > 0, ds.x.std(0), 1.0)
    i = np.random.default_rng(0).permutation(len(x))[:m]
    return x[i], data.one_hot(ds.y[i], 10)


def network(hidden=30, seed=0):
    return Network.init([64, hidden, hidden, hidden, 10], "sigmoid", "sigmoid",
                        init="lecun_normal", bias_std=1.0, seed=seed)


def run(x, y, hidden=30):
    net = network(hidden)
    pr = prior(net.sizes, init="lecun_normal", sigma_b2=1.0)
    cb = LayerStatsCallback(x, y, LOSS, net, prior=pr, max_pairs=1 << 18)
    res = fit(net, x, y, LOSS, callbacks=[cb], **OPTS)
    return cb, res


def ensemble(x, y, theory, K=200):
    """Root mean squares of ||db[l]|| and E[delta^2] over K networks at initialisation,
    with their standard errors, beside the theory; and the ratio of consecutive layers."""
    vals = [layer_stats(network(seed=100 + k), x, y, LOSS) for k in range(K)]
    lines = ["| layer | E[delta^2], 200 networks | theory | sqrt E[norm(db)^2], 200 networks "
             "| theory | spread between networks |", "|---|---|---|---|---|---|"]
    for l in range(1, 5):
        d = np.array([v[l]["delta2"] for v in vals])
        b2 = np.array([v[l]["db_norm"] ** 2 for v in vals])
        rms = math.sqrt(b2.mean())
        lines.append(f"| {l} | {d.mean():.4g} +- {d.std(ddof=1) / math.sqrt(K):.2g} | "
                     f"{theory[l]['delta2']:.4g} | {rms:.4g} +- "
                     f"{b2.std(ddof=1) / math.sqrt(K) / (2 * rms):.2g} | "
                     f"{theory[l]['db_norm']:.4g} | "
                     f"{np.std([v[l]['db_norm'] for v in vals]) / rms:.0%} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "layer_stats.png"))
    p.add_argument("--force", action="store_true", help="replace an existing figure")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; use --force to replace it", file=sys.stderr)
        return 2
    x, y = digits()
    cb, res = run(x, y)
    buf = io.BytesIO()
    cb.plot(title="[64, 30, 30, 30, 10] sigmoid on 1000 digits (Nielsen's experiment)").savefig(
        buf, format="png", dpi=90)
    dio.atomic_write_bytes(out, buf.getvalue())
    rows = [{"epoch": 0, **{f"{q}[{l}]": v for l, e in cb.initial_stats.items()
                            for q, v in e.items()}}, *res.history.as_rows()]
    print(table(rows, cb.theory))
    print(f"final training loss {res.history.epochs[-1]['loss']:.4f}, accuracy "
          f"{res.history.epochs[-1]['accuracy']:.4f}")
    for e in (0, 1, 5, 30):
        s = dict(cb.history)[e]
        print(f"epoch {e}: ||db[l]|| / ||db[l+1]|| = " + ", ".join(
            f"{s[l]['db_norm'] / s[l + 1]['db_norm']:.3g}" for l in (1, 2, 3)))
    print()
    print(ensemble(x, y, cb.theory))
    print()
    print("| hidden width | W_distance after 30 epochs, layers 1..4 | final loss |")
    print("|---|---|---|")
    for h in (30, 300):
        wide, r = (cb, res) if h == 30 else run(x, y, h)
        last = wide.history[-1][1]
        print(f"| {h} | " + ", ".join(f"{last[l]['W_distance']:.3g}" for l in range(1, 5))
              + f" | {r.history.epochs[-1]['loss']:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

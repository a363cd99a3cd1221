"""The figure and table of docs/signal.md's section "Weight-gradient statistics".

    python examples/weight_grads.py [--force] [--out docs/img/weight_grads.png]

Runs ``deltaprop stats --weight-grads``'s study (K = 16 tanh networks 64-64-64-64-64-10 on
the digits, MSE) for three initialisers -- Glorot & Bengio's normalised one (as a normal
law), their "standard" U(-1/sqrt(n), 1/sqrt(n)) and He normal -- and draws, per layer, the
measured E[(dJ_i/dW[l]_jk)^2] beside the exact, factorised and mean-field predictions, and
its ratio to layer 1 beside the exact theory's and the linear regime's (Glorot & Bengio's
eq. 14).  Prints the table of the docs in Markdown.  About half a minute on one core.  An
existing figure is replaced only with ``--force``.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from matplotlib.figure import Figure

from deltaprop.app import files as dio
from deltaprop.stats.study import Study, run_study
from deltaprop.stats.weight_grads import KEY, z_scores

ROOT = Path(__file__).resolve().parents[1]
INITS = {"glorot_normal": ("tab:blue", "Glorot normal"), "standard": ("tab:orange", "standard"),
         "he_normal": ("tab:green", "He normal")}


def measure():
    return {name: run_study(Study(init=name, weight_grads=True)) for name in INITS}


def figure(results):
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax, bx = fig.subplots(1, 2)
    for name, res in results.items():
        col, label = INITS[name]
        rows = res.rows
        layers = [r["layer"] for r in rows]
        m = [r[KEY]["measured"] for r in rows]
        p = [r[KEY]["predicted"] for r in rows]
        ax.errorbar(layers, [e["second_moment"] for e in m],
                    yerr=[2 * e["second_moment_se"] for e in m], fmt="o", color=col, ms=5,
                    capsize=3, label=f"{label}: measured (2 se)")
        ax.plot(layers, [e["exact"]["second_moment"] for e in p], "-", color=col, lw=1.2)
        ax.plot(layers, [e["factorised"]["second_moment"] for e in p], ":", color=col, lw=1.2)
        ax.plot(layers, [e["mean_field"]["second_moment"] for e in p], "--", color=col, lw=1)
        bx.errorbar(layers, [e["ratio"] for e in m],
                    yerr=[2 * (e["ratio_se"] or 0) for e in m], fmt="o", color=col, ms=5,
                    capsize=3, label=label)
        bx.plot(layers, [e["exact"]["ratio"] for e in p], "-", color=col, lw=1.2)
        bx.plot(layers, [e["linear_regime"]["ratio"] for e in p], "--", color=col, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("layer l")
    ax.set_ylabel("E[(dJ_i / dW[l]_jk)^2]")
    ax.set_title("line: exact, dotted: factorised, dashed: mean field", fontsize=9)
    ax.legend(fontsize=7)
    bx.set_xlabel("layer l")
    bx.set_ylabel("E[dW^2][l] / E[dW^2][1]")
    bx.set_title("ratio to layer 1 (eq. 14: flat); line: exact, dashed: linear regime",
                 fontsize=9)
    bx.legend(fontsize=7)
    for a in (ax, bx):
        a.set_xticks(layers)
    return fig


def table(results):
    lines = ["| init | layer | measured E[dW^2] | exact (z) | factorised (z) | mean field (z) "
             "| ratio to layer 1 | exact ratio | linear regime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for r in res.rows:
            e = r[KEY]
            m, p, z = e["measured"], e["predicted"], z_scores(e)

            def zt(n, z=z, p=p):
                return f"{p[n]['second_moment']:.4g} ({z[(n, 'second_moment')]:+.1f})"

            se = "" if r["layer"] == 1 else f" +- {m['ratio_se']:.2g}"
            lines.append(f"| {name} | {r['layer']} | {m['second_moment']:.4g} +- "
                         f"{m['second_moment_se']:.2g} | {zt('exact')} | {zt('factorised')} | "
                         f"{zt('mean_field')} | {m['ratio']:.3g}{se} | "
                         f"{p['exact']['ratio']:.3g} | {p['linear_regime']['ratio']:.3g} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "weight_grads.png"))
    p.add_argument("--force", action="store_true", help="replace an existing figure")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; use --force to replace it", file=sys.stderr)
        return 2
    results = measure()
    buf = io.BytesIO()
    figure(results).savefig(buf, format="png", dpi=90)
    dio.atomic_write_bytes(out, buf.getvalue())
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

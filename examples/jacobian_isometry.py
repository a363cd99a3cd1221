"""The figure and tables of docs/signal.md's section "Jacobian spectra and dynamical isometry".

    python examples/jacobian_isometry.py [--force] [--out docs/img/jacobian_isometry.png]

Records the squared singular values lambda of the input-output Jacobian of 16 networks of
width 256 (2 inputs each) at depths 1, 2, 4, ..., 64 on the edge of chaos, for

* tanh at q* = 0.01 with Gaussian and with orthogonal weights, and orthogonal at q* = 0.25;
* relu (sigma_w^2 = 2, sigma_b^2 = 0, its only critical point) with both,

draws the variance of lambda against depth beside the free-probability predictions and the
density of log10 lambda at depths 4 and 16 (tanh, q* = 0.01), and prints the tables of the
docs in Markdown.  About two minutes on one core.  An existing figure is replaced only
with ``--force``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deltaprop.app import files as dio
from deltaprop.stats.jacobian import JacobianStudy, run_jacobian
from deltaprop.theory.jacobian import fuss_catalan_density, jacobian_theory

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = (1, 2, 4, 8, 16, 32, 64)
COMMON = dict(width=256, depth=64, K=16, m=2, depths=DEPTHS, seed=0)
#: label -> (activation, init, q*, colour)
RUNS = {
    "tanh, Gaussian, q* = 0.01": ("tanh", "normal", 0.01, "C0"),
    "tanh, orthogonal, q* = 0.01": ("tanh", "orthogonal", 0.01, "C1"),
    "tanh, orthogonal, q* = 0.25": ("tanh", "orthogonal", 0.25, "C2"),
    "relu, Gaussian": ("relu", "normal", 1.0, "C3"),
    "relu, orthogonal": ("relu", "orthogonal", 1.0, "C4"),
}


def measure():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return {label: run_jacobian(JacobianStudy(activation=f, init=init, q_star=q, **COMMON))
                for label, (f, init, q, _) in RUNS.items()}


def figure(results):
    fig = Figure(figsize=(11, 4.0), layout="constrained")
    ax, dens = fig.subplots(1, 2, width_ratios=[1.1, 1])
    every = np.arange(1, DEPTHS[-1] + 1)
    for label, res in results.items():
        s, colour = res.setting, RUNS[label][3]
        th = jacobian_theory([s["activation"]] * len(every), s["sigma_w2"], s["sigma_b2"],
                             s["input_var"], s["weights"])
        ax.plot(every, th.variance, color=colour, lw=1)
        v = np.array([res.record.summary(l)["variance"] for l in DEPTHS])
        se = np.array([res.record.summary(l)["variance_se"] for l in DEPTHS])
        ax.errorbar(DEPTHS, v, yerr=2 * se, fmt="o", ms=4, color=colour, label=label)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("depth l")
    ax.set_ylabel(r"variance of $\lambda$ (squared singular values of J)")
    ax.set_title("on the edge of chaos: measured (width 256, 2 se) and free (lines)",
                 fontsize=9)
    ax.legend(fontsize=7)
    for l, ls in ((4, ":"), (16, "-")):
        for label in list(RUNS)[:2]:
            lam = results[label].record.lam[l].reshape(-1)
            dens.hist(np.log10(lam[lam > 0]), bins=np.linspace(-30, 3, 133), density=True,
                      histtype="step", ls=ls, color=RUNS[label][3],
                      label=f"{label.split(',')[1].strip()}, depth {l}")
        x, rho = fuss_catalan_density(l, 4000)
        dens.plot(np.log10(x), rho * x * math.log(10), color="k", lw=0.8, ls=ls,
                  label=f"Fuss-Catalan (q* -> 0), depth {l}")
    dens.set_yscale("log")
    dens.set_xlim(-30, 3)
    dens.set_ylim(1e-3, 50)
    dens.set_xlabel(r"$\log_{10} \lambda$")
    dens.set_ylabel("density")
    dens.set_title("tanh, q* = 0.01: Gaussian spreads, orthogonal stays at 1", fontsize=9)
    dens.legend(fontsize=7, loc="upper left")
    return fig


def _pm(mean, se, digits=4):
    return f"{mean:.{digits}g} ({se:.2g})"


def tables(results):
    g, o, o25 = (results[k] for k in list(RUNS)[:3])
    # m1 is predicted 1 at every depth (chi_1 = 1): only its measurement is shown
    lines = ["| depth | Gaussian m1 (se) | Gaussian var (se) | free: l mu2/mu1^2 | orthogonal "
             "m1 (se) | orthogonal var (se) | free: l (mu2/mu1^2 - 1) | orthogonal q* = 0.25 "
             "var (se) | free |", "|---" * 9 + "|"]
    for l in DEPTHS:
        row = [str(l)]
        for res, keys in ((g, ("m1", "variance")), (o, ("m1", "variance")),
                          (o25, ("variance",))):
            r = res.record.summary(l)
            th = res.theory
            for k in keys:
                row.append(_pm(r[k], r[k + "_se"]))
            row.append(f"{th.variance[l - 1]:.4g}")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "| depth | relu Gaussian var (se) | free: 2 l | relu orthogonal var (se) | "
              "free: l |", "|---" * 5 + "|"]
    for l in DEPTHS:
        row = [str(l)]
        for key in list(RUNS)[3:]:
            r = results[key].record.summary(l)
            row += [_pm(r["variance"], r["variance_se"]),
                    f"{results[key].theory.variance[l - 1]:.4g}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "img" / "jacobian_isometry.png"))
    p.add_argument("--force", action="store_true", help="replace an existing figure")
    args = p.parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.force:
        print(f"{out} exists; use --force to replace it", file=sys.stderr)
        return 2
    results = measure()
    fig = figure(results)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    dio.atomic_write_bytes(out, buf.getvalue())
    print(tables(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

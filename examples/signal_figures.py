"""The figures of docs/signal.md, one per section, remade from deltaprop itself.

    python examples/signal_figures.py            # all four, into docs/img/ (about a minute)
    python examples/signal_figures.py depth      # one: phase, depth, correlation, init

* ``signal_phase_diagram.png``  ``deltaprop theory --phase-diagram`` for tanh;
* ``signal_depth_scales.png``   xi_q, xi_c and the gradient depth scale against sigma_w^2
  at sigma_b^2 = 0.05, with 6 xi_c, as Schoenholz et al. (2017) draw them;
* ``signal_correlation.png``    c^l measured over 16 tanh networks of width 512 beside the
  C-map iteration, ordered / critical / chaotic, two input correlations;
* ``signal_initialisers.png``   the singular values of orthogonal and Gaussian W, and q^l
  measured through 20 tanh layers for each initialiser beside the length map.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from deltaprop.app import plot
from deltaprop.stats import correlation as corr
from deltaprop.stats import ensemble
from deltaprop.theory import signal as sg

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def phase():
    b2 = np.linspace(0.0, 0.3, 21)
    b2[0] = 3e-4
    data = sg.phase_diagram("tanh", np.linspace(5 / 31, 5.0, 31), b2)
    fig = plot.phase_diagram(data, point=(2.5, 0.05),
                             title="tanh: deltaprop theory --phase-diagram")
    fig.savefig(IMG / "signal_phase_diagram.png", dpi=90)


def depth():
    w2 = np.linspace(1.0, 4.0, 121)
    th = [sg.signal_theory("tanh", w, 0.05, edge=False) for w in w2]
    edge = sg.signal_theory("tanh", 1.0, 0.05).edge_of_chaos
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(w2, [t.xi_c for t in th], label=r"$\xi_c = -1/\log\chi_c$")
    ax.plot(w2, [t.xi_q for t in th], label=r"$\xi_q = -1/\log F'(q^*)$")
    ax.plot(w2, [abs(t.gradient_depth_scale) for t in th], ":",
            label=r"|gradient depth scale| $= 1/|\log\chi_1|$")
    ax.plot(w2, [6 * t.xi_c for t in th], "--", color="C0", alpha=0.6,
            label=r"$6\,\xi_c$: deepest trainable (Schoenholz et al.)")
    ax.axvline(edge, color="k", lw=0.8)
    ax.text(edge, 0.6, f" edge of chaos\n $\\sigma_w^2$ = {edge:.4f}", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylim(0.5, 2000)
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel("layers")
    ax.set_title(r"tanh, $\sigma_b^2 = 0.05$: depth scales of the mean-field network")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, alpha=0.3)
    fig.savefig(IMG / "signal_depth_scales.png", dpi=90)


def correlation(K=16, width=512, depth=30, pairs=32):
    from threadpoolctl import threadpool_limits

    fig = Figure(figsize=(10, 3.6), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    edge = sg.signal_theory("tanh", 1.0, 0.05).edge_of_chaos
    for ax, (w2, name) in zip(axes, ((1.3, "ordered"), (edge, "critical"), (3.0, "chaotic")),
                              strict=True):
        pr = ensemble.prior([64] + [width] * depth, sigma_w2=w2, sigma_b2=0.05)
        with threadpool_limits(1):
            net = ensemble.draw(pr, ["tanh"] * depth, K=K, seed=1)
        th = sg.signal_theory("tanh", w2, 0.05, edge=False)
        for i, c0 in enumerate((0.2, 0.9)):
            xa, xb = corr.correlated_inputs(pairs, 64, c0, 1.0, seed=2 + i, K=K)
            with threadpool_limits(1):
                rec = corr.record_correlation(net, xa, xb)
            pred, _ = corr.predict_correlation(pr, ["tanh"] * depth, c0)
            s = [rec.summary(l) for l in range(depth + 1)]
            ax.errorbar(range(depth + 1), [v["c"] for v in s], [2 * v["c_se"] for v in s],
                        fmt="o", ms=3, color=f"C{i}", label=f"measured, $c^0$ = {c0}")
            ax.plot(range(depth + 1), [p[1] for p in pred], "-", color=f"C{i}", lw=1,
                    label="C-map iteration" if i == 0 else None)
        ax.axhline(th.c_star, color="k", ls="--", lw=0.8, label=f"c* = {th.c_star:.3g}")
        depth6 = "inf" if math.isinf(th.xi_c) else f"{6 * th.xi_c:.0f}"
        ax.set_title(f"{name}: $\\sigma_w^2$ = {w2:.3g}, $6\\xi_c$ = {depth6}", fontsize=9)
        ax.set_xlabel("layer l")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_ylabel("correlation $c^l$ of $z[l]$")
    fig.suptitle(f"tanh, $\\sigma_b^2$ = 0.05: {K} networks of width {width}, {pairs} pairs "
                 "each (error bars 2 se)", fontsize=10)
    fig.savefig(IMG / "signal_correlation.png", dpi=90)


def init(K=8, width=256, depth=20):
    from threadpoolctl import threadpool_limits

    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    rng = np.random.default_rng(0)
    from deltaprop.init import init_layer

    # the same per-entry variance 1 / 512 for both: Gaussian singular values spread over
    # Marchenko-Pastur's [1 - sqrt(1/2), 1 + sqrt(1/2)], orthogonal ones all equal 1
    W, _ = init_layer("normal", rng, 512, 256, std=1 / math.sqrt(512))
    ax1.hist(np.linalg.svd(W, compute_uv=False), bins=40, range=(0, 2), density=True,
             histtype="stepfilled", alpha=0.5, label="Gaussian, Var = 1/512")
    W, _ = init_layer("orthogonal", rng, 512, 256)
    sv = np.linalg.svd(W, compute_uv=False)
    ax1.axvline(sv.mean(), color="C1", lw=2.5,
                label=f"orthogonal: all {sv.size} equal {sv.mean():.6f}")
    ax1.set_xlabel("singular values of W (512 x 256)")
    ax1.set_ylabel("density")
    ax1.set_title("the same variance per entry", fontsize=9)
    ax1.legend(fontsize=8)
    sizes = [width] * (depth + 1)
    for i, (name, mark) in enumerate((("standard", "o"), ("glorot_uniform", "s"),
                                      ("lecun_normal", "^"), ("orthogonal", "x"),
                                      ("he_normal", "d"))):
        pr = ensemble.prior(sizes, init=name)
        with threadpool_limits(1):
            net = ensemble.draw(pr, ["tanh"] * depth, K=K, seed=3)
        xa, xb = corr.correlated_inputs(32, width, 0.5, 1.0, seed=4, K=K)
        with threadpool_limits(1):
            rec = corr.record_correlation(net, xa, xb)
        pred, _ = corr.predict_correlation(pr, ["tanh"] * depth, 0.5)
        q = [rec.summary(l)["q"] for l in range(1, depth + 1)]
        ax2.semilogy(range(1, depth + 1), q, mark, ms=5, mfc="none", color=f"C{i}",
                     label=f"{name} ($\\sigma_w^2$ = {pr.sigma_w2(2):.3g})")
        ax2.semilogy(range(1, depth + 1), [p[0] for p in pred[1:]], "-", lw=1, color=f"C{i}")
    ax2.set_xlabel("layer l")
    ax2.set_ylabel(r"$q^l$ = mean $z[l]^2$")
    ax2.set_title(f"tanh, width {width}, {K} networks: measured (markers), length map (lines)",
                  fontsize=9)
    ax2.legend(fontsize=7)
    ax2.grid(True, alpha=0.3)
    fig.savefig(IMG / "signal_initialisers.png", dpi=90)


FIGURES = {"phase": phase, "depth": depth, "correlation": correlation, "init": init}

if __name__ == "__main__":
    IMG.mkdir(parents=True, exist_ok=True)
    for key in sys.argv[1:] or FIGURES:
        FIGURES[key]()
        print(f"wrote {key}")

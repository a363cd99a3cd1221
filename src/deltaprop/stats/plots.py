"""Figures of the laboratory (matplotlib with the Agg backend, imported lazily).

* :func:`plot_comparison`  measured E[delta] and E[delta^2] per layer (error bars: 2 se)
  beside every prediction;
* :func:`plot_histograms`  histograms of delta per layer, as in Glorot & Bengio (2010),
  Fig. 7 (back-propagated gradients at initialisation);
* :func:`plot_depth`       log10 E[delta^2] against the layer index (measured, mean field).

Each function writes one PNG (atomically: rendered in memory, then
:func:`deltaprop.app.files.atomic_write_bytes`) and returns its path.  Every figure has a title
(the caller's, else one naming what it shows); the histograms use a colour-blind-safe
palette with one distinct colour per layer, and a prediction whose line would hide under
another (equal to it at every layer) joins that one's legend entry instead of a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_comparison", "plot_histograms", "plot_depth", "write_all", "layer_colours"]

#: Paul Tol's "muted" qualitative scheme: nine colours distinct to colour-blind readers
TOL_MUTED = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677",
             "#882255", "#AA4499")
_STYLE = {"independence": ("#E69F00", "s", "independence (the E[delta] question)"),
          "mean_field": ("#009E73", "^", "mean field"),
          "exact_last_layer": ("#D55E00", "*", "exact, last hidden layer (the E[delta] question)")}


def layer_colours(L):
    """One colour per layer 1..L, distinct and colour-blind safe: Paul Tol's nine "muted"
    colours up to 9 layers, then the cividis map (made for colour-vision deficiency), whose
    neighbours :func:`plot_histograms` tells apart by line style."""
    if L <= len(TOL_MUTED):
        return list(TOL_MUTED[:L])
    import matplotlib

    cmap = matplotlib.colormaps["cividis"]
    return [cmap(0.95 * (l - 1) / (L - 1)) for l in range(1, L + 1)]


def _curves(rows, key):
    """{name: (layers, values)} of the predictions with ``key``; a curve equal (to 1e-9
    relative) to an earlier one at every layer joins its label instead of hiding under it."""
    out = {}
    for name in _STYLE:
        pts = [(r["layer"], r["predicted"][name][key]) for r in rows
               if key in r["predicted"].get(name, {})]
        if not pts:
            continue
        lx, ly = (np.array(v, float) for v in zip(*pts, strict=True))
        for ox, oy, labels in out.values():
            if np.array_equal(ox, lx) and np.allclose(oy, ly, rtol=1e-9, atol=0):
                labels.append(name)
                break
        else:
            out[name] = (lx, ly, [name])
    return out


def _measured_label(rows):
    """"measured (2 se)", saying so when the se covers one network's samples only (K = 1)."""
    one = any(r["measured"].get("se_within_network_only") for r in rows)
    return "measured (2 se of one network's samples)" if one else "measured (2 se)"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_comparison(rows, path, title=None):
    """Two panels: E[delta] and E[delta^2] (log scale) per layer, measured vs predicted."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    layers = np.array([r["layer"] for r in rows])
    for ax, key, se in ((axes[0], "mean", "mean_se"),
                        (axes[1], "second_moment", "second_moment_se")):
        y = np.array([r["measured"][key] for r in rows])
        e = np.array([r["measured"][se] for r in rows])
        ax.errorbar(layers, y, yerr=2 * e, fmt="o", color="k", ms=4, capsize=2,
                    label=_measured_label(rows))
        for name, (lx, ly, names) in _curves(rows, key).items():
            c, mk, _ = _STYLE[name]
            ax.plot(lx, ly, mk + ("-" if len(lx) > 1 else ""), color=c, lw=1,
                    ms=11 if mk == "*" else 6, label=" = ".join(_STYLE[n][2] for n in names),
                    alpha=0.8)
        ax.set_xlabel("layer l")
        ax.set_ylabel("E[delta]" if key == "mean" else "E[delta^2]")
        if key == "second_moment" and np.all(y > 0):
            ax.set_yscale("log")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    axes[0].axhline(0, color="0.7", lw=0.5)
    axes[0].set_title("mean of delta[l]", fontsize=9)
    axes[1].set_title("second moment of delta[l]", fontsize=9)
    fig.suptitle(title or "E[delta] and E[delta^2] per layer: measured and predicted",
                 fontsize=10)
    return _save(fig, plt, path)


def plot_histograms(record, path, title=None):
    """Normalised histograms of delta[l] for every layer (Glorot & Bengio 2010 style)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    L = record.L
    colours = layer_colours(L)
    for l in range(1, L + 1):
        h = record.hist.get(l)
        if h is None or h.total == 0:
            continue
        edges = h.edges
        centres = 0.5 * (edges[1:] + edges[:-1])
        density = np.where(h.counts > 0, h.counts / (h.total * np.diff(edges)), np.nan)
        ax.plot(centres, density, color=colours[l - 1], lw=1.4,
                ls=("-", "--", "-.", ":")[(l - 1) % 4] if L > len(TOL_MUTED) else "-",
                label=f"layer {l}")
    ax.set_xlabel("delta")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(title or "histograms of delta[l] per layer", fontsize=9)
    return _save(fig, plt, path)


def plot_depth(rows, path, title=None):
    """log10 E[delta^2] against the layer: measured (2 se) and every second-moment theory."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    layers = np.array([r["layer"] for r in rows])
    y = np.array([r["measured"]["second_moment"] for r in rows])
    e = np.array([r["measured"]["second_moment_se"] for r in rows])
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = np.log10(np.maximum(y - 2 * e, y * 1e-3)), np.log10(y + 2 * e)
        ax.errorbar(layers, np.log10(y), yerr=[np.log10(y) - lo, hi - np.log10(y)], fmt="o",
                    color="k", ms=4, capsize=2, label=_measured_label(rows))
    for name, (lx, ly, names) in _curves(rows, "second_moment").items():
        if len(lx) > 1:
            ax.plot(lx, np.log10(np.maximum(ly, 1e-300)), "-", color=_STYLE[name][0],
                    label=" = ".join(_STYLE[n][2] for n in names))
    ax.set_xlabel("layer l")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("log10 E[delta^2]")
    ax.legend(fontsize=7)
    ax.set_title(title or "E[delta^2] against depth", fontsize=9)
    return _save(fig, plt, path)


def write_all(result, folder, title=None) -> list[Path]:
    """The three figures of a study result into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = [plot_comparison(result.rows, folder / "comparison.png", title),
           plot_depth(result.rows, folder / "depth.png", title)]
    if result.record.hist:
        out.append(plot_histograms(result.record, folder / "histograms.png", title))
    return out


def _save(fig, plt, path):
    import io as _io

    from ..app import files as dio

    path = Path(path)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return dio.atomic_write_bytes(path, buf.getvalue())

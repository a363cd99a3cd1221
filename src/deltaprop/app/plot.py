"""Figures, returned to the caller (matplotlib is imported only when a figure is drawn).

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: nothing global
changes, no window opens, and ``fig.savefig("x.png")`` renders with the Agg backend.  In a
notebook, a returned figure displays itself.  Every figure has a title: the caller's, else
one that says what it shows.
"""

from __future__ import annotations

__all__ = ["learning_curves", "phase_diagram"]


def learning_curves(history, *, title=None):
    """Loss (and accuracy, for classification) per epoch, training and validation.

    Parameters
    ----------
    history : deltaprop.app.train.History or list of dict
        Rows with ``epoch``, ``loss`` and optionally ``accuracy``, ``val_loss``,
        ``val_accuracy``.
    title : str, optional
        Default: "learning curves: training and validation per epoch" (or "training per
        epoch" without validation rows).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    rows = history.as_rows() if hasattr(history, "as_rows") else list(history)
    has_acc = any(r.get("accuracy") is not None for r in rows)
    fig = Figure(figsize=(10 if has_acc else 5.5, 4), layout="constrained")
    axes = fig.subplots(1, 2 if has_acc else 1, squeeze=False)[0]
    epochs = [r["epoch"] for r in rows]
    panels = [("loss", "loss J")] + ([("accuracy", "accuracy")] if has_acc else [])
    for ax, (key, label) in zip(axes, panels, strict=True):
        for prefix, name, style in (("", "train", "-"), ("val_", "validation", "--")):
            values = [r.get(prefix + key) for r in rows]
            if any(v is not None for v in values):
                ax.plot(epochs, [float("nan") if v is None else v for v in values], style,
                        marker="." if len(rows) < 40 else None, label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if key == "loss" and rows and all((r.get("loss") or 0) > 0 for r in rows):
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.set_title(f"{label} per epoch", fontsize=10)
    has_val = any(r.get("val_loss") is not None for r in rows)
    fig.suptitle(title or ("learning curves: training and validation per epoch" if has_val
                           else "learning curves: training per epoch"))
    return fig


def phase_diagram(data, *, point=None, title=None):
    """The (sigma_w^2, sigma_b^2) plane as Poole et al. (2016) and Schoenholz et al. (2017)
    draw it: the correlation depth scale xi_c shaded with labelled contours, the edge of
    chaos chi_1 = 1 between the ordered and the chaotic phase, and ``point`` (a
    (sigma_w^2, sigma_b^2) pair) marked.

    Parameters
    ----------
    data : dict
        :func:`deltaprop.theory.signal.phase_diagram`'s result.
    point : (float, float), optional
    title : str, optional
        Default: "phase diagram of the mean-field network".

    Returns
    -------
    matplotlib.figure.Figure
    """
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    w2, b2 = data["sigma_w2"], data["sigma_b2"]
    xi = np.where(np.isfinite(data["xi_c"]), data["xi_c"], np.inf)
    levels = np.array([0.5, 1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100])
    shown = np.clip(xi, 0.25, 1e3)  # the peak on the edge of chaos is infinite
    fig = Figure(figsize=(6.4, 4.6), layout="constrained")
    ax = fig.subplots()
    fill = ax.contourf(w2, b2, shown, levels=levels, norm=LogNorm(levels[0], levels[-1]),
                       cmap="viridis", extend="both")
    lines = ax.contour(w2, b2, shown, levels=[2, 5, 10, 20, 50], colors="white",
                       linewidths=0.7)
    ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize=8)
    fig.colorbar(fill, ax=ax, ticks=levels, format="%g",
                 label=r"correlation depth scale $\xi_c$ (layers)")
    edge = np.asarray(data["edge"], float)
    ok = np.isfinite(edge)
    if ok.any():
        ax.plot(edge[ok], b2[ok], "k-", lw=2.2, label=r"edge of chaos $\chi_1 = 1$")
    else:  # no edge found by root search: the contour of the grid's chi_1
        ax.contour(w2, b2, data["chi_1"], levels=[1.0], colors="black", linewidths=2.2)
    if point is not None:
        ax.plot(*point, "o", ms=8, mfc="white", mec="red", mew=2, label="this network")
    ax.set_xlim(w2[0], w2[-1])
    ax.set_ylim(b2[0], b2[-1])
    for frac, name in ((0.06, "ordered"), (0.94, "chaotic")):
        ax.text(frac, 0.93, name, transform=ax.transAxes, color="white", fontsize=11,
                ha="left" if frac < 0.5 else "right", weight="bold")
    ax.set_xlabel(r"$\sigma_w^2$")
    ax.set_ylabel(r"$\sigma_b^2$")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title or "phase diagram of the mean-field network")
    return fig

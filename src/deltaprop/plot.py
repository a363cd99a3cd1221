"""Figures, returned to the caller (matplotlib is imported only when a figure is drawn).

Figures are built with ``matplotlib.figure.Figure`` directly, not ``pyplot``: nothing global
changes, no window opens, and ``fig.savefig("x.png")`` renders with the Agg backend.  In a
notebook, a returned figure displays itself.
"""

from __future__ import annotations

__all__ = ["learning_curves"]


def learning_curves(history, *, title=None):
    """Loss (and accuracy, for classification) per epoch, training and validation.

    Parameters
    ----------
    history : deltaprop.train.History or list of dict
        Rows with ``epoch``, ``loss`` and optionally ``accuracy``, ``val_loss``,
        ``val_accuracy``.

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
    if title:
        fig.suptitle(title)
    return fig

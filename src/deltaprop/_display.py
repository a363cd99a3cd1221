"""Notebook display: ``_repr_html_`` and ``to_pandas()`` of the objects a learner looks at.

One builder per object, each drawing on the same numbers two ways: an HTML fragment
(inline styles only, so JupyterLab, classic Notebook, VS Code and nbviewer all show it
alike) and a pandas DataFrame.  The classes keep thin methods that call these.

The arrays of a :class:`~deltaprop.network.Network`, :class:`~deltaprop.backprop.Trace` and
:class:`~deltaprop.backprop.Gradients` become one *tidy* frame with the columns

==========  ==========================================================================
``network`` the index k of a stack of K networks (only for a stack)
``layer``   l, 0..L
``quantity`` ``"W"``, ``"b"``, ``"z"``, ``"a"``, ``"delta"``, ``"dW"``, ``"db"``
``row``     the first index as the derivation shapes the array: the sample i of
            z, a, delta (m, n_l); the unit j of layer l for W, dW (n_l, n_{l-1}) and b, db
``col``     the second index: the unit of layer l for z, a, delta; the unit k of layer
            l-1 for W, dW; missing (``<NA>``) for b, db
``value``   the number
==========  ==========================================================================

so ``df.query("quantity == 'W' and layer == 1").pivot(index="row", columns="col",
values="value")`` is W[1] again.  pandas is optional (``pip install 'deltaprop[notebook]'``):
it is imported only inside ``to_pandas``.  Copies to the host happen here, in a report.
"""

from __future__ import annotations

import html
import math

import numpy as np

from ._backend import dtype_name, namespace, to_numpy

__all__ = ["pandas", "network_html", "network_frame", "trace_html", "trace_frame",
           "gradients_html", "gradients_frame", "trace_step_html", "history_html",
           "history_frame", "fit_html", "study_html", "study_frame"]

#: significant digits shown in the HTML tables (to_pandas keeps every digit)
DIGITS = 6
#: an array with more cells than this is summarised (shape, mean, std, min, max), not listed
MAX_CELLS = 400

_TABLE = "border-collapse:collapse;font-size:12px;margin:2px 0 8px 0"
_CELL = "padding:1px 6px;text-align:right;font-family:monospace;border:1px solid #ddd"
_HEAD = "padding:1px 6px;text-align:center;background:#f2f2f2;border:1px solid #ddd"


def pandas():
    """The pandas module, or an ImportError that names the extra to install."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("to_pandas() needs pandas, an optional dependency of deltaprop: "
                          "pip install 'deltaprop[notebook]' (or pip install pandas)") from None
    return pd


# ---------------------------------------------------------------------- small pieces
def _e(text) -> str:
    return html.escape(str(text))


def _num(x) -> str:
    """A number as a table shows it: DIGITS significant digits, nan/inf spelt out."""
    if x is None:
        return ""
    x = float(x)
    return f"{x:.{DIGITS}g}" if math.isfinite(x) else str(x)


def _host(v):
    return None if v is None else np.asarray(to_numpy(v), dtype=np.float64)


def _colour(x, scale) -> str:
    """Background of a cell: red for positive, blue for negative, paler near zero."""
    if not scale or not math.isfinite(x):
        return ""
    t = min(abs(x) / scale, 1.0) * 0.45
    rgb = "214,39,40" if x > 0 else "31,119,180"
    return f";background:rgba({rgb},{t:.2f})"


def _summary(named) -> str:
    """Shape, mean, std, min, max of each array: the form of an array too big to list."""
    rows = "".join(
        f"<tr><th style='{_HEAD}'>{_e(name)}</th><td style='{_CELL}'>{_e(arr.shape)}</td>"
        + "".join(f"<td style='{_CELL}'>{_num(f(arr))}</td>"
                  for f in (np.mean, np.std, np.min, np.max)) + "</tr>"
        for name, arr in named)
    head = "".join(f"<th style='{_HEAD}'>{h}</th>"
                   for h in ("", "shape", "mean", "std", "min", "max"))
    return f"<table style='{_TABLE}'><tr>{head}</tr>{rows}</table>"


def _grid(named, row_label) -> str:
    """Arrays of one row count side by side, one column group each (a 1-D array is one
    column); every cell coloured by its value against the largest |value| of its array.
    Too many cells: the summary instead."""
    named = [(n, a[:, None] if a.ndim == 1 else a) for n, a in named]
    if sum(a.size for _, a in named) > MAX_CELLS or any(a.ndim != 2 for _, a in named):
        return _summary(named)
    groups = "".join(
        f"<th style='{_HEAD}' colspan='{a.shape[1]}'>{_e(n)}</th>" for n, a in named)
    cols = "".join(
        f"<th style='{_HEAD}'>{'' if a.shape[1] == 1 else k}</th>"
        for _, a in named for k in range(a.shape[1]))
    scales = [float(np.max(np.abs(a[np.isfinite(a)]), initial=0.0)) for _, a in named]
    body = "".join(
        f"<tr><th style='{_HEAD}'>{i}</th>" + "".join(
            f"<td style='{_CELL}{_colour(x, s)}'>{_num(x)}</td>"
            for (_, a), s in zip(named, scales, strict=True) for x in a[i])
        + "</tr>" for i in range(named[0][1].shape[0]))
    return (f"<table style='{_TABLE}'><tr><th style='{_HEAD}' rowspan='2'>{_e(row_label)}"
            f"</th>{groups}</tr><tr>{cols}</tr>{body}</table>")


def _section(title, body) -> str:
    return f"<div style='margin:4px 0'><b>{_e(title)}</b>{body}</div>"


def _frame(blocks, stacked):
    """The tidy frame of (layer, quantity, array) blocks (see the module docstring)."""
    pd = pandas()
    parts = []
    for l, q, arr in blocks:
        arr = arr if stacked else arr[None]  # a leading network axis in every case
        K, rows = arr.shape[:2]
        cols = arr.shape[2] if arr.ndim == 3 else 1
        k, i, j = np.meshgrid(np.arange(K), np.arange(rows), np.arange(cols), indexing="ij")
        part = {"network": k.ravel(), "layer": l, "quantity": q, "row": i.ravel(),
                "col": pd.array(j.ravel() if arr.ndim == 3 else [None] * j.size,
                                dtype="Int64"),
                "value": arr.reshape(-1)}
        parts.append(pd.DataFrame(part))
    df = pd.concat(parts, ignore_index=True)
    df["quantity"] = df["quantity"].astype("string")
    return df if stacked else df.drop(columns="network")


def _stacked(v) -> bool:
    return v is not None and v.ndim == 3


# ---------------------------------------------------------------------- Network
def network_html(net) -> str:
    """Sizes, activations and per-layer statistics; W[l] and b[l] listed when small."""
    acts = net.activation_names()
    K = net.K
    title = (f"Network {'-'.join(map(str, net.sizes))}: {net.L} layer"
             f"{'s' * (net.L != 1)}, {net.n_params} parameters"
             + (f" per network, a stack of K = {K}" if K is not None else "")
             + f", {dtype_name(net.dtype)}, {namespace(net.W[1]).__name__.split('.')[-1]}")
    head = "".join(f"<th style='{_HEAD}'>{h}</th>" for h in
                   ("l", "n_l", "activation", "W[l] shape", "mean W", "std W", "mean b",
                    "std b"))
    rows = []
    for l in range(1, net.L + 1):
        W, b = _host(net.W[l]), _host(net.b[l])
        cells = [l, net.sizes[l], _e(acts[l - 1]), _e(tuple(net.W[l].shape))]
        cells += [_num(f(v)) for v in (W, b) for f in (np.mean, np.std)]
        rows.append("<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
    out = [f"<div><b>{_e(title)}</b>",
           f"<table style='{_TABLE}'><tr>{head}</tr>{''.join(rows)}</table>"]
    if K is None:
        for l in range(1, net.L + 1):
            out.append(_section(f"layer {l} ({acts[l - 1]}): b[{l}], W[{l}] (row j = unit of "
                                f"layer {l}, column k = unit of layer {l - 1})",
                                _grid([(f"b[{l}]", _host(net.b[l])),
                                       (f"W[{l}]", _host(net.W[l]))], "j")))
    return "".join(out) + "</div>"


def network_frame(net):
    """W[l] and b[l] of every layer as the tidy frame of the module docstring."""
    blocks = [(l, q, _host(p[l])) for l in range(1, net.L + 1)
              for q, p in (("W", net.W), ("b", net.b))]
    return _frame(blocks, net.K is not None)


# ---------------------------------------------------------------------- Trace and Gradients
def trace_html(trace) -> str:
    """z[l] and a[l] of every layer, rows = samples (a table per layer)."""
    L = len(trace.a) - 1
    a0 = _host(trace.a[0])
    shape = "m = " + str(a0.shape[-2]) + (f", a stack of K = {a0.shape[0]}"
                                          if a0.ndim == 3 else "")
    out = [f"<div><b>Trace (forward pass): {L} layer{'s' * (L != 1)}, {shape}</b>"]
    for l in range(L + 1):
        named = [("a[0] = x", a0)] if l == 0 else [(f"z[{l}]", _host(trace.z[l])),
                                                     (f"a[{l}]", _host(trace.a[l]))]
        out.append(_section(f"layer {l}", _grid(named, "sample")))
    return "".join(out) + "</div>"


def trace_frame(trace):
    """z[l] (l >= 1) and a[l] (l >= 0), rows = samples: the tidy frame."""
    blocks = [(l, q, _host(v[l])) for l in range(len(trace.a))
              for q, v in (("z", trace.z), ("a", trace.a)) if v[l] is not None]
    return _frame(blocks, _stacked(blocks[0][2]))


def gradients_html(grads) -> str:
    """J, then per layer delta[l] (rows = samples) and db[l], dW[l] (rows = units j)."""
    L = len(grads.delta) - 1
    J = _host(grads.J)
    out = [f"<div><b>Gradients (backward pass): J = "
           f"{_e(', '.join(map(_num, np.atleast_1d(J))))}</b>"
           "<div style='font-size:11px'>delta[l] = dJ_i/dz[l] per sample, unscaled; "
           "dW[l] = delta[l]^T a[l-1] / m and db[l] are batch means</div>"]
    for l in range(L, 0, -1):
        out.append(_section(f"layer {l}",
                            _grid([(f"delta[{l}]", _host(grads.delta[l]))], "sample")
                            + _grid([(f"db[{l}]", _host(grads.db[l])),
                                     (f"dW[{l}]", _host(grads.dW[l]))], "j")))
    return "".join(out) + "</div>"


def gradients_frame(grads):
    """delta[l] (rows = samples), dW[l] and db[l] (rows = units j) of every layer; the loss
    J is in ``df.attrs["J"]``."""
    L = len(grads.delta) - 1
    blocks = [(l, q, _host(v[l])) for l in range(1, L + 1)
              for q, v in (("delta", grads.delta), ("dW", grads.dW), ("db", grads.db))]
    df = _frame(blocks, _stacked(blocks[0][2]))
    J = _host(grads.J)
    df.attrs["J"] = float(J) if J.ndim == 0 else J.tolist()
    return df


def trace_step_html(step) -> str:
    """One step of :func:`deltaprop.app.trace.run`: the forward pass, the backward pass and the
    network after the update."""
    return (trace_html(step.trace) + gradients_html(step.grads)
            + "<div><b>after the update</b></div>" + network_html(step.net))


# ---------------------------------------------------------------------- training history
def _svg_curves(title, series, log=False, width=360, height=200) -> str:
    """A line chart as inline SVG: ``series`` is [(label, xs, ys, dashed)]; None and
    non-finite ys (and, on a log axis, ys <= 0) leave gaps."""
    pts = [(x, y) for _, xs, ys, _ in series for x, y in zip(xs, ys, strict=True)
           if y is not None and math.isfinite(y) and (y > 0 or not log)]
    if not pts:
        return ""
    tf = math.log10 if log else float
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(tf(p[1]) for p in pts), max(tf(p[1]) for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1)
    left, right, top, bottom = 52, 10, 20, 28

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return top + (y1 - tf(y)) / (y1 - y0) * (height - top - bottom)

    colours = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
             f"style='font:10px sans-serif;margin-right:12px'>",
             f"<text x='{width / 2}' y='12' text-anchor='middle'>{_e(title)}"
             f"{' (log scale)' if log else ''}</text>",
             f"<rect x='{left}' y='{top}' width='{width - left - right}' "
             f"height='{height - top - bottom}' fill='none' stroke='#999'/>"]
    for y in ((10 ** y0, 10 ** y1) if log else (y0, y1)):
        parts.append(f"<text x='{left - 3}' y='{py(y) + 3:.1f}' text-anchor='end'>"
                     f"{y:.3g}</text>")
    for x in (x0, x1):
        parts.append(f"<text x='{px(x):.1f}' y='{height - 14}' text-anchor='middle'>"
                     f"{x:g}</text>")
    parts.append(f"<text x='{width / 2}' y='{height - 3}' text-anchor='middle'>epoch</text>")
    for c, (label, xs, ys, dashed) in enumerate(series):
        colour = colours[c % len(colours)]
        runs, run = [], []
        for x, y in zip(xs, ys, strict=True):
            if y is None or not math.isfinite(y) or (log and y <= 0):
                runs, run = runs + [run] * bool(run), []
            else:
                run.append(f"{px(x):.1f},{py(y):.1f}")
        for r in runs + [run] * bool(run):
            parts.append(f"<polyline fill='none' stroke='{colour}' stroke-width='1.5'"
                         + (" stroke-dasharray='4 3'" if dashed else "")
                         + f" points='{' '.join(r)}'/>")
        parts.append(f"<text x='{width - right - 4}' y='{top + 12 + 12 * c}' "
                     f"text-anchor='end' fill='{colour}'>{_e(label)}</text>")
    return "".join(parts) + "</svg>"


def history_html(history) -> str:
    """Learning curves (loss; accuracy when present) as inline SVG and the last epochs."""
    rows = history.as_rows()
    if not rows:
        return "<div><b>History: no epoch finished</b></div>"
    s = history.summary()
    best = next(k for k in s if k.startswith("best_") and k != "best_epoch")
    out = [f"<div><b>History: {s['epochs']} epoch{'s' * (s['epochs'] != 1)}, "
           f"{_e(best.removeprefix('best_'))} best {_num(s[best])} at epoch "
           f"{s['best_epoch']}, {s['time']:.3g} s</b><div>"]
    epochs = [r["epoch"] for r in rows]
    for key in ("loss", "accuracy"):
        series = [(name, epochs, [r.get(prefix + key) for r in rows], prefix == "val_")
                  for prefix, name in (("", "train"), ("val_", "validation"))
                  if any(r.get(prefix + key) is not None for r in rows)]
        if series:
            log = key == "loss" and all(y is None or y > 0 for _, _, ys, _ in series
                                        for y in ys)
            out.append(_svg_curves(key if key == "accuracy" else "loss J", series, log))
    keys = [k for k in ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time")
            if any(r.get(k) is not None for r in rows)]
    shown = rows if len(rows) <= 12 else rows[:5] + [None] + rows[-5:]
    head = "".join(f"<th style='{_HEAD}'>{k}</th>" for k in keys)
    body = "".join(
        f"<tr><td style='{_CELL}' colspan='{len(keys)}'>...</td></tr>" if r is None else
        "<tr>" + "".join(f"<td style='{_CELL}'>{_num(r.get(k))}</td>" for k in keys) + "</tr>"
        for r in shown)
    out.append(f"</div><table style='{_TABLE}'><tr>{head}</tr>{body}</table></div>")
    return "".join(out)


def history_frame(history):
    """One row per epoch, indexed by ``epoch``."""
    pd = pandas()
    return pd.DataFrame(history.as_rows()).set_index("epoch") if len(history) else \
        pd.DataFrame(index=pd.Index([], name="epoch"))


def fit_html(result) -> str:
    """Why the fit stopped, the learning curves and the trained network."""
    stopped = (f"<div>stopped: {_e(result.stopped)}</div>" if result.stopped
               else "<div>all epochs ran</div>")
    return stopped + history_html(result.history) + network_html(result.net)


# ---------------------------------------------------------------------- study
def study_html(result) -> str:
    """The theory-vs-measurement table of ``deltaprop stats`` (one row per layer), with z =
    (prediction - measurement) / se and the table's footnotes."""
    from .stats import report

    rows = result.rows
    cols = [(n, k) for n in report.THEORIES for k in report.MOMENTS
            if any(k in r["predicted"].get(n, {}) for r in rows)]
    label = {"mean": "E[delta]", "second_moment": "E[delta^2]"}
    head = "".join(f"<th style='{_HEAD}'>{h}</th>" for h in
                   ("layer", "units", "E[delta]", "se", "E[delta^2]", "se"))
    head += "".join(f"<th style='{_HEAD}'>{_e(n)} {label[k]}</th><th style='{_HEAD}'>z</th>"
                    for n, k in cols)
    body = []
    for r in rows:
        m, z = r["measured"], report.z_scores(r)
        cells = [r["layer"], r["units"]] + [_num(m[k]) for k in
                                            ("mean", "mean_se", "second_moment",
                                             "second_moment_se")]
        for n, k in cols:
            p = r["predicted"].get(n, {})
            zk = z.get((n, k))
            cells += ([_num(p[k]), "anchored" if p.get("anchored") else
                       "n/a" if zk is None else f"{zk:.1f}"] if k in p else ["-", ""])
        body.append("<tr>" + "".join(f"<td style='{_CELL}'>{c}</td>" for c in cells) + "</tr>")
    notes = ["z = (prediction - measurement) / standard error (the measurement's and, for "
             "exact, its own integration error)"]
    forward = sorted({r["forward"] for r in rows if "forward" in r})
    if forward:
        notes.append("forward model of the predictions: " + ", ".join(
            f"{f} ({report.FORWARD_TEXT[f]})" for f in forward))
    if any(p.get("anchored") for r in rows for p in r["predicted"].values()):
        notes.append(report.ANCHORED_NOTE)
    if any(r["measured"].get("se_within_network_only") for r in rows):
        notes.append(report.K1_NOTE)
    title = (f"Study: sizes {'-'.join(str(n) for n in result.record.sizes)}, K = "
             f"{result.record.K} networks, {result.seconds:.3g} s")
    return (f"<div><b>{_e(title)}</b><table style='{_TABLE}'><tr>{head}</tr>"
            f"{''.join(body)}</table><div style='font-size:11px'>"
            + "<br>".join(map(_e, notes)) + "</div></div>")


def study_frame(result):
    """One row per (layer, theory, moment), the columns of ``deltaprop stats --csv``."""
    from .stats import report

    return pandas().DataFrame(report.flat(result.rows), columns=report.FLAT_COLUMNS)

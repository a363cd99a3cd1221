"""Distributed studies: a grid of ensemble cells, run as tasks on a Dask cluster.

A **cell** is one point of the grid

    sigma_w2, sigma_b2, depth, width, activation, init, loss, seed

plus the study's fixed settings (K networks, m samples).  Its **ensemble study** draws a
stack of K networks with sizes [width] * (depth + 1) (hidden layers 1..L-1 use
``activation``; the output layer L suits ``loss``), weights W[l] ~ N(0, sigma_w2 / n_{l-1})
(mean-field scaling; ``init="uniform"`` gives the same variance, any other initialiser its
own fan-based scale and ``sigma_w2`` is ignored) and biases N(0, sigma_b2), runs one
forward and backward pass on m Gaussian inputs and records, per layer,

    E[delta[l]^2]        the mean of delta[l]^2 over networks, samples and units
    its standard error   over the K networks (each network's mean is one draw)

and the **growth rate** per layer, the least-squares slope g of

    log E[delta[l]^2] = c + g (L - l),    l = 1 .. L-1 (the hidden layers)

so E[delta^2] grows by e^g per layer going backward: g > 0 exploding, g < 0 vanishing,
g = 0 at the edge of chaos.  Mean-field theory predicts g = log chi with
chi = sigma_w2 E[f'(z)^2] at the fixed point q* (:mod:`deltaprop.theory.mean_field`).

A cell is keyed by a hash of its parameters (:func:`cell_key`), its result is a pure
function of them, and :func:`run` streams finished rows into one CSV table: a stopped
sweep resumes without recomputing the cells already in the table, and a cell lost with a
killed worker is simply run again, with the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import math
import os
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["PARAMS", "DEFAULTS", "STUDY", "COLUMNS", "grid", "cell_key", "run_cell", "run",
           "read_table", "plot_phase", "local_cluster", "growth_rate"]

#: the grid axes, in table order
PARAMS = ("sigma_w2", "sigma_b2", "depth", "width", "activation", "init", "loss", "seed")
#: a value for every axis the grid does not name
DEFAULTS = {"sigma_w2": 1.0, "sigma_b2": 0.0, "depth": 20, "width": 64, "activation": "tanh",
            "init": "normal", "loss": "mse", "seed": 0}
#: the study's fixed settings: K networks per cell, m samples per network
STUDY = {"K": 16, "m": 32}
#: the table's columns
COLUMNS = ("key", *PARAMS, *STUDY, "growth", "E_delta2", "E_delta2_se")
_FLOATS, _INTS = ("sigma_w2", "sigma_b2"), ("depth", "width", "seed", "K", "m")


# ----------------------------------------------------------------------------- the grid
def _canonical(cell: dict) -> dict:
    """Typed values for every parameter: floats, ints and canonical names."""
    from . import activations, init, losses

    out = {**DEFAULTS, **STUDY, **cell}
    unknown = set(out) - set(PARAMS) - set(STUDY)
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {sorted(unknown)}; known: "
                         f"{', '.join(PARAMS + tuple(STUDY))}")
    for k in _FLOATS:
        out[k] = float(out[k])
        if not (math.isfinite(out[k]) and out[k] >= 0):
            raise ValueError(f"{k} must be a finite number >= 0, got {out[k]}")
    for k in _INTS:
        v = float(out[k])
        if not math.isfinite(v) or v != int(v):
            raise ValueError(f"{k} must be an integer, got {out[k]!r}")
        out[k] = int(float(out[k]))
    if out["depth"] < 3:
        raise ValueError(f"depth must be >= 3 (two hidden layers to fit a rate), got "
                         f"{out['depth']}")
    for k in ("width", "K", "m"):
        if out[k] < 1:
            raise ValueError(f"{k} must be >= 1, got {out[k]}")
    out["activation"] = activations.get(out["activation"]).name
    out["init"] = init.canonical(out["init"])
    out["loss"] = losses.get(out["loss"]).name
    return {k: out[k] for k in (*PARAMS, *STUDY)}


def grid(**axes) -> list[dict]:
    """The cells of the Cartesian product of ``axes`` (name -> value or list of values).

    Axes not given take :data:`DEFAULTS` and :data:`STUDY`; the order is that of
    ``itertools.product`` over :data:`PARAMS` then the study settings.

    >>> [c["sigma_w2"] for c in grid(sigma_w2=[1.0, 2.0], depth=5)]
    [1.0, 2.0]
    """
    names = [*PARAMS, *STUDY]
    unknown = set(axes) - set(names)
    if unknown:
        raise ValueError(f"unknown sweep parameter(s) {sorted(unknown)}; known: "
                         f"{', '.join(names)}")
    values = []
    for n in names:
        v = axes.get(n, {**DEFAULTS, **STUDY}[n])
        v = list(v) if isinstance(v, list | tuple | np.ndarray) else [v]
        if not v:
            raise ValueError(f"sweep axis {n} is empty")
        values.append(v)
    return [_canonical(dict(zip(names, combo, strict=True)))
            for combo in itertools.product(*values)]


def cell_key(cell: dict) -> str:
    """16 hex digits of SHA-256 of the cell's canonical parameters (the resume key)."""
    c = _canonical(cell)
    text = json.dumps({k: (repr(v) if isinstance(v, float) else v) for k, v in c.items()},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- one cell
def _targets(loss, rng, m, n):
    if loss == "softmax-cross-entropy":
        return rng.integers(0, n, m)
    if loss == "sigmoid-cross-entropy":
        return rng.uniform(size=(m, n))
    return rng.normal(size=(m, n))


def growth_rate(E_delta2) -> float:
    """Slope g of log E[delta[l]^2] = c + g (L - l) over the hidden layers l = 1..L-1.

    ``E_delta2`` lists layers 1..L.  Layers whose value is 0 or not finite are left out;
    NaN if fewer than two remain.
    """
    v = np.asarray(E_delta2, dtype=np.float64)[:-1]  # drop the output layer
    L = v.size + 1
    dist = L - np.arange(1, L)
    ok = np.isfinite(v) & (v > 0)
    if ok.sum() < 2:
        return math.nan
    return float(np.polyfit(dist[ok], np.log(v[ok]), 1)[0])


def run_cell(cell: dict, backend=None, device=None) -> dict:
    """The ensemble study of one cell: a table row (see the module docstring).

    Parameters
    ----------
    cell : dict
        Grid parameters (missing ones take :data:`DEFAULTS` / :data:`STUDY`).
    backend, device
        Array library for the K networks (``"torch"``, ``"cupy"``, ...); results are the
        same to rounding.  Random draws are on the host, so every backend sees one network.
    """
    from . import _backend, losses
    from .network import Network

    c = _canonical(cell)
    L, n, K, m = c["depth"], c["width"], c["K"], c["m"]
    out = losses.get(c["loss"]).output or "identity"
    acts = [c["activation"]] * (L - 1) + [out]
    std = math.sqrt(c["sigma_w2"] / n) if c["init"] in ("normal", "uniform") else None
    net = Network.init([n] * (L + 1), acts, init=c["init"], seed=c["seed"], K=K, std=std,
                       bias_std=math.sqrt(c["sigma_b2"]), backend=backend, device=device)
    rng = np.random.default_rng([c["seed"], 2026])  # the data: its own stream
    x, y = rng.normal(size=(m, n)), _targets(c["loss"], rng, m, n)
    xp = net.xp
    x = _backend.asarray(x, xp, like=net.W[1])
    y = _backend.asarray(y, xp, device=_backend.device(net.W[1]),
                         dtype=None if y.dtype.kind == "i" else net.dtype)
    E, se = _second_moments(net, x, y, c["loss"])
    return {"key": cell_key(c), **c, "growth": growth_rate(E),
            "E_delta2": [float(v) for v in E], "E_delta2_se": [float(v) for v in se]}


def _second_moments(net, x, y, loss):
    """E[delta[l]^2] and its standard error over the K networks, l = 1..L (lists), by the
    laboratory's recorder (:func:`deltaprop.stats.record`); the s.e. is NaN for K = 1."""
    from .stats.record import record

    rec = record(net, x, y, loss, quantities=("delta",), bins=None, weight_grads=False,
                 cross=False)
    s = [rec.layer_summary(l) for l in range(1, net.L + 1)]
    se = [r["second_moment_se"] if (net.K or 1) > 1 else math.nan for r in s]
    return [r["second_moment"] for r in s], se


# ----------------------------------------------------------------------------- the table
def _format(row: dict) -> dict:
    out = {}
    for k in COLUMNS:
        v = row[k]
        if isinstance(v, list):
            v = json.dumps([repr(float(e)) for e in v]).replace('"', "")
        elif isinstance(v, float):
            v = repr(v)
        out[k] = v
    return out


def _parse(rec: dict) -> dict:
    row = dict(rec)
    for k in (*_FLOATS, "growth"):
        row[k] = float(row[k])
    for k in _INTS:
        row[k] = int(row[k])
    for k in ("E_delta2", "E_delta2_se"):
        row[k] = [float(v) for v in row[k].strip("[]").split(",") if v.strip()]
    return row


def read_table(path) -> list[dict]:
    """The complete rows of a sweep table (a torn last line of a stopped sweep is dropped)."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        text = f.read()
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    if tuple(reader.fieldnames) != COLUMNS:
        raise ValueError(f"{path} is not a sweep table of this version (columns "
                         f"{reader.fieldnames})")
    complete = text.endswith("\n")
    lines = list(reader)
    for i, rec in enumerate(lines):
        if i == len(lines) - 1 and not complete:
            break  # torn by a stop mid-write
        try:
            row = _parse(rec)
        except (TypeError, ValueError):
            continue
        if row["key"] == cell_key({k: row[k] for k in (*PARAMS, *STUDY)}):
            rows.append(row)
    return rows


def _write(path, rows):
    """Write ``rows`` atomically (temporary file, then rename)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(_format(r) for r in rows)
    os.replace(tmp, path)


def _parquet(path, rows):
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ValueError("Parquet output needs pyarrow (pip install 'deltaprop[parquet]')") from exc
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in COLUMNS} for r in rows]), path)


# ----------------------------------------------------------------------------- the sweep
def run(cells: Iterable[dict], path, *, client=None, serial=False, backend=None, device=None,
        resume=True, on_row: Callable | None = None) -> list[dict]:
    """Run every cell not yet in the table at ``path``; return all rows in grid order.

    Parameters
    ----------
    cells : iterable of dict
        From :func:`grid`.
    path : str
        The CSV table.  Rows are appended (and flushed) as cells finish; when the sweep is
        complete the table is rewritten in grid order, so two runs of one grid give the same
        file whatever the order in which cells finished.  A ``.parquet`` copy is written
        beside it if ``path`` ends in ``.parquet`` (needs pyarrow).
    client : dask.distributed.Client, optional
        Run the cells as tasks on this client's cluster.  Without one (and ``serial``
        False) a local cluster of one single-threaded worker process per core is started.
    serial : bool
        Run in this process, one cell after the other (no Dask).
    resume : bool
        Skip the cells whose key is already in the table (otherwise start a new table).
    on_row : callable, optional
        Called with each newly finished row (progress reports).
    """
    cells = [_canonical(c) for c in cells]
    keys = [cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid lists a cell twice")
    parquet = str(path).endswith(".parquet")
    table = str(path)[: -len(".parquet")] + ".csv" if parquet else str(path)
    done = {r["key"]: r for r in read_table(table)} if resume else {}
    _write(table, list(done.values()))  # drops a torn line; starts a new table
    todo = [(k, c) for k, c in zip(keys, cells, strict=True) if k not in done]
    with open(table, "a", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS, lineterminator="\n")

        def record(row):
            writer.writerow(_format(row))
            f.flush()
            done[row["key"]] = row
            if on_row is not None:
                on_row(row)

        if serial:
            for _, c in todo:
                record(run_cell(c, backend, device))
        elif todo:
            _run_distributed(todo, record, client, backend, device)
    rows = [done[k] for k in keys if k in done]
    extra = [r for k, r in done.items() if k not in set(keys)]  # other grids' cells stay
    _write(table, rows + extra)
    if parquet:
        _parquet(path, rows + extra)
    return rows


def local_cluster(n_workers=None, **kwargs):
    """A ``LocalCluster`` of single-threaded worker processes on 127.0.0.1 for deltaprop.

    One worker per core by default, one BLAS thread each.  Unlike Dask's default, the
    workers start without ``MALLOC_TRIM_THRESHOLD_``: setting it fixes glibc's mmap
    threshold at 128 KiB, so every activation array of a cell (K m n floats, ~256 KiB in
    the default study) becomes a fresh mmap with page faults; we measured cells ~1.3x
    slower with it.  Workers then hand freed memory back to the OS less eagerly.
    ``kwargs`` go to ``LocalCluster``.
    """
    import dask
    from dask.distributed import LocalCluster

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", {}))
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    opts = dict(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                processes=True, host="127.0.0.1", dashboard_address=":0")
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return LocalCluster(**{**opts, **kwargs})


def _run_distributed(todo, record, client, backend, device):
    from dask.distributed import Client, as_completed

    own = None
    if client is None:
        own = local_cluster()
        client = Client(own, set_as_default=False)
    try:
        futures = [client.submit(run_cell, c, backend, device, key=f"deltaprop-cell-{k}",
                                 pure=False) for k, c in todo]
        for fut in as_completed(futures, loop=client.loop):
            record(fut.result())
            fut.release()
    finally:
        if own is not None:
            client.close()
            own.close()


# ----------------------------------------------------------------------------- the plot
def plot_phase(rows, path, *, edge=True):
    """Phase diagram: growth rate over sigma_w2 x sigma_b2, one panel per activation.

    Other parameters take the value of the first row.  The measured g = 0 line is drawn
    solid; with ``edge``, the edge of chaos
    predicted by mean-field theory (chi(q*) = 1, :func:`deltaprop.theory.mean_field.
    edge_of_chaos`) is drawn over each panel.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no rows to plot")
    first = rows[0]
    fixed = [k for k in PARAMS if k not in ("sigma_w2", "sigma_b2", "activation")]
    rows = [r for r in rows if all(r[k] == first[k] for k in fixed)]
    acts = list(dict.fromkeys(r["activation"] for r in rows))
    fig, axes = plt.subplots(1, len(acts), figsize=(4.2 * len(acts) + 0.8, 3.8),
                             squeeze=False)
    vmax = max((abs(r["growth"]) for r in rows if math.isfinite(r["growth"])), default=1.0)
    for ax, act in zip(axes[0], acts, strict=True):
        sub = [r for r in rows if r["activation"] == act]
        sw = sorted({r["sigma_w2"] for r in sub})
        sb = sorted({r["sigma_b2"] for r in sub})
        G = np.full((len(sb), len(sw)), np.nan)
        for r in sub:
            G[sb.index(r["sigma_b2"]), sw.index(r["sigma_w2"])] = r["growth"]
        im = ax.pcolormesh(_edges(sw), _edges(sb), G, cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                           shading="flat")
        if len(sw) > 1 and len(sb) > 1 and np.any(G < 0) and np.any(G > 0):
            ax.contour(sw, sb, G, levels=[0.0], colors="k", linewidths=1.5)
            ax.plot([], [], "k-", lw=1.5, label="measured g = 0")
        if edge:
            line = _edge_line(act, sb)
            if line:
                ax.plot(*zip(*line, strict=True), "k--", lw=1.5,
                        label="edge of chaos (mean field)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper left", fontsize=7)
        ax.set(xlabel="sigma_w^2", ylabel="sigma_b^2", title=f"{act}, L={first['depth']}, "
               f"n={first['width']}, K={first['K']}")
        fig.colorbar(im, ax=ax, label="growth rate g = d log E[delta^2] / d(L - l)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _edges(v):
    v = np.asarray(v, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _edge_line(act, sigma_b2s):
    """[(sigma_w2*, sigma_b2)] from :func:`deltaprop.theory.mean_field.edge_of_chaos`."""
    from .theory.mean_field import edge_of_chaos

    pts = []
    for b in sigma_b2s:
        try:
            pts.append((float(edge_of_chaos(b, act)), float(b)))
        except ValueError:  # no edge here: chi never reaches 1, or jumps past it (SiLU, GELU)
            continue
    return pts

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

__all__ = ["PARAMS", "DEFAULTS", "STUDY", "COLUMNS", "FORMATS", "grid", "cell_key", "run_cell",
           "run", "check_output", "check_memory", "cell_memory", "table_path", "read_table",
           "plot_phase", "local_cluster", "connect", "growth_rate", "SweepStoppedError"]

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
    from .. import activations, init, losses

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
    if out["seed"] < 0:
        raise ValueError(f"seed must be >= 0, got {out['seed']}")
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
    from .. import _backend, losses
    from ..network import Network

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
    from .record import record

    rec = record(net, x, y, loss, quantities=("delta",), bins=None, weight_grads=False,
                 cross=False)
    s = [rec.layer_summary(l) for l in range(1, net.L + 1)]
    se = [r["second_moment_se"] if (net.K or 1) > 1 else math.nan for r in s]
    return [r["second_moment"] for r in s], se


def cell_memory(cell: dict) -> int:
    """Bytes one cell's study holds, about: W and b of its K networks twice (drawing and
    the network), and z, a, delta and the recorder's squares of m samples per layer."""
    c = _canonical(cell)
    L, n, K, m = c["depth"], c["width"], c["K"], c["m"]
    return 8 * K * (2 * L * n * (n + 1) + 5 * m * n * (L + 1))


def check_memory(cells, workers=1):
    """Refuse, before computing, a grid whose largest cell (times the ``workers`` running at
    once on this machine) needs more than 80% of the memory available (one line, ValueError:
    :func:`deltaprop.app.data.refuse_unless_fits`)."""
    from ..app import data

    big = max(cells, key=cell_memory)
    each = cell_memory(big)
    what = f"of width {big['width']}, depth {big['depth']} and K = {big['K']} networks"
    what = f"{workers} cells at once {what} ({each / 2**30:.3g} GiB each)" if workers > 1 \
        else f"a cell {what}"
    data.refuse_unless_fits(each * workers, what, "use a smaller width, depth or K"
                            + (", or fewer workers" if workers > 1 else ""))


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
    """The complete rows of a sweep table (a torn last line of a stopped sweep is dropped).

    Raises
    ------
    ValueError
        ``path`` exists but is not a sweep table (other columns, or not text).
    """
    if not os.path.exists(path):
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not a sweep table (not a CSV text file)") from None
    except IsADirectoryError:
        raise ValueError(f"{path} is a folder, not a sweep table") from None
    rows = []
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        return []
    if tuple(reader.fieldnames) != COLUMNS:
        raise ValueError(f"{path} is not a sweep table of this version (columns "
                         f"{', '.join(reader.fieldnames)[:80]})")
    complete = text.endswith("\n")
    lines = list(reader)
    for i, rec in enumerate(lines):
        if i == len(lines) - 1 and not complete:
            break  # torn by a stop mid-write
        try:
            row = _parse(rec)
        except (TypeError, ValueError, AttributeError):
            continue
        if row["key"] == cell_key({k: row[k] for k in (*PARAMS, *STUDY)}):
            rows.append(row)
    return rows


#: the table formats :func:`run` writes, by file name suffix
FORMATS = (".csv", ".parquet")


def table_path(path) -> str:
    """The CSV table a sweep streams into: ``path`` itself, or ``X.csv`` beside ``X.parquet``.

    Raises
    ------
    ValueError
        ``path`` does not end in one of :data:`FORMATS` (e.g. ``.xlsx``).
    """
    path = str(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"cannot write a sweep table to {path}: the formats are .csv and "
                         ".parquet (e.g. sweep.csv); convert the CSV with pandas for others")
    return path[: -len(suffix)] + ".csv" if suffix == ".parquet" else path


def _need_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError("a .parquet table needs pyarrow, which is not installed: pip install "
                         "'deltaprop[parquet]', or write a .csv table") from None


def check_output(cells, path, *, force=False, resume=True) -> dict:
    """Check, before any computing, that a sweep of ``cells`` may write ``path``.

    A file already at ``path`` (and at the CSV table beside a ``.parquet`` file) is kept
    safe: it is resumed when it is a sweep table of this grid (every row a cell of
    ``cells``), replaced only with ``force``, and otherwise refused.

    Returns
    -------
    dict
        key -> row of the finished cells the sweep keeps (empty for a new table).

    Raises
    ------
    ValueError
        An unknown format; a ``.parquet`` path without pyarrow (``pip install
        'deltaprop[parquet]'``); a file that is not a sweep table, or holds cells of another
        grid, or ``resume=False`` on an existing table, without ``force``.
    """
    path = str(path)
    table = table_path(path)
    if table != path:
        _need_pyarrow()
    for p in dict.fromkeys((table, path)):
        if os.path.isdir(p):
            raise ValueError(f"{p} is a folder; give --out a file name such as sweep.csv")
    folder = os.path.dirname(path) or "."
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write the sweep table {path}: the folder {folder} does not "
                         "exist; create it first")
    if force:
        return {}
    keys = {cell_key(c) for c in cells}
    done = {}
    for p, read in ((table, read_table), (path, _parquet_rows)):
        if not os.path.exists(p) or (p == table and read is _parquet_rows):
            continue
        try:
            rows = read(p)
        except ValueError as exc:
            raise ValueError(f"{exc}; it is left as it is: choose another --out, or add "
                             "--force to replace it") from None
        other = [r for r in rows if r["key"] not in keys]
        if other:
            raise ValueError(f"{p} holds a sweep of another grid ({len(other)} of its "
                             f"{len(rows)} cells are not in this one); it is left as it is: "
                             "choose another --out, or add --force to replace it")
        if not resume and rows:
            raise ValueError(f"{p} already holds {len(rows)} cells of this grid; run without "
                             "resume=False to finish it, or force=True to replace it")
        if p == table:
            done = {r["key"]: r for r in rows}
    return done


def _parquet_rows(path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        t = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is "not a table"
        raise ValueError(f"{path} is not a Parquet file ({type(exc).__name__})") from None
    if "key" not in t.column_names:
        raise ValueError(f"{path} is not a sweep table (no key column)")
    return [{"key": k} for k in t.column("key").to_pylist()]


def _csv_text(rows) -> str:
    f = io.StringIO()
    w = csv.DictWriter(f, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(_format(r) for r in rows)
    return f.getvalue()


def _write(path, rows):
    """Write ``rows`` atomically (a temporary file beside ``path``, then a rename)."""
    from ..app.files import atomic_write_text

    try:
        atomic_write_text(path, _csv_text(rows))
    except OSError as exc:
        if str(path) in str(exc):  # already a sentence about the user's file
            raise
        raise OSError(f"cannot write the sweep table {path}: {exc.strerror or exc}; check the "
                      "folder exists and is writable, or choose another --out") from None


def _parquet(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..app.files import atomic_write_bytes

    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist([{k: r[k] for k in COLUMNS} for r in rows]), buf)
    try:
        atomic_write_bytes(path, buf.getvalue().to_pybytes())
    except OSError as exc:
        raise OSError(f"cannot write the Parquet table {path}: {exc.strerror or exc}; the CSV "
                      f"table {table_path(path)} holds the same rows") from None


# ----------------------------------------------------------------------------- the sweep
def run(cells: Iterable[dict], path, *, client=None, serial=False, backend=None, device=None,
        resume=True, force=False, on_row: Callable | None = None) -> list[dict]:
    """Run every cell not yet in the table at ``path``; return all rows in grid order.

    Parameters
    ----------
    cells : iterable of dict
        From :func:`grid`.
    path : str
        The table: ``.csv``, or ``.parquet`` (needs pyarrow; checked before any computing).
        Rows are appended (and flushed) to the CSV as cells finish (beside a ``.parquet``
        path, the CSV ``X.csv`` of ``X.parquet``); when the sweep is complete the table is
        rewritten in grid order, so two runs of one grid give the same file whatever the
        order in which cells finished.
    client : dask.distributed.Client, optional
        Run the cells as tasks on this client's cluster.  Without one (and ``serial``
        False) a local cluster of one single-threaded worker process per core is started.
    serial : bool
        Run in this process, one cell after the other (no Dask).
    resume : bool
        Skip the cells already in the table at ``path``.  An existing table is resumed only
        if it is a table of this grid (see :func:`check_output`).
    force : bool
        Replace whatever is at ``path`` and start a new table.
    on_row : callable, optional
        Called with each newly finished row (progress reports).

    Raises
    ------
    ValueError
        The file at ``path`` is not a table of this grid (and not ``force``), see
        :func:`check_output`.  Nothing is computed then.
    """
    cells = [_canonical(c) for c in cells]
    keys = [cell_key(c) for c in cells]
    if len(set(keys)) != len(keys):
        raise ValueError("the grid lists a cell twice")
    done = check_output(cells, path, force=force, resume=resume)
    if serial:
        check_memory(cells)
    table = table_path(path)
    _write(table, list(done.values()))  # drops a torn line; starts a new table
    todo = [(k, c) for k, c in zip(keys, cells, strict=True) if k not in done]
    with open(table, "a", newline="", encoding="utf-8") as f:
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
            try:
                _run_distributed(todo, record, client, backend, device)
            except SweepStoppedError as exc:
                left = len(keys) - len(done)
                raise SweepStoppedError(f"{exc} after {len(done)} of {len(keys)} cells; the "
                                    f"finished cells are kept in {table}: run the same command "
                                    f"again to compute only the other {left}") from None
    rows = [done[k] for k in keys]
    _write(table, rows)
    if table != str(path):
        _parquet(path, rows)
    return rows


def local_cluster(n_workers=None, **kwargs):
    """A ``LocalCluster`` of single-threaded worker processes on 127.0.0.1 for deltaprop.

    One worker per core by default, one BLAS thread each; the scheduler and its dashboard
    listen on 127.0.0.1 only (``cluster.dashboard_link``).  Unlike Dask's default, the
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
                processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
    with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
        return LocalCluster(**{**opts, **kwargs})


#: the port ``dask scheduler`` listens on, and the one its dashboard (HTTP) uses
SCHEDULER_PORT, DASHBOARD_PORT = 8786, 8787


class SweepStoppedError(RuntimeError):
    """The cluster failed during a sweep (the scheduler was lost, or a cell's task killed its
    workers); the finished cells are in the table, and running the sweep again resumes it."""


def connect(address, timeout=10.0):
    """A ``dask.distributed.Client`` of the scheduler at ``address``, or a one-line error.

    Dask's own connect retries a closed port for 30 s, takes an ``http://`` address for a
    minute, and waits forever on a port that accepts the connection but never answers as a
    scheduler (the dashboard's port 8787: dask/distributed#8071).  Here the address is
    checked first: its scheme, then a TCP connection and the scheduler's greeting (a
    scheduler speaks first), each within ``timeout`` seconds.

    Raises
    ------
    ConnectionError
        One sentence naming the address, what happened and the likely cause.
    """
    import socket

    from distributed import Client
    from distributed.comm import parse_address, parse_host_port

    if not timeout > 0:
        raise ValueError(f"the scheduler timeout must be > 0 seconds, got {timeout}")
    address = str(address).strip()
    scheme = address.split("://", 1)[0].lower() if "://" in address else "tcp"
    if scheme in ("http", "https"):
        rest = address.split("://", 1)[1].split("/", 1)[0]
        host = rest.rsplit(":", 1)[0] if ":" in rest else rest
        raise ConnectionError(f"scheduler {address}: that is a web address (the dashboard's?); "
                              f"the scheduler speaks Dask's protocol: use tcp://{host}:"
                              f"{SCHEDULER_PORT} (tcp://host:port, not http://)")
    try:
        scheme, loc = parse_address(address if "://" in address else f"tcp://{address}")
        if scheme not in ("tcp", "tls", "ws", "wss"):
            raise ValueError(f"a {scheme}:// address cannot be reached over the network")
        host, port = parse_host_port(loc, SCHEDULER_PORT)
    except ValueError as exc:
        raise ConnectionError(f"scheduler {address} is not an address like "
                              f"tcp://host:{SCHEDULER_PORT} ({exc})") from None
    _probe(address, host, int(port), timeout, greeting=scheme == "tcp", socket=socket)
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except Exception as exc:  # noqa: BLE001 - any failure to connect becomes one line
        raise ConnectionError(f"scheduler {address}: no Dask scheduler answered within "
                              f"{timeout:g} s ({type(exc).__name__}); check the address, or "
                              "raise the timeout (--scheduler-timeout)") from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception:  # noqa: BLE001 - TimeoutError, or the scheduler left meanwhile
        client.close()
        raise ConnectionError(f"scheduler {address} has no workers (none joined within "
                              f"{timeout:g} s), so nothing would run; start some with `dask "
                              f"worker {address}`") from None
    return client


def _probe(address, host, port, timeout, greeting, socket):
    """Connect to host:port and, for plain TCP, wait for the scheduler's greeting."""
    hint = (f"; {DASHBOARD_PORT} is the dashboard port, the scheduler listens on "
            f"{SCHEDULER_PORT} (tcp://{host}:{SCHEDULER_PORT})" if port == DASHBOARD_PORT
            else "")
    try:
        conn = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        raise ConnectionError(f"scheduler {address}: unknown host {host!r}; check the "
                              "name") from None
    except ConnectionRefusedError:
        raise ConnectionError(f"scheduler {address}: nothing listens there (connection "
                              f"refused); start one with `dask scheduler` (port "
                              f"{SCHEDULER_PORT}) or check the address{hint}") from None
    except TimeoutError:
        raise ConnectionError(f"scheduler {address}: no answer within {timeout:g} s (wrong "
                              "host, a firewall, or the machine is down); raise "
                              "--scheduler-timeout for a slow network") from None
    except OSError as exc:
        raise ConnectionError(f"scheduler {address}: cannot connect ({exc.strerror or exc})"
                              ) from None
    with conn:
        if not greeting:
            return
        conn.settimeout(timeout)
        try:
            ok = bool(conn.recv(1))
        except TimeoutError:
            ok = False
        except OSError:
            ok = False
    if not ok:
        raise ConnectionError(f"scheduler {address}: something listens there but it is not "
                              f"a Dask scheduler (no greeting within {timeout:g} s)"
                              f"{hint or '; is it a web server?'}")


def _run_distributed(todo, record, client, backend, device):
    from dask.distributed import Client, KilledWorker, as_completed

    own = None
    if client is None:
        own = local_cluster()
        client = Client(own, set_as_default=False)
    try:
        futures = [client.submit(run_cell, c, backend, device, key=f"deltaprop-cell-{k}",
                                 pure=False) for k, c in todo]
        for fut in as_completed(futures, loop=client.loop):
            try:
                row = fut.result()
            except KilledWorker as exc:
                raise SweepStoppedError(f"a cell's task died with the workers that ran it "
                                        f"({type(exc).__name__}: out of memory, or a crash; see "
                                        "the workers' logs)") from None
            except Exception as exc:
                if _lost(exc, client):
                    raise SweepStoppedError(f"lost the Dask scheduler {client.scheduler.address}"
                                            f" ({type(exc).__name__})") from None
                raise
            record(row)
            fut.release()
    finally:
        if own is not None:
            client.close()
            own.close()


def _lost(exc, client) -> bool:
    """Did ``exc`` come from losing the scheduler (rather than from a cell)?"""
    from distributed.client import FutureCancelledError
    from distributed.comm.core import CommClosedError

    return isinstance(exc, FutureCancelledError | CommClosedError | OSError | TimeoutError) \
        or client.status != "running"


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
    buf = io.BytesIO()
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    fig.savefig(buf, dpi=120, format=fmt)
    plt.close(fig)
    from ..app.files import atomic_write_bytes

    try:
        atomic_write_bytes(path, buf.getvalue())
    except OSError as exc:
        raise OSError(f"cannot write the phase diagram {path}: {exc.strerror or exc}") from None
    return path


def _edges(v):
    v = np.asarray(v, dtype=float)
    if v.size == 1:
        return np.array([v[0] - 0.5, v[0] + 0.5])
    mid = (v[1:] + v[:-1]) / 2
    return np.concatenate([[2 * v[0] - mid[0]], mid, [2 * v[-1] - mid[-1]]])


def _edge_line(act, sigma_b2s):
    """[(sigma_w2*, sigma_b2)] from :func:`deltaprop.theory.mean_field.edge_of_chaos`."""
    from ..theory.mean_field import edge_of_chaos

    pts = []
    for b in sigma_b2s:
        try:
            pts.append((float(edge_of_chaos(b, act)), float(b)))
        except ValueError:  # no edge here: chi never reaches 1, or jumps past it (SiLU, GELU)
            continue
    return pts

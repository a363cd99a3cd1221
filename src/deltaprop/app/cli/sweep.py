"""``deltaprop sweep``: a grid of ensemble studies on a Dask cluster
(:mod:`deltaprop.stats.sweep`)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys

from ._common import (
    RETIRED,
    add_backend_options,
    add_config_option,
    add_retired,
    backend_from_args,
    progress_bar,
)


def _int(s):
    v = float(s)
    if not math.isfinite(v) or v != int(v):
        raise ValueError(f"{s} is not an integer")
    return int(v)


#: command-line flag -> (grid axis, converter applied to every value)
_AXES = {
    "sigma_w2": ("sigma_w2", float), "sigma_b2": ("sigma_b2", float),
    "depth": ("depth", _int), "width": ("width", _int), "activation": ("activation", str),
    "init": ("init", str), "loss": ("loss", str), "seed": ("seed", _int),
}


def register(sub):
    p = sub.add_parser(
        "sweep", help="grid of ensemble studies of E[delta^2] on a Dask cluster",
        description="Run a grid of ensemble cells (K networks each) as tasks on a "
        "dask.distributed cluster; every cell records E[delta[l]^2] per layer and the "
        "growth rate g of log E[delta^2] per layer (backward).  Rows stream into one CSV "
        "table; a stopped sweep resumes without recomputing finished cells, and a table of "
        "another grid is never mixed in or replaced without --force.  Lists are 'a,b,c' or "
        "'start:stop:num' (num evenly spaced values, both ends included).")
    g = p.add_argument_group("grid (each takes a list)")
    g.add_argument("--sigma-w2", default="0.25:4:16", help="weight variance sigma_w^2 "
                   "(W ~ N(0, sigma_w^2 / n_in)); default 0.25:4:16")
    g.add_argument("--sigma-b2", default="0:0.2:5", help="bias variance sigma_b^2; "
                   "default 0:0.2:5")
    g.add_argument("--depth", default="20", help="number of weight layers L (>= 3)")
    g.add_argument("--width", default="64", help="units per layer n")
    g.add_argument("--activation", default="tanh", help="hidden activation(s)")
    g.add_argument("--init", default="normal",
                   help="initialiser(s); normal/uniform use sigma_w2, others their own scale")
    g.add_argument("--loss", default="mse", help="loss(es); the output layer suits each")
    g.add_argument("--seed", default="0", help="ensemble seed(s)")
    p.add_argument("--K", type=int, default=16, help="networks per cell (default 16)")
    p.add_argument("--samples", type=int, default=32,
                   help="samples m per network (default 32)")
    p.add_argument("--out", default="sweep.csv",
                   help="result table: .csv, or .parquet (needs pyarrow); default sweep.csv. "
                   "A table of the same grid is resumed; any other file is refused")
    p.add_argument("--force", action="store_true",
                   help="start a new table, replacing the file at --out (and the plot)")
    p.add_argument("--plot", default=None,
                   help="phase-diagram image (default: the table's name with .png)")
    p.add_argument("--no-plot", action="store_true", help="no phase diagram")
    p.add_argument("--no-edge", action="store_true",
                   help="do not draw the mean-field edge of chaos on the plot")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="address of a running dask scheduler (tcp://host:8786)")
    where.add_argument("--workers", type=int, default=None,
                       help="start a local cluster of this many worker processes "
                       "(default: one per core)")
    where.add_argument("--serial", action="store_true", help="no Dask: one cell after another")
    p.add_argument("--scheduler-timeout", type=float, default=10.0, metavar="SECONDS",
                   help="give up on --scheduler after this long without an answer (default 10)")
    add_backend_options(p, "the K networks of a cell")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="one line per finished cell (on stderr with --json)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar, no dashboard address, no summary")
    p.add_argument("--json", action="store_true",
                   help="print the summary and the rows as JSON (growth NaN as null)")
    add_config_option(p)
    add_retired(p, {"--sigma-w": "--sigma-w2 (sigma_w squared)",
                    "--sigma-b": "--sigma-b2 (sigma_b squared)", "--m": RETIRED["--m"],
                    "--fresh": "--force (start a new table, replacing the one at --out)"})
    p.set_defaults(func=_sweep)


def parse_list(text, convert):
    """'a,b,c' -> [a, b, c];  'start:stop:num' -> num evenly spaced values (ends included)."""
    text = str(text).strip()
    if text.count(":") == 2:
        lo, hi, num = text.split(":")
        num = int(num)
        if num < 1:
            raise ValueError(f"'{text}': the number of values must be >= 1")
        lo, hi = float(lo), float(hi)
        vals = [lo + (hi - lo) * i / (num - 1) if num > 1 else lo for i in range(num)]
        return [convert(repr(round(v, 12))) for v in vals]
    parts = [s.strip() for s in text.split(",") if s.strip()]
    if not parts:
        raise ValueError(f"empty list {text!r}")
    try:
        return [convert(s) for s in parts]
    except ValueError as exc:
        raise ValueError(f"bad value in list {text!r}: {exc}") from None


def _sweep(args):
    from ...stats import sweep

    for flag, value in (("--K", args.K), ("--samples", args.samples)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    axes = {axis: parse_list(getattr(args, flag), convert)
            for flag, (axis, convert) in _AXES.items()}
    cells = sweep.grid(**axes, K=args.K, m=args.samples)
    be = backend_from_args(args)  # fail here, not on every worker
    if not args.scheduler_timeout > 0:
        raise ValueError(f"--scheduler-timeout must be > 0 seconds, got {args.scheduler_timeout}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    table = sweep.table_path(args.out)  # an unknown format fails here
    resuming = os.path.exists(table) and not args.force
    done = sweep.check_output(cells, args.out, force=args.force)  # before any computing
    plot = None if args.no_plot else _check_plot(args, table, resuming)
    todo = len(cells) - sum(1 for c in cells if sweep.cell_key(c) in done)
    if not args.scheduler and todo:  # the cells run on this machine
        sweep.check_memory(cells, 1 if args.serial else args.workers or os.cpu_count() or 1)
    if not args.serial and todo:
        import dask.distributed  # noqa: F401  (a missing extra fails before any file is written)
    new = [0]
    bar = progress_bar(args.quiet, todo, "sweep", unit="cell")

    def on_row(row):
        new[0] += 1
        if bar is not None:
            bar.update()
        if args.verbose:
            line = (f"[{new[0]}/{todo}] {row['activation']} sigma_w2={row['sigma_w2']:g} "
                    f"sigma_b2={row['sigma_b2']:g} L={row['depth']} n={row['width']} "
                    f"seed={row['seed']}: growth {row['growth']:+.4f}")
            out = sys.stderr if args.json else sys.stdout  # stdout holds only the JSON
            (bar.write if bar is not None else print)(line, file=out)

    try:
        with _cluster(args, todo) as client:
            rows = sweep.run(cells, args.out, client=client, serial=args.serial,
                             backend=be.name, device=be.device, force=args.force,
                             on_row=on_row)
    except sweep.SweepStoppedError as exc:
        print(f"deltaprop: error: {exc}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    reused = len(rows) - new[0]
    if plot is not None:
        sweep.plot_phase(rows, plot, edge=not args.no_edge)
    bad = sum(1 for r in rows if not math.isfinite(r["growth"]))
    if args.json:
        print(json.dumps({"out": args.out, "cells": len(rows), "computed": new[0],
                          "reused": reused, "plot": plot, "no_finite_growth": bad,
                          "rows": [_jsonable(r) for r in rows]}, indent=2, allow_nan=False))
    elif not args.quiet:
        print(f"{len(rows)} cells ({new[0]} computed, {reused} from the table) -> {args.out}")
        if plot is not None:
            print(f"phase diagram -> {plot}")
    if bad and not args.quiet:
        print(f"deltaprop: {bad} cells had no finite growth rate", file=sys.stderr)
    return 0


def _jsonable(row):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                [None if not math.isfinite(e) else e for e in v] if isinstance(v, list) else v)
            for k, v in row.items()}


def _check_plot(args, table, resuming):
    """The plot's path, checked before any computing: a format matplotlib writes, and no
    image replaced unless it belongs to the sweep being resumed (or --force)."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = args.plot or os.path.splitext(table)[0] + ".png"
    kinds = FigureCanvasBase.get_supported_filetypes()
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in kinds:
        raise ValueError(f"--plot {path}: matplotlib cannot write .{ext or '(no suffix)'} images; "
                         f"use one of .{', .'.join(sorted(kinds))} (e.g. .png)")
    if os.path.isdir(path):
        raise ValueError(f"--plot {path} is a folder; give an image file name")
    if not os.path.isdir(os.path.dirname(path) or "."):
        raise ValueError(f"--plot {path}: the folder {os.path.dirname(path)} does not exist; "
                         "create it first")
    if os.path.exists(path) and not (args.force or resuming):
        raise ValueError(f"the phase diagram {path} exists and is not this sweep's: choose "
                         "--plot, add --no-plot, or --force to replace it")
    return path


@contextlib.contextmanager
def _cluster(args, todo):
    """The Dask client the sweep runs on (None for --serial or nothing to compute), with its
    dashboard's address on stderr; Dask's own log lines are kept off the terminal."""
    if args.serial or not todo:
        yield None
        return
    import dask
    from dask.distributed import Client

    from ...stats import sweep

    timeout = f"{args.scheduler_timeout}s"
    with dask.config.set({"distributed.comm.timeouts.connect": timeout}), _quiet_logs():
        if args.scheduler:
            cluster, client = None, sweep.connect(args.scheduler, args.scheduler_timeout)
        else:
            cluster = sweep.local_cluster(args.workers)
            client = Client(cluster, set_as_default=False)
        try:
            if not args.quiet:
                _print_dashboard(client)
            yield client
        finally:
            with contextlib.suppress(Exception):
                client.close(timeout=args.scheduler_timeout)
            if cluster is not None:
                with contextlib.suppress(Exception):
                    cluster.close()


def _print_dashboard(client):
    link = client.dashboard_link
    if not link:
        return
    try:
        import bokeh  # noqa: F401
    except ImportError:
        link += " (it needs bokeh: pip install 'deltaprop[dask]')"
    print(f"dask dashboard: {link}", file=sys.stderr)


@contextlib.contextmanager
def _quiet_logs():
    """Dask's in-process loggers silenced (a lost scheduler logs pages of tracebacks; the
    sweep says in one line what happened instead), restored on exit."""
    loggers = [logging.getLogger(n) for n in ["distributed", *logging.root.manager.loggerDict]
               if n == "distributed" or n.startswith("distributed.")]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for lg, level in zip(loggers, before, strict=True):
            lg.setLevel(level)

"""``deltaprop sweep``: a grid of ensemble studies on a Dask cluster (:mod:`deltaprop.sweep`)."""

from __future__ import annotations

import math
import sys

from ._common import add_backend_options, backend_from_args


def _int(s):
    v = float(s)
    if not math.isfinite(v) or v != int(v):
        raise ValueError(f"{s} is not an integer")
    return int(v)


#: command-line flag -> (grid axis, converter applied to every value)
_AXES = {
    "sigma_w2": ("sigma_w2", float), "sigma_w": ("sigma_w2", lambda s: float(s) ** 2),
    "sigma_b2": ("sigma_b2", float), "sigma_b": ("sigma_b2", lambda s: float(s) ** 2),
    "depth": ("depth", _int), "width": ("width", _int), "activation": ("activation", str),
    "init": ("init", str), "loss": ("loss", str), "seed": ("seed", _int),
}


def register(sub):
    p = sub.add_parser(
        "sweep", help="grid of ensemble studies of E[delta^2] on a Dask cluster",
        description="Run a grid of ensemble cells (K networks each) as tasks on a "
        "dask.distributed cluster; every cell records E[delta[l]^2] per layer and the "
        "growth rate g of log E[delta^2] per layer (backward).  Rows stream into one CSV "
        "table; a stopped sweep resumes without recomputing finished cells.  Lists are "
        "'a,b,c' or 'start:stop:num' (num evenly spaced values, both ends included).")
    g = p.add_argument_group("grid (each takes a list)")
    w = g.add_mutually_exclusive_group()
    w.add_argument("--sigma-w2", default="0.25:4:16", help="weight variance sigma_w^2 "
                   "(W ~ N(0, sigma_w^2 / n_in)); default 0.25:4:16")
    w.add_argument("--sigma-w", default=None, help="weight std sigma_w instead of --sigma-w2")
    b = g.add_mutually_exclusive_group()
    b.add_argument("--sigma-b2", default="0:0.2:5", help="bias variance; default 0:0.2:5")
    b.add_argument("--sigma-b", default=None, help="bias std instead of --sigma-b2")
    g.add_argument("--depth", default="20", help="number of weight layers L (>= 3)")
    g.add_argument("--width", default="64", help="units per layer n")
    g.add_argument("--activation", default="tanh", help="hidden activation(s)")
    g.add_argument("--init", default="normal",
                   help="initialiser(s); normal/uniform use sigma_w2, others their own scale")
    g.add_argument("--loss", default="mse", help="loss(es); the output layer suits each")
    g.add_argument("--seed", default="0", help="ensemble seed(s)")
    p.add_argument("--K", type=int, default=16, help="networks per cell (default 16)")
    p.add_argument("--m", type=int, default=32, help="samples per network (default 32)")
    p.add_argument("--out", default="sweep.csv",
                   help="result table (.csv, or .parquet with pyarrow); default sweep.csv")
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
    add_backend_options(p, "the K networks of a cell")
    p.add_argument("--fresh", action="store_true",
                   help="start a new table instead of resuming the one at --out")
    p.add_argument("-v", "--verbose", action="store_true", help="one line per finished cell")
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
    from .. import sweep

    axes = {}
    for flag, (axis, convert) in _AXES.items():
        text = getattr(args, flag)
        if text is None or (flag in ("sigma_w2", "sigma_b2") and
                            getattr(args, flag.removesuffix("2")) is not None):
            continue
        axes[axis] = parse_list(text, convert)
    cells = sweep.grid(**axes, K=args.K, m=args.m)
    be = backend_from_args(args)  # fail here, not on every worker
    if not args.serial:
        import dask.distributed  # noqa: F401  (a missing extra fails before any file is written)
    before = {r["key"] for r in sweep.read_table(_table(args.out))} if not args.fresh else set()
    new = [0]

    def on_row(row):
        new[0] += 1
        if args.verbose:
            print(f"[{new[0]}] {row['activation']} sigma_w2={row['sigma_w2']:g} "
                  f"sigma_b2={row['sigma_b2']:g} L={row['depth']} n={row['width']} "
                  f"seed={row['seed']}: growth {row['growth']:+.4f}", flush=True)

    client = None
    if args.scheduler:
        from dask.distributed import Client

        client = Client(args.scheduler, set_as_default=False)
    elif args.workers is not None and not args.serial:
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        from dask.distributed import Client

        cluster = sweep.local_cluster(args.workers)
        client = Client(cluster, set_as_default=False)
    try:
        rows = sweep.run(cells, args.out, client=client, serial=args.serial,
                         backend=be.name, device=be.device, resume=not args.fresh,
                         on_row=on_row)
    finally:
        if client is not None:
            client.close()
            if args.workers is not None:
                cluster.close()
    reused = sum(1 for c in cells if sweep.cell_key(c) in before)
    print(f"{len(rows)} cells ({new[0]} computed, {reused} from the table) -> {args.out}")
    if not args.no_plot:
        path = args.plot or _table(args.out).removesuffix(".csv") + ".png"
        sweep.plot_phase(rows, path, edge=not args.no_edge)
        print(f"phase diagram -> {path}")
    finite = [r for r in rows if math.isfinite(r["growth"])]
    if len(finite) < len(rows):
        print(f"{len(rows) - len(finite)} cells had no finite growth rate", file=sys.stderr)
    return 0


def _table(out):
    return out[: -len(".parquet")] + ".csv" if out.endswith(".parquet") else out

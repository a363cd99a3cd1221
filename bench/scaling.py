"""Growth: time per step against width, depth and batch; Dask and GPU throughput.

Usage::

    python bench/scaling.py --growth --plot growth.png   # time per step, log axes
    python bench/scaling.py --growth --json --quick      # (smoke run: small sizes)
    python bench/scaling.py                  # Dask table (about a minute on 2 cores)
    python bench/scaling.py --json
    python bench/scaling.py --cells 40 --repeats 1 --workers 1 2 4
    python bench/scaling.py --K 64            # heavier cells: 4x the networks per cell

Workloads (all float64):

* ``sweep``: ``--cells`` cells of the default study of ``deltaprop sweep`` (L = 20 layers
  of n = 64 tanh units, K = 16 networks, m = 32 samples, MSE; sigma_w2 spread over
  [0.25, 4]), run by :func:`deltaprop.stats.sweep.run` serially in this process (``serial``) and
  as tasks on a ``LocalCluster`` of w single-threaded worker processes (``w workers``).
  The cluster is started once per w and warmed up with one cell; the time is the median
  over ``--repeats`` fresh tables of the whole sweep (submit, compute, stream the rows).
* ``gradients``: :func:`deltaprop.app.dask.sums` (forward, backward and the exact tree
  reduction) over a Dask array of ``--rows`` rows x 64 in chunks of 8192 rows (held in
  this process's memory for ``serial``, persisted on the workers for the clusters),
  through a 64-128-128-10 tanh/softmax network.
* ``gpu`` (only where ``torch.cuda.is_available()``): the sweep's cells run serially with
  ``backend="torch", device="cuda"`` against NumPy on the CPU.

``--growth`` instead times one training step (:func:`deltaprop.backprop.train_step` as
``fit`` calls it), the textbook NumPy step and the matrix-product floor of ``bench/run.py``
(one thread, CPU clock, interleaved, minimum over repeats) along three lines through one
base network (3 tanh layers of width 128, MSE, batch 128, float32): width n (16 .. 1024),
depth L (2 .. 64 layers of width 128), batch m (1 .. 4096); and the peak memory that
:func:`deltaprop.stats.record` allocates (``tracemalloc``) while it streams data sets of
growing m (up to 10^6 samples, 1 GB of data), drawn batch by batch as a data set larger
than memory would be: it stays bounded (sub-batches, merged sums).  ``--plot`` draws the
three lines on log axes with the floor beside deltaprop.

Throughput is cells/s or rows/s; ``speedup`` is relative to one worker.  The machine's load
average (1 min) is recorded before and after, because a shared machine's numbers mean
little without it.  Benchmarks are measurements, never assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per process, workers too

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import numpy as np  # noqa: E402

import deltaprop as dp  # noqa: E402
from deltaprop.stats import sweep as sw  # noqa: E402


def _cells(n, **study):
    return sw.grid(sigma_w2=list(np.linspace(0.25, 4.0, n)), **study)


def _time_sweep(cells, repeats, **kw):
    times = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            path = os.path.join(tmp, f"t{r}.csv")
            t = time.perf_counter()
            sw.run(cells, path, resume=False, **kw)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def _time_sums(net, X, y, repeats, scheduler):
    from deltaprop.app import dask as dd

    dd.sums(net, X[:8192], y[:8192], "softmax-cross-entropy", scheduler=scheduler)  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        dd.sums(net, X, y, "softmax-cross-entropy", scheduler=scheduler)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# --- growth: time per step against width, depth, batch ------------------------------------

BASE = {"width": 128, "depth": 3, "batch": 128}
LINES = {"width": [16, 32, 64, 128, 256, 512, 1024], "depth": [2, 4, 8, 16, 32, 64],
         "batch": [1, 4, 16, 64, 256, 1024, 4096]}
QUICK = {"width": [16, 64], "depth": [2, 4], "batch": [4, 64]}


def _bench_run():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(HERE, "run.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _min_times(fns, repeats, target_s):
    """Minimum over ``repeats`` interleaved rounds of seconds per call (CPU clock)."""
    now = time.process_time
    inner = {}
    for name, fn in fns.items():
        fn()
        t = now()
        fn()
        inner[name] = max(1, min(1000, int(target_s / max(now() - t, 1e-6))))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t = now()
            for _ in range(inner[name]):
                fn()
            best[name] = min(best[name], (now() - t) / inner[name])
    return best


def _record_peak(m, batch=1024):
    """Peak bytes tracemalloc sees while ``record`` streams m samples drawn batch by batch
    (the data set never exists in memory as a whole, as for one larger than memory)."""
    import tracemalloc

    from deltaprop.stats import record

    n = BASE["width"]
    net = dp.Network.init([n] * (BASE["depth"] + 1), "tanh", "identity", seed=0,
                          dtype="float32")

    def batches():
        rng = np.random.default_rng(0)
        for s in range(0, m, batch):
            b = min(batch, m - s)
            yield (rng.standard_normal((b, n), dtype=np.float32),
                   rng.standard_normal((b, n), dtype=np.float32))

    record(net, *next(iter(batches())), "mse")  # imports and caches warm
    tracemalloc.start()
    record(net, batches(), None, "mse")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def growth(quick=False, repeats=5, target_s=0.05):
    """Rows {line, value, deltaprop_s, textbook_s, floor_s} and record's peak memory."""
    run = _bench_run()
    lines = QUICK if quick else LINES
    rows = []
    for line, values in lines.items():
        for v in values:
            p = dict(BASE, **{line: v})
            sizes = [p["width"]] * (p["depth"] + 1)
            net = dp.Network.init(sizes, "tanh", "identity", seed=0, dtype="float32")
            x, y = run._data(sizes, p["batch"], "float32", "mse")
            fns = run.deltaprop_fns(net, x, y, "mse", 0.01)
            t = _min_times({"deltaprop": fns["deltaprop"],
                            "textbook": run.textbook_fn(net, x, y, "mse", 0.01),
                            "floor": run.floor_fn(net.W, x)}, repeats, target_s)
            rows.append({"line": line, "value": v, **{f"{k}_s": t[k] for k in t}})
    memory = [{"m": m, "peak_bytes": _record_peak(m), "data_bytes": 2 * m * BASE["width"] * 4}
              for m in ([1000, 4000] if quick else [1000, 10_000, 100_000, 1_000_000])]
    return rows, memory


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    names = {"width": "width n (3 layers, batch 128)", "depth": "depth L (width 128, batch 128)",
             "batch": "batch m (3 layers of width 128)"}
    for ax, line in zip(axes, names, strict=True):
        sel = [r for r in rows if r["line"] == line]
        xs = [r["value"] for r in sel]
        for key, style in (("deltaprop_s", "o-"), ("textbook_s", "s--"), ("floor_s", "^:")):
            ax.loglog(xs, [1e3 * r[key] for r in sel], style, label=key[:-2], base=2)
        ax.set_xlabel(names[line])
        ax.set_ylabel("ms per training step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("deltaprop train_step vs the textbook NumPy step and the matrix-product "
                 "floor (tanh, MSE, float32, 1 thread, CPU clock)")
    tmp = f"{path}.{os.getpid()}.tmp.png"
    fig.savefig(tmp, dpi=120)  # then renamed: a reader never sees half a file
    plt.close(fig)
    os.replace(tmp, path)


def main_growth(args):
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        rows, memory = growth(args.quick, repeats=2 if args.quick else 5,
                              target_s=0.005 if args.quick else 0.05)
    header = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": platform.machine(), "threads": 1, "clock": "cpu",
              "numpy": np.__version__, "base": BASE, "load_avg": os.getloadavg()[0]}
    if args.plot:
        plot(rows, args.plot)
    if args.json:
        print(json.dumps({"header": header, "rows": rows, "record_memory": memory}, indent=1))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    print(f"{'line':<6} {'value':>6} {'deltaprop ms':>13} {'textbook ms':>12} {'floor ms':>9} "
          f"{'vs_floor':>8}")
    for r in rows:
        print(f"{r['line']:<6} {r['value']:>6} {1e3 * r['deltaprop_s']:>13.4g} "
              f"{1e3 * r['textbook_s']:>12.4g} {1e3 * r['floor_s']:>9.4g} "
              f"{r['deltaprop_s'] / r['floor_s']:>8.2f}")
    for r in memory:
        print(f"record streaming m = {r['m']}: peak {r['peak_bytes'] / 2**20:.1f} MiB "
              f"(the data set: {r['data_bytes'] / 2**20:.1f} MiB)")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--growth", action="store_true",
                    help="time per step against width, depth and batch (no Dask)")
    ap.add_argument("--plot", metavar="PNG", help="with --growth: draw the three lines here")
    ap.add_argument("--quick", action="store_true", help="with --growth: small sizes (smoke)")
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--K", type=int, default=sw.STUDY["K"], help="networks per cell")
    ap.add_argument("--width", type=int, default=sw.DEFAULTS["width"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.plot and not args.growth:
        ap.error("--plot needs --growth")
    if args.growth:
        if args.plot and os.path.exists(args.plot):
            print(f"scaling.py: {args.plot} exists; remove it or choose another --plot path",
                  file=sys.stderr)
            return 2
        return main_growth(args)

    import dask.array as da
    from dask.distributed import Client

    header = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "machine": platform.machine(), "cpus": os.cpu_count(),
              "python": platform.python_version(), "numpy": np.__version__,
              "load_before": os.getloadavg()[0], "cells": args.cells, "K": args.K,
              "width": args.width, "rows": args.rows,
              "repeats": args.repeats, "threads_per_process": os.environ["OMP_NUM_THREADS"]}
    cells = _cells(args.cells, K=args.K, width=args.width)
    gen = da.random.default_rng(0)  # drawn chunk by chunk where the chunk lives
    X = gen.normal(size=(args.rows, 64), chunks=(8192, 64))
    y = gen.integers(0, 10, size=args.rows, chunks=8192)
    Xh, yh = da.compute(X, y)
    Xh, yh = da.from_array(Xh, chunks=(8192, -1)), da.from_array(yh, chunks=8192)
    net = dp.Network.init([64, 128, 128, 10], "tanh", "softmax", seed=0)

    rows = []
    sw.run_cell(cells[0])  # imports and caches warm
    t = _time_sweep(cells, args.repeats, serial=True)
    rows.append({"workload": "sweep", "how": "serial (no Dask)", "seconds": t,
                 "throughput": args.cells / t, "unit": "cells/s"})
    t = _time_sums(net, Xh, yh, args.repeats, "synchronous")
    rows.append({"workload": "gradients", "how": "serial (no Dask)", "seconds": t,
                 "throughput": args.rows / t, "unit": "rows/s"})
    for w in args.workers:
        t0 = time.perf_counter()
        cluster = sw.local_cluster(w)  # as `deltaprop sweep` starts it
        client = Client(cluster, set_as_default=False)
        start = time.perf_counter() - t0
        try:
            client.submit(sw.run_cell, cells[0], pure=False).result()  # warm workers
            t = _time_sweep(cells, args.repeats, client=client)
            rows.append({"workload": "sweep", "how": f"{w} worker(s)", "seconds": t,
                         "throughput": args.cells / t, "unit": "cells/s",
                         "cluster_start_s": start})
            Xc, yc = client.persist([X, y])  # the data set lives on the workers
            t = _time_sums(net, Xc, yc, args.repeats, client)
            del Xc, yc
            rows.append({"workload": "gradients", "how": f"{w} worker(s)", "seconds": t,
                         "throughput": args.rows / t, "unit": "rows/s"})
        finally:
            client.close()
            cluster.close()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and torch.cuda.is_available():
        gpu_cells = _cells(min(args.cells, 16), K=args.K, width=args.width)
        for backend, device, how in ((None, None, "numpy CPU"), ("torch", "cuda", "torch GPU")):
            sw.run_cell(gpu_cells[0], backend, device)
            t = _time_sweep(gpu_cells, args.repeats, serial=True, backend=backend,
                            device=device)
            rows.append({"workload": "gpu", "how": how, "seconds": t,
                         "throughput": len(gpu_cells) / t, "unit": "cells/s"})
    header["load_after"] = os.getloadavg()[0]
    for r in rows:
        base = next((b for b in rows if b["workload"] == r["workload"]
                     and b["how"].startswith("1 worker")), None)
        r["speedup"] = r["throughput"] / base["throughput"] if base else None

    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return 0
    print(" ".join(f"{k}={v}" for k, v in header.items()))
    print(f"{'workload':<10} {'how':<18} {'seconds':>8} {'throughput':>14} {'speedup':>8}")
    for r in rows:
        sp = "" if r["speedup"] is None else f"{r['speedup']:.2f}"
        print(f"{r['workload']:<10} {r['how']:<18} {r['seconds']:>8.3f} "
              f"{r['throughput']:>10.1f} {r['unit']:<7} {sp:>5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

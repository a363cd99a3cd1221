"""Throughput of the default sweep study on 1 vs 2 local Dask workers (and a GPU if lent).

Usage::

    python bench/scaling.py                  # table (about a minute on 2 cores)
    python bench/scaling.py --json
    python bench/scaling.py --cells 40 --repeats 1 --workers 1 2 4
    python bench/scaling.py --K 64            # heavier cells: 4x the networks per cell

Workloads (all float64):

* ``sweep``: ``--cells`` cells of the default study of ``deltaprop sweep`` (L = 20 layers
  of n = 64 tanh units, K = 16 networks, m = 32 samples, MSE; sigma_w2 spread over
  [0.25, 4]), run by :func:`deltaprop.sweep.run` serially in this process (``serial``) and
  as tasks on a ``LocalCluster`` of w single-threaded worker processes (``w workers``).
  The cluster is started once per w and warmed up with one cell; the time is the median
  over ``--repeats`` fresh tables of the whole sweep (submit, compute, stream the rows).
* ``gradients``: :func:`deltaprop.dask.sums` (forward, backward and the exact tree
  reduction) over a Dask array of ``--rows`` rows x 64 in chunks of 8192 rows (held in
  this process's memory for ``serial``, persisted on the workers for the clusters),
  through a 64-128-128-10 tanh/softmax network.
* ``gpu`` (only where ``torch.cuda.is_available()``): the sweep's cells run serially with
  ``backend="torch", device="cuda"`` against NumPy on the CPU.

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
from deltaprop import sweep as sw  # noqa: E402


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
    from deltaprop import dask as dd

    dd.sums(net, X[:8192], y[:8192], "softmax-cross-entropy", scheduler=scheduler)  # warm up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        dd.sums(net, X, y, "softmax-cross-entropy", scheduler=scheduler)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", type=int, default=64)
    ap.add_argument("--rows", type=int, default=262144)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--K", type=int, default=sw.STUDY["K"], help="networks per cell")
    ap.add_argument("--width", type=int, default=sw.DEFAULTS["width"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

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

"""Time per epoch of ``deltaprop train``'s default run next to scikit-learn and PyTorch.

Usage::

    OMP_NUM_THREADS=1 python bench/train_epoch.py            # table
    python bench/train_epoch.py --epochs 30 --repeats 3 --clock wall --json

The same data (digits: the ``deltaprop train`` split, 70/10/20 with seed 0, standardised on
the training split), the same architecture (64-128-10, tanh hidden layer, softmax output,
cross-entropy), float64, minibatches of 32 reshuffled every epoch, the same number of epochs
and two solvers:

* ``adam``: Adam, eta = 0.001 (the default of all three);
* ``sgd``: plain minibatch gradient descent, eta = 0.1 (no momentum).

Contenders:

* ``deltaprop fit``: :func:`deltaprop.app.train.fit` exactly as ``deltaprop train`` calls it,
  including its per-epoch evaluation of loss and accuracy on the training and validation sets;
* ``deltaprop fit (no val)``: the same without validation data;
* ``deltaprop step loop``: ``fit``'s inner loop alone, every step one
  :func:`deltaprop.backprop.train_step` with the optimiser applied layer by layer in place
  (``optimizer=opt, state=state``; Adam included), no per-epoch evaluation;
* ``deltaprop fused=False``: ``fit`` with its two-line loop (``gradients`` then
  ``opt.update``) instead of the fused :func:`deltaprop.backprop.train_step` it takes by
  default for every optimiser with a rule (for Adam this was ``fit``'s only loop before
  the fused stateful step);
* ``sklearn MLPClassifier``: ``solver="adam"`` or ``"sgd"`` (``momentum=0``), ``alpha=0``,
  ``tol=0``; ``fit`` time divided by ``n_iter_`` (it also computes the training loss per epoch);
* ``torch loop``: ``nn.Sequential(Linear, Tanh, Linear)`` in float64, ``CrossEntropyLoss``,
  ``torch.optim.Adam``/``SGD``, ``randperm`` minibatches, no evaluation.

The contenders run interleaved: ``--repeats`` rounds (default 3), each running every
contender once after one warm-up run each; a row gives the minimum and the median over the
rounds of (time of the run / epochs), on the process's CPU clock (``--clock cpu``, the
default: steady on a shared machine) or the wall clock (``--clock wall``).  The threads of
NumPy's BLAS and of PyTorch are limited to ``--threads`` (default 1).

Measured tables, with the machine, thread count and clock: docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings


def _parse():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--json", action="store_true")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(ARGS.threads)


HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

from deltaprop import Network  # noqa: E402
from deltaprop.app import data  # noqa: E402
from deltaprop.app.train import evaluate, fit  # noqa: E402

SOLVERS = {"adam": 0.001, "sgd": 0.1}


def _now():
    """The clock of ``--clock``: the process's CPU time (default) or the wall clock."""
    return time.perf_counter() if ARGS is not None and ARGS.clock == "wall" \
        else time.process_time()


def digits():
    ds = data.load("digits")
    tr, va, te = data.train_val_test_split(ds, val=0.1, test=0.2, seed=0)
    std = data.Standardizer().fit(tr.x)
    return [(std.transform(d.x), d.y) for d in (tr, va, te)]


def run_deltaprop(splits, solver, epochs, val=True, fused=True):
    (x, y), (xv, yv), (xt, yt) = splits
    net = Network.init([64, 128, 10], "tanh", "softmax", seed=0)
    t = _now()
    res = fit(net, x, y, "softmax-cross-entropy", optimizer="adam" if solver == "adam" else "gd",
              learning_rate=SOLVERS[solver], batch_size=32, epochs=epochs, seed=0,
              x_val=xv if val else None, y_val=yv if val else None, fused=fused)
    sec = _now() - t
    return sec / epochs, evaluate(res.net, xt, yt, "softmax-cross-entropy")["accuracy"]


def run_step_loop(splits, solver, epochs):
    """fit's inner loop: train_step with the optimiser fused, the data prepared once."""
    import numpy as np

    from deltaprop import backprop, losses, optim
    from deltaprop.app.train import batches, evaluate, prepare

    (x, y), _, (xt, yt) = splits
    net = Network.init([64, 128, 10], "tanh", "softmax", seed=0)
    loss = losses.get("softmax-cross-entropy")
    X, Y = prepare(net, loss, x, y)
    opt = optim.get("adam" if solver == "adam" else "gd", SOLVERS[solver])
    state, ws = opt.init(net), backprop.Workspace()
    rng = np.random.default_rng(0)
    t = _now()
    for _ in range(epochs):
        good = net
        for idx in batches(X.shape[0], 32, rng):
            net, J = backprop.train_step(net, X.take(idx, axis=0), Y.take(idx, axis=0), loss,
                                         SOLVERS[solver], check=False, workspace=ws,
                                         donate=net is not good, optimizer=opt, state=state)
            float(J)
    sec = _now() - t
    return sec / epochs, evaluate(net, xt, yt, "softmax-cross-entropy")["accuracy"]


def run_sklearn(splits, solver, epochs):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    (x, y), _, (xt, yt) = splits
    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="tanh", solver=solver,
                        learning_rate_init=SOLVERS[solver], batch_size=32, max_iter=epochs,
                        alpha=0.0, tol=0.0, n_iter_no_change=epochs + 1, shuffle=True,
                        momentum=0.0, nesterovs_momentum=False, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        t = _now()
        clf.fit(x, y)
        sec = _now() - t
    return sec / clf.n_iter_, clf.score(xt, yt)


def run_torch(splits, solver, epochs):
    import torch

    torch.set_num_threads(ARGS.threads if ARGS else 1)
    torch.manual_seed(0)
    (x, y), _, (xt, yt) = splits
    X, Y = torch.tensor(x), torch.tensor(y)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(),
                                torch.nn.Linear(128, 10)).double()
    opt = (torch.optim.Adam if solver == "adam" else torch.optim.SGD)(
        model.parameters(), lr=SOLVERS[solver])
    lossf = torch.nn.CrossEntropyLoss()
    m = X.shape[0]
    t = _now()
    for _ in range(epochs):
        perm = torch.randperm(m)
        for i in range(0, m, 32):
            idx = perm[i:i + 32]
            opt.zero_grad()
            lossf(model(X[idx]), Y[idx]).backward()
            opt.step()
    sec = _now() - t
    with torch.no_grad():
        acc = (model(torch.tensor(xt)).argmax(1).numpy() == yt).mean()
    return sec / epochs, float(acc)


def main():
    args = ARGS
    splits = digits()
    contenders = [("deltaprop fit", lambda s: run_deltaprop(splits, s, args.epochs)),
                  ("deltaprop fit (no val)",
                   lambda s: run_deltaprop(splits, s, args.epochs, val=False)),
                  ("deltaprop step loop", lambda s: run_step_loop(splits, s, args.epochs)),
                  ("deltaprop fused=False",  # the two-line loop, gradients + opt.update
                   lambda s: run_deltaprop(splits, s, args.epochs, fused=False)),
                  ("sklearn MLPClassifier", lambda s: run_sklearn(splits, s, args.epochs))]
    try:
        import torch  # noqa: F401

        contenders.append(("torch loop", lambda s: run_torch(splits, s, args.epochs)))
    except ImportError:
        pass
    rows = []
    for solver in SOLVERS:
        for _, f in contenders:  # warm-up
            f(solver)
        runs = {name: [] for name, _ in contenders}
        for _ in range(args.repeats):  # interleaved rounds
            for name, f in contenders:
                runs[name].append(f(solver))
        for name, got in runs.items():
            times = [sec for sec, _ in got]
            rows.append({"contender": name, "solver": solver,
                         "ms_per_epoch": 1000 * min(times),
                         "median_ms_per_epoch": 1000 * statistics.median(times),
                         "test_accuracy": got[-1][1]})
    header = {"epochs": args.epochs, "repeats": args.repeats, "threads": args.threads,
              "clock": args.clock,
              "m_train": int(splits[0][0].shape[0]), "architecture": "64-128-10 tanh/softmax",
              "dtype": "float64", "batch_size": 32}
    if args.json:
        print(json.dumps({"header": header, "rows": rows}, indent=2))
        return
    print(f"digits, m_train = {header['m_train']}, {header['architecture']}, float64, "
          f"batch 32, {args.epochs} epochs, {args.threads} thread(s), {args.clock} clock, "
          f"min (median) of {args.repeats} interleaved rounds")
    print(f"{'contender':<24} {'solver':<6} {'ms/epoch':>9} {'median':>9} {'test acc':>9}")
    for r in rows:
        print(f"{r['contender']:<24} {r['solver']:<6} {r['ms_per_epoch']:>9.1f} "
              f"{r['median_ms_per_epoch']:>9.1f} {r['test_accuracy']:>9.4f}")


if __name__ == "__main__":
    main()

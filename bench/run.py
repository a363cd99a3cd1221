"""deltaprop benchmarks: one training step against PyTorch eager and the matrix-product floor.

Usage::

    python bench/run.py                 # the table (about two minutes)
    python bench/run.py --json          # {"header": {...}, "rows": [...]}
    python bench/run.py --quick         # every configuration, tiny repeats (< 60 s, CI smoke)
    python bench/run.py --threads 1 --configs 1 4
    python bench/run.py --threads 1 --clock cpu   # CPU time: steadier on a shared machine
    python bench/run.py --table bench/results/threads1-cpu.json   # re-print a saved run
    python bench/run.py --backend torch --device cuda    # the same table on a GPU
    python bench/run.py --backend cupy                   # (CuPy, device 0)

Every configuration times, in one process and interleaved (each repeat runs every
contender once, in rotating order), after a warm-up, the median over repeats of:

* ``deltaprop_ms``: one training step (forward, backward, gradient-descent update) with
  :func:`deltaprop.backprop.train_step` as ``fit`` calls it (a reused workspace,
  ``donate=True``, the data checked once before the loop: ``check=False``, one-hot targets);
* ``checked_ms``: the same step checking its inputs (``check=True``, integer labels);
* ``gradients_ms``: the same step through the public ``gradients`` + ``step`` (the full
  trace and gradients, all freshly allocated);
* ``textbook_ms``: the plain NumPy step a student writes from the equations (fresh arrays
  for every operation, no checks, ``W -= eta * dW``), doing the same work as ``train_step``
  (forward, the loss J, delta, gradients, update);
* ``torch_ms``: PyTorch eager on the CPU: ``nn.Sequential``, the loss, ``backward()`` and
  ``torch.optim.SGD.step()``, same dtype, same thread count;
* ``floor_ms``: only the matrix products the step needs, with NumPy into preallocated
  arrays: per layer the forward ``a @ W.T``, the weight gradient ``delta.T @ a`` and (except
  for layer 1) the input gradient ``delta @ W``.

``vs_torch = deltaprop_ms / torch_ms``, ``vs_textbook = deltaprop_ms / textbook_ms`` and
``vs_floor = deltaprop_ms / floor_ms``.
Configuration 3 adds scikit-learn's ``MLPClassifier`` per epoch on the digits data;
6 compares a stack of K networks with a Python loop over K single networks (``vs_loop``
is the speed-up); 7 compares a backward pass that records delta statistics with a plain
one (``overhead``).  Benchmarks are measurements, never assertions.

``--backend torch`` / ``--backend cupy`` (with ``--device``) run deltaprop on that array
library: the network, the data and the floor's products live there, PyTorch eager runs on
the same device, the clock waits for the device before each reading (wall clock only), and
the NumPy-only contenders (the textbook step, scikit-learn, the recording configurations
6 and 7) are left out.  A missing library or device stops the script with one line.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))

import deltaprop as dp  # noqa: E402
from deltaprop import backprop as bp  # noqa: E402

CE = "softmax-cross-entropy"


# --- timing ----------------------------------------------------------------------------------

#: the clock of :func:`measure`: wall time (default) or this process's CPU time; and the
#: pause between two contenders' blocks (see ``--settle``)
CLOCK = {"now": time.perf_counter, "settle": 0.0}

#: the array library deltaprop runs on (``--backend``, ``--device``); ``xp`` None: NumPy
BACKEND = {"name": "numpy", "device": None, "xp": None}


def measure(fns: dict, repeats: int, target_s: float) -> dict:
    """Median seconds per call of each ``fns[name]()``, interleaved.

    Each function is warmed up, then called ``inner`` times per repeat (``inner`` chosen so
    one repeat lasts about ``target_s``); every repeat runs all functions once, the order
    rotating from repeat to repeat so drifting load hits every contender alike.
    """
    now = CLOCK["now"]
    inner = {}
    for name, fn in fns.items():
        fn()
        t = now()
        fn()
        one = max(now() - t, 1e-7)
        inner[name] = max(1, min(10_000, int(target_s / one)))
    names = list(fns)
    times = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            fn, k = fns[n], inner[n]
            if CLOCK["settle"]:
                time.sleep(CLOCK["settle"])  # let the previous library's spinning threads park
            t = now()
            for _ in range(k):
                fn()
            times[n].append((now() - t) / k)
    return {n: statistics.median(v) for n, v in times.items()}


# --- contenders ----------------------------------------------------------------------------

def _copy(net):
    xp = net.xp
    return net.replace(W=[None] + [xp.asarray(w, copy=True) for w in net.W[1:]],
                       b=[None] + [xp.asarray(v, copy=True) for v in net.b[1:]])


def deltaprop_fns(net, x, y, loss, eta):
    """train_step as ``fit`` calls it (targets checked once), checked per step, and the
    public gradients + step."""
    from deltaprop import _checks

    state = {"net": _copy(net), "checked": _copy(net)}
    ws, ws2 = bp.Workspace(), bp.Workspace()
    row = dp.losses.get(loss)
    Y = _checks.check_y(net, row, y, x.shape[-2], net.xp)  # what fit's one check gives

    def train():
        state["net"], _ = bp.train_step(state["net"], x, Y, row, eta, check=False,
                                        workspace=ws, donate=True)

    def checked():
        state["checked"], _ = bp.train_step(state["checked"], x, y, loss, eta, workspace=ws2,
                                            donate=True)

    def public():
        bp.step(net, bp.gradients(net, x, y, loss)[1], eta)

    return {"deltaprop": train, "checked": checked, "gradients": public}


def torch_fn(net, x, y, loss, eta, device="cpu"):
    """One PyTorch eager step: nn.Sequential, loss, backward, SGD step (same weights);
    ``net``, ``x``, ``y`` are NumPy, moved to ``device``."""
    import torch

    acts = {"sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    layers = []
    for l in range(1, net.L + 1):
        lin = torch.nn.Linear(net.sizes[l - 1], net.sizes[l])
        with torch.no_grad():
            lin.weight = torch.nn.Parameter(torch.from_numpy(net.W[l].copy()))
            lin.bias = torch.nn.Parameter(torch.from_numpy(net.b[l].copy()))
        layers.append(lin)
        name = net.activations[l].name
        if l < net.L:
            layers.append(acts[name]())
        elif name not in ("identity", "softmax"):
            layers.append(acts[name]())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=eta)
    xt = torch.from_numpy(x).to(device)
    if loss == CE:
        lossfn, yt = torch.nn.CrossEntropyLoss(), torch.from_numpy(y).to(device)
    else:
        lossfn, yt = torch.nn.MSELoss(), torch.from_numpy(y).to(device)

    def step():
        opt.zero_grad()
        lossfn(model(xt), yt).backward()
        opt.step()

    return step


def textbook_fn(net, x, y, loss, eta):
    """The textbook NumPy step: every operation a fresh array, no checks, ``W -= eta * dW``.

    Forward, the loss J, delta[L] = a - y (softmax + cross-entropy, or identity + MSE),
    delta[l] = (delta[l+1] @ W[l+1]) * f'(z[l]), dW, db and the update, on its own copy of
    the parameters; the one-hot targets are made once, outside the step.
    """
    W = [None] + [w.copy() for w in net.W[1:]]
    b = [None] + [v.copy() for v in net.b[1:]]
    names = [f.name for f in net.activations]
    L, m = net.L, x.shape[0]
    Y = np.eye(net.sizes[-1], dtype=x.dtype)[y] if loss == CE else y

    def f(name, z):
        if name == "sigmoid":
            return 1 / (1 + np.exp(-z))
        if name == "tanh":
            return np.tanh(z)
        if name == "relu":
            return np.maximum(z, 0)
        if name == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            return e / e.sum(axis=1, keepdims=True)
        return z

    def df(name, z, a):
        if name == "sigmoid":
            return a * (1 - a)
        if name == "tanh":
            return 1 - a * a
        return (z > 0).astype(z.dtype)  # relu

    def step():
        zs, a = [None], [x]
        for l in range(1, L + 1):
            zs.append(a[l - 1] @ W[l].T + b[l])
            a.append(f(names[l], zs[l]))
        if loss == CE:
            J = -np.log(a[L][np.arange(m), y]).mean()
        else:
            J = 0.5 * ((a[L] - Y) ** 2).sum(axis=1).mean()
        delta = a[L] - Y
        for l in range(L, 0, -1):
            dW = delta.T @ a[l - 1] / m
            db = delta.mean(axis=0)
            if l > 1:
                delta = (delta @ W[l]) * df(names[l - 1], zs[l - 1], a[l - 1])
            W[l] -= eta * dW
            b[l] -= eta * db
        return J

    return step


def floor_fn(W, x):
    """Only the matrix products of one step, into preallocated arrays (NumPy).

    ``W`` is the per-layer list (slot 0 = None) of (n_l, n_{l-1}) or (K, n_l, n_{l-1}).
    """
    L = len(W) - 1
    lead = W[1].shape[:-2]
    m = x.shape[-2]
    a = [x] + [np.zeros((*lead, m, W[l].shape[-2]), W[l].dtype) for l in range(1, L + 1)]
    d = [None] + [np.zeros_like(a[l]) for l in range(1, L + 1)]
    dW = [None] + [np.zeros_like(W[l]) for l in range(1, L + 1)]
    rng = np.random.default_rng(0)
    for l in range(1, L + 1):
        d[l][...] = rng.standard_normal(d[l].shape) * 0.1

    def step():
        for l in range(1, L + 1):
            np.matmul(a[l - 1], W[l].mT, out=a[l])
        for l in range(L, 0, -1):
            np.matmul(d[l].mT, a[l - 1], out=dW[l])
            if l > 1:
                np.matmul(d[l], W[l], out=d[l - 1])

    return step


def floor_xp(W, x):
    """The floor's matrix products on any array library (fresh results: no ``out=``)."""
    from deltaprop import _backend

    L, xp = len(W) - 1, _backend.namespace(W[1])
    rng = np.random.default_rng(0)
    d = [None] + [_on_backend(0.1 * rng.standard_normal((x.shape[-2], w.shape[-2]))
                              .astype(_np_dtype(w))) for w in W[1:]]

    def step():
        a = [x]
        for l in range(1, L + 1):
            a.append(xp.matmul(a[l - 1], W[l].mT))
        for l in range(L, 0, -1):
            xp.matmul(d[l].mT, a[l - 1])
            if l > 1:
                xp.matmul(d[l], W[l])

    return step


def _np_dtype(w):
    return np.dtype(str(w.dtype).rsplit(".", 1)[-1])


def _on_backend(arr):
    """A NumPy array on ``--backend``/``--device`` (itself for NumPy)."""
    if BACKEND["xp"] is None:
        return arr
    from deltaprop import _backend

    return _backend.asarray(arr, BACKEND["xp"], device=BACKEND["device"])


def _contenders(net, x, y, loss, eta):
    """deltaprop's three ways, the textbook step, PyTorch eager and the floor, on the
    benchmark's backend (NumPy inputs)."""
    if BACKEND["xp"] is None:
        fns = deltaprop_fns(net, x, y, loss, eta)
        fns["textbook"] = textbook_fn(net, x, y, loss, eta)
        fns["torch"] = torch_fn(net, x, y, loss, eta)
        fns["floor"] = floor_fn(net.W, x)
        return fns
    dnet = net.to(BACKEND["xp"], device=BACKEND["device"])
    fns = deltaprop_fns(dnet, _on_backend(x), _on_backend(y), loss, eta)
    device = _torch_device()
    if device is not None:
        fns["torch"] = torch_fn(net, x, y, loss, eta, device=device)
    fns["floor"] = floor_xp(dnet.W, _on_backend(x))
    return fns


def _torch_device():
    """PyTorch's device for the eager contender: the backend's device, or None (none)."""
    if BACKEND["name"] == "torch":
        return BACKEND["device"] or "cpu"
    try:
        import torch
    except ImportError:
        return None
    return "cuda" if torch.cuda.is_available() else None


# --- configurations --------------------------------------------------------------------------

def _data(sizes, m, dtype, loss, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((m, sizes[0])).astype(dtype)
    if loss == CE:
        y = rng.integers(0, sizes[-1], m)
    else:
        y = (0.5 * rng.standard_normal((m, sizes[-1]))).astype(dtype)
    return x, y


def mlp_config(cid, title, sizes, m, hidden, output, loss, dtype, repeats, target, eta=0.01):
    net = dp.Network.init(sizes, hidden, output, dtype=dtype, seed=0)
    x, y = _data(sizes, m, dtype, loss)
    t = measure(_contenders(net, x, y, loss, eta), repeats, target)
    return _row(cid, title, t)


def _row(cid, title, t, **extra):
    ms = {k: v * 1e3 for k, v in t.items()}
    row = {"config": cid, "title": title,
           "deltaprop_ms": ms.get("deltaprop"), "torch_ms": ms.get("torch"),
           "floor_ms": ms.get("floor"), "textbook_ms": ms.get("textbook"),
           "vs_torch": _ratio(ms.get("deltaprop"), ms.get("torch")),
           "vs_textbook": _ratio(ms.get("deltaprop"), ms.get("textbook")),
           "vs_floor": _ratio(ms.get("deltaprop"), ms.get("floor")),
           "gradients_ms": ms.get("gradients"), "checked_ms": ms.get("checked")}
    row.update(extra)
    return row


def _ratio(a, b):
    return None if a is None or b is None else a / b


def config3(repeats, target, quick):
    """64-32-10 on digits, batch 32, float64; plus per-epoch times with scikit-learn."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    sizes, m, dtype = [64, 32, 10], 32, "float64"
    X, labels = load_digits(return_X_y=True)
    X = (X / 16.0).astype(dtype)
    net = dp.Network.init(sizes, "sigmoid", "softmax", dtype=dtype, seed=0)
    x, y = X[:m].copy(), labels[:m].copy()
    t = measure(_contenders(net, x, y, CE, 0.1), repeats, target)
    if BACKEND["xp"] is not None:  # scikit-learn's epoch: NumPy only
        return _row(3, "64-32-10 digits, batch 32, sigmoid, float64", t)

    # one epoch over the 1797 digits in batches of 32 (no shuffling in any of the three)
    batches = [(X[i:i + m], labels[i:i + m]) for i in range(0, len(X), m)]
    onehot = np.eye(10, dtype=dtype)
    dp_batches = [(xb, onehot[yb]) for xb, yb in batches]  # checked once, as fit does
    state = {"net": _copy(net)}
    ws, row = bp.Workspace(), dp.losses.get(CE)

    def dp_epoch():
        for xb, yb in dp_batches:
            state["net"], _ = bp.train_step(state["net"], xb, yb, row, 0.1, check=False,
                                            workspace=ws, donate=True)

    import torch

    tmodel = _torch_model_for_epoch(net, torch)

    def torch_epoch():
        for xb, yb in tbatches:
            tmodel["opt"].zero_grad()
            tmodel["loss"](tmodel["model"](xb), yb).backward()
            tmodel["opt"].step()

    tbatches = [(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in batches]
    clf = MLPClassifier(hidden_layer_sizes=(32,), activation="logistic", solver="sgd",
                        batch_size=m, learning_rate_init=0.1, momentum=0.0, alpha=0.0,
                        shuffle=False, max_iter=1, random_state=0)
    classes = np.arange(10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.partial_fit(X, labels, classes=classes)

    def sk_epoch():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.partial_fit(X, labels)

    e = measure({"deltaprop": dp_epoch, "torch": torch_epoch, "sklearn": sk_epoch},
                max(3, repeats // 3), target)
    return _row(3, "64-32-10 digits, batch 32, sigmoid, float64", t,
                deltaprop_epoch_ms=e["deltaprop"] * 1e3, torch_epoch_ms=e["torch"] * 1e3,
                sklearn_epoch_ms=e["sklearn"] * 1e3,
                vs_sklearn_epoch=e["deltaprop"] / e["sklearn"])


def _torch_model_for_epoch(net, torch):
    layers = []
    for l in range(1, net.L + 1):
        lin = torch.nn.Linear(net.sizes[l - 1], net.sizes[l]).to(torch.float64)
        layers.append(lin)
        if l < net.L:
            layers.append(torch.nn.Sigmoid())
    model = torch.nn.Sequential(*layers)
    return {"model": model, "opt": torch.optim.SGD(model.parameters(), lr=0.1),
            "loss": torch.nn.CrossEntropyLoss()}


def lab_study(K, quick):
    """The laboratory's default study (``deltaprop.stats.Study()``) as arrays, or None.

    Returns dict(sizes, hidden, output, loss, x, y, batch_size, K, study_K) with the data
    the study records (all the digits, standardised) and its batch size.
    """
    try:
        from deltaprop.stats.study import Study, load_inputs
    except ImportError:
        return None
    st = Study()
    x, y, _, _, n0, nL = load_inputs(st)
    sizes = [n0 if n is None else n for n in st.sizes[:-1]] + [st.sizes[-1] or nL]
    if quick:  # smoke run: a slice of the data and of the stack
        x, y, K = x[:256], y[:256], min(K, 8)
    out = st.output or dp.losses.get(st.loss).output or "identity"
    return {"sizes": sizes, "hidden": st.activations, "output": out, "loss": st.loss,
            "x": x.astype(st.dtype), "y": y, "batch_size": st.batch_size or len(x), "K": K,
            "dtype": st.dtype, "study_K": st.K, "bins": st.bins}


def _batched(x, y, B):
    return [(x[i:i + B], y[i:i + B]) for i in range(0, x.shape[-2], B)]


def _study_title(s, what):
    return (f"lab default study {'-'.join(map(str, s['sizes']))} {s['hidden']} {s['loss']}, "
            f"{s['x'].shape[0]} digits in batches of {s['batch_size']}, {s['dtype']}: {what}")


def config6(repeats, target, quick):
    """K = 64 stacked networks vs a Python loop over 64 single ones, on the lab's study."""
    s = lab_study(64, quick)
    if s is None:
        return _todo(6, "K=64 stacked vs loop", "deltaprop.stats is not importable")
    from deltaprop.stats import record

    K = s["K"]
    stack = dp.Network.init(s["sizes"], s["hidden"], s["output"], K=K, dtype=s["dtype"],
                            seed=0)
    singles = [stack[k] for k in range(K)]
    singles = [n.replace(W=[None] + [np.ascontiguousarray(w) for w in n.W[1:]],
                         b=[None] + [np.ascontiguousarray(v) for v in n.b[1:]])
               for n in singles]
    batches = _batched(s["x"], s["y"], s["batch_size"])
    loss = s["loss"]

    def rec_stacked():  # the study's record: all quantities, histograms, cross terms
        record(stack, s["x"], s["y"], loss, batch_size=s["batch_size"], bins=s["bins"])

    def rec_loop():
        for n in singles:
            record(n, s["x"], s["y"], loss, batch_size=s["batch_size"], bins=s["bins"])

    def grad_stacked():
        for xb, yb in batches:
            bp.gradients(stack, xb, yb, loss)

    def grad_loop():
        for n in singles:
            for xb, yb in batches:
                bp.gradients(n, xb, yb, loss)

    floors = [floor_fn(stack.W, xb) for xb, _ in batches]

    def floor():
        for f in floors:
            f()

    # for contrast, an overhead-bound shape (the question's kind of network): where stacking pays
    small = dp.Network.init([10, 10, 10, 1], "tanh", "identity", K=K, dtype=s["dtype"], seed=0)
    small_singles = [small[k] for k in range(K)]
    xs, ys = _data([10, 10, 10, 1], 32, s["dtype"], "mse")

    def small_stacked():
        bp.gradients(small, xs, ys, "mse")

    def small_loop():
        for n in small_singles:
            bp.gradients(n, xs, ys, "mse")

    def small_rec_stacked():
        record(small, xs, ys, "mse", bins=s["bins"])

    def small_rec_loop():
        for n in small_singles:
            record(n, xs, ys, "mse", bins=s["bins"])

    reps, tgt = (1, 0.0) if quick else (max(3, repeats // 3), target)
    t = measure({"deltaprop": rec_stacked, "loop": rec_loop, "grad_stacked": grad_stacked,
                 "grad_loop": grad_loop, "floor": floor}, reps, tgt)
    ts = measure({"stacked": small_stacked, "loop": small_loop, "rec_stacked": small_rec_stacked,
                  "rec_loop": small_rec_loop}, reps if quick else repeats, tgt)
    ms = {k: v * 1e3 for k, v in t.items()}
    return _row(6, _study_title(s, f"record(), K={K} stacked vs a loop over {K}"), t,
                loop_ms=ms["loop"], vs_loop=t["loop"] / t["deltaprop"],
                gradients_stacked_ms=ms["grad_stacked"], gradients_loop_ms=ms["grad_loop"],
                gradients_vs_loop=t["grad_loop"] / t["grad_stacked"],
                max_vs_loop=t["loop"] / t["floor"],
                small_10_10_10_1_batch32_gradients_vs_loop=ts["loop"] / ts["stacked"],
                small_10_10_10_1_batch32_record_vs_loop=ts["rec_loop"] / ts["rec_stacked"])


def config7(repeats, target, quick):
    """Backward passes that record delta statistics vs plain backward passes (same batches)."""
    s = lab_study(16, quick)
    if s is None:
        return _todo(7, "recording overhead", "deltaprop.stats is not importable")
    from deltaprop.stats import record

    K = s["study_K"] if not quick else s["K"]
    net = dp.Network.init(s["sizes"], s["hidden"], s["output"], K=K, dtype=s["dtype"], seed=0)
    B, loss = s["batch_size"], s["loss"]
    batches = _batched(s["x"], s["y"], B)

    def plain():
        for xb, yb in batches:
            bp.gradients(net, xb, yb, loss)

    def rec_delta():
        record(net, s["x"], s["y"], loss, batch_size=B, quantities=("delta",), bins=None,
               weight_grads=False, cross=False)

    def rec_full():  # the study's record: all quantities, histograms, cross terms
        record(net, s["x"], s["y"], loss, batch_size=B, bins=s["bins"])

    reps, tgt = (1, 0.0) if quick else (max(5, repeats // 2), target)
    t = measure({"deltaprop": rec_delta, "plain": plain, "full": rec_full}, reps, tgt)
    return _row(7, _study_title(s, f"K={K}, record(quantities=('delta',)) vs gradients()"), t,
                plain_ms=t["plain"] * 1e3, overhead=t["deltaprop"] / t["plain"],
                full_record_ms=t["full"] * 1e3, overhead_full=t["full"] / t["plain"])


def _todo(cid, title, why):
    return {"config": cid, "title": title, "deltaprop_ms": None, "torch_ms": None,
            "floor_ms": None, "vs_torch": None, "vs_floor": None, "todo": why}


CONFIGS = {
    1: ("784-256-256-10, batch 128, sigmoid, softmax CE, float32",
        dict(sizes=[784, 256, 256, 10], m=128, hidden="sigmoid", output="softmax", loss=CE,
             dtype="float32")),
    2: ("784-256-256-10, batch 128, sigmoid, softmax CE, float64",
        dict(sizes=[784, 256, 256, 10], m=128, hidden="sigmoid", output="softmax", loss=CE,
             dtype="float64")),
    3: None,
    4: ("1024-1024-1024-1024-10, batch 512, relu, softmax CE, float32",
        dict(sizes=[1024, 1024, 1024, 1024, 10], m=512, hidden="relu", output="softmax",
             loss=CE, dtype="float32")),
    5: ("100 layers of width 64, batch 256, tanh, MSE, float32",
        dict(sizes=[64] * 101, m=256, hidden="tanh", output="identity", loss="mse",
             dtype="float32")),
    6: None,
    7: None,
}


# --- header ----------------------------------------------------------------------------------

def set_threads(n):
    """One thread count for NumPy's BLAS, SciPy's BLAS, OpenMP and PyTorch."""
    import scipy.linalg  # noqa: F401  (load SciPy's BLAS so the limit reaches it too)
    import sklearn.neural_network  # noqa: F401  (and scikit-learn's OpenMP)
    import torch
    from threadpoolctl import threadpool_limits

    limiter = threadpool_limits(limits=n)
    torch.set_num_threads(n)
    return limiter


def header(threads):
    import scipy
    import sklearn
    import torch
    from threadpoolctl import threadpool_info

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture",
                                   "prefix")} for i in threadpool_info()]
    for b, i in zip(blas, threadpool_info(), strict=True):
        # which package ships it: numpy.libs, scipy.libs, torch/lib, ...
        b["package"] = os.path.basename(os.path.dirname(i.get("filepath", "")))
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu, "cores": os.cpu_count(), "threads": threads,
        "torch_threads": torch.get_num_threads(), "blas": blas,
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "other",
        "python": platform.python_version(), "numpy": np.__version__,
        "scipy": scipy.__version__, "torch": torch.__version__,
        "sklearn": sklearn.__version__, "deltaprop": dp.__version__,
        "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def use_backend(name, device):
    """Select ``--backend``/``--device``: None, or one line saying what is missing."""
    from deltaprop import _backend

    if name == "numpy":
        return None if device in (None, "cpu") else \
            f"--device {device}: NumPy runs on the CPU only; use --backend torch or cupy"
    try:
        xp = _backend.resolve(name, device)
    except ValueError as exc:
        return f"--backend {name}: {exc} (install it, or use --backend numpy)"
    except Exception as exc:  # noqa: BLE001 - the library's own error for a missing device
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"--backend {name} --device {device}: device not available ({first})"
    BACKEND.update(name=name, device=device, xp=xp)
    if _on_gpu():  # a GPU runs asynchronously: wait for it before every clock reading
        sync = _synchronizer(name)
        clock = CLOCK["now"]
        CLOCK["now"] = lambda: (sync(), clock())[1]
    return None


def _on_gpu():
    return BACKEND["name"] == "cupy" or str(BACKEND["device"] or "").startswith("cuda")


def _synchronizer(name):
    if name == "cupy":
        import cupy

        return lambda: cupy.cuda.Device().synchronize()
    import torch

    return torch.cuda.synchronize


# --- main ------------------------------------------------------------------------------------

def run(configs, quick, threads):
    repeats, target = (3, 0.005) if quick else (11, 0.1)
    rows = []
    for cid in configs:
        if cid == 3:
            rows.append(config3(repeats, target, quick))
        elif cid in (6, 7) and BACKEND["xp"] is not None:
            rows.append(_todo(cid, "recording", "NumPy only (--backend numpy)"))
        elif cid == 6:
            rows.append(config6(repeats, target, quick))
        elif cid == 7:
            rows.append(config7(repeats, target, quick))
        else:
            title, kw = CONFIGS[cid]
            if quick and cid == 4:  # keep the smoke run short: same code, smaller widths
                kw = dict(kw, sizes=[256, 256, 256, 256, 10], m=128)
                title += " [quick: widths 256, batch 128]"
            rows.append(mlp_config(cid, title, repeats=repeats, target=target, **kw))
        print(f"# config {cid} done", file=sys.stderr)
    return rows


def table(head, rows) -> str:
    def f(v, fmt="{:.3g}"):
        return "-" if v is None else fmt.format(v)

    blas = ", ".join(
        f"{b.get('package', b['prefix'])}: {b['internal_api']} {b['version'] or ''}".strip()
        for b in head["blas"])
    out = [f"{head['date']}  {head['cpu']}  {head['cores']} cores, threads={head['threads']}, "
           f"{head['clock']} clock  "
           f"numpy {head['numpy']} ({blas})"
           f"  torch {head['torch']} ({head['torch_blas']})",
           "", "| config | deltaprop ms | textbook ms | torch ms | floor ms | vs_textbook "
           "| vs_torch | vs_floor | gradients+step ms | other |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        other = []
        for k in ("checked_ms", "vs_loop", "loop_ms", "max_vs_loop", "gradients_vs_loop",
                  "small_10_10_10_1_batch32_gradients_vs_loop",
                  "small_10_10_10_1_batch32_record_vs_loop", "overhead",
                  "plain_ms", "overhead_full", "deltaprop_epoch_ms", "torch_epoch_ms",
                  "sklearn_epoch_ms", "todo"):
            if r.get(k) is not None:
                other.append(f"{k}={f(r[k]) if not isinstance(r[k], str) else r[k]}")
        out.append(f"| {r['config']}: {r['title']} | {f(r['deltaprop_ms'])} "
                   f"| {f(r.get('textbook_ms'))} | {f(r['torch_ms'])} "
                   f"| {f(r['floor_ms'])} | {f(r.get('vs_textbook'), '{:.2f}')} "
                   f"| {f(r['vs_torch'], '{:.2f}')} "
                   f"| {f(r['vs_floor'], '{:.2f}')} | {f(r.get('gradients_ms'))} "
                   f"| {'; '.join(other)} |")
    return "\n".join(out)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print {header, rows} as JSON")
    p.add_argument("--quick", action="store_true", help="tiny repeats (CI smoke run)")
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads for BLAS and PyTorch (default: all cores)")
    p.add_argument("--configs", type=int, nargs="+", default=list(CONFIGS),
                   choices=list(CONFIGS))
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or this process's CPU time (steadier on a busy machine; "
                        "meaningful with --threads 1 only)")
    p.add_argument("--table", metavar="JSON",
                   help="print the Markdown table of a saved --json output and exit")
    p.add_argument("--settle", type=float, default=None,
                   help="seconds to pause before each contender's block so that the other "
                        "library's worker threads stop spinning (default: 0.2 with more than "
                        "one thread, else 0)")
    p.add_argument("--backend", choices=("numpy", "torch", "cupy"), default="numpy",
                   help="array library deltaprop runs on (default numpy)")
    p.add_argument("--device", default=None,
                   help="device of --backend: cpu, cuda, cuda:N (torch); N (cupy)")
    args = p.parse_args(argv)
    if args.table:
        with open(args.table) as fh:
            doc = json.load(fh)
        print(table(doc["header"], doc["rows"]))
        return 0
    if args.backend != "numpy" or args.device is not None:
        msg = use_backend(args.backend, args.device)
        if msg:
            print(f"run.py: {msg}", file=sys.stderr)
            return 2
        if args.clock == "cpu" and _on_gpu():
            print("run.py: --clock cpu cannot see GPU time; use --clock wall with a GPU",
                  file=sys.stderr)
            return 2
    if args.clock == "cpu":
        if args.threads != 1:
            p.error("--clock cpu needs --threads 1 (CPU time adds up over threads)")
        CLOCK["now"] = time.process_time
    CLOCK["settle"] = args.settle if args.settle is not None else \
        ((0.02 if args.quick else 0.2) if args.threads > 1 else 0.0)
    limiter = set_threads(args.threads)
    head = header(args.threads)
    head["quick"] = args.quick
    head["clock"] = args.clock
    head["settle_s"] = CLOCK["settle"]
    head["backend"], head["device"] = args.backend, args.device
    rows = run(args.configs, args.quick, args.threads)
    if args.json:
        print(json.dumps({"header": head, "rows": rows}, indent=1))
    else:
        print(table(head, rows))
    del limiter
    return 0


if __name__ == "__main__":
    sys.exit(main())

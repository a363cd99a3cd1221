"""``deltaprop train``, ``evaluate``, ``predict`` and ``info``: training as a product.

``deltaprop train`` with no arguments trains a 64-128-10 tanh network with a softmax
cross-entropy output on scikit-learn's bundled digits (Adam, 30 epochs, minibatches of 32)
and writes a run folder::

    runs/<timestamp>/
        config.json            every setting used (repeat with --config runs/<ts>/config.json)
        checkpoint.safetensors  written atomically after every epoch (--resume RUN_DIR)
        model.safetensors      the trained network, its standardisation, classes, history
        metrics.csv, metrics.json, learning_curves.png

Settings come from the defaults, then a ``--config`` file (TOML or JSON), then the flags.
``--hidden`` gives the hidden widths; ``--sizes`` (all widths n_0..n_L in ``gradcheck`` and
``stats``) is refused here with a line pointing to ``--hidden``.  While it runs, a run
holds a lock on its folder (``.deltaprop.lock``, the process id inside).
"""

from __future__ import annotations

import argparse
import csv
import io as _io
import json
import os
import re
import sys
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ._common import add_backend_options, backend_from_args, limit_threads, load_config_file

#: every setting of a run, with its default (keys of config files and of config.json)
DEFAULTS = {
    "data": "digits", "target": None, "hidden": [128], "activation": "tanh",
    "activations": None, "output": None, "loss": None, "init": "glorot_uniform",
    "weight_mean": 0.0, "weight_std": None, "bias_std": 0.0, "optimizer": "adam",
    "learning_rate": None, "momentum": 0.9, "schedule": "constant", "batch_size": 32,
    "epochs": 30, "l2": 0.0, "val_split": 0.1, "test_split": 0.2, "early_stopping": None,
    "divergence": 1e3, "dtype": "float64", "seed": 0, "layer_stats": False,
}
RUN_FILES = ("config.json", "checkpoint.safetensors", "model.safetensors", "metrics.csv",
             "metrics.json", "learning_curves.png", "layer_stats.png")
#: the lock file of a run folder (holds the pid of the run that owns the folder)
LOCK = ".deltaprop.lock"
#: a temporary file of deltaprop.app.files's atomic writes, left behind by a kill
_TMP = re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$")
_SIZES_MOVED = ("train takes the hidden widths as --hidden (e.g. --hidden 64,32, or none); "
                "--sizes means all widths n_0..n_L in gradcheck and stats")


def register(sub):
    _register_train(sub)
    _register_model_commands(sub)


def _register_train(sub):
    p = sub.add_parser("train", help="train a network (no arguments: an MLP on digits)",
                       description="Train a fully-connected network. With no arguments: "
                       "64-128-10 tanh + softmax cross-entropy on scikit-learn's digits, Adam.")
    a = p.add_argument
    a("--data", help="built-in set (digits, iris, wine, breast_cancer, xor, moons, regression) "
      "or a file (CSV, .npy, .npz, IDX); default digits")
    a("--target", help="CSV target column (name or index; default the last column)")
    a("--hidden", help="hidden layer widths, comma-separated (default 128; 'none' for no "
      "hidden layer); n_0 and n_L come from the data")
    a("--sizes", help=argparse.SUPPRESS)  # refused with a line pointing to --hidden
    a("--activation", help="activation of every hidden layer (default tanh)")
    a("--activations", help="comma list of activations for layers 1..L (output included)")
    a("--output", help="output activation (default: the one the loss needs, else identity)")
    a("--loss", help="softmax-cross-entropy (default for classification), "
      "sigmoid-cross-entropy, mse (default for regression)")
    a("--init", help="initialiser (default glorot_uniform)")
    a("--weight-mean", type=float, help="mean of the initial weights (default 0)")
    a("--weight-std", type=float, help="std of the initial weights (default: the initialiser's)")
    a("--bias-std", type=float, help="std of the initial biases (default 0)")
    a("--optimizer", help="gd (sgd), momentum, nesterov, adam (default adam)")
    a("--learning-rate", "--lr", dest="learning_rate", type=float,
      help="learning rate (default: the optimizer's, 0.001 for adam, 0.1 otherwise)")
    a("--momentum", type=float, help="momentum coefficient mu (momentum, nesterov; default 0.9)")
    a("--schedule", help="constant, step, exponential, cosine, inverse-time (default constant)")
    a("--batch-size", help="1 = online, 0 or 'full' = full batch (default 32)")
    a("--epochs", type=int, help="number of epochs (default 30)")
    a("--l2", type=float, help="L2 penalty lambda (default 0)")
    a("--val-split", type=float, help="validation fraction (default 0.1)")
    a("--test-split", type=float, help="test fraction (default 0.2)")
    a("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs "
      "without improvement of the validation loss")
    a("--divergence", type=float, metavar="FACTOR", help="stop (exit 1) when the training "
      "loss exceeds FACTOR times its best value (default 1000)")
    a("--dtype", choices=["float32", "float64"], help="default float64")
    a("--seed", type=int, help="seed of the split, the initialisation and the shuffles")
    a("--layer-stats", action="store_true", default=None,
      help="per epoch and layer, on the training set: E[delta^2], ||db||, ||dW||, "
      "||W - W_0|| / ||W_0||, with the theory at initialisation beside epoch 0 (columns "
      "delta2[l], ... of metrics.csv/json, layer_stats.png; one more full-set pass per epoch)")
    a("--out", help="run folder (default runs/<timestamp>); must not hold a run already")
    a("--config", help="TOML or JSON file with the same settings (flags override it)")
    a("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    a("--threads", type=int, default=1, help="BLAS and PyTorch threads (default 1: a "
      "minibatch step's matrices are small, and more threads only add overhead)")
    a("--quiet", action="store_true", help="no progress bar, no table")
    a("--json", action="store_true", help="print the final metrics as JSON")
    add_backend_options(p)
    p.set_defaults(func=_train)


def _register_model_commands(sub):
    p = sub.add_parser("evaluate", help="loss and accuracy of a model file on a data set")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--target", help="CSV target column (default: the one used in training)")
    p.add_argument("--json", action="store_true")
    add_backend_options(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="predictions of a model file, as CSV (or JSON)")
    p.add_argument("model")
    p.add_argument("data", help="data set (its target column, if present, is ignored)")
    p.add_argument("--proba", action="store_true", help="add the class probabilities")
    p.add_argument("--target", help="CSV target column to drop")
    p.add_argument("--out", help="CSV file to write (default: standard output); an existing "
                   "file is replaced only with --force")
    p.add_argument("--force", action="store_true", help="replace an existing --out file")
    p.add_argument("--json", action="store_true", help="JSON instead of CSV: "
                   '{"predictions": [...], "classes": [...]} (with --proba, "probabilities")')
    add_backend_options(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("info", help="layers, parameter counts and training metadata of a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)


# ------------------------------------------------------------------------------ settings

def _read_config(path) -> dict:
    """The settings of a config file or of a run's config.json (:func:`load_config_file`)."""
    cfg, run = load_config_file(path)
    return _config_keys(path, cfg, run)


def _config_keys(path, cfg, run):
    """Settings of a config file under their names (``lr`` is ``learning_rate``; a run's
    config.json written before ``--hidden`` says ``sizes`` for the hidden widths)."""
    out = {}
    for key, value in cfg.items():
        k = str(key).replace("-", "_")
        k = {"lr": "learning_rate"}.get(k, k)
        if k == "sizes" and run:
            k = "hidden"
        elif k == "sizes":
            raise ValueError(f"config file {path}: setting 'sizes': {_SIZES_MOVED}; "
                             "write hidden = [...]")
        if k not in DEFAULTS:
            raise ValueError(f"config file {path}: unknown setting {key!r}; known: "
                             f"{', '.join(DEFAULTS)}")
        out[k] = value
    return out


def _settings(args) -> dict:
    from ..train import parse_batch_size

    s = dict(DEFAULTS)
    if args.config:
        s.update(_read_config(args.config))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            s[key] = value
    s["hidden"] = _parse_hidden(s["hidden"])
    if isinstance(s["activations"], str):
        s["activations"] = [a.strip() for a in s["activations"].split(",")]
    bs = s["batch_size"]
    try:
        n = parse_batch_size(bs)
    except ValueError as exc:
        raise ValueError(f"--batch-size: {exc}") from None
    s["batch_size"] = "full" if isinstance(bs, str) and bs.strip().lower() == "full" else n
    for key in ("epochs", "seed"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 0:
            raise ValueError(f"--{key} must be an integer >= 0, got {s[key]!r}")
    _check_flags(s)
    return s


def _is_number(v):
    return isinstance(v, int | float) and not isinstance(v, bool)


def _check_flags(s):
    """The settings the library would refuse under its own parameter names (``val``,
    ``early_stopping``, ...), refused here under the flag the user typed, with the range."""
    for key in ("val_split", "test_split"):
        f = s[key]
        if not (_is_number(f) and 0 <= f < 1):
            raise ValueError(f"--{key.replace('_', '-')} must be a fraction in [0, 1) of the "
                             f"samples, got {f!r}")
    p = s["early_stopping"]
    if p is not None and not (_is_number(p) and int(p) == p and p >= 1):
        raise ValueError(f"--early-stopping (patience) must be an integer >= 1 of epochs "
                         f"without improvement, got {p!r}")
    d = s["divergence"]
    if d is not None and not (_is_number(d) and d > 1):
        raise ValueError(f"--divergence must be a factor > 1 (the run stops when the training "
                         f"loss exceeds it times its best value), got {d!r}")


def _parse_hidden(hidden):
    if isinstance(hidden, str):
        text = hidden.strip().lower()
        if text in ("", "none", "[]"):
            return []
        try:
            hidden = [int(v) for v in text.replace("-", ",").split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--hidden must be comma-separated integers, got {hidden!r}") \
                from None
    if isinstance(hidden, int):
        hidden = [hidden]
    if not all(isinstance(n, int) and n >= 1 for n in hidden):
        raise ValueError(f"hidden widths must be positive integers, got {hidden!r}")
    return list(hidden)


def _options(s):
    """The run's :class:`~deltaprop.app.train.TrainOptions` (checked when made)."""
    from ... import optim
    from ..train import TrainOptions

    name = optim.get(s["optimizer"]).name
    extra = {"momentum": s["momentum"]} if name in ("momentum", "nesterov") else {}
    return TrainOptions(optimizer=s["optimizer"], learning_rate=s["learning_rate"],
                        schedule=s["schedule"], batch_size=s["batch_size"], epochs=s["epochs"],
                        l2=s["l2"], seed=s["seed"], early_stopping=s["early_stopping"],
                        optimizer_options=extra, divergence=s["divergence"])


# ------------------------------------------------------------------------------ data

def _load_data(source, target):
    """:func:`deltaprop.app.data.load`, each :class:`~deltaprop.app.data.DataNote` printed as one
    ``deltaprop: note: ...`` line on stderr (not as a two-line Python warning)."""
    from .. import data

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", data.DataNote)
        ds = data.load(source, target=target)
    for w in caught:
        if issubclass(w.category, data.DataNote):
            print(f"deltaprop: note: {w.message}", file=sys.stderr, flush=True)
        else:  # not ours to reword: shown as Python would have shown it
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return ds


def _targets(ds, loss_name):
    """Targets for the loss: real targets as they are, class indices :func:`_encode`-d."""
    return ds.y if ds.task == "regression" else _encode(ds.y, ds.n_classes, loss_name)


def _encode(y, n_classes, loss_name):
    """Class indices y (m,) as the loss wants them: the indices for softmax CE, p(class 1)
    (m, 1) for sigmoid CE on two classes (one output unit), else one-hot (m, n_classes)."""
    from ..data import one_hot

    if loss_name == "softmax-cross-entropy":
        return y
    if loss_name == "sigmoid-cross-entropy" and n_classes == 2:
        return y.astype(np.float64)[:, None]
    return one_hot(y, n_classes)


def _n_outputs(ds, loss_name):
    if ds.task == "classification" and loss_name == "sigmoid-cross-entropy" and \
            ds.n_classes == 2:
        return 1
    return ds.n_outputs


def _class_list(classes):
    return None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]


def _check_memory(sizes, m, s):
    """Refuse a network whose run would not fit in memory, before allocating it."""
    from ..data import refuse_unless_fits
    from ..train import estimate_memory

    kw = dict(batch_size=s["batch_size"], optimizer=s["optimizer"],
              itemsize=4 if s["dtype"] == "float32" else 8,
              early_stopping=s["early_stopping"] is not None)

    def advice(budget):  # the widest single hidden layer that fits the same budget
        lo, hi = 1, max(max(sizes[1:-1], default=1), 1)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if estimate_memory([sizes[0], mid, sizes[-1]], m, **kw) <= budget:
                lo = mid
            else:
                hi = mid - 1
        return f"use smaller --hidden widths (one hidden layer fits up to about {lo} units here)"

    refuse_unless_fits(estimate_memory(sizes, m, **kw),
                       f"training the network {'-'.join(map(str, sizes))} on {m} samples", advice)


def _prepare_run(s):
    """(splits, standardizer, network, loss name) for settings ``s``."""
    from ... import Network
    from ... import losses as _losses
    from .. import data

    ds = _load_data(s["data"], s["target"])
    loss = _losses.get(s["loss"] or ("mse" if ds.task == "regression" else "softmax-cross-entropy"))
    if ds.task == "regression" and loss.name != "mse":
        raise ValueError(f"data {s['data']!r} is a regression set; use --loss mse")
    if ds.task == "classification" and ds.n_classes < 2:
        raise ValueError(f"data {s['data']!r} holds a single class ({_class_list(ds.classes)}); "
                         f"a classifier needs at least two")
    n_test = max(round(s["test_split"] * ds.m), 1 if s["test_split"] > 0 else 0)
    n_val = max(round(s["val_split"] * ds.m), 1 if s["val_split"] > 0 else 0)
    if n_test + n_val >= ds.m:
        raise ValueError(f"--val-split {s['val_split']} and --test-split {s['test_split']} leave "
                         f"no training samples of the {ds.m}; give smaller fractions")
    train, val, test = data.train_val_test_split(ds, val=s["val_split"], test=s["test_split"],
                                                 seed=s["seed"])
    sizes = [ds.n_features, *s["hidden"], _n_outputs(ds, loss.name)]
    _check_memory(sizes, train.m, s)
    std = data.Standardizer().fit(train.x)
    if s["activations"]:
        acts, output = s["activations"], None
    else:
        acts, output = s["activation"], s["output"] or loss.output or "identity"
    net = Network.init(sizes, acts, output, init=s["init"], seed=s["seed"], dtype=s["dtype"],
                       mean=s["weight_mean"], std=s["weight_std"], bias_std=s["bias_std"])
    _losses.check_pair(loss, net.activations[-1])
    return (train, val, test), std, net, loss.name


# ------------------------------------------------------------------------------ run folder

def _lock(out):
    """Take the run folder's lock: exclusive create of ``LOCK`` holding our pid.  A lock
    whose process is gone is taken over; a live one is a one-line error."""
    path = out / LOCK
    for _ in range(3):
        tmp = out / f".deltaprop.lock-{os.getpid()}"
        tmp.write_text(f"{os.getpid()}\n")
        try:
            os.link(tmp, path)  # atomic and exclusive, with the pid already inside
            return path
        except FileExistsError:
            pid = _lock_owner(path)
            if pid is not None and _alive(pid):
                raise ValueError(f"run folder {out} is in use by another deltaprop train "
                                 f"(pid {pid}); wait for it to end or choose another --out") \
                    from None
            if _lock_owner(path) == pid:  # stale: its process is gone; take it over
                path.unlink(missing_ok=True)
        finally:
            tmp.unlink(missing_ok=True)
    raise ValueError(f"run folder {out}: cannot take the lock {path}; remove it if no "
                     f"deltaprop train runs there")


def _lock_owner(path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _clean_temps(out):
    """Remove ``.<name>.<hex>.tmp`` files that a killed run left (we hold the lock)."""
    for p in out.iterdir():
        if _TMP.match(p.name) and p.is_file():
            p.unlink(missing_ok=True)


def _new_run_dir(out):
    """The new run's folder, created and locked; (folder, lock)."""
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out, k = Path("runs") / stamp, 1
        while out.exists():
            out, k = Path("runs") / f"{stamp}-{k}", k + 1
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = _lock(out)
    except OSError as exc:
        raise OSError(f"output folder {out} cannot be written ({exc.strerror or exc})") from None
    if any((out / f).exists() for f in RUN_FILES):
        lock.unlink(missing_ok=True)
        raise ValueError(f"output folder {out} already holds a run; use --resume {out} or "
                         "another --out")
    _clean_temps(out)
    return out, lock


def _resume_dir(out):
    try:
        lock = _lock(out)
    except OSError as exc:
        raise OSError(f"run folder {out} cannot be written ({exc.strerror or exc})") from None
    _clean_temps(out)
    return lock


# ------------------------------------------------------------------------------ train

def _run_settings(args):
    """(settings, run folder or None) of ``train``'s command line."""
    if args.sizes is not None:
        raise ValueError(f"--sizes: {_SIZES_MOVED}")
    if not args.resume:
        return _settings(args), None
    given = [k for k in (*DEFAULTS, "out", "config") if getattr(args, k, None) is not None]
    if given:
        raise ValueError("--resume takes every setting from RUN_DIR/config.json; drop "
                         + ", ".join("--" + k.replace("_", "-") for k in given))
    out = Path(args.resume)
    if not (out / "config.json").is_file():
        raise FileNotFoundError(f"{out} is not a run folder (no config.json)")
    s = {**DEFAULTS, **_read_config(out / "config.json")}
    s["hidden"] = _parse_hidden(s["hidden"])
    return s, out


def _train(args):
    s, out = _run_settings(args)
    be = backend_from_args(args)  # not a setting: every backend trains the same network
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    splits, std, net, loss = _prepare_run(s)
    options = _options(s)  # checked before the run folder is made: a bad one leaves none
    if out is None:
        out, lock = _new_run_dir(args.out)
    else:
        lock = _resume_dir(out)
    try:
        return _train_locked(args, s, out, be, splits, std, net, loss, options)
    finally:
        lock.unlink(missing_ok=True)


def _train_locked(args, s, out, be, splits, std, net, loss, options):
    from ... import __version__
    from ...stats.health import HealthWarning
    from .. import files as dio
    from ..train import fit

    if not args.resume:
        config = {"deltaprop_version": __version__, "command": "deltaprop train",
                  "repeat": f"deltaprop train --config {out / 'config.json'} --out NEW_DIR",
                  "settings": s}
        dio.atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")
    net = be.network(net)
    (x_tr, y_tr), val, _ = data = _on_backend(be, net, splits, std, loss)
    quiet = args.quiet or args.json
    with limit_threads(args.threads):  # --layer-stats: epoch 0 and the theory, before the clock
        stats_cb = _layer_stats_callback(s, net, x_tr, y_tr, loss) if s["layer_stats"] else None
    t0 = time.perf_counter()
    with limit_threads(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthWarning)  # printed below, one line each
        result = fit(net, x_tr, y_tr, loss, options,
                     x_val=None if val is None else val[0], y_val=None if val is None else val[1],
                     progress=False if quiet else "auto",
                     checkpoint=out / "checkpoint.safetensors", resume=bool(args.resume),
                     checkpoint_meta={"settings": s}, callbacks=[stats_cb] if stats_cb else ())
    wall = time.perf_counter() - t0
    return _report(args, s, out, splits, std, loss, options, data, result, wall, stats_cb)


def _on_backend(be, net, splits, std, loss):
    """((x, y) train, (x, y) validation or None, (x, y) test or None) on the backend."""
    out = []
    for d in splits:
        pair = (be.asarray(std.transform(d.x), like=net.W[1]),
                be.asarray(_targets(d, loss), like=net.W[1]))
        out.append(pair if d.m > 0 else None)
    return tuple(out)


def _report(args, s, out, splits, std, loss, options, data, result, wall, stats_cb):
    """Model file, metrics, plots, the printed table and warnings; the exit status."""
    from ... import __version__
    from .. import files as dio
    from ..train import evaluate

    final = {name: evaluate(result.net, *pair, loss)
             for name, pair in zip(("train", "val", "test"), data, strict=True) if pair}
    stop = result.stopped.to_dict() if result.stopped else None
    health = [f.to_dict() for f in result.health]
    meta = {"loss": loss, "task": splits[0].task, "classes": _class_list(splits[0].classes),
            "data": str(s["data"]), "target": s["target"], "standardization": std.to_dict(),
            "settings": s, "learning_rate": options.resolved_learning_rate,
            "history": result.history.summary(), "metrics": final, "stopped": stop,
            "health": health, "deltaprop_version": __version__}
    dio.save_model(out / "model.safetensors", result.net, meta)
    _write_metrics(out, result, final, wall, stats_cb)
    _write_curves(out, result.history)
    quiet = args.quiet or args.json
    if stats_cb is not None:
        _write_layer_stats(out, result.history, stats_cb, quiet)
    for f in result.health:
        print(f"deltaprop: warning: {f.message}", file=sys.stderr, flush=True)
    if result.stopped:
        print(_stop_line(result.stopped, options), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"run": str(out), "metrics": final, "epochs": len(result.history),
                          "epochs_run": result.epochs_run, "time": wall, "stopped": stop,
                          "health": health}, indent=2))
    elif not args.quiet:
        _print_table(final, wall, result, out)
    return 1 if result.stop.failed else 0


def _write_curves(out, history):
    """learning_curves.png, atomically; a loss too large for a log axis skips it (one line)."""
    from .. import files as dio

    buf = _io.BytesIO()
    try:
        history.plot().savefig(buf, format="png", dpi=100)
    except (OverflowError, ValueError) as exc:  # matplotlib's log ticks overflow near 1e300
        print(f"deltaprop: warning: learning_curves.png not drawn ({exc})", file=sys.stderr)
        return
    dio.atomic_write_bytes(out / "learning_curves.png", buf.getvalue())


def _stop_line(stop, options):
    if stop.kind == "diverged":
        lr = options.resolved_learning_rate
        return (f"deltaprop: error: {stop.message} (e.g. --lr {lr / 10:g}; the factor is "
                f"--divergence)")
    return f"deltaprop: {'error: ' if stop.failed else ''}{stop.message}"


def _write_metrics(out, result, final, wall, stats_cb=None):
    from .. import files as dio

    rows = result.history.as_rows()
    keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    keys = [k for k in keys if any(k in r for r in rows)] or ["epoch"]
    extra = {}
    if stats_cb is not None:  # --layer-stats: their columns, and epoch 0 first in the CSV
        from ...stats.layer_stats import flat

        first = {"epoch": 0, **flat(stats_cb.initial_stats)}
        keys += [k for k in first if k != "epoch"]
        extra = {"layer_stats": stats_cb.summary()}
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows if stats_cb is None else [first, *rows])
    dio.atomic_write_text(out / "metrics.csv", buf.getvalue())
    stopped = result.stopped.to_dict() if result.stopped else None
    dio.atomic_write_text(out / "metrics.json", json.dumps(
        {"epochs": rows, "final": final, "stopped": stopped, "epochs_run": result.epochs_run,
         "time": wall, "health": [f.to_dict() for f in result.health], **extra},
        indent=2) + "\n")


def _layer_stats_callback(s, net, x, y, loss):
    """--layer-stats: the callback, with the theory at the settings' initialisation (the
    initial network's own weight statistics where the settings name no law it knows)."""
    from ...stats.ensemble import prior
    from ...stats.layer_stats import LayerStatsCallback

    try:
        p = prior(net.sizes, init=s["init"], weight_std=s["weight_std"],
                  weight_mean=s["weight_mean"], sigma_b2=s["bias_std"] ** 2)
    except (ValueError, KeyError):
        p = None
    return LayerStatsCallback(x, y, loss, net, prior=p)


def _write_layer_stats(out, history, cb, quiet):
    """layer_stats.png (atomically) and, unless quiet, the table of epoch 0 and the last."""
    from ...stats.layer_stats import flat, plot, table
    from .. import files as dio

    rows = [{"epoch": 0, **flat(cb.initial_stats)}, *history.as_rows()]
    buf = _io.BytesIO()
    plot(rows, cb.theory, title="per-layer statistics over training").savefig(
        buf, format="png", dpi=100)
    dio.atomic_write_bytes(out / "layer_stats.png", buf.getvalue())
    if not quiet:
        print(table(rows, cb.theory))
        if cb.theory is None:
            print(f"(no theory: {cb.theory_note})")


def _print_table(final, wall, result, out):
    from ..train import fmt_loss

    has_acc = any("accuracy" in v for v in final.values())
    print(f"{'split':<6} {'loss':>10}" + (f" {'accuracy':>9}" if has_acc else ""))
    for split, v in final.items():
        print(f"{split:<6} {fmt_loss(v['loss']):>10}" +
              (f" {v['accuracy']:>9.4f}" if has_acc else ""))
    ran, total = result.epochs_run, len(result.history)
    where = f"{ran} epochs" if ran == total else f"{ran} epochs (resumed: {total} in all)"
    print(f"{where} in {wall:.2f} s ({wall / max(ran, 1) * 1000:.1f} ms/epoch); "
          f"run folder {out}")


# ------------------------------------------------------------------------------ use a model

def _model_inputs(net, meta, source, target, *, need_target):
    """(x standardised, dataset) for a model file's data, checked against the model."""
    from .. import data

    ds = _load_data(source, target if target is not None else meta.get("target"))
    n0 = net.sizes[0]
    x = ds.x
    if ds.n_features != n0:
        if not need_target and ds.n_features == n0 - 1 and ds.task == "regression" \
                and ds.y.shape[1] == 1:
            x = np.column_stack([ds.x, ds.y])  # the "target" was a feature column
        elif not need_target and ds.n_features == n0 - 1:
            try:
                x = np.column_stack([ds.x, ds.labels().astype(np.float64)])
            except ValueError:
                x = None
        if x is None or x.shape[1] != n0:
            raise ValueError(f"{source}: the model expects n_0 = {n0} input columns, the data "
                             f"has {ds.n_features}")
    std = meta.get("standardization")
    if std:
        x = data.Standardizer.from_dict(std).transform(x)
    return x, ds


def _model_targets(ds, meta, net, source):
    """The data's targets in the model's encoding (labels mapped onto the model's classes)."""
    loss = meta.get("loss", "mse")
    classes = meta.get("classes")
    if classes is None:
        if ds.task != "regression" or ds.y.shape[1] != net.sizes[-1]:
            raise ValueError(f"{source}: the model predicts {net.sizes[-1]} real targets; "
                             f"the data's targets do not match")
        return ds.y
    if ds.task != "classification":
        raise ValueError(f"{source}: the model is a classifier; the data has real targets")
    index = {str(c): i for i, c in enumerate(classes)}
    try:
        y = np.array([index[str(c)] for c in ds.classes])[ds.y]
    except KeyError as exc:
        raise ValueError(f"{source}: class {exc.args[0]} was not seen in training "
                         f"(model classes: {classes})") from None
    return _encode(y, len(classes), loss)


def _fmt(v):
    """A metric for a line of text: a float as the training table writes a loss (fixed point
    in [1e-3, 1e5), scientific notation outside: 1e300 is not 300 digits), else as it is."""
    from ..train import fmt_loss

    return fmt_loss(v) if isinstance(v, float) else str(v)


def _evaluate(args):
    from .. import files as dio
    from ..train import evaluate

    be = backend_from_args(args)
    net, meta = dio.load_model(args.model)
    x, ds = _model_inputs(net, meta, args.data, args.target, need_target=True)
    y = _model_targets(ds, meta, net, args.data)
    net = be.network(net)
    res = evaluate(net, be.asarray(x, like=net.W[1]), be.asarray(y, like=net.W[1]),
                   meta.get("loss", "mse"))
    res["m"] = ds.m
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print("  ".join(f"{k} = {_fmt(v)}" for k, v in res.items()))
    return 0


def _predict(args):
    from ... import _backend, backprop
    from .. import files as dio

    be = backend_from_args(args)
    if args.out is not None:  # before any work: a user's file is replaced only with --force
        if Path(args.out).is_dir():
            raise ValueError(f"--out {args.out} is a folder; give a file name")
        if Path(args.out).exists() and not args.force:
            raise ValueError(f"--out {args.out} exists; use --force to replace it, or give "
                             "another file name")
    net, meta = dio.load_model(args.model)
    x, _ = _model_inputs(net, meta, args.data, args.target, need_target=False)
    net = be.network(net)
    a = np.asarray(_backend.to_numpy(backprop.predict(net, be.asarray(x, like=net.W[1]))))
    classes = meta.get("classes")
    text = (_predictions_json if args.json else _predictions_csv)(a, classes, args.proba)
    if args.out is None:
        sys.stdout.write(text)
    else:
        dio.atomic_write_text(args.out, text)
    return 0


def _class_proba(a, classes):
    """(predicted class index (m,), probabilities (m, n_classes)) of a classifier's output."""
    if len(classes) == 2 and a.shape[1] == 1:  # binary sigmoid output: p(class 1)
        proba = np.column_stack([1 - a[:, 0], a[:, 0]])
    else:  # one column per class (see _encode)
        proba = a
    return np.argmax(proba, axis=1), proba


def _predictions_csv(a, classes, proba_cols):
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if classes is None:
        w.writerow([f"y{k + 1}" for k in range(a.shape[1])])
        w.writerows([[repr(float(v)) for v in row] for row in a])
        return buf.getvalue()
    pred, proba = _class_proba(a, classes)
    w.writerow(["prediction"] + ([f"p_{c}" for c in classes] if proba_cols else []))
    for i, row in zip(pred, proba, strict=True):
        w.writerow([classes[i]] + ([repr(float(v)) for v in row] if proba_cols else []))
    return buf.getvalue()


def _predictions_json(a, classes, proba):
    """``{"predictions": [...], "classes": [...]}`` (a class per sample; for a regression
    model a list of the n_L real outputs per sample and ``classes`` null); ``--proba`` adds
    ``"probabilities"``, one list per sample in the order of ``classes``."""
    if classes is None:
        doc = {"predictions": a.astype(float).tolist(), "classes": None}
    else:
        pred, p = _class_proba(a, classes)
        doc = {"predictions": [classes[i] for i in pred], "classes": list(classes)}
        if proba:
            doc["probabilities"] = p.astype(float).tolist()
    return json.dumps(doc) + "\n"


def _info(args):
    from .. import files as dio

    net, meta = dio.load_model(args.model)
    layers = []
    for l in range(1, net.L + 1):
        W, b = net.W[l], net.b[l]
        layers.append({"layer": l, "W": list(W.shape), "b": list(b.shape),
                       "activation": net.activations[l].name, "params": W.size + b.size})
    s = meta.get("settings", {})
    hist = meta.get("history", {})
    info = {"file": str(args.model), "sizes": net.sizes, "dtype": str(net.W[1].dtype),
            "params": net.n_params, "layers": layers, "loss": meta.get("loss"),
            "task": meta.get("task"), "classes": meta.get("classes"), "data": meta.get("data"),
            "optimizer": s.get("optimizer"), "learning_rate": _learning_rate(meta),
            "batch_size": s.get("batch_size"),
            "epochs": hist.get("epochs"), "metrics": meta.get("metrics"),
            "stopped": meta.get("stopped"), "deltaprop_version": meta.get("deltaprop_version")}
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{args.model}: sizes {net.sizes}, {info['dtype']}, {net.n_params} parameters")
    print(f"{'layer':>5}  {'W':>12}  {'b':>7}  {'activation':<12} {'params':>8}")
    print(f"{0:>5}  {'(input)':>12}  {'':>7}  {'':<12} {'':>8}   n_0 = {net.sizes[0]}")
    for r in layers:
        print(f"{r['layer']:>5}  {'x'.join(map(str, r['W'])):>12}  {r['b'][0]:>7}  "
              f"{r['activation']:<12} {r['params']:>8}")
    print(f"loss: {info['loss']}   task: {info['task']}   data: {info['data']}")
    if info["classes"] is not None:
        print(f"classes: {info['classes']}")
    if s:
        lr = info["learning_rate"]
        print(f"trained: optimizer {s.get('optimizer')}, learning rate "
              f"{lr if lr is None else format(lr, 'g')}, "
              f"schedule {s.get('schedule')}, batch size {s.get('batch_size')}, "
              f"{hist.get('epochs')} epochs, l2 {s.get('l2')}, seed {s.get('seed')}")
    for split, v in (info["metrics"] or {}).items():
        print(f"{split}: " + "  ".join(f"{k} = {_fmt(x)}" for k, x in v.items()))
    if info["stopped"]:
        stop = info["stopped"]
        print(f"stopped: {stop['message'] if isinstance(stop, dict) else stop}")
    for f in meta.get("health") or ():
        print(f"health: {f.get('message')}")
    return 0


def _learning_rate(meta):
    """The learning rate a model was trained with (the optimizer's default resolved; model
    files written before it was stored hold only the settings)."""
    from ... import optim

    if meta.get("learning_rate") is not None:
        return meta["learning_rate"]
    s = meta.get("settings") or {}
    lr = s.get("learning_rate", s.get("lr"))
    if lr is not None or not s.get("optimizer"):
        return lr
    return optim.get(s["optimizer"]).hyper.get("learning_rate")


__all__ = ["register", "DEFAULTS"]

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
"""

from __future__ import annotations

import csv
import io as _io
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ._common import add_backend_options, backend_from_args, limit_threads

#: every setting of a run, with its default (keys of config files and of config.json)
DEFAULTS = {
    "data": "digits", "target": None, "sizes": [128], "activation": "tanh", "activations": None,
    "output": None, "loss": None, "init": "glorot_uniform", "weight_mean": 0.0,
    "weight_std": None, "bias_std": 0.0, "optimizer": "adam", "lr": None, "momentum": 0.9,
    "schedule": "constant", "batch_size": 32, "epochs": 30, "l2": 0.0, "val_split": 0.1,
    "test_split": 0.2, "early_stopping": None, "dtype": "float64", "seed": 0,
    "layer_stats": False,
}
RUN_FILES = ("config.json", "checkpoint.safetensors", "model.safetensors", "metrics.csv",
             "metrics.json", "learning_curves.png", "layer_stats.png")


def register(sub):
    p = sub.add_parser("train", help="train a network (no arguments: an MLP on digits)",
                       description="Train a fully-connected network. With no arguments: "
                       "64-128-10 tanh + softmax cross-entropy on scikit-learn's digits, Adam.")
    a = p.add_argument
    a("--data", help="built-in set (digits, iris, wine, breast_cancer, xor, moons, regression) "
      "or a file (CSV, .npy, .npz, IDX); default digits")
    a("--target", help="CSV target column (name or index; default the last column)")
    a("--sizes", help="hidden layer sizes, comma-separated (default 128; 'none' for no hidden "
      "layer)")
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
    a("--lr", type=float, help="learning rate (default 0.001 for adam, 0.1 otherwise)")
    a("--momentum", type=float, help="momentum coefficient mu (momentum, nesterov; default 0.9)")
    a("--schedule", help="constant, step, exponential, cosine, inverse-time (default constant)")
    a("--batch-size", help="1 = online, 0 or 'full' = full batch (default 32)")
    a("--epochs", type=int, help="number of epochs (default 30)")
    a("--l2", type=float, help="L2 penalty lambda (default 0)")
    a("--val-split", type=float, help="validation fraction (default 0.1)")
    a("--test-split", type=float, help="test fraction (default 0.2)")
    a("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs "
      "without improvement of the validation loss")
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

    p = sub.add_parser("evaluate", help="loss and accuracy of a model file on a data set")
    p.add_argument("model")
    p.add_argument("data")
    p.add_argument("--target", help="CSV target column (default: the one used in training)")
    p.add_argument("--json", action="store_true")
    add_backend_options(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="predictions of a model file, as CSV")
    p.add_argument("model")
    p.add_argument("data", help="data set (its target column, if present, is ignored)")
    p.add_argument("--proba", action="store_true", help="add the class probabilities")
    p.add_argument("--target", help="CSV target column to drop")
    p.add_argument("--out", help="CSV file to write (default: standard output)")
    add_backend_options(p)
    p.set_defaults(func=_predict)

    p = sub.add_parser("info", help="layers, parameter counts and training metadata of a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)


# ------------------------------------------------------------------------------ settings

def _read_config(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            cfg = tomllib.loads(text.decode("utf-8"))
        else:
            cfg = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ValueError(f"config file {path} cannot be parsed: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"config file {path} must hold a table/object of settings")
    if isinstance(cfg.get("settings"), dict):  # a run's config.json
        cfg = cfg["settings"]
    out = {}
    for key, value in cfg.items():
        k = str(key).replace("-", "_")
        if k not in DEFAULTS:
            raise ValueError(f"config file {path}: unknown setting {key!r}; known: "
                             f"{', '.join(DEFAULTS)}")
        out[k] = value
    return out


def _settings(args) -> dict:
    s = dict(DEFAULTS)
    if args.config:
        s.update(_read_config(args.config))
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            s[key] = value
    s["sizes"] = _parse_sizes(s["sizes"])
    if isinstance(s["activations"], str):
        s["activations"] = [a.strip() for a in s["activations"].split(",")]
    bs = s["batch_size"]
    if isinstance(bs, str):
        bs = bs.strip().lower()
        if bs != "full":
            try:
                bs = int(bs)
            except ValueError:
                raise ValueError(f"--batch-size must be an integer, 0 or 'full', got {bs!r}") \
                    from None
    s["batch_size"] = bs
    for key in ("epochs", "seed"):
        if not isinstance(s[key], int) or isinstance(s[key], bool) or s[key] < 0:
            raise ValueError(f"{key} must be an integer >= 0, got {s[key]!r}")
    return s


def _parse_sizes(sizes):
    if isinstance(sizes, str):
        text = sizes.strip().lower()
        if text in ("", "none", "[]"):
            return []
        try:
            sizes = [int(v) for v in text.replace("-", ",").split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--sizes must be comma-separated integers, got {sizes!r}") from None
    if isinstance(sizes, int):
        sizes = [sizes]
    if not all(isinstance(n, int) and n >= 1 for n in sizes):
        raise ValueError(f"hidden sizes must be positive integers, got {sizes!r}")
    return list(sizes)


# ------------------------------------------------------------------------------ data

def _targets(ds, loss_name):
    """Targets for the loss: real targets as they are, class indices :func:`_encode`-d."""
    return ds.y if ds.task == "regression" else _encode(ds.y, ds.n_classes, loss_name)


def _encode(y, n_classes, loss_name):
    """Class indices y (m,) as the loss wants them: the indices for softmax CE, p(class 1)
    (m, 1) for sigmoid CE on two classes (one output unit), else one-hot (m, n_classes)."""
    if loss_name == "softmax-cross-entropy":
        return y
    if loss_name == "sigmoid-cross-entropy" and n_classes == 2:
        return y.astype(np.float64)[:, None]
    return np.eye(n_classes)[y]


def _n_outputs(ds, loss_name):
    if ds.task == "classification" and loss_name == "sigmoid-cross-entropy" and \
            ds.n_classes == 2:
        return 1
    return ds.n_outputs


def _class_list(classes):
    return None if classes is None else [c.item() if hasattr(c, "item") else c for c in classes]


def _prepare_run(s):
    """(splits, standardizer, network, loss name) for settings ``s``."""
    from .. import Network, data
    from .. import losses as _losses

    ds = data.load(s["data"], target=s["target"])
    train, val, test = data.train_val_test_split(ds, val=s["val_split"], test=s["test_split"],
                                                 seed=s["seed"])
    std = data.Standardizer().fit(train.x)
    loss = _losses.get(s["loss"] or ("mse" if ds.task == "regression" else "softmax-cross-entropy"))
    if ds.task == "regression" and loss.name != "mse":
        raise ValueError(f"data {s['data']!r} is a regression set; use --loss mse")
    sizes = [ds.n_features, *s["sizes"], _n_outputs(ds, loss.name)]
    if s["activations"]:
        acts, output = s["activations"], None
    else:
        acts, output = s["activation"], s["output"] or loss.output or "identity"
    net = Network.init(sizes, acts, output, init=s["init"], seed=s["seed"], dtype=s["dtype"],
                       mean=s["weight_mean"], std=s["weight_std"], bias_std=s["bias_std"])
    _losses.check_pair(loss, net.activations[-1])
    return (train, val, test), std, net, loss.name


# ------------------------------------------------------------------------------ train

def _new_run_dir(out):
    if out is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        out, k = Path("runs") / stamp, 1
        while out.exists():
            out, k = Path("runs") / f"{stamp}-{k}", k + 1
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file")
    if out.is_dir() and any((out / f).exists() for f in RUN_FILES):
        raise ValueError(f"output folder {out} already holds a run; use --resume {out} or "
                         "another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".deltaprop-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OSError(f"output folder {out} cannot be written ({exc.strerror or exc})") from None
    return out


def _train(args):
    from .. import __version__
    from .. import io as dio
    from ..train import check_options, evaluate, fit

    if args.resume:
        given = [k for k in (*DEFAULTS, "out", "config") if getattr(args, k, None) is not None]
        if given:
            raise ValueError("--resume takes every setting from RUN_DIR/config.json; drop "
                             + ", ".join("--" + k.replace("_", "-") for k in given))
        out = Path(args.resume)
        cfg_path = out / "config.json"
        if not cfg_path.is_file():
            raise FileNotFoundError(f"{out} is not a run folder (no config.json)")
        s = {**DEFAULTS, **_read_config(cfg_path)}
        s["sizes"] = _parse_sizes(s["sizes"])
    else:
        s = _settings(args)
    be = backend_from_args(args)  # not a setting: every backend trains the same network
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    splits, std, net, loss = _prepare_run(s)
    fit_options = dict(optimizer=s["optimizer"], learning_rate=s["lr"], schedule=s["schedule"],
                       batch_size=s["batch_size"], epochs=s["epochs"], l2=s["l2"],
                       early_stopping=s["early_stopping"], optimizer_options=_opt_options(s))
    check_options(**fit_options)  # before the run folder is made: a bad setting leaves none
    net = be.network(net)
    train, val, test = splits
    x_tr, x_va, x_te = (be.asarray(std.transform(d.x), like=net.W[1]) for d in splits)
    y_tr, y_va, y_te = (be.asarray(_targets(d, loss), like=net.W[1]) for d in splits)
    has_val = val.m > 0
    if args.resume:
        try:
            (out / ".deltaprop-write-test").write_bytes(b"")
            (out / ".deltaprop-write-test").unlink()
        except OSError as exc:
            raise OSError(f"run folder {out} cannot be written ({exc.strerror or exc})") \
                from None
    else:
        out = _new_run_dir(args.out)
        config = {"deltaprop_version": __version__, "command": "deltaprop train",
                  "repeat": f"deltaprop train --config {out / 'config.json'} --out NEW_DIR",
                  "settings": s}
        dio.atomic_write_text(out / "config.json", json.dumps(config, indent=2) + "\n")

    quiet = args.quiet or args.json
    with limit_threads(args.threads):  # --layer-stats: epoch 0 and the theory, before the clock
        stats_cb = _layer_stats_callback(s, net, x_tr, y_tr, loss) if s["layer_stats"] else None
    t0 = time.perf_counter()
    with limit_threads(args.threads):
        result = fit(net, x_tr, y_tr, loss, **fit_options, seed=s["seed"],
                     x_val=x_va if has_val else None, y_val=y_va if has_val else None,
                     progress=False if quiet else "auto",
                     checkpoint=out / "checkpoint.safetensors", resume=bool(args.resume),
                     checkpoint_meta={"settings": s}, callbacks=[stats_cb] if stats_cb else ())
    wall = time.perf_counter() - t0
    final = {"train": evaluate(result.net, x_tr, y_tr, loss)}
    if has_val:
        final["val"] = evaluate(result.net, x_va, y_va, loss)
    if test.m > 0:
        final["test"] = evaluate(result.net, x_te, y_te, loss)
    summary = result.history.summary()
    meta = {"loss": loss, "task": train.task, "classes": _class_list(train.classes),
            "data": str(s["data"]), "target": s["target"], "standardization": std.to_dict(),
            "settings": s, "history": summary, "metrics": final, "stopped": result.stopped,
            "deltaprop_version": __version__}
    dio.save_model(out / "model.safetensors", result.net, meta)
    _write_metrics(out, result.history, final, result.stopped, wall, stats_cb)
    result.history.plot().savefig(out / "learning_curves.png", dpi=100)
    if stats_cb is not None:
        _write_layer_stats(out, result.history, stats_cb, quiet)
    if result.stopped:
        print(f"deltaprop: {result.stopped}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"run": str(out), "metrics": final, "epochs": len(result.history),
                          "time": wall, "stopped": result.stopped}, indent=2))
    elif not args.quiet:
        _print_table(final, wall, len(result.history), out)
    return 1 if result.stopped and "became" in result.stopped else 0


def _opt_options(s):
    from .. import optim

    name = optim.get(s["optimizer"], 0.1).name
    return {"momentum": s["momentum"]} if name in ("momentum", "nesterov") else {}


def _write_metrics(out, history, final, stopped, wall, stats_cb=None):
    from .. import io as dio

    rows = history.as_rows()
    keys = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "time"]
    keys = [k for k in keys if any(k in r for r in rows)] or ["epoch"]
    extra = {}
    if stats_cb is not None:  # --layer-stats: their columns, and epoch 0 first in the CSV
        from ..stats.layer_stats import flat

        first = {"epoch": 0, **flat(stats_cb.initial_stats)}
        keys += [k for k in first if k != "epoch"]
        extra = {"layer_stats": stats_cb.summary()}
    buf = _io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    w.writerows(rows if stats_cb is None else [first, *rows])
    dio.atomic_write_text(out / "metrics.csv", buf.getvalue())
    dio.atomic_write_text(out / "metrics.json", json.dumps(
        {"epochs": rows, "final": final, "stopped": stopped, "time": wall, **extra},
        indent=2) + "\n")


def _layer_stats_callback(s, net, x, y, loss):
    """--layer-stats: the callback, with the theory at the settings' initialisation (the
    initial network's own weight statistics where the settings name no law it knows)."""
    from ..stats.ensemble import prior
    from ..stats.layer_stats import LayerStatsCallback

    try:
        p = prior(net.sizes, init=s["init"], std=s["weight_std"], mean_w=s["weight_mean"],
                  sigma_b2=s["bias_std"] ** 2)
    except (ValueError, KeyError):
        p = None
    return LayerStatsCallback(x, y, loss, net, prior=p)


def _write_layer_stats(out, history, cb, quiet):
    """layer_stats.png (atomically) and, unless quiet, the table of epoch 0 and the last."""
    from .. import io as dio
    from ..stats.layer_stats import flat, plot, table

    rows = [{"epoch": 0, **flat(cb.initial_stats)}, *history.as_rows()]
    buf = _io.BytesIO()
    plot(rows, cb.theory, title="per-layer statistics over training").savefig(
        buf, format="png", dpi=100)
    dio.atomic_write_bytes(out / "layer_stats.png", buf.getvalue())
    if not quiet:
        print(table(rows, cb.theory))
        if cb.theory is None:
            print(f"(no theory: {cb.theory_note})")


def _print_table(final, wall, epochs, out):
    has_acc = any("accuracy" in v for v in final.values())
    print(f"{'split':<6} {'loss':>10}" + (f" {'accuracy':>9}" if has_acc else ""))
    for split, v in final.items():
        print(f"{split:<6} {v['loss']:>10.4f}" + (f" {v['accuracy']:>9.4f}" if has_acc else ""))
    print(f"{epochs} epochs in {wall:.2f} s ({wall / max(epochs, 1) * 1000:.1f} ms/epoch); "
          f"run folder {out}")


# ------------------------------------------------------------------------------ use a model

def _model_inputs(net, meta, source, target, *, need_target):
    """(x standardised, dataset) for a model file's data, checked against the model."""
    from .. import data

    ds = data.load(source, target=target if target is not None else meta.get("target"))
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


def _evaluate(args):
    from .. import io as dio
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
        print("  ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}"
                        for k, v in res.items()))
    return 0


def _predict(args):
    from .. import _backend, backprop
    from .. import io as dio

    be = backend_from_args(args)
    net, meta = dio.load_model(args.model)
    x, _ = _model_inputs(net, meta, args.data, args.target, need_target=False)
    net = be.network(net)
    a = np.asarray(_backend.to_numpy(backprop.predict(net, be.asarray(x, like=net.W[1]))))
    classes = meta.get("classes")
    if args.out is not None and Path(args.out).is_dir():
        raise ValueError(f"--out {args.out} is a folder; give a file name")
    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if classes is None:
        w.writerow([f"y{k + 1}" for k in range(a.shape[1])])
        w.writerows([[repr(float(v)) for v in row] for row in a])
    else:
        if len(classes) == 2 and a.shape[1] == 1:  # binary sigmoid output: p(class 1)
            proba = np.column_stack([1 - a[:, 0], a[:, 0]])
        else:  # one column per class (see _encode)
            proba = a
        pred = np.argmax(proba, axis=1)
        w.writerow(["prediction"] + ([f"p_{c}" for c in classes] if args.proba else []))
        for i, row in zip(pred, proba, strict=True):
            w.writerow([classes[i]] + ([repr(float(v)) for v in row] if args.proba else []))
    if args.out is None:
        sys.stdout.write(buf.getvalue())
    else:
        dio.atomic_write_text(args.out, buf.getvalue())
    return 0


def _info(args):
    from .. import io as dio

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
            "optimizer": s.get("optimizer"), "lr": s.get("lr"), "batch_size": s.get("batch_size"),
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
        print(f"trained: optimizer {s.get('optimizer')}, lr {s.get('lr') or 'default'}, "
              f"schedule {s.get('schedule')}, batch size {s.get('batch_size')}, "
              f"{hist.get('epochs')} epochs, l2 {s.get('l2')}, seed {s.get('seed')}")
    for split, v in (info["metrics"] or {}).items():
        print(f"{split}: " + "  ".join(f"{k} = {x:.4f}" for k, x in v.items()))
    if info["stopped"]:
        print(f"stopped: {info['stopped']}")
    return 0


__all__ = ["register", "DEFAULTS"]

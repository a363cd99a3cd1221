"""``deltaprop stats``: the backward-pass laboratory from the command line.

With no arguments it runs the default study (K = 16 tanh networks 64-64-64-64-64-10 drawn
with Glorot-normal weights, the digits data, MSE) and prints the table of measured E[delta]
and E[delta^2] per layer beside each applicable prediction.  ``--json`` prints the rows;
``--out DIR`` writes ``rows.json``, ``rows.csv``, ``table.txt`` and the figures.
``--gradient-independence`` adds the pass through an independent copy of the weights
(:mod:`deltaprop.stats.independent`): a second table, ``row["gradient_independence"]`` in
the JSON rows and ``gradient_independence.txt``.  ``--correlation C0`` adds pairs of inputs
with correlation C0 (:mod:`deltaprop.stats.correlation`): c^l per layer beside the C-map's
prediction and the trainability rule, ``row["correlation"]`` and ``correlation.txt``.
``--weight-grads`` adds the weight-gradient second moment per layer beside its predictions
and Glorot & Bengio's eq. 14 (:mod:`deltaprop.stats.weight_grads`): ``row["weight_grads"]``
and ``weight_grads.txt``.

A folder that already holds files is refused without ``--force`` (with it, the earlier
study's files are replaced and other files left alone); every file is written atomically.
Progress (network-batches recorded of the total, time left) goes to stderr on a terminal;
``--quiet`` prints neither it nor the timing line.  ``--config FILE`` takes any of the
flags' settings from a TOML or JSON file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace

from ._common import (
    RETIRED,
    add_backend_options,
    add_config_option,
    add_retired,
    backend_from_args,
    int_list,
    prepare_out_dir,
    progress_bar,
    refuse_unless_fits,
)

#: the files a study writes into --out (replaced with --force; other files are left alone)
OUT_FILES = ("rows.json", "rows.csv", "table.txt", "gradient_independence.txt",
             "correlation.txt", "weight_grads.txt", "spread.txt", "study.json",
             "comparison.png", "depth.png", "histograms.png")


def _floats(text):
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or numbers separated by commas, "
                                         f"got {text!r}") from None
    return vals[0] if len(vals) == 1 else tuple(vals)


def register(sub):
    p = sub.add_parser("stats", help="measure and predict the statistics of the error vectors",
                       description="Record delta[l] over an ensemble of networks and inputs, "
                       "and compare with the independence, mean-field and exact predictions.")
    _architecture_options(p.add_argument_group("architecture"))
    _weight_options(p.add_argument_group("weights (--init, or one of --weight-std and "
                                         "--sigma-w2 scaling --init's law)"))
    _data_options(p.add_argument_group("data"))
    run = p.add_argument_group("ensemble and run")
    _ensemble_options(run)
    _extra_options(run)
    _between_options(p.add_argument_group("between networks (finite width, docs/signal.md)"))
    _output_options(p.add_argument_group("output"))
    add_retired(p, RETIRED)
    p.set_defaults(func=_stats)


def _architecture_options(g):
    g.add_argument("--sizes", type=int_list, default=None,
                   help="all layer sizes n_0,...,n_L (default: --hidden with the data's sizes)")
    g.add_argument("--hidden", type=int_list, default=(64, 64, 64, 64),
                   help="hidden widths (default 64,64,64,64)")
    g.add_argument("--n-in", type=int, default=64, help="inputs for --inputs gaussian (64)")
    g.add_argument("--n-out", type=int, default=None,
                   help="outputs (default: the data's classes; 10 for gaussian)")
    g.add_argument("--activations", default="tanh",
                   help="hidden activation, or a comma list for every hidden layer")
    g.add_argument("--output", default=None, help="output activation (default: fits the loss)")
    g.add_argument("--loss", default=None,
                   help="loss (default mse; with --model, the model's own loss)")


def _weight_options(w):
    w.add_argument("--init", default=None,
                   help="named initialiser (default glorot_normal; e.g. orthogonal, standard, "
                   "lecun_normal); with --weight-std or --sigma-w2 only its law (default normal)")
    w.add_argument("--weight-std", type=_floats, default=None,
                   help="raw std of each weight (the question's sigma_w), one or one per layer")
    w.add_argument("--sigma-w2", type=_floats, default=None,
                   help="mean-field variance: Var(W[l]) = sigma_w^2 / n_{l-1}")
    w.add_argument("--weight-mean", type=_floats, default=0.0, help="mu_w (default 0)")
    w.add_argument("--sigma-b2", type=_floats, default=0.0, help="bias variance (default 0)")
    w.add_argument("--bias-mean", type=_floats, default=0.0)


def _data_options(d):
    d.add_argument("--inputs", default=None,
                   help="'gaussian', a built-in data set or a data file (default digits; "
                   "with --model, the model's training data)")
    d.add_argument("--input-mean", type=float, default=0.0)
    d.add_argument("--input-var", type=float, default=1.0)
    d.add_argument("--target-mean", type=float, default=0.0, help="E[y] (gaussian inputs)")
    d.add_argument("--target-var", type=float, default=1.0)
    d.add_argument("--samples", type=int, default=None,
                   help="samples m per network (default: the whole data set; 256 gaussian)")


def _ensemble_options(e):
    e.add_argument("--K", type=int, default=16, help="networks in the ensemble (16)")
    e.add_argument("--K-chunk", type=int, default=None,
                   help="draw and record this many networks at a time (memory)")
    e.add_argument("--batch-size", type=int, default=1024)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--forward", choices=["law", "measured", "gaussian"], default="law",
                   help="forward model of the predictions: the exact per-sample law of the "
                   "forward pass under the prior, integrated by Monte Carlo (law, default), "
                   "the recorded forward pass (measured) or the Gaussian mean-field recursion "
                   "(gaussian)")
    e.add_argument("--theory-samples", type=int, default=None,
                   help="at least this many draws of the forward law (--forward law; default "
                   "min(65536, 2^24 / units))")
    e.add_argument("--theory-rtol", type=float, default=0.005,
                   help="draw more (up to min(2^20, 2^26 / units)) until each E[delta^2] "
                   "prediction has this relative integration error (0.005)")
    e.add_argument("--bins", type=int, default=64, help="histogram bins (multiple of 4; 0 off)")
    e.add_argument("--dtype", choices=["float32", "float64"], default="float64")


def _extra_options(e):
    """The optional measurements of the run, and the model to record instead of an ensemble."""
    e.add_argument("--gradient-independence", action="store_true",
                   help="also back-propagate each forward pass through an independent copy of "
                   "the weights (a second draw; with --model, each W[l] permuted) and print "
                   "E[delta^2] true, through the copy and in theory (one more pass)")
    e.add_argument("--correlation", type=float, metavar="C0", default=None,
                   help="also propagate pairs of Gaussian inputs (components N(0, --input-var))"
                   " with correlation C0 and print the correlation c^l of z[l] per layer beside "
                   "the C-map's prediction and the trainability rule depth <~ 6 xi_c (one more "
                   "forward pass of 2 x 256 samples per network)")
    e.add_argument("--weight-grads", action="store_true",
                   help="also print E[(dJ_i/dW[l]_jk)^2] per layer beside its predictions (exact "
                   "given the forward pass, factorised E[delta^2] E[a[l-1]^2], mean field) and "
                   "the check of Glorot & Bengio's eq. 14 (ratio to layer 1; no extra pass); "
                   "row['weight_grads'] in the JSON rows, weight_grads.txt in --out")
    add_backend_options(e, "the ensemble (or --model) and the inputs")
    e.add_argument("--model", default=None,
                   help="record a trained model file instead of an ensemble (with --inputs)")


def _between_options(s):
    s.add_argument("--rel-se", type=float, default=0.01, metavar="P",
                   help="plan K for this relative standard error of E[delta[l]^2] (0.01): "
                   "the line under the table, K = Var[Q] / (E[Q]^2 P^2) with Q the "
                   "per-network E[delta[l]^2]")
    s.add_argument("--spread", action="store_true",
                   help="print Var[log E[delta[l]^2]] between networks per layer, measured "
                   "and (where finite-width theory applies) predicted, with K for --rel-se; "
                   "row['spread'] in the JSON rows, spread.txt in --out")
    s.add_argument("--probe", action="store_true",
                   help="back-propagate u . z[L] (delta[L] = u, a random unit vector per "
                   "network) instead of the loss, Hanin's setting, and print only the spread "
                   "table (predicted with --samples 1)")


def _output_options(o):
    o.add_argument("--json", action="store_true", help="print the rows as JSON")
    o.add_argument("--out", default=None, help="folder for CSV, JSON and PNG files (new or "
                   "empty; --force replaces an earlier study's files)")
    o.add_argument("--force", action="store_true",
                   help="write into an --out folder that already holds files")
    o.add_argument("--quiet", action="store_true",
                   help="no progress bar and no timing line on stderr")
    add_config_option(o)


#: flags that must be finite and >= 0 (one value or one per layer)
_NONNEGATIVE = ("weight_std", "sigma_w2", "sigma_b2", "input_var", "target_var")
#: flags that must be finite
_FINITE = ("weight_mean", "bias_mean", "input_mean", "target_mean")


def check_args(args):
    """The numbers of the command line, checked before any work (one line each)."""
    for name in _NONNEGATIVE + _FINITE:
        v = getattr(args, name)
        if v is None:
            continue
        flag = "--" + name.replace("_", "-")
        for x in (v if isinstance(v, tuple) else (v,)):
            if not math.isfinite(x) or (name in _NONNEGATIVE and x < 0):
                what = "a standard deviation" if name == "weight_std" else "a variance"
                need = f"{what}, a finite number >= 0" if name in _NONNEGATIVE else \
                    "a finite number"
                raise ValueError(f"{flag} must be {need}, got {text_of(v)}")
    if args.weight_std is not None and args.sigma_w2 is not None:
        raise ValueError("give --weight-std (the raw std of each weight) or --sigma-w2 "
                         "(Var W[l] = sigma_w2 / n_{l-1}), not both")
    for name, low in (("theory_rtol", 0), ("rel_se", 0)):
        v = getattr(args, name)
        if not (math.isfinite(v) and v > low):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number > 0, got {v}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.bins < 0 or args.bins % 4:
        raise ValueError(f"--bins must be 0 (off) or a positive multiple of 4, got {args.bins}")
    if args.correlation is not None and not (-1 <= args.correlation <= 1):
        raise ValueError(f"--correlation C0 must lie in [-1, 1], got {args.correlation}")
    _check_counts(args)


def _check_counts(args):
    """The counts, named as the user typed them (the library says ``m``, ``K_chunk``...)."""
    for flag, v, low, what in (
            ("--samples", args.samples, 1, "samples m per network"),
            ("--K", args.K, 1, "networks"),
            ("--K-chunk", args.K_chunk, 1, "networks drawn at a time"),
            ("--theory-samples", args.theory_samples, 1, "draws of the forward law"),
            ("--n-in", args.n_in, 1, "inputs"), ("--n-out", args.n_out, 1, "outputs")):
        if v is not None and v < low:
            raise ValueError(f"{flag} must be >= {low} ({what}), got {v}")
    for flag, v in (("--sizes", args.sizes), ("--hidden", args.hidden)):
        if v is not None and any(n < 1 for n in v):
            raise ValueError(f"{flag} must be positive widths, got {text_of(v)}")


def estimate_memory(sizes, K, *, m, K_chunk=None, batch_size=1024, itemsize=8,
                    forward="law", gradient_independence=False) -> int:
    """Bytes a study of K networks of ``sizes`` needs at its peak, before anything is drawn.

    Weights: a chunk of k = min(K_chunk or K, K) networks of P parameters each, drawn on the
    host in float64, scaled and cast (3 k P float64 numbers and k P of the dtype; all K
    networks are kept for --forward measured, one more chunk for --gradient-independence).
    Recording: a batch of b = min(batch_size, m) samples holds z, a, delta and f' of every
    layer for each network (4 k b U numbers, U = n_0 + ... + n_L).  The forward law's Monte
    Carlo: max(min(8192, 2^22 / U), 64) draws of every unit, about 4 copies.  Measured: a
    1.5 GB peak at --hidden 200000 --K 2 --samples 4 and 6 GB at 1000000 (this: 1.3, 6.6 GiB).
    """
    sizes = [int(n) for n in sizes]
    P = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    U = sum(sizes)
    k = min(K_chunk or K, K)
    nets = (K if forward == "measured" else k) + (k if gradient_independence else 0)
    b = min(batch_size, m) if batch_size else m
    law = max(min(8192, (1 << 22) // max(U - sizes[0], 1)), 64) * U * 4 if forward == "law" \
        else 0
    return int(8 * 3 * k * P + itemsize * (nets * P + 4 * k * b * U) + 8 * law)


def _check_memory(args):
    """Refuse (one line) a study whose networks or recorded arrays would not fit in memory.
    The data's n_0 and n_L are not known before loading it: the estimate takes --n-in and
    --n-out (64 and 10 by default), which the hidden widths dominate when it matters."""
    if args.model:  # the model is loaded already: its size is the user's
        return
    if args.sizes is not None:
        sizes = list(args.sizes)
    else:
        sizes = [args.n_in, *args.hidden, args.n_out or 10]
    m = args.samples or (256 if args.inputs == "gaussian" else 1797)
    need = estimate_memory(sizes, args.K, m=m, K_chunk=args.K_chunk,
                           batch_size=args.batch_size,
                           itemsize=4 if args.dtype == "float32" else 8,
                           forward=args.forward, gradient_independence=args.gradient_independence)
    flag = "--sizes" if args.sizes is not None else "--hidden"
    refuse_unless_fits(need, f"the study (sizes {'-'.join(map(str, sizes))}, K = {args.K} "
                       "networks)", f"use smaller {flag} widths, a smaller --K-chunk or --K, or "
                       "fewer --samples")


def text_of(v):
    return ",".join(f"{x:g}" for x in v) if isinstance(v, tuple) else f"{v:g}"


def _study(args):
    from ...stats.study import Study

    be = backend_from_args(args)
    args.inputs = args.inputs or "digits"
    if args.sizes is not None:
        sizes = args.sizes
    else:
        n0 = args.n_in if args.inputs == "gaussian" else None
        nL = args.n_out if args.n_out is not None else (10 if args.inputs == "gaussian" else None)
        sizes = (n0, *args.hidden, nL)
    return Study(sizes=tuple(sizes), activations=args.activations, output=args.output,
                 loss=args.loss or "mse", init=args.init, weight_mean=args.weight_mean,
                 weight_std=args.weight_std,
                 sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2, bias_mean=args.bias_mean,
                 inputs=args.inputs, input_mean=args.input_mean, input_var=args.input_var,
                 target_mean=args.target_mean, target_var=args.target_var, m=args.samples,
                 K=args.K, K_chunk=args.K_chunk, batch_size=args.batch_size, seed=args.seed,
                 forward_model=args.forward, theory_samples=args.theory_samples,
                 theory_rtol=args.theory_rtol, bins=args.bins or None, dtype=args.dtype,
                 backend=be.name, device=be.device,
                 gradient_independence=args.gradient_independence,
                 correlation=args.correlation, weight_grads=args.weight_grads)


def _model(args):
    from ...stats.study import Study, load_inputs, study_network
    from ..files import load_model

    net, meta = load_model(args.model)
    loss = args.loss or meta.get("loss") or "mse"  # an explicit --loss mse wins too
    args.inputs = args.inputs or meta.get("data") or "digits"
    if args.inputs == "gaussian":
        raise ValueError("--model needs data: give --inputs (a data set or file)")
    x, y, y_mean, y_second, n0, nL = load_inputs(
        Study(sizes=(None, None), inputs=args.inputs, m=args.samples, loss=loss, K=None),
        standardization=meta.get("standardization"))
    if n0 != net.sizes[0]:
        raise ValueError(f"the model takes {net.sizes[0]} inputs but {args.inputs} has {n0}")
    be = backend_from_args(args)
    net = be.network(net)
    x, y = be.asarray(x, like=net.W[1]), be.asarray(y, like=net.W[1])
    return study_network(net, x, y, loss, y_mean=y_mean, y_second=y_second,
                         batch_size=args.batch_size, bins=args.bins or None,
                         forward_model=args.forward, theory_samples=args.theory_samples,
                         gradient_independence=args.gradient_independence, seed=args.seed,
                         correlation=args.correlation, weight_grads=args.weight_grads)


def _stats(args):
    from ...stats.report import table, to_csv, to_json

    check_args(args)
    _check_memory(args)
    out = prepare_out_dir("--out", args.out, args.force, OUT_FILES) if args.out else None
    if args.probe:
        return _probe(args, out)
    res = _model(args) if args.model else _run(args)
    spread = _spread(res, args)
    if args.spread:
        res = replace(res, rows=spread["rows"])
    if out is not None:
        _write(res, out, table, to_csv, to_json)
    if args.json:
        print(to_json(res.rows))
        return 0
    ex = res.extra
    what = f"model {args.model}" if args.model else f"K = {args.K} networks"
    print(f"{what}: sizes {ex['sizes']}, activations {ex['activations']}, "
          f"inputs {args.inputs}, {int(res.record.count)} samples per network")
    print(table(res.rows))
    cond = ex.get("question_conditions")
    if cond:
        t = {k: v + 0.0 for k, v in cond.items()}  # + 0.0: no "-0" (mu_w = 0 times < 0)
        print(f"E[delta] question at layer {len(ex['sizes']) - 2}: exact - independence = "
              f"{t['total']:.4g} = variance term M v E[f'f] {t['variance_term']:.4g} "
              f"+ covariance term {t['covariance_term']:.4g}")
    if args.gradient_independence:
        from ...stats.independent import table as gi_table

        print(gi_table(res.rows))
    if args.correlation is not None:
        print(_correlation_table(res))
    if args.weight_grads:
        from ...stats.weight_grads import table as wg_table

        print(wg_table(res.rows, ex["prior"]))
    if args.spread:
        print(spread["table"])
    print(spread["line"])
    if not args.quiet:
        print(f"({res.seconds:.2f} s)", file=sys.stderr)
    return 0


def _spread(res, args):
    """The rows with row["spread"], the spread table and the line planning K."""
    from ...stats import spread as sp

    meas, pred, note = sp.study_spread(res.record, res.extra["prior"], res.extra["activations"],
                                       None if args.model else res.study)
    rows = sp.add_rows(res.rows, meas, pred, args.rel_se)
    return {"rows": rows, "table": sp.table(rows, note), "meas": meas,
            "line": sp.plan_line(meas, pred, args.rel_se, res.record.K, note=note)}


def _probe(args, out):
    """--probe: the spread of the backward pass of u . z[L] (layers 1..L-1)."""
    from ...stats.spread import probe_spread
    from .. import files as dio

    if args.model:
        raise ValueError("--probe draws an ensemble: it takes no --model")
    rows, text = probe_spread(_study(args), args.rel_se)
    if out is not None:
        dio.atomic_write_text(out / "spread.txt", text + "\n")
        dio.atomic_write_text(out / "rows.json", json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2) if args.json else text)
    return 0


def _correlation_table(res):
    from ...stats import correlation as corr

    e = res.extra[corr.KEY]
    return corr.table(e["record"], e["predicted"], e["c0"], e["rule"], e["note"])


def _run(args):
    from ...stats.study import run_study

    study = _study(args)
    bar = progress_bar(args.quiet, None, "recording", unit=" network-batches")
    if bar is None:
        return run_study(study)

    def tick(stage, done, total):
        if stage == "theory":
            bar.set_description("predicting (theory)")
            return
        bar.total = total
        bar.update(done - bar.n)

    try:
        return run_study(study, progress=tick)
    finally:
        bar.close()


def _write(res, out, table, to_csv, to_json):
    from ...stats import plots
    from .. import files as dio

    def put(name, text):
        dio.atomic_write_text(out / name, text)

    put("rows.json", to_json(res.rows) + "\n")
    put("rows.csv", to_csv(res.rows))
    put("table.txt", table(res.rows) + "\n")
    if res.extra.get("gradient_independence") is not None:
        from ...stats.independent import table as gi_table

        put("gradient_independence.txt", gi_table(res.rows) + "\n")
    if res.extra.get("correlation") is not None:
        put("correlation.txt", _correlation_table(res) + "\n")
    if res.extra.get("weight_grads") is not None:
        from ...stats.weight_grads import table as wg_table

        put("weight_grads.txt", wg_table(res.rows, res.extra["prior"]) + "\n")
    if "spread" in res.rows[0]:
        from ...stats.spread import table as spread_table

        put("spread.txt", spread_table(res.rows) + "\n")
    info = {"sizes": list(res.extra["sizes"]), "activations": res.extra["activations"],
            "seconds": res.seconds, "samples_per_network": res.record.count,
            "K": res.record.K}
    put("study.json", json.dumps(info, indent=2) + "\n")
    plots.write_all(res, out)

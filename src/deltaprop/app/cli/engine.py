"""``deltaprop gradcheck`` and ``deltaprop trace``: the engine's commands."""

from __future__ import annotations

import json
import math
import sys
import textwrap
from dataclasses import replace

import numpy as np

from ._common import (
    RETIRED,
    add_backend_options,
    add_config_option,
    add_retired,
    backend_from_args,
    progress_bar,
    refuse_unless_fits,
)

#: the default PASS threshold of ``gradcheck`` on the largest relative error, by dtype:
#: measured errors are ~1e-11..1e-9 in float64 and ~1e-6..5e-4 in float32 (the analytic
#: gradient's rounding), while a wrong gradient gives errors of order 1e-2..1
TOL = {"float64": 1e-6, "float32": 1e-2}


def register(sub):
    p = sub.add_parser("gradcheck", help="check backprop against finite differences")
    p.add_argument("--sizes", default="4,5,3",
                   help="all layer widths n_0..n_L, input first (default 4,5,3)")
    p.add_argument("--activations", default="tanh",
                   help="one name for all hidden layers, or a comma list for layers 1..L")
    p.add_argument("--output", default=None, help="output activation (default: fits the loss)")
    p.add_argument("--loss", default="softmax-cross-entropy")
    p.add_argument("--init", default="glorot_normal")
    p.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    p.add_argument("--samples", type=int, default=8, help="batch size m")
    p.add_argument("--K", type=int, default=None, help="check a stack of K networks")
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--max-entries", type=int, default=None,
                   help="check at most this many random entries per array")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=None,
                   help="PASS when the largest relative error is at most this (default "
                   f"{TOL['float64']:g} for float64, {TOL['float32']:g} for float32); "
                   "exit status 1 on FAIL")
    p.add_argument("--json", action="store_true", help="print JSON (with tol and passed)")
    p.add_argument("--quiet", action="store_true", help="print only the PASS/FAIL line")
    add_backend_options(p, "the analytic gradients (finite differences: NumPy float64)")
    add_config_option(p)
    add_retired(p, {"--m": RETIRED["--m"]})
    p.set_defaults(func=_gradcheck)

    p = sub.add_parser(
        "trace", help="run a tiny network step by step, printing every z, a, delta, dW, db",
        description="Run a tiny network from a JSON spec step by step and print, for each step "
        "and layer, z, a, delta, dW, db, the loss J of the step's forward pass and W, b after "
        "the update.  With no SPEC, runs the built-in worked example (Mazur 2015).")
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.json",
                   help="spec file (default: the built-in example mazur_2015.json)")
    p.add_argument("--json", action="store_true",
                   help='print {"steps": [{"loss": J, "layers": [{"z", "a", "delta", "dW", '
                   '"db", "W", "b"}, ...]}, ...]}')
    p.add_argument("--precision", type=int, default=9,
                   help="digits after the decimal point in the text output (default 9)")
    p.add_argument("--show-spec", action="store_true",
                   help="print the spec as JSON (e.g. the built-in example, to copy and edit)")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar (steps done of all, on stderr on a terminal)")
    add_backend_options(p)
    add_config_option(p)
    p.set_defaults(func=_trace)


def _gradcheck(args):
    from ... import Network, losses
    from ...gradcheck import gradcheck, memory_needed

    be = backend_from_args(args)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") \
            from None
    loss = losses.get(args.loss)
    if all(n > 0 for n in sizes) and args.samples > 0 and (args.K or 1) > 0:
        refuse_unless_fits(memory_needed(sizes, args.samples, args.K),
                           f"gradcheck of a {'-'.join(map(str, sizes))} network",
                           "check a smaller network (the check is per entry: small widths "
                           "show the same errors)")
    acts = args.activations.split(",")
    output = args.output or loss.output or "identity"
    if len(acts) == 1:
        acts, output_kw = acts[0], output
    else:
        acts, output_kw = acts, None
    net = Network.init(sizes, acts, output_kw, init=args.init, seed=args.seed, K=args.K,
                       dtype=args.dtype, bias_std=0.1)
    rng = np.random.default_rng(args.seed + 1)
    x = rng.normal(size=(args.samples, sizes[0]))
    if loss.targets == "distribution":
        y = rng.integers(0, sizes[-1], args.samples)
    elif loss.targets == "probability":
        y = rng.uniform(size=(args.samples, sizes[-1]))
    else:
        y = rng.normal(size=(args.samples, sizes[-1]))
    net = be.network(net)
    x, y = be.asarray(x, like=net.W[1]), be.asarray(y, like=net.W[1])
    tol = TOL[args.dtype] if args.tol is None else args.tol
    if not tol > 0:
        raise ValueError(f"--tol must be > 0, got {args.tol}")
    result = gradcheck(net, x, y, loss, args.l2, max_entries=args.max_entries, seed=args.seed)
    passed = result.max_rel_error <= tol
    if args.json:
        print(json.dumps({**result.as_dict(), "tol": tol, "passed": passed}, indent=2))
        return 0 if passed else 1
    if not args.quiet:
        print(f"{net}, loss {loss.name}, m = {args.samples}")
        print(f"{'layer':>5}  {'max rel err dW':>14}  {'max rel err db':>14}")
        for r in result.layers:
            print(f"{r['layer']:>5}  {r['W']:>14.3e}  {r['b']:>14.3e}")
        print(f"max_rel_error = {result.max_rel_error:.3e}  ({result.checked} entries checked, "
              f"{result.skipped} skipped at kinks)")
    if passed:
        print(f"PASS: max relative error {result.max_rel_error:.3e} <= tol {tol:g}")
        return 0
    worst = max(result.layers, key=lambda r: max(r["W"], r["b"]))
    which = "dW" if worst["W"] >= worst["b"] else "db"
    print(f"FAIL: max relative error {result.max_rel_error:.3e} > tol {tol:g} "
          f"(worst: {which}[{worst['layer']}])")
    return 1


def _trace(args):
    from .. import trace

    if not 0 <= args.precision <= 17:
        raise ValueError(f"--precision must be in 0..17, got {args.precision}")
    if args.show_spec:
        if args.spec is None:
            print(trace.example_text(), end="")
            return 0
        trace.load(args.spec)  # validate before echoing
        with open(args.spec, encoding="utf-8") as f:
            print(f.read(), end="")
        return 0
    be = backend_from_args(args)
    spec = trace.load(args.spec)
    # the step, its network before and after: all that is kept
    refuse_unless_fits(3 * trace.step_bytes(spec), "one step of this trace",
                       "trace a smaller network or batch")
    net = be.network(spec.net)
    spec = replace(spec, net=net, x=be.asarray(spec.x, like=net.W[1]),
                   y=be.asarray(spec.y, like=net.W[1]))
    bar = progress_bar(args.quiet, spec.steps, "trace", unit="step")
    try:
        return _stream(trace, spec, args, bar)
    finally:
        if bar is not None:
            bar.close()


def _stream(trace, spec, args, bar):
    """Print each step as soon as it is computed (text, or the JSON record piece by piece)."""
    def emit(text, end="\n"):
        if bar is not None and not bar.disable:
            bar.write(text, file=sys.stdout, end=end)
        else:
            print(text, end=end, flush=True)

    finite, before = True, spec.net
    if not args.json:
        emit(trace.format_header(spec))
    with np.errstate(all="ignore"):  # a diverging trace shows its inf/NaN in the output
        for k, s in enumerate(trace.iter_steps(spec), start=1):
            if args.json:
                try:
                    text = json.dumps(trace.step_to_dict(s), indent=2, allow_nan=False)
                except ValueError:  # the JSON printed so far stays unclosed: not a result
                    raise ValueError(f"step {k} of the trace holds NaN or inf (the steps "
                                     "diverged), which JSON cannot carry; lower learning_rate "
                                     "or look at the text output") from None
                head = '{\n  "steps": [\n' if k == 1 else ",\n"
                emit(head + textwrap.indent(text, "    "), end="")
            else:
                finite = finite and all(math.isfinite(v) for v in _flat(trace.step_to_dict(s)))
                emit("\n" + trace.format_step(spec, k, s, before, args.precision))
            before = s.net
            if bar is not None:
                bar.update()
    if args.json:
        print("\n  ]\n}", flush=True)
    elif not finite:
        print("deltaprop: warning: the trace holds NaN or inf (the steps diverged)",
              file=sys.stderr)
    return 0


def _flat(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _flat(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _flat(v)
    else:
        yield obj

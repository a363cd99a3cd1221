"""``deltaprop gradcheck`` and ``deltaprop trace``: the engine's commands."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace

import numpy as np

from ._common import add_backend_options, backend_from_args


def register(sub):
    p = sub.add_parser("gradcheck", help="check backprop against finite differences")
    p.add_argument("--sizes", default="4,5,3", help="layer sizes, input first (default 4,5,3)")
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
    p.add_argument("--json", action="store_true", help="print JSON")
    add_backend_options(p, "the analytic gradients (finite differences: NumPy float64)")
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
    add_backend_options(p)
    p.set_defaults(func=_trace)


def _gradcheck(args):
    from .. import Network, losses
    from ..gradcheck import gradcheck

    be = backend_from_args(args)
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") \
            from None
    loss = losses.get(args.loss)
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
    result = gradcheck(net, x, y, loss, args.l2, max_entries=args.max_entries, seed=args.seed)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    print(f"{net}, loss {loss.name}, m = {args.samples}")
    print(f"{'layer':>5}  {'max rel err dW':>14}  {'max rel err db':>14}")
    for r in result.layers:
        print(f"{r['layer']:>5}  {r['W']:>14.3e}  {r['b']:>14.3e}")
    print(f"max_rel_error = {result.max_rel_error:.3e}  ({result.checked} entries checked, "
          f"{result.skipped} skipped at kinks)")
    return 0


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
    net = be.network(spec.net)
    with np.errstate(all="ignore"):  # a diverging trace shows its inf/NaN in the output
        steps = trace.run(replace(spec, net=net, x=be.asarray(spec.x, like=net.W[1]),
                                  y=be.asarray(spec.y, like=net.W[1])))
    if args.json:
        try:
            text = json.dumps(trace.record(steps), indent=2, allow_nan=False)
        except ValueError:
            raise ValueError("the trace holds NaN or inf (the steps diverged), which JSON cannot "
                             "carry; lower learning_rate or look at the text output") from None
        print(text)
        return 0
    print(trace.format_text(spec, steps, precision=args.precision))
    if not all(math.isfinite(v) for v in _flat(trace.record(steps))):
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

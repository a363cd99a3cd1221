"""``deltaprop gradcheck`` and ``deltaprop trace``: the engine's commands."""

from __future__ import annotations

import json

import numpy as np


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
    p.set_defaults(func=_gradcheck)


def _gradcheck(args):
    from .. import Network
    from .. import losses as L
    from ..gradcheck import gradcheck

    sizes = [int(s) for s in args.sizes.split(",")]
    loss = L.get(args.loss)
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

"""``deltaprop explain``: the worked solution, a check of a hand calculation, exercises.

    deltaprop explain [SPEC.json] [--notation deltaprop|haykin|bishop|ng|brawer]
                      [--format text|markdown|latex] [--out FILE [--force]]
                      [--step K] [--max-units N] [--precision P] [--json]
    deltaprop explain [SPEC.json] --check ANSWERS.json [--notation N] [--rtol R] [--json]
    deltaprop explain --exercise --sizes 2,3,2 --seed N [--format markdown|latex]
                      [--out FILE [--force]] [--activations A] [--loss L] [--samples m]

With no SPEC, Mazur's worked example (the ``deltaprop trace`` default).  ``--check`` exits
with 0 when every value is right and 1 when one is wrong; bad input ends with one line on
stderr and status 2.  Files are never replaced without ``--force`` and are written
atomically.  ``--json`` prints the step's values (every z, a, delta, dW, db, the new W and b
and J, in deltaprop's names) or, with ``--check``, the report; ``--quiet`` leaves out the
"wrote FILE" lines; ``--config FILE`` takes any flag's setting from a TOML or JSON file.
"""

from __future__ import annotations

import json
import math
import sys

from ._common import RETIRED, add_config_option, add_retired, check_out_file


def register(sub):
    from ..explain.notation import names

    p = sub.add_parser(
        "explain", help="the worked solution of one backprop step, in a textbook's notation",
        description="Write the worked solution of one gradient-descent step of a tiny network "
        "(a `deltaprop trace` spec; default: Mazur's 2015 example): every equation in "
        "symbols, then with the numbers substituted, then its result, in the notation of "
        "one classic derivation.  --check compares a hand calculation with it and names "
        "the first wrong quantity and the likely slip; --exercise draws a new network and "
        "writes a problem sheet and its answer key.")
    p.add_argument("spec", nargs="?", default=None, metavar="SPEC.json",
                   help="spec file (default: the built-in example mazur_2015.json)")
    p.add_argument("--notation", default=None, metavar="NAME",
                   help=f"{'|'.join(names())} (default deltaprop; --check: the answers "
                   "file's)")
    p.add_argument("--format", default=None, metavar="FMT",
                   help="text, markdown or latex (a whole document) (default text; "
                   "--exercise: markdown)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write to FILE instead of printing (--exercise: the sheet's file; "
                   "the answer key and the spec go beside it)")
    p.add_argument("--force", action="store_true", help="replace existing --out files")
    p.add_argument("--step", type=int, default=1,
                   help="which gradient-descent step of the spec to explain (default 1)")
    p.add_argument("--max-units", type=int, default=None, metavar="N",
                   help="write equations that involve at most N units and N samples unit "
                   "by unit; larger ones in matrix form (default 4)")
    p.add_argument("--precision", type=int, default=9,
                   help="digits after the decimal point (default 9)")
    p.add_argument("--check", default=None, metavar="ANSWERS.json",
                   help="check these values (any of z, a, delta, dW, db, W, b, J, in the "
                   "notation's own names) against the engine")
    p.add_argument("--rtol", type=float, default=1e-3,
                   help="--check: relative tolerance of a right value (default 1e-3)")
    p.add_argument("--exercise", action="store_true",
                   help="draw a network with round numbers and write a problem sheet and "
                   "its answer key")
    p.add_argument("--sizes", default="2,2,2", help="--exercise: layer sizes, input first "
                   "(default 2,2,2)")
    p.add_argument("--seed", type=int, default=0, help="--exercise: random seed (default 0)")
    p.add_argument("--activations", default="sigmoid",
                   help="--exercise: hidden activation (default sigmoid)")
    p.add_argument("--loss", default="mse", help="--exercise: loss (default mse)")
    p.add_argument("--samples", type=int, default=1,
                   help="--exercise: number of samples m (default 1)")
    p.add_argument("--json", action="store_true",
                   help="print the step's values (with --check: the report) as JSON")
    p.add_argument("--quiet", action="store_true", help="no 'wrote FILE' lines")
    add_config_option(p)
    add_retired(p, RETIRED)
    p.set_defaults(func=_explain)


def _explain(args):
    from ..explain.render import formats, render

    _check_numbers(args)
    if args.exercise:
        return _exercise(args)
    for flag in ("sizes", "activations", "loss", "samples"):
        default = {"sizes": "2,2,2", "activations": "sigmoid", "loss": "mse", "samples": 1}
        if getattr(args, flag) != default[flag]:
            raise ValueError(f"--{flag} goes with --exercise")
    if args.check is not None:
        return _check(args)
    if args.json:
        return _values_json(args)
    fmt = args.format or "text"
    known = formats()
    if fmt not in known:
        raise ValueError(f"--format must be one of {', '.join(known)}, got {fmt!r}")
    out = _out_path(args.out, args.force) if args.out else None
    from ..explain import solve

    sol = solve(args.spec, args.notation or "deltaprop", step=args.step,
                max_units=4 if args.max_units is None else args.max_units,
                precision=args.precision)
    text = render(sol, fmt)
    if out is None:
        sys.stdout.write(text)
    else:
        from .. import files as dio

        dio.atomic_write_text(out, text)
        if not args.quiet:
            print(f"wrote {out}", file=sys.stderr)
    return 0


def _check_numbers(args):
    """The numeric flags, checked up front so that an error names the flag the user gave."""
    for flag, v in (("--step", args.step), ("--samples", args.samples)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be a positive integer, got {v}")
    if not 0 <= args.precision <= 17:
        raise ValueError(f"--precision must be in 0..17, got {args.precision}")
    if not (math.isfinite(args.rtol) and args.rtol > 0):
        raise ValueError(f"--rtol must be a finite number > 0, got {args.rtol}")


def _out_path(name, force):
    return check_out_file("--out", name, force)


def _values_json(args):
    """--json: every array of the step in deltaprop's names, layer by layer."""
    from ..explain.build import make_run

    for flag, value in (("--out", args.out), ("--format", args.format),
                        ("--max-units", args.max_units), ("--notation", args.notation)):
        if value is not None:
            raise ValueError(f"{flag} does not go with --json (the values are printed in "
                             "deltaprop's names)")
    run = make_run(args.spec, step=args.step)

    def layers(arrays, first=1):
        return {str(l): arrays[l].tolist() for l in range(first, run.L + 1)}

    acts = [f.name for f in run.acts[1:]]
    print(json.dumps({"sizes": run.sizes, "activations": acts, "loss": run.loss, "m": run.m,
                      "learning_rate": run.eta, "l2": run.lam, "step": run.step,
                      "x": run.x.tolist(), "y": run.y.tolist(), "J": float(run.J),
                      "W": layers(run.W), "b": layers(run.b), "z": layers(run.z),
                      "a": layers(run.a), "delta": layers(run.delta), "dW": layers(run.dW),
                      "db": layers(run.db), "W_new": layers(run.Wn), "b_new": layers(run.bn)},
                     indent=2, allow_nan=False))
    return 0


def _check(args):
    from ..explain import check

    for flag, value in (("--out", args.out), ("--format", args.format),
                        ("--max-units", args.max_units)):
        if value is not None:
            raise ValueError(f"{flag} does not go with --check (the report is printed)")
    report = check(args.check, args.spec, args.notation, step=args.step, rtol=args.rtol,
                   precision=args.precision)
    if args.json:
        bad = report.first_wrong
        rows = [{"name": r.name, "label": r.label, "layer": r.layer, "right": bool(r.right),
                 "where": r.where or None, "slip": r.slip} for r in report.rows]
        print(json.dumps({"ok": report.ok, "notation": report.notation, "rtol": report.rtol,
                          "rows": rows, "first_wrong": None if bad is None else bad.name,
                          "notes": list(report.notes)}, indent=2))
    else:
        print(report.text())
    return 0 if report.ok else 1


def _exercise(args):
    from ..explain import exercise

    if args.spec is not None or args.check is not None:
        raise ValueError("--exercise draws its own network: give no SPEC and no --check")
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise ValueError(f"--sizes must be comma-separated integers, got {args.sizes!r}") \
            from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"--sizes needs at least two positive sizes, got {args.sizes!r}")
    if max(sizes) > 10 or len(sizes) > 6:
        raise ValueError(f"--sizes {args.sizes}: an exercise by hand has at most 6 layers of "
                         "at most 10 units")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    fmt = args.format or "markdown"
    spec = exercise.draw(sizes, args.seed, activation=args.activations, loss=args.loss,
                         samples=args.samples)
    files = exercise.write(spec, args.out, seed=args.seed, notation=args.notation or
                           "deltaprop", fmt=fmt, force=args.force)
    if not args.quiet:
        for path in files:
            print(f"wrote {path}")
    return 0

"""``deltaprop jacobian``: the input-output Jacobian's spectrum of K networks, with theory.

    deltaprop jacobian [--activation tanh] [--init normal|orthogonal] [--q-star Q |
                       --sigma-w2 S [--sigma-b2 B]] [--width N --depth L | --sizes ...]
                       [--K 32] [--samples 4] [--depths 1,2,4,...] [--json] [--quiet]
                       [--density FILE.png [--force]] [--config FILE]

records the squared singular values lambda of J = D[l] W[l] ... D[1] W[1] at every depth
(:mod:`deltaprop.stats.jacobian`) and prints, per depth, their mean and variance beside the
free-probability predictions and chi_1^l (:mod:`deltaprop.theory.jacobian`).  Without
--q-star or --sigma-w2 the network sits on the edge of chaos with q* = 0.01.  ``--json``
prints one object (``setting``, ``rows``, ``note``); ``--density`` draws the density of
log10 lambda at up to four depths (never replacing a file without ``--force``; written
atomically).  ``--config FILE`` takes any flag's setting from a TOML or JSON file;
``--quiet`` prints nothing on stderr.
"""

from __future__ import annotations

import json
import math
import sys

from ._common import (
    RETIRED,
    add_backend_options,
    add_config_option,
    add_retired,
    backend_from_args,
    check_out_file,
    int_list,
    limit_threads,
    refuse_unless_fits,
)

#: q* of the default critical point
DEFAULT_Q_STAR = 0.01


def register(sub):
    p = sub.add_parser("jacobian", help="singular values of the input-output Jacobian "
                       "(dynamical isometry), measured and predicted",
                       description="The squared singular values of the input-output Jacobian "
                       "J = D[l] W[l] ... D[1] W[1] of K networks at every depth, their mean "
                       "and variance beside the free-probability predictions of Pennington, "
                       "Schoenholz & Ganguli (2017).")
    a = p.add_argument_group("network")
    a.add_argument("--activation", default="tanh", help="f of every layer (tanh)")
    a.add_argument("--init", default="normal", help="the weights' law: normal (i.i.d.) or "
                   "orthogonal, or any named initialiser's law (normal)")
    a.add_argument("--q-star", type=float, default=None,
                   help=f"put the network on the edge of chaos with fixed point q* "
                   f"(default {DEFAULT_Q_STAR} without --sigma-w2)")
    a.add_argument("--sigma-w2", type=float, default=None,
                   help="weight variance: Var(W[l]) = sigma_w^2 / n_{l-1}")
    a.add_argument("--sigma-b2", type=float, default=None, help="bias variance (0)")
    a.add_argument("--width", type=int, default=None, help="units of every layer (128)")
    a.add_argument("--depth", type=int, default=None, help="layers L (16)")
    a.add_argument("--sizes", type=int_list, default=None,
                   help="all layer sizes n_0,...,n_L instead of --width and --depth")
    r = p.add_argument_group("ensemble and run")
    r.add_argument("--input-var", type=float, default=None,
                   help="variance of the Gaussian inputs (default: at the fixed point, "
                   "(q* - sigma_b^2) / sigma_w^2)")
    r.add_argument("--K", type=int, default=32, help="networks (32)")
    r.add_argument("--samples", type=int, default=4, help="inputs m per network (4)")
    r.add_argument("--depths", type=int_list, default=None,
                   help="depths to record, e.g. 1,2,4,8 (default every layer)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--dtype", choices=["float32", "float64"], default="float64")
    r.add_argument("--threads", type=int, default=1, help="BLAS threads (1)")
    add_backend_options(r, "the networks and the inputs")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--density", metavar="FILE", default=None,
                   help="draw the density of log10 lambda into FILE (.png, .pdf or .svg)")
    o.add_argument("--force", action="store_true", help="replace an existing --density file")
    o.add_argument("--quiet", action="store_true", help="nothing on stderr")
    add_config_option(o)
    add_retired(p, RETIRED)
    p.set_defaults(func=_jacobian)


def _check_out(name, force):
    """The --density path, checked before any work: format, folder, no silent replace."""
    return check_out_file("--density", name, force, (".png", ".pdf", ".svg"))


def study_from_args(args):
    """The :class:`~deltaprop.stats.jacobian.JacobianStudy` of the command line, checked."""
    from ...stats.jacobian import JacobianStudy

    for flag, v in (("--q-star", args.q_star), ("--sigma-w2", args.sigma_w2),
                    ("--sigma-b2", args.sigma_b2), ("--input-var", args.input_var)):
        if v is not None and not (math.isfinite(v) and v >= 0):
            raise ValueError(f"{flag} must be a finite number >= 0, got {v}")
    for flag, v in (("--K", args.K), ("--samples", args.samples), ("--width", args.width),
                    ("--depth", args.depth)):
        if v is not None and v < 1:
            raise ValueError(f"{flag} must be a positive integer, got {v}")
    if args.sizes is not None and (args.width is not None or args.depth is not None):
        raise ValueError("give --sizes or --width and --depth, not both")
    if args.sizes is not None and (len(args.sizes) < 2 or min(args.sizes) < 1):
        raise ValueError(f"--sizes needs >= 2 positive widths, got {list(args.sizes)}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    q_star = args.q_star
    if q_star is not None and (args.sigma_w2 is not None or args.sigma_b2 is not None):
        raise ValueError("give --q-star (a critical point) or --sigma-w2 and --sigma-b2, "
                         "not both")
    if q_star is None and args.sigma_w2 is None:
        if args.sigma_b2 is not None:
            raise ValueError("--sigma-b2 needs --sigma-w2")
        q_star = DEFAULT_Q_STAR
    be = backend_from_args(args)
    return JacobianStudy(width=128 if args.width is None else args.width,
                         depth=16 if args.depth is None else args.depth, sizes=args.sizes,
                         activation=args.activation, init=args.init, q_star=q_star,
                         sigma_w2=args.sigma_w2, sigma_b2=args.sigma_b2,
                         input_var=args.input_var, K=args.K, m=args.samples,
                         depths=args.depths, seed=args.seed, dtype=args.dtype,
                         backend=be.name, device=be.device)


def estimate_memory(sizes, K, m, itemsize=8) -> int:
    """Bytes :func:`~deltaprop.stats.jacobian.run_jacobian` needs at its peak, estimated
    before anything is drawn: the K networks' weights (P numbers each, drawn in float64 and
    cast: 2 K P), the forward pass (z and a of every layer, 2 K m U numbers with U = n_0 +
    ... + n_L) and the Jacobians J[l] (K m n_l n_0 each: the running product, the next one
    and the SVD's workspace, about 4 of the widest)."""
    sizes = [int(n) for n in sizes]
    P = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    J = max(sizes[1:]) * sizes[0]
    return int(8 * K * P + itemsize * (K * P + 2 * K * m * sum(sizes) + 4 * K * m * J))


def _check_memory(study):
    """Refuse (one line) a study whose networks or Jacobians would not fit in memory."""
    sizes = tuple(study.sizes) if study.sizes is not None else (study.width,) * (study.depth + 1)
    need = estimate_memory(sizes, study.K, study.m, 4 if study.dtype == "float32" else 8)
    what = "--sizes widths" if study.sizes is not None else "--width or --depth"
    refuse_unless_fits(need, f"jacobian: {study.K} networks of sizes {sizes[0]}-...-{sizes[-1]} "
                       f"({len(sizes) - 1} layers, widest {max(sizes)})",
                       f"use a smaller {what}, fewer --K or --samples")


def _jacobian(args):
    from ... import activations as _act
    from ...stats.jacobian import rows, run_jacobian, table

    study = study_from_args(args)
    _check_memory(study)
    if not _act.get(study.activation).elementwise:
        raise ValueError(f"--activation {study.activation} is not elementwise: D[l] is not "
                         "diagonal")
    out = _check_out(args.density, args.force) if args.density else None
    with limit_threads(args.threads):
        result = run_jacobian(study)
    if args.json:
        setting = {k: v if not isinstance(v, float) or math.isfinite(v) else str(v)
                   for k, v in result.setting.items()}
        print(json.dumps({"setting": setting, "rows": rows(result), "note": result.note},
                         indent=2, allow_nan=False))
    else:
        print(table(result))
    if out is not None:
        _draw(result, out)
        if not args.quiet:
            print(f"wrote {out}", file=sys.stderr)
    return 0


def _draw(result, out):
    import io as _io

    from ...stats.jacobian import density_figure
    from .. import files as dio

    fig = density_figure(result)
    buf = _io.BytesIO()
    fig.savefig(buf, format=out.suffix.lower().lstrip("."), dpi=110)
    dio.atomic_write_bytes(out, buf.getvalue())


__all__ = ["register", "study_from_args", "estimate_memory", "DEFAULT_Q_STAR"]

"""``deltaprop theory``: the signal-propagation calculator of the mean-field network.

    deltaprop theory --activation tanh --sigma-w2 2.5 --sigma-b2 0.05 [--json] [--quiet]
                     [--phase-diagram FILE.png [--force]] [--config FILE]

prints q*, chi_1, c*, chi_c, xi_q, xi_c, the gradient depth scale, the phase, every fixed
point of the length and correlation maps with its stability and the edge of chaos at that
sigma_b^2 (:func:`deltaprop.theory.signal.signal_theory`).  ``--json`` prints one object with
exactly the keys of :data:`deltaprop.theory.signal.KEYS`.  ``--phase-diagram`` also draws
the (sigma_w^2, sigma_b^2) plane with the edge of chaos and contours of xi_c
(:func:`deltaprop.app.plot.phase_diagram`; a progress bar on a terminal while the grid is
computed); an existing file is replaced only with ``--force``, and the file is written
atomically.  ``--config FILE`` takes any flag's setting from a TOML
or JSON file; ``--quiet`` prints nothing on stderr.
"""

from __future__ import annotations

import json
import math
import sys

from ._common import RETIRED, add_config_option, add_retired, check_out_file, progress_bar

#: grid of the phase diagram: sigma_w^2 points x sigma_b^2 points
GRID = (31, 21)


def register(sub):
    p = sub.add_parser("theory", help="mean-field signal propagation: fixed points, depth "
                       "scales, phase, edge of chaos",
                       description="The length and correlation maps of the mean-field network "
                       "(Poole et al. 2016; Schoenholz et al. 2017) for one activation and "
                       "weight and bias variances: q*, chi_1, c*, chi_c, xi_q, xi_c, the "
                       "gradient depth scale, the phase, every fixed point and the edge of "
                       "chaos.")
    p.add_argument("--activation", default="tanh", help="an elementwise activation (tanh)")
    p.add_argument("--sigma-w2", type=float, default=None,
                   help="weight variance: Var(W[l]) = sigma_w^2 / n_{l-1} (required)")
    p.add_argument("--sigma-b2", type=float, default=0.0, help="bias variance (0)")
    p.add_argument("--q0", type=float, default=1.0,
                   help="q^0, the length the iteration starts from: picks the fixed point "
                   "where there are several (1)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: " + ", ".join(_keys()))
    p.add_argument("--phase-diagram", metavar="FILE", default=None,
                   help="also draw the (sigma_w^2, sigma_b^2) phase diagram with the edge of "
                   "chaos and contours of xi_c into FILE (.png, .pdf or .svg; 8 s at "
                   "sigma_w2 1.5, longer in the chaotic phase: a progress bar counts rows)")
    p.add_argument("--force", action="store_true", help="replace an existing --phase-diagram")
    p.add_argument("--quiet", action="store_true", help="nothing on stderr")
    add_config_option(p)
    add_retired(p, RETIRED)
    p.set_defaults(func=_theory)


def _keys():
    from ...theory.signal import KEYS

    return KEYS


def _theory(args):
    from ... import activations as _act
    from ...theory.signal import signal_theory

    if args.sigma_w2 is None:
        raise ValueError("theory needs --sigma-w2 (the weight variance times the fan-in, "
                         "Var W[l] = sigma_w2 / n_{l-1}), e.g. --sigma-w2 1.5")
    for name in ("sigma_w2", "sigma_b2", "q0"):
        v = getattr(args, name)
        if not math.isfinite(v) or v < 0 or (name == "q0" and v == 0):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{flag} must be a finite number {'> 0' if name == 'q0' else '>= 0'}"
                             f", got {v}")
    act = _act.get(args.activation)
    if not act.elementwise:
        raise ValueError(f"--activation {act.name} is not elementwise: the mean-field maps "
                         "need one f per unit")
    out = _check_out(args.phase_diagram, args.force) if args.phase_diagram else None
    th = signal_theory(act, args.sigma_w2, args.sigma_b2, q0=args.q0)
    if args.json:
        print(json.dumps(th.as_dict(), indent=2, allow_nan=False))
    else:
        print(text(th, args.q0))
    if out is not None:
        _draw(th, out, args.q0, args.quiet)
        if not args.quiet:
            print(f"wrote {out}", file=sys.stderr)
    return 0


def _check_out(name, force):
    """The --phase-diagram path, checked before any work: format, folder, no silent replace."""
    return check_out_file("--phase-diagram", name, force, (".png", ".pdf", ".svg"))


def _draw(th, out, q0, quiet=False):
    """Grid (a progress bar on stderr, one step per sigma_b^2 row, unless ``quiet``),
    figure, atomic write (the bytes rendered in memory, then io.atomic_write_bytes)."""
    import io as _io

    import numpy as np

    from ...theory.signal import phase_diagram
    from .. import files as dio
    from .. import plot

    b2_top = max(0.3, 1.5 * th.sigma_b2)
    edges = [th.edge_of_chaos or 0.0]
    try:
        from ...theory.mean_field import edge_of_chaos

        edges.append(edge_of_chaos(b2_top, th.activation, q0=q0))
    except ValueError:
        pass
    w2_top = max(2 * max(edges), 1.5 * th.sigma_w2, 2.0)
    b2s = np.linspace(0.0, b2_top, GRID[1])
    b2s[0] = b2_top / 1000  # at sigma_b^2 = 0 exactly, q* = 0 and xi_c = inf in the ordered phase
    w2s = np.linspace(w2_top / GRID[0], w2_top, GRID[0])
    bar = progress_bar(quiet, len(b2s), "phase diagram", unit=" rows")
    rows = []  # one sigma_b^2 row at a time (each row starts afresh), for the progress bar
    for i in range(len(b2s)):
        rows.append(phase_diagram(th.activation, w2s, b2s[i:i + 1], q0=q0))
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    data = {"sigma_w2": w2s, "sigma_b2": b2s, "edge": np.concatenate([r["edge"] for r in rows]),
            **{k: np.vstack([r[k] for r in rows]) for k in ("chi_1", "xi_c")}}
    fig = plot.phase_diagram(data, point=(th.sigma_w2, th.sigma_b2),
                             title=f"{th.activation}: phase diagram of the mean-field network")
    buf = _io.BytesIO()
    fig.savefig(buf, format=out.suffix.lower().lstrip("."), dpi=110)
    dio.atomic_write_bytes(out, buf.getvalue())


def _num(x, fmt=".6g"):
    return format(x, fmt) if math.isfinite(x) else str(x)


def text(th, q0=1.0) -> str:
    """The calculator's text output: one line per quantity with its formula, then the fixed
    points of both maps."""
    rows = [
        ("q_star", th.q_star, f"fixed point of q = sigma_w^2 E[f(u)^2] + sigma_b^2 reached "
         f"from q0 = {q0:g}"),
        ("chi_1", th.chi_1, "sigma_w^2 E[f'(u)^2], u ~ N(0, q*): slope of the C-map at c = 1"),
        ("c_star", th.c_star, "attracting fixed point of the C-map in [0, 1]"
         + (" (the C-map is the identity: none)" if math.isnan(th.c_star) else "")),
        ("chi_c", th.chi_c, "slope of the C-map at c*: sigma_w^2 E[f'(u_a) f'(u_b)]"),
        ("xi_q", th.xi_q, "-1 / log F'(q*): depth scale of the length"),
        ("xi_c", th.xi_c, "-1 / log chi_c: depth scale of the correlation; trainable up to "
         f"about 6 xi_c = {_num(th.trainable_depth, '.4g')} layers"),
        ("gradient_depth_scale", th.gradient_depth_scale, "-1 / log chi_1: E[delta^2] changes "
         "by e every |xi| layers" + (" (grows backwards)" if th.gradient_depth_scale < 0
                                     else "")),
    ]
    lines = [f"{th.activation}, sigma_w^2 = {th.sigma_w2:g}, sigma_b^2 = {th.sigma_b2:g} "
             "(mean field, infinite width)"]
    lines += [f"  {k:<21}{_num(v):>12}   {what}" for k, v, what in rows]
    lines.append(f"  {'phase':<21}{th.phase:>12}   chi_1 " +
                 {"ordered": "< 1", "critical": "= 1", "chaotic": "> 1"}[th.phase])
    if th.edge_of_chaos is None:
        lines.append(f"  {'edge_of_chaos':<21}{'none':>12}   {th.edge_note}")
    else:
        lines.append(f"  {'edge_of_chaos':<21}{_num(th.edge_of_chaos):>12}   sigma_w^2 with "
                     f"chi_1 = 1 at sigma_b^2 = {th.sigma_b2:g}")
    lines.append("fixed_points q: the length map's, q = F(q)")
    for p in th.fixed_points["q"]:
        lines.append(f"  q = {_num(p.q):<12} chi {_num(p.chi):<12} slope F'(q) "
                     f"{_num(p.slope):<12} {p.stability}")
    lines.append("fixed_points c: the C-map's at q*, c = C(c)")
    for p in th.fixed_points["c"]:
        c = "every c" if math.isnan(p.c) else _num(p.c)
        lines.append(f"  c = {c:<12} chi_c {_num(p.chi_c):<12} {p.stability}")
    return "\n".join(lines)


__all__ = ["register", "text", "GRID"]

"""Check a student's hand calculation against the engine, and name the likely slip.

An answers file is a JSON object: ``"notation"`` (optional; else the caller's), and any of
the notation's quantities (:attr:`Convention.answer_keys`, e.g. deltaprop's ``z``, ``a``,
``delta``, ``dW``, ``db``, ``W``, ``b``, ``J``; Haykin's ``v``, ``y``, ``e``, ``delta``,
``Delta_w``, ``w``, ``E``; Ng's ``z``, ``a``, ``delta``, ``Delta``, ``D``, ``Theta``, ``J``),
each an object from the notation's layer number to the values::

    {"notation": "deltaprop",
     "a": {"1": [0.593269992, 0.596884378]},
     "delta": {"2": [[0.138498562, null]]},
     "W": {"2": [[0.35891648, 0.408666186], [0.51130127, 0.561370121]]},
     "J": 0.298371109}

Per-sample quantities are (m, n) (or (n,) when m = 1); weights are (n_l, n_{l-1}) and, in
the notations with a bias column (Haykin's w, Ng's Theta, Brawer's theta), (n_l, n_{l-1} + 1)
with the bias in column 0 (the weights alone are accepted too); ``null`` skips an entry.
A value is right when it is within ``rtol`` of the exact one (relative, with an absolute
floor of ``rtol/100`` times the largest exact entry of that array).

The first wrong quantity, in the order of the worked solution, is named with the entry
where it first differs, and the likely slip when the answer matches one: the exact
computation repeated with that slip (:data:`SLIPS`) through the same equations, or the
exact value of a neighbouring layer, or the transposed matrix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ... import activations as _act
from ... import equations as eq
from .build import make_run
from .notation import get as get_notation
from .render import TextMath, format_number

__all__ = ["check", "load_answers", "CheckReport", "Row", "SLIPS"]

#: slip name -> the explanation printed with it
SLIPS = {
    "sign flipped": (
        "the sign is flipped: deltaprop, Bishop, Ng and Brawer take delta = dJ/dz (a - y at "
        "an output); Haykin's local gradient delta = -dE/dv = e phi'(v) with e = d - y is "
        "its negative, and his update adds Delta w = eta delta y"),
    "f' left out": (
        "f' is left out: a unit's error is dJ/da times f'(z) (for the sigmoid a (1 - a)), "
        "at the output (with squared error) and in every hidden layer"),
    "f' at a instead of z": (
        "f' is evaluated at a instead of z: for the sigmoid f'(z) = a (1 - a), not "
        "f'(a) = sigma(a) (1 - sigma(a))"),
    "1/m missing": (
        "the 1/m is missing: dW, db (and J) are means over the m samples, the sum divided "
        "by m"),
    "1/m doubled": (
        "the 1/m is applied twice: delta is per sample and unscaled; the 1/m of the batch "
        "mean belongs to dW and db only"),
    "lambda applied to the bias": (
        "the L2 term is applied to the bias: the penalty (lambda/2m) sum W^2 leaves the "
        "biases out, so db has no (lambda/m) b term"),
    "W transposed": (
        "W is transposed: W[l]_jk goes from unit k of layer l-1 to unit j of layer l "
        "(z = W a for a column a; the error goes back through W^T; dW has W's shape)"),
    "layer index shifted": "the layer index is shifted",
}

_ORDER = ("z", "a", "J", "e", "delta", "Delta", "dW", "db", "dtheta", "Wn", "bn", "theta")
_PER_SAMPLE = ("z", "a", "delta", "e")
_BIAS_COLUMN = ("theta", "dtheta", "Delta")


@dataclass(frozen=True, eq=False)
class Row:
    """One checked quantity: the student's array against the exact one."""

    name: str          # the answers key, e.g. "delta"
    label: str         # the notation's symbol, e.g. "delta^(2)"
    key: str           # the value table's key ("z", "delta", "theta", ...)
    layer: int | None  # deltaprop's layer
    given: np.ndarray
    expected: np.ndarray
    right: bool
    first_bad: tuple | None = None
    where: str = ""
    slip: str | None = None
    slip_detail: str = ""


@dataclass(frozen=True, eq=False)
class CheckReport:
    """The outcome: every row, the first wrong one and its likely slip."""

    notation: str      # e.g. "Haykin's"
    rows: tuple
    rtol: float
    precision: int = 9
    notes: tuple = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.right for r in self.rows)

    @property
    def first_wrong(self) -> Row | None:
        return next((r for r in self.rows if not r.right), None)

    def text(self) -> str:
        fmt = lambda v: format_number(v, self.precision)  # noqa: E731
        lines = [f"checked {len(self.rows)} quantit{'y' if len(self.rows) == 1 else 'ies'} "
                 f"in {self.notation} notation against deltaprop's engine (rtol {self.rtol:g})"]
        width = max(len(r.label) for r in self.rows)
        for r in self.rows:
            if r.right:
                lines.append(f"  {r.label:<{width}}  right")
                continue
            if r.given.shape != r.expected.shape:
                detail = (f"shape {r.given.shape}: the exact value has shape "
                          f"{r.expected.shape}")
            else:
                detail = (f"at {r.where}: you wrote {fmt(r.given[r.first_bad])}, the exact "
                          f"value is {fmt(r.expected[r.first_bad])}")
            lines.append(f"  {r.label:<{width}}  WRONG {detail}")
        bad = self.first_wrong
        if bad is None:
            lines.append("all right")
        else:
            where = bad.where if bad.given.shape == bad.expected.shape else ""
            lines.append(f"first wrong quantity: {bad.label}" + (f" ({where})" if where else ""))
            if bad.slip:
                lines.append(f"likely slip: {bad.slip} -- {bad.slip_detail}")
            else:
                lines.append("likely slip: none of the known patterns fits (sign, f', 1/m, "
                             "lambda on the bias, W transposed, layer index, f' at a)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---------------------------------------------------------------------- reading answers
def load_answers(source) -> dict:
    """An answers file (path) or an already-decoded mapping, checked to be a JSON object."""
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"answers file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"answers file {str(path)!r} is not UTF-8 text (expected JSON)") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answers file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"answers file {str(path)!r} must hold a JSON object")
    return dict(data)


def _array(value, where) -> np.ndarray:
    """A (nested) list of numbers and nulls as float64 with NaN for null."""
    def conv(v):
        if isinstance(v, list):
            return [conv(x) for x in v]
        if v is None:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{where}: entries must be finite numbers or null, got "
                             f"{json.dumps(v)[:30]}")
        return float(v)
    if not isinstance(value, list | int | float) or isinstance(value, bool):
        raise ValueError(f"{where} must be a number or a list of numbers")
    value = conv(value)
    try:
        return np.asarray(value, dtype=np.float64)
    except ValueError:
        raise ValueError(f"{where} is ragged: its rows must all have the same length") \
            from None


# ---------------------------------------------------------------------- slips
def _downstream(run, delta, *, db_extra=None, grad_m=None, J=None, sign_out=1.0):
    """``run`` with new error vectors ``delta`` and everything computed from them again
    through the engine's equations (7)-(9): dW, db, the update, Bishop's and Ng's sums."""
    L, m = run.L, run.m
    grad_m = m if grad_m is None else grad_m
    ident = _act.get("identity")
    dJ_da = [None] * (L + 1)
    for l in range(1, L):
        dJ_da[l] = eq.hidden_delta(run.W[l + 1], delta[l + 1], ident, run.z[l], run.a[l], np)
    dJ_da[L] = sign_out * run.dJ_da[L]
    dW, db, Wn, bn = [None], [None], [None], [None]
    for l in range(1, L + 1):
        g = eq.weight_gradient(delta[l], run.a[l - 1], grad_m)
        if run.lam:
            g = g + eq.l2_gradient(run.W[l], run.lam, m)
        gb = np.sum(delta[l], axis=0) / grad_m
        if db_extra is not None:
            gb = gb + db_extra[l]
        dW.append(g)
        db.append(gb)
        Wn.append(eq.gradient_step(run.W[l], g, run.eta))
        bn.append(eq.gradient_step(run.b[l], gb, run.eta))
    return replace(run, delta=tuple(delta), dJ_da=tuple(dJ_da), dW=tuple(dW), db=tuple(db),
                   Wn=tuple(Wn), bn=tuple(bn), J=run.J if J is None else J,
                   delta_sum=(None, *(np.sum(d, axis=0) for d in delta[1:])),
                   Delta_W=(None, *(eq.weight_gradient(delta[l], run.a[l - 1], 1)
                                    for l in range(1, L + 1))))


def _backward(run, out="exact", hidden="exact", transposed=False):
    """Error vectors with a slip: f' "omit"ted or taken "at_a", or W transposed."""
    L = run.L
    acts, z, a = run.acts, run.z, run.a
    delta = [None] * (L + 1)
    act = acts[L]
    if out == "exact" or run.loss != "mse" or not act.elementwise:
        delta[L] = run.delta[L]
    elif out == "omit":
        delta[L] = a[L] - run.y
    else:  # f' evaluated at a instead of z
        delta[L] = (a[L] - run.y) * act.df(a[L], act.f(a[L], np), np)
    ident = _act.get("identity")
    for l in range(L - 1, 0, -1):
        W = run.W[l + 1].T if transposed else run.W[l + 1]
        f = acts[l]
        if hidden == "omit":
            delta[l] = eq.hidden_delta(W, delta[l + 1], ident, z[l], a[l], np)
        elif hidden == "at_a" and f.elementwise:
            delta[l] = eq.hidden_delta(W, delta[l + 1], f, a[l], f.f(a[l], np), np)
        else:
            delta[l] = eq.hidden_delta(W, delta[l + 1], f, z[l], a[l], np)
    return delta


def _slip_runs(run):
    """(slip name, Run) pairs: the whole step repeated with one slip."""
    L, m, lam = run.L, run.m, run.lam
    out = [("sign flipped", _downstream(run, [None, *(-d for d in run.delta[1:])],
                                        sign_out=-1.0))]
    for o, h in (("omit", "omit"), ("omit", "exact"), ("exact", "omit")):
        out.append(("f' left out", _downstream(run, _backward(run, o, h))))
    out.append(("f' at a instead of z", _downstream(run, _backward(run, "at_a", "at_a"))))
    out.append(("f' at a instead of z", _downstream(run, _backward(run, "exact", "at_a"))))
    if any(run.W[l].shape[0] == run.W[l].shape[1] for l in range(2, L + 1)):
        out.append(("W transposed", _downstream(run, _backward(run, transposed=True))))
    if m > 1:
        pen = run.lam / (2 * m) * sum(float(np.sum(w * w)) for w in run.W[1:])
        out.append(("1/m missing", _downstream(run, run.delta, grad_m=1,
                                               J=m * (run.J - pen) + pen)))
        out.append(("1/m doubled", _downstream(run, run.delta, grad_m=m * m)))
        out.append(("1/m doubled", _downstream(run, [None, *(d / m for d in run.delta[1:])])))
    if lam:
        extra = (None, *(lam / m * b for b in run.b[1:]))
        pen_b = lam / (2 * m) * sum(float(np.sum(b * b)) for b in run.b[1:])
        out.append(("lambda applied to the bias", _downstream(run, run.delta, db_extra=extra,
                                                              J=run.J + pen_b)))
    return out


# ---------------------------------------------------------------------- the check
def check(answers, spec=None, notation: str | None = None, *, step: int = 1,
          rtol: float = 1e-3, precision: int = 9) -> CheckReport:
    """Compare ``answers`` (path or mapping, see the module docstring) with the engine.

    Parameters
    ----------
    answers : path or Mapping
    spec : anything :func:`deltaprop.app.trace.load` accepts; None: Mazur's example.
    notation : str, optional
        The answers' notation when the file does not say (default "deltaprop").
    step : int
        Which gradient-descent step of the spec the answers are for.
    rtol : float
        Relative tolerance of a right value.

    Raises
    ------
    ValueError
        Unknown keys or layers, wrong shapes, non-numbers, a notation that differs from
        the file's.
    """
    answers = load_answers(answers)
    if not (isinstance(rtol, int | float) and 0 < rtol < 1):
        raise ValueError(f"rtol must be a number in (0, 1), got {rtol!r}")
    declared = answers.pop("notation", None)
    if declared is not None and not isinstance(declared, str):
        raise ValueError("\"notation\" in the answers file must be a string")
    if declared and notation and declared.strip().lower() != notation.strip().lower():
        raise ValueError(f"the answers file says notation {declared!r} but {notation!r} was "
                         "asked for; drop one of them")
    run = make_run(spec, step)
    nt = get_notation(declared or notation or "deltaprop", run.acts)
    if not answers:
        raise ValueError(f"the answers file gives no quantity; give any of "
                         f"{', '.join(nt.answer_keys)}")
    V = nt.values(run)
    entries = [_entry(nt, run, V, name, value) for name, value in answers.items()]
    flat = [e for group in entries for e in group]
    flat.sort(key=lambda e: _solution_order(e[2], e[3], run.L))
    slips = None
    rows = []
    for name, label, key, l, given in flat:
        expected = _expected(V, key, l, given)
        bad = _first_bad(given, expected, rtol)
        if bad is None:
            rows.append(Row(name, label, key, l, given, expected, True))
            continue
        slips = _slip_runs(run) if slips is None else slips
        slip, detail = _diagnose(nt, run, V, slips, name, key, l, given, expected, rtol)
        rows.append(Row(name, label, key, l, given, expected, False, bad,
                        _where(nt, key, bad, run.m), slip, detail))
    return CheckReport(nt.name, tuple(rows), rtol, precision)


_PHASE = {"z": 0, "a": 0, "J": 1, "e": 2, "delta": 3, "Delta": 4, "dW": 4, "db": 4,
          "dtheta": 4, "Wn": 5, "bn": 5, "theta": 5}


def _solution_order(key, l, L):
    """The worked solution's order: forward by layer up, the cost, the output error, the
    hidden errors by layer down, the gradients and the updates by layer down."""
    phase = _PHASE[key]
    within = 0 if l is None else (l if phase == 0 else L - l)
    return phase, within, _ORDER.index(key)


def _symbol(nt, key, l):
    m = TextMath()
    sym = {"z": lambda: nt.z(l, None), "a": lambda: nt.a(l, None),
           "delta": lambda: nt.delta(l, None), "e": lambda: nt.e(None),
           "dW": lambda: nt.dW(l), "db": lambda: nt.db(l), "Wn": lambda: nt.W(l),
           "bn": lambda: nt.b(l), "theta": lambda: nt.W(l), "dtheta": lambda: nt.dW(l),
           "Delta": lambda: nt.Delta(l), "J": nt.J}[key]()
    text = m(sym)
    if key in ("Wn", "bn", "theta"):
        text += " (updated)"
    return text


def _entry(nt, run, V, name, value):
    """[(name, label, key, deltaprop layer, array)] for one answers key."""
    keys = nt.answer_keys
    if name not in keys:
        raise ValueError(f"unknown quantity {name!r} for notation {nt.key}; known: "
                         f"{', '.join(keys)}")
    key, offset, _ = keys[name]
    if key == "J":
        return [(name, _symbol(nt, key, None), key, None, _array(value, name).reshape(()))]
    if key == "e" and not isinstance(value, Mapping):
        value = {str(run.L): value}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be an object from layer number to values, e.g. "
                         f"{{\"{1 + (offset or 0)}\": [...]}}")
    out = []
    lo = 0 if key == "a" else 1
    for layer_text, v in value.items():
        try:
            printed = int(layer_text)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: layer {layer_text!r} is not a whole number") from None
        l = printed - (offset or 0)
        if key == "e" and l != run.L:
            raise ValueError(f"{name}: the error signal exists at the output layer only "
                             f"({run.L + (offset or 0)})")
        if not lo <= l <= run.L:
            raise ValueError(f"{name}: layer {printed} does not exist (layers "
                             f"{lo + (offset or 0)}..{run.L + (offset or 0)} in the "
                             f"{nt.key} numbering)")
        arr = _array(v, f"{name} layer {printed}")
        out.append((name, f"{_symbol(nt, key, l)}", key, l, _shape(arr, key, run, l, name,
                                                                   printed)))
    return out


def _shape(arr, key, run, l, name, printed):
    """Reshape a per-sample vector of one sample to (1, n); refuse shapes that fit nothing."""
    if key in _PER_SAMPLE:
        n = run.x.shape[1] if (key == "a" and l == 0) else run.sizes[l]
        shape = arr.shape
        if arr.ndim == 1 and run.m == 1:
            arr = arr[None, :]
        if arr.shape != (run.m, n):
            raise ValueError(f"{name} layer {printed} has shape {shape}; expected "
                             f"({run.m}, {n}) (samples x units)"
                             + (f" or ({n},)" if run.m == 1 else ""))
        return arr
    n, k = run.W[l].shape
    ok = {"Wn": [(n, k), (k, n)], "dW": [(n, k), (k, n)], "bn": [(n,)], "db": [(n,)],
          "theta": [(n, k + 1), (n, k), (k + 1, n), (k, n)]}
    ok["dtheta"] = ok["Delta"] = ok["theta"]
    if arr.shape not in ok[key]:
        raise ValueError(f"{name} layer {printed} has shape {arr.shape}; expected "
                         f"{' or '.join(map(str, ok[key][:2]))}")
    return arr


def _expected(V, key, l, given):
    """The exact array in the shape of ``given`` (bias column dropped when it was left out;
    transposed shapes are compared as they come, so they show as wrong)."""
    exp = _value(V, key, l)
    if key in _BIAS_COLUMN and given.shape in ((exp.shape[0], exp.shape[1] - 1),
                                               (exp.shape[1] - 1, exp.shape[0])):
        exp = exp[:, 1:]
    return exp


def _value(V, key, l):
    """V's array of ``key`` at deltaprop's layer l (J and Haykin's e have no layer)."""
    return np.asarray(V[key] if l is None or key == "e" else V[key][l], dtype=np.float64)


def _close(given, expected, rtol):
    if given.shape != expected.shape:
        return np.zeros(given.shape, dtype=bool)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    atol = rtol * 1e-2 * scale + 1e-12
    return np.isnan(given) | (np.abs(given - expected) <= atol + rtol * np.abs(expected))


def _first_bad(given, expected, rtol):
    ok = _close(given, expected, rtol)
    if ok.all():
        return None
    return tuple(int(i) for i in np.argwhere(~ok)[0])


def _where(nt, key, idx, m):
    if idx == ():
        return ""
    if key in _PER_SAMPLE:
        i, j = idx
        return (f"sample {i + 1}, " if m > 1 else "") + f"unit {j + 1}"
    if len(idx) == 1:
        return f"unit {idx[0] + 1}"
    j, k = idx
    if key in _BIAS_COLUMN:
        return f"row {j + 1}, column {k}" + (" (the bias)" if k == 0 else "")
    return f"row {j + 1}, column {k + 1}"


def _diagnose(nt, run, V, slips, name, key, l, given, expected, rtol):
    """(slip, explanation) for a wrong answer, or (None, "")."""
    if given.ndim == 2 and expected.ndim == 2 and given.shape == expected.T.shape and \
            given.shape != expected.shape:
        return "W transposed", SLIPS["W transposed"] + f" (you wrote a {given.shape[0]} x " \
            f"{given.shape[1]} matrix; it is {expected.shape[0]} x {expected.shape[1]})"
    for slip, srun in slips:
        Vs = nt.values(srun)
        alt = _expected(Vs, key, l, given)
        if alt.shape == given.shape and not np.allclose(alt, expected, rtol=rtol, atol=0) \
                and _close(given, alt, rtol).all():
            return slip, SLIPS[slip]
    if given.ndim == 2 and given.shape == expected.shape[::-1] and \
            _close(given, expected.T, rtol).all() and not _close(given, expected, rtol).all():
        return "W transposed", SLIPS["W transposed"]
    if key in ("z", "a") and l is not None and given.shape == expected.shape:
        if key == "z" and run.W[l].shape[0] == run.W[l].shape[1]:
            zt = eq.pre_activation(run.a[l - 1], run.W[l].T, run.b[l])
            Vt = nt.values(replace(run, z=_swap(run.z, l, zt)))
            if _close(given, _value(Vt, "z", l), rtol).all():
                return "W transposed", SLIPS["W transposed"]
    if l is not None and key != "e":
        for other in (l - 1, l + 1):
            lo = 0 if key == "a" else 1
            if not lo <= other <= run.L or V[key][other] is None:
                continue
            alt = _expected(V, key, other, given)
            if alt.shape == given.shape and _close(given, alt, rtol).all():
                offset = nt.answer_keys[name][1] or 0
                return "layer index shifted", (
                    f"{SLIPS['layer index shifted']}: your {name} for layer {l + offset} is "
                    f"the exact value of layer {other + offset} in the {nt.key} numbering"
                    + {"ng": " (the course numbers the input layer 1)",
                       "brawer": " (Brawer numbers the input layer 1)"}.get(nt.key, ""))
    return None, ""


def _swap(seq, l, value):
    out = list(seq)
    out[l] = value
    return tuple(out)

"""The expressions of :mod:`.model` as MathML Core (what browsers draw without a script).

:class:`MathML` writes one :data:`~.model.Expr` as the children of a ``<math>`` element, by
the rules of :mod:`.render` (the same numbers, :func:`~.render.format_number`; parentheses
around a negative number inside a product or after a sign; an explicit times sign before a
factor that starts with a number), so the page shows exactly what the text, Markdown and
LaTeX outputs print.  :func:`step_lines` writes a whole :class:`~.model.Step`: ``lhs =
equation``, then one line per further form (expanded, substituted, the value).  A
matrix-form value is drawn up to :data:`MAX_SHOWN` rows and columns, with ellipses for the
rest.
"""

from __future__ import annotations

import html

import numpy as np

from .model import Add, Call, Frac, Matrix, Mul, Neg, Num, Paren, Step, Sym
from .render import flatten_mul, format_number, is_decorated, leads_with_number, step_forms

__all__ = ["MathML", "step_lines", "MAX_SHOWN"]

#: rows and columns of a matrix drawn in full; a bigger one shows its first and last ones
MAX_SHOWN = 7

GREEK_LETTERS = {
    "alpha": "α", "beta": "β", "gamma": "γ", "delta": "δ", "Delta": "Δ", "epsilon": "ε",
    "eta": "η", "theta": "θ", "Theta": "Θ", "lambda": "λ", "mu": "μ", "xi": "ξ", "pi": "π",
    "sigma": "σ", "Sigma": "Σ", "phi": "ϕ", "varphi": "φ", "Phi": "Φ", "psi": "ψ",
    "Psi": "Ψ", "omega": "ω", "partial": "∂",
}
# MathML Core draws only "normal" through mathvariant: script letters are their own code points
_SCRIPT = dict(zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "𝒜ℬ𝒞𝒟ℰℱ𝒢ℋℐ𝒥𝒦ℒℳ𝒩𝒪𝒫𝒬ℛ𝒮𝒯𝒰𝒱𝒲𝒳𝒴𝒵", strict=True))


def _row(*parts) -> str:
    return "<mrow>" + "".join(parts) + "</mrow>"


def _paren(inner) -> str:
    return _row("<mo>(</mo>", inner, "<mo>)</mo>")


def _token(text) -> str:
    """A short string such as ``(n)``, ``[2]``, ``l+1`` or ``12`` as MathML tokens."""
    out = []
    for ch in str(text):
        if ch.isdigit() and out and out[-1].startswith("<mn>"):
            out[-1] = out[-1][:-5] + ch + "</mn>"
        elif ch.isdigit():
            out.append(f"<mn>{ch}</mn>")
        elif ch.isalpha():
            out.append(f"<mi>{html.escape(ch)}</mi>")
        else:
            out.append(f"<mo stretchy='false'>{html.escape(ch.replace('-', '−'))}</mo>")
    return out[0] if len(out) == 1 else _row(*out)


class MathML:
    """MathML Core for the expression tree, one method per node type (as TextMath)."""

    def __init__(self, precision: int = 9):
        self.precision = precision

    def __call__(self, e) -> str:
        return getattr(self, "_" + type(e).__name__.lower())(e)

    expr = __call__

    # --- atoms
    def _number(self, v) -> str:
        text = format_number(v, self.precision)
        if "e" in text:
            mant, ex = text.split("e")
            return _row(f"<mn>{mant.replace('-', '−')}</mn>", "<mo>×</mo>",
                        f"<msup><mn>10</mn><mn>{str(int(ex)).replace('-', '−')}</mn></msup>")
        return f"<mn>{text.replace('-', '−')}</mn>"

    def _num(self, e):
        return self._number(e.value)

    def _sym(self, e):
        name = e.base
        if e.font == "cal":
            base = f"<mi>{html.escape(''.join(_SCRIPT.get(c, c) for c in name))}</mi>"
        elif e.font == "rm" or name in ("dW", "db"):
            base = f"<mi mathvariant='normal'>{html.escape(GREEK_LETTERS.get(name, name))}</mi>"
            if len(name) > 1:
                base = f"<mi>{html.escape(name)}</mi>"  # several letters: upright anyway
        else:
            base = f"<mi>{html.escape(GREEK_LETTERS.get(name, name))}</mi>"
        sub = ("".join(e.sub) if all(len(s) == 1 for s in e.sub) else ",".join(e.sub)) \
            if e.sub else ""
        sup = _token(e.sup) if e.sup else ""
        if e.prime:
            sup = _row(sup, "<mo>′</mo>") if sup else "<mo>′</mo>"
        if sub and sup:
            out = f"<msubsup>{base}{_token(sub)}{sup}</msubsup>"
        elif sub:
            out = f"<msub>{base}{_token(sub)}</msub>"
        elif sup:
            out = f"<msup>{base}{sup}</msup>"
        else:
            out = base
        return _row(out, _token(e.arg)) if e.arg else out

    def _matrix(self, e):
        a = np.atleast_2d(np.asarray(e.values, dtype=float))
        rows, cols = (_elide(range(n)) for n in a.shape)
        body = "".join(
            "<mtr>" + "".join(
                f"<mtd>{self._number(a[i, j])}</mtd>" if i is not None and j is not None
                else "<mtd><mo>⋯</mo></mtd>" if i is not None
                else "<mtd><mo>⋮</mo></mtd>" if j is not None
                else "<mtd><mo>⋱</mo></mtd>" for j in cols) + "</mtr>"
            for i in rows)
        return _row("<mo>[</mo>", f"<mtable>{body}</mtable>", "<mo>]</mo>")

    # --- structure (the rules of render.TextMath)
    def _atom(self, e) -> str:
        """e, in parentheses unless it is one token (a non-negative number, a symbol, ...)."""
        s = self(e)
        if isinstance(e, Num) and e.value < 0:
            return _paren(s)
        if isinstance(e, Num | Sym | Paren | Call | Matrix | Frac):
            return s
        return _paren(s)

    def _add(self, e):
        parts = []
        for n, t in enumerate(e.terms):
            if isinstance(t, Neg):
                inner = t.arg
                parts += ["<mo>−</mo>", self._atom(inner) if isinstance(inner, Num | Add | Neg)
                          else self(inner)]
            elif n and isinstance(t, Num) and t.value < 0:
                parts += ["<mo>+</mo>", _paren(self(t))]
            else:
                parts += (["<mo>+</mo>"] if n else []) + [self(t)]
        return _row(*parts)

    def _neg(self, e):
        inner = e.arg
        wrap = isinstance(inner, Num | Add | Neg) or (isinstance(inner, Mul)
                                                      and leads_with_number(inner))
        return _row("<mo>−</mo>", self._atom(inner) if wrap else self(inner))

    def _factor(self, f) -> str:
        if isinstance(f, Num):
            return self._atom(f)
        if isinstance(f, Add | Neg | Mul):
            return _paren(self(f))
        return self(f)

    def _mul(self, e):
        factors = flatten_mul(e)
        op = {"times": "×", "hadamard": "⊙"}.get(e.op)
        parts = [self._factor(factors[0])]
        for f in factors[1:]:
            sign = op or ("×" if leads_with_number(f) else "")
            parts += ([f"<mo>{sign}</mo>"] if sign else []) + [self._factor(f)]
        return _row(*parts)

    def _frac(self, e):
        return f"<mfrac>{self(e.num)}{self(e.den)}</mfrac>"

    def _paren(self, e):
        return _paren(self(e.arg))

    def _call(self, e):
        return _row(self(e.func), _paren("<mo>,</mo>".join(self(a) for a in e.args)))

    def _pow(self, e):
        base = _paren(self(e.base)) if is_decorated(e.base) else self._atom(e.base)
        return f"<msup>{base}{self(e.exp)}</msup>"

    def _transpose(self, e):
        inner = self(e.arg) if isinstance(e.arg, Sym) and not is_decorated(e.arg) \
            else _paren(self(e.arg))
        return f"<msup>{inner}<mi mathvariant='normal'>T</mi></msup>"

    def _sigma(self, e):
        var = _token(e.var)
        if e.lo is None:
            head = f"<munder><mo>∑</mo>{var}</munder>"
        else:
            head = (f"<munderover><mo>∑</mo>{_row(var, '<mo>=</mo>', self(e.lo))}"
                    f"{self(e.hi)}</munderover>")
        body = _paren(self(e.body)) if isinstance(e.body, Add) else self(e.body)
        return _row(head, body)

    def _partial(self, e):
        return (f"<mfrac>{_row('<mo>∂</mo>', self(e.num))}"
                f"{_row('<mo>∂</mo>', self(e.den))}</mfrac>")


def _elide(idx):
    idx = list(idx)
    keep = MAX_SHOWN // 2
    return idx if len(idx) <= MAX_SHOWN else [*idx[:keep], None, *idx[-keep:]]


def step_lines(step: Step, precision=9) -> list[str]:
    """The step as ``<math>`` lines: ``lhs = equation``, then ``= form`` for each further
    form of :func:`deltaprop.app.explain.render.step_forms` (expanded, substituted, the value)."""
    m = MathML(precision)
    relation = "<mo>←</mo>" if step.relation == "<-" else "<mo>=</mo>"
    forms = step_forms(step)
    lines = [_row(m(step.lhs), relation, m(forms[0]))]
    lines += [_row("<mo>=</mo>", m(f)) for f in forms[1:]]
    return [f"<math displaystyle='true'>{line}</math>" for line in lines]

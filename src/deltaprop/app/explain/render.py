"""Renderers of a :class:`~deltaprop.app.explain.model.Solution`: text, Markdown, LaTeX.

Each renderer walks the solution's sections and steps; :class:`TextMath` and
:class:`TexMath` turn one :data:`~deltaprop.app.explain.model.Expr` into a string (an HTML
renderer can reuse :class:`TexMath` or write a MathML one with the same rules).  Rules
every renderer keeps:

* numbers are printed with ``Solution.precision`` digits after the point, trailing zeros
  dropped (as ``deltaprop trace`` prints them), integers without a point;
* a negative number is put in parentheses inside a product and after a + or - sign;
* two factors of a product are joined by an explicit times sign when the second one starts
  with a number (``0.5 * 0.138498562``), otherwise written side by side
  (``0.75136507 (1 - 0.75136507)``, ``eta delta_1``);
* a symbol with a superscript or subscript is braced before a power or a transpose.

The LaTeX output is a whole document (article, amsmath, geometry) that compiles with
``pdflatex`` as written; the Markdown output writes each equation in ``$...$``.
"""

from __future__ import annotations

import math

import numpy as np

from .model import (
    Add,
    Call,
    Frac,
    Matrix,
    Mul,
    Neg,
    Num,
    Paren,
    Pow,
    Solution,
    Step,
    Sym,
)

__all__ = ["render", "formats", "register_format", "FORMATS", "format_number", "TextMath",
           "TexMath", "tex_text", "PREAMBLE"]

#: the formats this module writes (others register with :func:`register_format`)
FORMATS = ("text", "markdown", "latex")

_GREEK = {"alpha", "beta", "delta", "Delta", "eta", "theta", "Theta", "lambda", "phi",
          "varphi", "Psi", "psi", "xi", "sigma", "partial"}
_TEX_OPS = {"tanh", "ln", "exp", "max", "log", "sin", "cos"}


def format_number(v: float, precision: int = 9) -> str:
    """``v`` with ``precision`` digits after the point, trailing zeros dropped; integers bare;
    a nonzero number too small to show in that many digits in scientific notation."""
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    if abs(v) < 0.5 * 10.0 ** (-precision):
        return f"{v:.{max(precision - 1, 1)}e}"
    text = f"{v:.{precision}f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def leads_with_number(e) -> bool:
    """Whether the printed ``e`` starts with a number (or a minus sign)."""
    if isinstance(e, Num):
        return True
    if isinstance(e, Neg):
        return True
    if isinstance(e, Mul):
        return leads_with_number(e.factors[0])
    if isinstance(e, Pow):
        return leads_with_number(e.base)
    return False


def flatten_mul(e: Mul) -> list:
    """The factors of a product, nested products of the same operator opened."""
    out = []
    for f in e.factors:
        if isinstance(f, Mul) and f.op == e.op:
            out += flatten_mul(f)
        else:
            out.append(f)
    return out


def is_decorated(e) -> bool:
    """Whether ``e`` is a symbol with a superscript, subscript, prime or argument."""
    return isinstance(e, Sym) and bool(e.sup or e.sub or e.prime or e.arg)


class TextMath:
    """Plain-text (ASCII) math: ``delta[2]_1 = (a[2]_1 - y_1) f'(z[2]_1)``."""

    times = " * "
    hadamard = " * "

    def __init__(self, precision: int = 9):
        self.precision = precision

    def __call__(self, e) -> str:
        return self.expr(e)

    def expr(self, e) -> str:
        method = getattr(self, "_" + type(e).__name__.lower())
        return method(e)

    # --- atoms
    def _num(self, e):
        return format_number(e.value, self.precision)

    def _sym(self, e):
        name = {"varphi": "phi"}.get(e.base, e.base)
        out = name
        if e.sup:
            out += e.sup if e.sup.startswith("[") else f"^{e.sup}"
        if e.prime:
            out += "'"
        if e.sub:
            sub = ",".join(e.sub)
            out += f"_{sub}" if len(sub) == 1 else f"_{{{sub}}}"
        return out + e.arg

    def _matrix(self, e):
        return np.array2string(np.asarray(e.values), precision=self.precision,
                               floatmode="maxprec", suppress_small=False, max_line_width=100,
                               threshold=64, edgeitems=3)

    # --- structure
    def _atom(self, e) -> str:
        """e, parenthesised unless it is a single token (non-negative number, symbol, call)."""
        s = self.expr(e)
        if isinstance(e, Num) and e.value < 0:
            return f"({s})"
        if isinstance(e, Num | Sym | Paren | Call | Matrix):
            return s
        return f"({s})"

    def _add(self, e):
        parts = []
        for n, t in enumerate(e.terms):
            if isinstance(t, Neg):
                inner = t.arg
                s = self._atom(inner) if isinstance(inner, Num | Add | Neg) else self.expr(inner)
                parts.append(f"- {s}" if n else f"-{s}")
            elif n and isinstance(t, Num) and t.value < 0:
                parts.append(f"+ ({self.expr(t)})")
            else:
                parts.append(("+ " if n else "") + self.expr(t))
        return " ".join(parts)

    def _neg(self, e):
        inner = e.arg
        return "-" + (self._atom(inner) if isinstance(inner, Num | Add | Neg | Mul)
                      and not (isinstance(inner, Mul) and not leads_with_number(inner))
                      else self.expr(inner))

    def _factor(self, f, first):
        if isinstance(f, Num):
            return self._atom(f) if f.value < 0 else self.expr(f)
        if isinstance(f, Add | Neg):
            return f"({self.expr(f)})"
        if isinstance(f, Frac):
            return self._frac_factor(f)
        if isinstance(f, Mul):
            return f"({self.expr(f)})"
        return self.expr(f)

    def _frac_factor(self, f):
        return f"({self.expr(f)})"

    def _mul(self, e):
        factors = flatten_mul(e)
        op = {"times": self.times, "hadamard": self.hadamard}.get(e.op)
        out = self._factor(factors[0], True)
        for f in factors[1:]:
            sep = op or (self.times if leads_with_number(f) else " ")
            out += sep + self._factor(f, False)
        return out

    def _frac(self, e):
        return f"{self._atom(e.num)}/{self._atom(e.den)}"

    def _paren(self, e):
        return f"({self.expr(e.arg)})"

    def _call(self, e):
        return f"{self.expr(e.func)}({', '.join(self.expr(a) for a in e.args)})"

    def _pow(self, e):
        base = self._atom(e.base)
        if is_decorated(e.base):
            base = f"({self.expr(e.base)})"
        exp = self.expr(e.exp)
        return f"{base}^{exp}" if isinstance(e.exp, Num) and e.exp.value >= 0 and \
            isinstance(e.exp, Num) else f"{base}^({exp})"

    def _transpose(self, e):
        inner = self.expr(e.arg)
        plain = isinstance(e.arg, Sym) and (not is_decorated(e.arg) or (
            e.arg.sup.startswith("[") and not (e.arg.sub or e.arg.prime or e.arg.arg)))
        return f"{inner}^T" if plain else f"({inner})^T"

    def _sigma(self, e):
        if e.lo is None:
            head = f"sum_{{{e.var}}}"
        else:
            head = f"sum_{{{e.var}={self.expr(e.lo)}}}^{{{self.expr(e.hi)}}}"
        body = self.expr(e.body)
        return f"{head} ({body})" if isinstance(e.body, Add) else f"{head} {body}"

    def _partial(self, e):
        return f"d{self.expr(e.num)}/d{self.expr(e.den)}"


class TexMath(TextMath):
    """LaTeX math (amsmath): ``\\delta^{[2]}_{1} = (a^{[2]}_{1} - y_{1})\\, f'(z^{[2]}_{1})``."""

    times = " \\times "
    hadamard = " \\odot "

    def _num(self, e):
        s = format_number(e.value, self.precision)
        if "e" in s:
            mant, ex = s.split("e")
            return f"{mant} \\times 10^{{{int(ex)}}}"
        return s

    def _sym(self, e):
        base = e.base
        if e.font == "cal":
            out = f"\\mathcal{{{base}}}"
        elif e.font == "rm":
            out = f"\\mathrm{{{base}}}"
        elif e.font == "op":
            out = f"\\{base}" if base in _TEX_OPS else f"\\operatorname{{{base}}}"
        elif base in _GREEK:
            out = f"\\{base}"
        elif base in ("dW", "db"):
            out = f"\\mathrm{{d}}{base[1:]}"
        elif len(base) > 1:
            out = f"\\mathit{{{base}}}"
        else:
            out = base
        if e.prime:
            out += "'"
        if e.sup:
            out += f"^{{{e.sup}}}"
        if e.sub:
            sub = "".join(e.sub) if all(len(s) == 1 for s in e.sub) else ",".join(e.sub)
            out += f"_{{{sub}}}"
        return out + e.arg

    def _matrix(self, e):
        v = np.atleast_2d(np.asarray(e.values))
        rows = _elide(list(range(v.shape[0])))
        cols = _elide(list(range(v.shape[1])))
        lines = []
        for r in rows:
            if r is None:
                lines.append(" & ".join("\\vdots" if c is not None else "\\ddots" for c in cols))
                continue
            lines.append(" & ".join("\\cdots" if c is None else
                                    self._num(Num(float(v[r, c]))) for c in cols))
        return "\\begin{pmatrix} " + " \\\\ ".join(lines) + " \\end{pmatrix}"

    def _add(self, e):
        return super()._add(e)

    def _mul(self, e):
        factors = flatten_mul(e)
        op = {"times": self.times, "hadamard": self.hadamard}.get(e.op)
        out = self._factor(factors[0], True)
        for f in factors[1:]:
            sep = op or (self.times if leads_with_number(f) else "\\, ")
            out += sep + self._factor(f, False)
        return out

    def _frac_factor(self, f):
        return self.expr(f)

    def _frac(self, e):
        return f"\\frac{{{self.expr(e.num)}}}{{{self.expr(e.den)}}}"

    @staticmethod
    def _wrap(s):
        """(s): plain parentheses, so that TeX may break a long line inside them, unless
        s holds something tall (a fraction, a sum, a matrix)."""
        if any(t in s for t in ("\\frac", "\\sum", "\\begin")):
            return f"\\left({s}\\right)"
        return f"({s})"

    def _paren(self, e):
        return self._wrap(self.expr(e.arg))

    def _atom(self, e):
        s = self.expr(e)
        if isinstance(e, Num) and e.value < 0:
            return f"({s})"
        if isinstance(e, Num | Sym | Paren | Call | Matrix | Frac):
            return s
        return self._wrap(s)

    def _call(self, e):
        return self.expr(e.func) + self._wrap(", ".join(self.expr(a) for a in e.args))

    def _pow(self, e):
        base = self._atom(e.base)
        if is_decorated(e.base) or isinstance(e.base, Call):
            base = f"{{{base}}}"
        return f"{base}^{{{self.expr(e.exp)}}}"

    def _transpose(self, e):
        inner = self.expr(e.arg)
        if not isinstance(e.arg, Sym):
            inner = self._wrap(inner)
        return f"{{{inner}}}^{{\\mathsf{{T}}}}"

    def _sigma(self, e):
        if e.lo is None:
            head = f"\\sum_{{{e.var}}}"
        else:
            head = f"\\sum_{{{e.var}={self.expr(e.lo)}}}^{{{self.expr(e.hi)}}}"
        body = self.expr(e.body)
        return f"{head} {self._wrap(body)}" if isinstance(e.body, Add) else f"{head} {body}"

    def _partial(self, e):
        return f"\\frac{{\\partial {self.expr(e.num)}}}{{\\partial {self.expr(e.den)}}}"


def _elide(idx, keep=8, edge=3):
    """Indices to show of a long axis: the first ``edge``, None (dots), the last ``edge``."""
    return idx if len(idx) <= keep else [*idx[:edge], None, *idx[-edge:]]


# ---------------------------------------------------------------------- documents
def step_forms(step: Step):
    """The right-hand sides of a step, in order, without repeats: equation, expanded,
    substituted, result."""
    out = [step.equation]
    for f in (step.expanded, step.substituted):
        if f is not None and f != out[-1]:
            out.append(f)
    if isinstance(step.value, np.ndarray):
        out.append(Matrix(step.value))
    elif not (isinstance(out[-1], Num) and out[-1].value == step.value):
        if isinstance(out[-1], Num):  # a bare number: the result says it (rounded)
            out.pop()
        out.append(Num(step.value))
    return out


def render(solution: Solution, fmt: str = "text") -> str:
    """The solution as ``"text"``, ``"markdown"``, ``"latex"`` (a whole document), or any
    format another module registers (:func:`register_format`)."""
    fn = _renderer(fmt)
    if fn is None:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(formats())}")
    return fn(solution)


#: format name -> function(solution) -> str
RENDERERS = {}

#: formats rendered by a module of this package, imported on first use: that module
#: defines ``render_<format>(solution) -> str`` (or ``render``)
_MODULES = {"html": "html"}


def register_format(name: str, fn) -> None:
    """Add a renderer: ``fn(solution) -> str`` becomes ``render(solution, name)``."""
    RENDERERS[name] = fn


def _renderer(fmt):
    if fmt not in RENDERERS and fmt in _MODULES:
        import importlib

        try:
            module = importlib.import_module(f"{__package__}.{_MODULES[fmt]}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__package__}.{_MODULES[fmt]}":
                raise
            return None
        fn = getattr(module, f"render_{fmt}", None) or getattr(module, "render", None)
        if fn is None:
            return None
        RENDERERS.setdefault(fmt, fn)
    return RENDERERS.get(fmt)


def formats() -> list[str]:
    """Every format :func:`render` writes now (text, markdown, latex, and html when its
    module is installed)."""
    return [f for f in (*RENDERERS, *_MODULES) if _renderer(f) is not None]


def _text(sol: Solution) -> str:
    m = TextMath(sol.precision)
    lines = [sol.title, *sol.header, "", f"notation: {sol.notation.title}",
             f"  ({sol.notation.source})", *(f"  - {n}" for n in sol.notes)]
    for sec in sol.sections:
        lines += ["", f"== {sec.title} =="]
        for step in sec.steps:
            lhs = m(step.lhs)
            rel = "<-" if step.relation == "<-" else "="
            forms = step_forms(step)
            pad = " " * (len(lhs) + 1)
            first = f"  {lhs} {rel} {m(forms[0])}"
            if step.ref:
                first += f"    [{step.ref}]"
            lines.append(first)
            for f in forms[1:]:
                text = m(f)
                if isinstance(f, Matrix):
                    text = text.replace("\n", "\n" + "  " + pad + "  ")
                lines.append(f"  {pad}= {text}")
            if step.note:
                lines.append(f"  {pad}  ({step.note})")
        for n in sec.notes:
            lines.append(f"  ({n})")
    return "\n".join(lines) + "\n"


def _md_text(s: str) -> str:
    for ch in "\\*_`[]<>#|":
        s = s.replace(ch, "\\" + ch)
    return s


def _markdown(sol: Solution) -> str:
    m = TexMath(sol.precision)
    out = [f"# {_md_text(sol.title)}", ""]
    out += [f"- {_md_text(h)}" for h in sol.header]
    out += ["", f"## Notation: {_md_text(sol.notation.title)}", "",
            f"*{_md_text(sol.notation.source)}*", ""]
    out += [f"- {_md_text(n)}" for n in sol.notes]
    for sec in sol.sections:
        out += ["", f"### {_md_text(sec.title)}", ""]
        for step in sec.steps:
            rel = "\\leftarrow" if step.relation == "<-" else "="
            forms = step_forms(step)
            ref = f" — {_md_text(step.ref)}" if step.ref else ""
            lines = [f"- ${m(step.lhs)} {rel} {m(forms[0])}${ref}"]
            lines += [f"  $= {m(f)}$" for f in forms[1:]]
            if step.note:
                lines.append(f"  *{_md_text(step.note)}*")
            out.append("  \n".join(lines))
    return "\n".join(out) + "\n"


_TEX_ESCAPES = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                "#": r"\#", "^": r"\^{}", "_": r"\_", "%": r"\%", "~": r"\~{}",
                "<": r"\textless{}", ">": r"\textgreater{}"}


def tex_text(s: str) -> str:
    """Plain text escaped for LaTeX (a slash may end a line: long URLs)."""
    return "".join(_TEX_ESCAPES.get(ch, ch) for ch in s).replace("/", "/\\allowbreak{}")


#: the preamble of the LaTeX output: standard packages only
PREAMBLE = r"""\documentclass[10pt]{article}
\usepackage[a4paper,margin=1.8cm]{geometry}
\usepackage{amsmath}
\setcounter{MaxMatrixCols}{20}
\allowdisplaybreaks
\setlength{\parindent}{0pt}
"""


def _latex(sol: Solution) -> str:
    m = TexMath(sol.precision)
    out = [PREAMBLE + r"\begin{document}", r"\raggedright",
           f"\\section*{{{tex_text(sol.title)}}}", r"\begin{itemize}"]
    out += [f"\\item {tex_text(h)}" for h in sol.header]
    out += [r"\end{itemize}", f"\\subsection*{{Notation: {tex_text(sol.notation.title)}}}",
            f"\\emph{{{tex_text(sol.notation.source)}}}", r"\begin{itemize}"]
    out += [f"\\item {tex_text(n)}" for n in sol.notes]
    out.append(r"\end{itemize}")
    for sec in sol.sections:
        out.append(f"\\subsection*{{{tex_text(sec.title)}}}")
        for step in sec.steps:
            out.append(_latex_step(m, step))
    out.append(r"\end{document}")
    return "\n".join(out) + "\n"


def _latex_step(m, step) -> str:
    """One step as a paragraph of inline formulas (TeX breaks long ones after + and =),
    a matrix in display math."""
    rel = r"\leftarrow" if step.relation == "<-" else "="
    forms = step_forms(step)
    lines = [("inline", f"$\\displaystyle {m(step.lhs)} {rel} {m(forms[0])}$"
              + (f" \\quad {{\\small [{tex_text(step.ref)}]}}" if step.ref else ""))]
    for f in forms[1:]:
        if isinstance(f, Matrix):
            lines.append(("display", f"\\[ \\phantom{{{m(step.lhs)}}} = {m(f)} \\]"))
        else:
            lines.append(("inline", f"\\hspace*{{2em}}$\\displaystyle = {m(f)}$"))
    if step.note:
        lines.append(("inline", f"\\hspace*{{2em}}\\emph{{{tex_text(step.note)}}}"))
    out = "\\par\\smallskip\n" + lines[0][1]
    for (prev, _), (kind, text) in zip(lines, lines[1:], strict=False):
        out += ("\\\\\n" if prev == kind == "inline" else "\n") + text
    return out + "\\par"


register_format("text", _text)
register_format("markdown", _markdown)
register_format("latex", _latex)

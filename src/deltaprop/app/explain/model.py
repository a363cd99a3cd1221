"""The worked solution as data: a list of steps, each an equation, its numbers and its result.

``deltaprop explain`` never prints while it computes.  :func:`deltaprop.app.explain.solve` builds
a :class:`Solution` from the engine's own numbers (:mod:`deltaprop.app.trace`), in one notation;
renderers (:mod:`deltaprop.app.explain.render`: text, Markdown, LaTeX; HTML elsewhere) only
walk it.  A renderer needs nothing but this module.

The tree
--------
::

    Solution
      notation   Notation            key ("deltaprop", "haykin", "bishop", "ng", "brawer"),
                                     title, source, glossary lines
      title      str                 e.g. the spec's description
      header     tuple[str]          the network, loss, m, eta, ... (plain sentences)
      notes      tuple[str]          the notation's conventions that change a number, and
                                     every place where the mapping had to be decided
      sections   tuple[Section]      in order: forward, loss, output error, hidden errors
                                     (layer L-1 down to 1), gradients, update
      precision  int                 digits after the point for Num (trailing zeros dropped)
      max_units  int                 the hand-size limit (see below)
      run        object              the engine's record (spec, the TraceStep): for tools

    Section
      phase      "forward" | "loss" | "output" | "hidden" | "gradient" | "update"
      layer      int | None          deltaprop's layer l (1..L); None for the loss
      sample     int | None          0-based sample when steps are written per sample
      title      str                 heading in the notation's own words and layer numbers
      steps      tuple[Step]
      notes      tuple[str]

    Step
      lhs        Expr                the quantity in the notation, e.g. Sym("delta", "(3)", ("1",))
      relation   "=" | "<-"          "<-" for an update (a renderer may write := or \\leftarrow)
      equation   Expr                the right-hand side in symbols (the derivation's form)
      expanded   Expr | None         the same with the activation written out (f' = a (1 - a))
      substituted Expr | None        the numbers written in; None in matrix form
      value      float | ndarray     the result as this notation writes it (e.g. Haykin's delta
                                     is minus deltaprop's); an ndarray in matrix form
      quantity   str                 what the engine calls it: "z", "a", "J", "delta",
                                     "dW", "db", "W", "b" (W, b: updated); and the
                                     notations' own: "e" (Haykin's d - y), "dJ_da"
                                     (Bishop's delta, dJ/da), "Delta" (Ng's sum over
                                     samples), "theta", "dtheta" ([b | W] and its gradient,
                                     matrix form in Haykin's, Ng's and Brawer's notation)
      layer      int | None          deltaprop's layer l of that quantity
      index      tuple | None        0-based index into the engine's array: (sample, unit) for
                                     z, a, delta, e, dJ_da; (j, k) for W, dW, Delta; (j,) for
                                     b, db and Ng's bias Delta; () for J; None in matrix form
                                     (the whole array)
      ref        str                 where the equation comes from ("eq. (6)" of
                                     docs/derivation.md, "Brawer eq. (48)", ...)
      note       str                 a sentence where this notation's number or form differs

Hand-sized equations are written unit by unit (one Step per unit, per weight, per
sample); a section whose equations involve more than ``max_units`` units (of its layer, the
layer before it for z and the gradients, the layer after it for a hidden error) or more
than ``max_units`` samples is written in matrix form (one Step per array, ``index is
None``, ``value`` the array, ``substituted`` None).

Expressions
-----------
An :data:`Expr` is a small immutable tree, the same in every notation; only the symbols
differ.  Renderers decide spacing, parentheses around negative numbers, and where a
product of two numbers needs an explicit times sign; every other parenthesis is a
:class:`Paren` node, placed by the builder.

========== ======================================================================
Num        a number (the engine's float); rendered with ``Solution.precision``
Sym        a symbol: base (``"delta"``, ``"W"``, ``"Theta"``, ``"varphi"``, ...), sup
           (already decorated: ``"[2]"``, ``"(3)"``, ``"2"``), sub (index strings),
           prime, arg (a suffix such as ``"(n)"``), font (``""``, ``"cal"``, ``"rm"``,
           ``"op"`` for operator names such as tanh, ln, exp, max)
Add        terms, a sum; a :class:`Neg` term is written as subtraction
Neg        -x
Mul        factors and ``op``: ``"juxt"`` (implicit product / matrix product),
           ``"times"`` (an explicit x), ``"hadamard"`` (elementwise)
Frac       numerator / denominator
Paren      (x)
Call       f(x, ...): ``func`` is a Sym
Pow        base^exp
Transpose  x^T
Sigma      sum over ``var`` from ``lo`` to ``hi`` of ``body``
Partial    the derivative d num / d den (partial)
Matrix     an array of numbers (NumPy), for matrix-form results
========== ======================================================================

Greek and calligraphic names are spelled out in ``Sym.base`` (``"delta"``, ``"eta"``,
``"E"`` with font ``"cal"``); text renders them as words, LaTeX as ``\\delta``, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Expr", "Num", "Sym", "Add", "Neg", "Mul", "Frac", "Paren", "Call", "Pow",
           "Transpose", "Sigma", "Partial", "Matrix", "Notation", "Step", "Section",
           "Solution", "PHASES"]

#: the order of the phases of a solution
PHASES = ("forward", "loss", "output", "hidden", "gradient", "update")


@dataclass(frozen=True)
class Num:
    """A number: one of the engine's values, or a constant of an equation (1, 1/2)."""

    value: float


@dataclass(frozen=True)
class Sym:
    """A symbol such as delta^(3)_1: base, decorated superscript, subscripts, prime, suffix."""

    base: str
    sup: str = ""
    sub: tuple = ()
    prime: bool = False
    arg: str = ""
    font: str = ""


@dataclass(frozen=True)
class Add:
    """terms[0] + terms[1] + ...; a Neg term is written as subtraction."""

    terms: tuple


@dataclass(frozen=True)
class Neg:
    """-arg."""

    arg: object


@dataclass(frozen=True)
class Mul:
    """A product; op is "juxt" (implicit or matrix product), "times" or "hadamard"."""

    factors: tuple
    op: str = "juxt"


@dataclass(frozen=True)
class Frac:
    """num / den."""

    num: object
    den: object


@dataclass(frozen=True)
class Paren:
    """(arg)."""

    arg: object


@dataclass(frozen=True)
class Call:
    """func(args...), e.g. f'(z) or tanh(z): ``func`` is a :class:`Sym`."""

    func: Sym
    args: tuple


@dataclass(frozen=True)
class Pow:
    """base^exp."""

    base: object
    exp: object


@dataclass(frozen=True)
class Transpose:
    """arg^T."""

    arg: object


@dataclass(frozen=True)
class Sigma:
    """sum_{var = lo}^{hi} body."""

    var: str
    lo: object
    hi: object
    body: object


@dataclass(frozen=True)
class Partial:
    """The partial derivative d num / d den."""

    num: object
    den: object


@dataclass(frozen=True, eq=False)
class Matrix:
    """A (matrix-form) array of numbers; rows are samples for z, a, delta."""

    values: np.ndarray


Expr = (Num | Sym | Add | Neg | Mul | Frac | Paren | Call | Pow | Transpose | Sigma | Partial
        | Matrix)


@dataclass(frozen=True)
class Notation:
    """A derivation's conventions, as far as a renderer needs them.

    Attributes
    ----------
    key : str
        ``"deltaprop"``, ``"haykin"``, ``"bishop"``, ``"ng"`` or ``"brawer"``.
    title : str
        e.g. "Haykin: local gradients delta_j = -dE/dv_j".
    source : str
        The derivation the notation follows (author, title).
    glossary : tuple of str
        One line per symbol: what it is in deltaprop's terms.
    """

    key: str
    title: str
    source: str
    glossary: tuple = ()


@dataclass(frozen=True, eq=False)
class Step:
    """One line of the worked solution: lhs = equation = expanded = substituted = value.

    See the module docstring for every field.
    """

    lhs: Expr
    equation: Expr
    value: object
    quantity: str
    layer: int | None = None
    index: tuple | None = None
    expanded: Expr | None = None
    substituted: Expr | None = None
    relation: str = "="
    ref: str = ""
    note: str = ""

    @property
    def matrix_form(self) -> bool:
        """True when the step is a whole array (a layer beyond the hand-size limit)."""
        return self.index is None and self.quantity != "J"


@dataclass(frozen=True, eq=False)
class Section:
    """A group of steps: one phase of one layer (and one sample, when written per sample)."""

    phase: str
    title: str
    steps: tuple
    layer: int | None = None
    sample: int | None = None
    notes: tuple = ()


@dataclass(frozen=True, eq=False)
class Solution:
    """A worked solution: sections of steps in one notation, with the engine's numbers.

    Iterate over ``solution.steps()`` for every step in order; :meth:`find` picks one.
    """

    notation: Notation
    title: str
    header: tuple
    notes: tuple
    sections: tuple
    precision: int = 9
    max_units: int = 4
    run: object = field(default=None, repr=False)

    def steps(self):
        """Every :class:`Step`, in the order of the solution."""
        for section in self.sections:
            yield from section.steps

    def find(self, quantity: str, layer: int | None = None, index: tuple | None = None) -> Step:
        """The first step computing ``quantity`` of deltaprop's ``layer`` at ``index``.

        Raises
        ------
        KeyError
            No such step (e.g. a unit of a layer written in matrix form: use index=None).
        """
        for s in self.steps():
            if s.quantity == quantity and s.layer == layer and (
                    index is None or s.index == tuple(index)):
                return s
        raise KeyError(f"no step for {quantity} layer {layer} index {index}")

"""deltaprop's own notation (docs/derivation.md), the base every other notation
overrides, and the helpers they share."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..leaves import ONE
from ..model import (
    Add,
    Call,
    Frac,
    Mul,
    Neg,
    Notation,
    Num,
    Paren,
    Pow,
    Sigma,
    Sym,
    Transpose,
)

HALF = Frac(ONE, Num(2.0))


@dataclass(frozen=True)
class Def:
    """One step before evaluation: lhs and rhs templates, and where its value is in ``V``.

    ``key`` is ``(V key, layer or None, index or None)``; the builder reads
    ``V[key][layer][index]`` (the whole array when index is None)."""

    lhs: Callable
    rhs: Callable
    quantity: str
    key: tuple
    layer: int | None = None
    index: tuple | None = None
    ref: str = ""
    note: str = ""
    relation: str = "="


def shown(v) -> str:
    """A unit index as printed: 0-based ints from 1; letters as they are."""
    return v if isinstance(v, str) else str(v + 1)


def layer_shift(l, s):
    """Layer label l + s (letters stay symbolic: "l+1")."""
    if isinstance(l, str):
        return f"{l}+{s}" if s else l
    return l + s


def difference(x, y):
    """(x - y) as an expression."""
    return Paren(Add((x, Neg(y))))


def sum_of(terms):
    """The sum of ``terms`` as an expression (the term itself when there is one)."""
    terms = tuple(terms)
    return terms[0] if len(terms) == 1 else Add(terms)


class Convention:
    """deltaprop's own notation (docs/derivation.md); the other notations override it."""

    key = "deltaprop"
    name = "deltaprop's"
    title = "deltaprop: delta[l] = dJ_i/dz[l], weights W[l] (n_l, n_{l-1}), biases b[l]"
    source = "deltaprop, docs/derivation.md (equations (1)-(9))"
    glossary = (
        "a[0] = x the input; z[l] = W[l] a[l-1] + b[l] the pre-activation of layer l; "
        "a[l] = f(z[l]) its output",
        "y the target; J the cost (batch mean); m the number of samples; eta the learning "
        "rate; lambda the L2 coefficient",
        "delta[l]_j = dJ_i/dz[l]_j, per sample and unscaled; dW[l], db[l] the gradients "
        "(batch means: the 1/m lives here)",
        "W[l]_jk is the weight from unit k of layer l-1 to unit j of layer l",
    )
    decisions = ()
    sample_letter = "i"
    sample_style = "sub"  # sub: a[2]_{i,1}; arg: delta_1(n); sup: a^(3)(i); none: implicit
    bias_column = False  # True: answers give [b | W] as one matrix (Theta, theta, w)
    #: answer name -> (V key, printed-layer offset, what it is)
    answer_keys = {
        "z": ("z", 0, "z[l], (m, n_l) or (n_l,) for one sample"),
        "a": ("a", 0, "a[l]"),
        "delta": ("delta", 0, "delta[l] = dJ_i/dz[l]"),
        "dW": ("dW", 0, "dW[l] (n_l, n_{l-1})"),
        "db": ("db", 0, "db[l] (n_l,)"),
        "W": ("Wn", 0, "W[l] after the update"),
        "b": ("bn", 0, "b[l] after the update"),
        "J": ("J", None, "the cost J"),
    }

    # ------------------------------------------------------------------ identity
    def notation(self) -> Notation:
        return Notation(self.key, self.title, self.source, tuple(self.glossary))

    def layer_sup(self, l) -> str:
        """The decorated superscript of deltaprop's layer l on z, a, delta."""
        return f"[{l}]"

    def param_sup(self, l) -> str:
        return f"[{l}]"

    def layer_title(self, l, L) -> str:
        role = "input" if l == 0 else ("output" if l == L else "hidden")
        return f"layer {l} ({role})"

    def _sym(self, base, sup="", sub=(), i=None, prime=False, font=""):
        arg = ""
        if i is not None:
            style = self.sample_style
            if style == "sub":
                sub = (shown(i), *sub)
            elif style == "arg":
                arg = f"({shown(i)})"
            elif style == "sup":
                sup = f"{sup}({shown(i)})"
        return Sym(base, sup, tuple(sub), prime, arg, font)

    # ------------------------------------------------------------------ symbols
    def z(self, l, j, i=None):
        return self._sym("z", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        return self._sym("a", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def y(self, j, i=None):
        return self._sym("y", "", (shown(j),) if j is not None else (), i)

    def e(self, j, i=None):
        return self._sym("e", "", (shown(j),) if j is not None else (), i)

    def delta(self, l, j, i=None):
        return self._sym("delta", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def _w(self, base, l, j, k, **kw):
        sub = () if j is None else ((shown(j),) if k is None else (shown(j), shown(k)))
        return Sym(base, self.param_sup(l), sub, **kw)

    def W(self, l, j=None, k=None):
        return self._w("W", l, j, k)

    def b(self, l, j=None):
        return self._w("b", l, j, None)

    def dW(self, l, j=None, k=None):
        return self._w("dW", l, j, k)

    def db(self, l, j=None):
        return self._w("db", l, j, None)

    def Delta(self, l, j, k):  # pragma: no cover - only Ng's course accumulates
        raise NotImplementedError

    def f(self, l, prime=False):
        return Sym("f", prime=prime)

    def J(self):
        return Sym("J")

    def const(self, name):
        return Sym({"eta": "eta", "m": "m", "lam": "lambda"}[name])

    # ------------------------------------------------------------------ values
    def values(self, run) -> dict:
        """The engine's numbers (``run``: :class:`deltaprop.app.explain.build.Run`) as this
        notation writes them: a dict of per-layer tuples (slot 0 for the input)."""
        V = {"acts": run.acts, "m": run.m, "eta": run.eta, "lam": run.lam, "y": run.y,
             "z": run.z, "a": run.a, "df": run.df, "delta": run.delta, "W": run.W,
             "b": run.b, "dW": run.dW, "db": run.db, "Wn": run.Wn, "bn": run.bn,
             "J": run.J, "e": run.y - run.a[-1]}
        return V

    # ------------------------------------------------------------------ equations, unit by unit
    bias_first = False
    z_ref = "eq. (1)"
    a_ref = "eq. (2)"

    def bias_term(self, L, l, j):
        return L.b(l, j)

    def z_def(self, l, i, j, n_in):
        def rhs(L):
            terms = [Mul((L.W(l, j, k), L.a(l - 1, k))) for k in range(n_in)]
            bias = self.bias_term(L, l, j)
            return Add(tuple([bias, *terms] if self.bias_first else [*terms, bias]))
        return Def(lambda L: L.z(l, j), rhs, "z", ("z", l, (i, j)), l, (i, j), self.z_ref)

    def a_def(self, l, i, j):
        return Def(lambda L: L.a(l, j), lambda L: L.f(l, j), "a", ("a", l, (i, j)), l,
                   (i, j), self.a_ref)

    # --- the loss
    loss_ref = "eq. (3)"

    def per_sample_loss(self, L, loss, nL, explicit, l_out):
        """J_i, the loss of one sample (sum over the output units)."""
        def term(k):
            a, y = L.a(l_out, k), L.y(k)
            if loss == "mse":
                return Mul((HALF, Pow(difference(a, y), Num(2.0))))
            if loss == "sigmoid-cross-entropy":
                ln = Sym("ln", font="op")
                return Add((Mul((y, Call(ln, (a,)))),
                            Mul((difference(ONE, y), Call(ln, (Add((ONE, Neg(a))),))))))
            return Mul((y, Call(Sym("ln", font="op"), (a,))))
        if explicit:
            body = sum_of(term(k) for k in range(nL))
        else:
            body = Sigma("k", ONE, Sym("n", "", ("L",)), term("k"))
        if loss == "mse":
            return body
        return Neg(Paren(body) if isinstance(body, Add) else body)

    def penalty(self, L, weights, m_mean=True):
        """(lambda / 2m) sum of the squared weights (biases excluded)."""
        lam = L.c("lam")
        pre = Frac(lam, Mul((Num(2.0), L.c("m")))) if m_mean else Frac(lam, Num(2.0))
        if L.numeric and weights is not None and len(weights) <= 16:
            body = Paren(sum_of(Pow(Num(float(w)), Num(2.0)) for w in weights))
        elif L.numeric and weights is not None:  # too many to write out: their sum
            body = Num(float(np.sum(np.square(weights))))
        else:
            body = Sigma("l", ONE, Sym("L"), Sigma("j,k", None, None, Pow(
                self.W("l", "j", "k"), Num(2.0))))
        return Mul((pre, body))

    def loss_def(self, loss, nL, l_out, explicit, lam, weights):
        def rhs(L):
            J = L.over_samples(lambda Li: self.per_sample_loss(Li, loss, nL, explicit, l_out))
            return Add((J, self.penalty(L, weights))) if lam else J
        return Def(lambda L: self.J(), rhs, "J", ("J", None, ()), None, (), self.loss_ref,
                   self.loss_note(loss))

    def loss_note(self, loss):
        return ""

    # --- the output error
    out_ref = "eq. (5)"

    def output_defs(self, l, i, j, loss, elementwise):
        if loss != "mse":
            rhs = lambda L: Add((L.a(l, j), Neg(L.y(j))))  # noqa: E731
            note = "matched pair: f' cancels against dJ/da, nothing is divided"
        elif elementwise:
            rhs = lambda L: Mul((difference(L.a(l, j), L.y(j)), L.df(l, j)))  # noqa: E731
            note = ""
        else:
            rhs = lambda L: self._softmax_mse(L, l, j)  # noqa: E731
            note = "softmax is not elementwise: f' is the Jacobian diag(a) - a a^T"
        return [Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                    self.out_ref, note)]

    def _softmax_mse(self, L, l, j):
        n = L.V["a"][l].shape[-1]
        g = [Mul((L.a(l, k), difference(L.a(l, k), L.y(k)))) for k in range(n)]
        return Mul((L.a(l, j), Paren(Add((difference(L.a(l, j), L.y(j)), Neg(Paren(sum_of(g))))))))

    # --- hidden errors
    hidden_ref = "eq. (6)"

    def hidden_def(self, l, i, j, n_next):
        def rhs(L):
            s = sum_of(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
            return Mul((Paren(s) if n_next > 1 else s, L.df(l, j)))
        return Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                   self.hidden_ref)

    # --- gradients
    def grad_defs(self, l, j, k):
        """dW[l]_jk (k an int) or db[l]_j (k None)."""
        def rhs(L):
            if k is None:
                return L.over_samples(lambda Li: Li.delta(l, j))
            g = L.over_samples(lambda Li: Mul((Li.delta(l, j), Li.a(l - 1, k))))
            if L.V["lam"]:
                g = Add((g, Mul((Frac(L.c("lam"), L.c("m")), L.W(l, j, k)))))
            return g
        if k is None:
            return [Def(lambda L: L.db(l, j), rhs, "db", ("db", l, (j,)), l, (j,), "eq. (8)")]
        return [Def(lambda L: L.dW(l, j, k), rhs, "dW", ("dW", l, (j, k)), l, (j, k),
                    "eq. (7)")]

    # --- the update
    def update_defs(self, l, j, k):
        if k is None:
            return [Def(lambda L: self.b(l, j), lambda L: Add((L.b(l, j), Neg(Mul((
                L.c("eta"), L.db(l, j)))))), "b", ("bn", l, (j,)), l, (j,), "eq. (9)",
                relation="<-")]
        return [Def(lambda L: self.W(l, j, k), lambda L: Add((L.W(l, j, k), Neg(Mul((
            L.c("eta"), L.dW(l, j, k)))))), "W", ("Wn", l, (j, k)), l, (j, k), "eq. (9)",
            relation="<-")]

    # ------------------------------------------------------------------ matrix form
    def fsym(self, l, arg, prime=False):
        return Call(self.f(l, prime), (arg,))

    def z_matrix(self, l):
        rhs = Add((Mul((self.a(l - 1, None), Transpose(self.W(l)))), self.b(l)))
        return Def(lambda L: self.z(l, None), lambda L: rhs, "z", ("z", l, None), l, None,
                   self.z_ref, "row form: one row per sample")

    def a_matrix(self, l):
        return Def(lambda L: self.a(l, None), lambda L: self.fsym(l, self.z(l, None)), "a",
                   ("a", l, None), l, None, self.a_ref)

    def output_matrix(self, l, loss, elementwise):
        d = Add((self.a(l, None), Neg(self.y(None))))
        rhs = d if loss != "mse" else Mul((Paren(d), self.fsym(l, self.z(l, None), True)),
                                          "hadamard")
        return [Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                    l, None, self.out_ref)]

    def hidden_matrix(self, l):
        rhs = Mul((Paren(Mul((self.delta(l + 1, None), self.W(l + 1)))),
                   self.fsym(l, self.z(l, None), True)), "hadamard")
        return Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                   l, None, self.hidden_ref, "row form: (delta[l+1] W[l+1]) * f'(z[l])")

    def grad_matrix(self, l, lam):
        dW = Mul((Frac(ONE, self.const("m")), Transpose(self.delta(l, None)),
                  self.a(l - 1, None)))
        if lam:
            dW = Add((dW, Mul((Frac(self.const("lam"), self.const("m")), self.W(l)))))
        db = Mul((Frac(ONE, self.const("m")), Sigma(self.sample_letter, ONE, self.const("m"),
                                                    self.delta(l, None, self.sample_letter))))
        return [Def(lambda L: self.dW(l), lambda L: dW, "dW", ("dW", l, None), l, None,
                    "eq. (7)"),
                Def(lambda L: self.db(l), lambda L: db, "db", ("db", l, None), l, None,
                    "eq. (8)")]

    def update_matrix(self, l):
        eta = self.const("eta")
        return [Def(lambda L: self.W(l), lambda L: Add((self.W(l), Neg(Mul((eta, self.dW(l)))))),
                    "W", ("Wn", l, None), l, None, "eq. (9)", relation="<-"),
                Def(lambda L: self.b(l), lambda L: Add((self.b(l), Neg(Mul((eta, self.db(l)))))),
                    "b", ("bn", l, None), l, None, "eq. (9)", relation="<-")]


def with_theta(V):
    """Add the bias-column matrices [b | W] of the updated parameters and the gradients."""
    def cat(b, W):
        return tuple(None if w is None else np.concatenate([bb[:, None], w], axis=1)
                     for bb, w in zip(b, W, strict=True))
    V["theta"] = cat(V["bn"], V["Wn"])
    V["dtheta"] = cat(V["db"], V["dW"])
    return V

"""The five notations: each derivation's symbols, conventions and equations.

A :class:`Convention` knows, for one derivation,

* its symbols (``z``, ``a``, ``delta``, ``W``, ... of deltaprop's layer l, unit j);
* its values (:meth:`Convention.values`): the engine's arrays converted to the numbers that
  derivation writes (Haykin's delta is minus deltaprop's; Bishop's E sums over samples, so
  his gradient is m times deltaprop's dW; Ng's and Brawer's Theta carry the bias in
  column 0; ...);
* its equations: ``*_defs`` methods return :class:`Def` records, each an equation template
  (a function of :class:`~deltaprop.explain.leaves.Leaves`) and where its value lives;
* the names a student may use in an answers file (:attr:`Convention.answer_keys`).

The mapping is docs/derivation.md's.  Decisions that page leaves open are written in
:attr:`Convention.decisions` and printed with the solution.  Registry: :data:`NOTATIONS`,
lookup :func:`get`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .leaves import ONE
from .model import (
    Add,
    Call,
    Frac,
    Mul,
    Neg,
    Notation,
    Num,
    Paren,
    Partial,
    Pow,
    Sigma,
    Sym,
    Transpose,
)

__all__ = ["Def", "Convention", "NOTATIONS", "get", "names"]

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


def _idx(v) -> str:
    """A unit index as printed: 0-based ints from 1; letters as they are."""
    return v if isinstance(v, str) else str(v + 1)


def _shift(l, s):
    """Layer label l + s (letters stay symbolic: "l+1")."""
    if isinstance(l, str):
        return f"{l}+{s}" if s else l
    return l + s


def _diff(x, y):
    return Paren(Add((x, Neg(y))))


def _sum(terms):
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
                sub = (_idx(i), *sub)
            elif style == "arg":
                arg = f"({_idx(i)})"
            elif style == "sup":
                sup = f"{sup}({_idx(i)})"
        return Sym(base, sup, tuple(sub), prime, arg, font)

    # ------------------------------------------------------------------ symbols
    def z(self, l, j, i=None):
        return self._sym("z", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        return self._sym("a", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def y(self, j, i=None):
        return self._sym("y", "", (_idx(j),) if j is not None else (), i)

    def e(self, j, i=None):
        return self._sym("e", "", (_idx(j),) if j is not None else (), i)

    def delta(self, l, j, i=None):
        return self._sym("delta", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def _w(self, base, l, j, k, **kw):
        sub = () if j is None else ((_idx(j),) if k is None else (_idx(j), _idx(k)))
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
        """The engine's numbers (``run``: :class:`deltaprop.explain.build.Run`) as this
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
                return Mul((HALF, Pow(_diff(a, y), Num(2.0))))
            if loss == "sigmoid-cross-entropy":
                ln = Sym("ln", font="op")
                return Add((Mul((y, Call(ln, (a,)))),
                            Mul((_diff(ONE, y), Call(ln, (Add((ONE, Neg(a))),))))))
            return Mul((y, Call(Sym("ln", font="op"), (a,))))
        if explicit:
            body = _sum(term(k) for k in range(nL))
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
            body = Paren(_sum(Pow(Num(float(w)), Num(2.0)) for w in weights))
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
            rhs = lambda L: Mul((_diff(L.a(l, j), L.y(j)), L.df(l, j)))  # noqa: E731
            note = ""
        else:
            rhs = lambda L: self._softmax_mse(L, l, j)  # noqa: E731
            note = "softmax is not elementwise: f' is the Jacobian diag(a) - a a^T"
        return [Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                    self.out_ref, note)]

    def _softmax_mse(self, L, l, j):
        n = L.V["a"][l].shape[-1]
        g = [Mul((L.a(l, k), _diff(L.a(l, k), L.y(k)))) for k in range(n)]
        return Mul((L.a(l, j), Paren(Add((_diff(L.a(l, j), L.y(j)), Neg(Paren(_sum(g))))))))

    # --- hidden errors
    hidden_ref = "eq. (6)"

    def hidden_def(self, l, i, j, n_next):
        def rhs(L):
            s = _sum(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
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


# ====================================================================== Haykin
class Haykin(Convention):
    """Haykin: local gradient delta_j = -dE/dv_j, error signal e_j = d_j - y_j."""

    key = "haykin"
    name = "Haykin's"
    title = "Haykin: local gradients delta_j = -dE/dv_j, error signals e_j = d_j - y_j"
    source = ("S. Haykin, Neural Networks and Learning Machines, the back-propagation "
              "algorithm (rules 1 and 2 for output and hidden neurons)")
    glossary = (
        "v_j^(l) the induced local field of neuron j in layer l (deltaprop's z); "
        "y_j^(l) = phi(v_j^(l)) its output (deltaprop's a); x_i the input",
        "d_j the desired response (deltaprop's y); e_j = d_j - y_j the error signal; "
        "E = (1/2N) sum_n sum_j e_j^2 the empirical risk",
        "delta_j = -dE/dv_j the local gradient: MINUS deltaprop's delta",
        "w_ji^(l) the weight from neuron i to neuron j; w_j0 the bias (input y_0 = +1); "
        "Delta w_ji = eta delta_j y_i the correction: w_ji <- w_ji + Delta w_ji",
    )
    decisions = (
        "Haykin's correction Delta w_ji = eta delta_j y_i is the step itself (minus eta "
        "times deltaprop's dW); in answers, Delta_w stands for dW and db (bias column 0).",
        "With N samples, Delta w_ji = (eta/N) sum_n delta_j(n) y_i(n): Haykin's batch "
        "risk E = (1/2N) sum is deltaprop's mse, so the steps are the same.",
    )
    sample_letter = "n"
    sample_style = "arg"
    bias_column = True
    answer_keys = {
        "v": ("z", 0, "v_j^(l), the induced local fields"),
        "y": ("a", 0, "y_j^(l) = phi(v_j^(l)), the outputs"),
        "e": ("e", None, "e_j = d_j - y_j at the output"),
        "delta": ("delta", 0, "delta_j^(l) = -dE/dv_j: minus deltaprop's"),
        "Delta_w": ("dtheta", 0, "Delta w_ji^(l) = eta delta_j y_i; column 0 the bias "
                    "(or the weights alone)"),
        "w": ("theta", 0, "w_ji^(l) after the update; column 0 the bias (or the weights alone)"),
        "E": ("J", None, "the empirical risk E"),
    }

    def layer_sup(self, l):
        return f"({l})"

    param_sup = layer_sup

    def layer_title(self, l, L):
        return super().layer_title(l, L)

    def z(self, l, j, i=None):
        return self._sym("v", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        if l == 0:
            return self._sym("x", "", (_idx(j),) if j is not None else (), i)
        return self._sym("y", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def y(self, j, i=None):
        return self._sym("d", "", (_idx(j),) if j is not None else (), i)

    def W(self, l, j=None, k=None):
        return self._w("w", l, j, k)

    def b(self, l, j=None):
        sub = () if j is None else (_idx(j), "0")
        return Sym("w", self.param_sup(l), sub)

    def dW(self, l, j=None, k=None):
        return Mul((Sym("Delta"), self._w("w", l, j, k)))

    def db(self, l, j=None):
        return Mul((Sym("Delta"), self.b(l, j)))

    def f(self, l, prime=False):
        return Sym("varphi", prime=prime)

    def J(self):
        return Sym("E", font="cal")

    def const(self, name):
        return Sym({"eta": "eta", "m": "N", "lam": "lambda"}[name])

    def values(self, run):
        V = super().values(run)
        V["delta"] = tuple(None if d is None else -d for d in run.delta)
        V["dW"] = tuple(None if d is None else -run.eta * d for d in run.dW)
        V["db"] = tuple(None if d is None else -run.eta * d for d in run.db)
        return _with_theta(V)

    z_ref = "v_j = sum_i w_ji y_i (i = 0: the bias, y_0 = +1)"
    a_ref = "y_j = phi(v_j)"
    loss_ref = "E = (1/2N) sum_n sum_j e_j(n)^2"

    def per_sample_loss(self, L, loss, nL, explicit, l_out):
        if loss != "mse":
            return super().per_sample_loss(L, loss, nL, explicit, l_out)
        if not explicit:
            return Sigma("j", ONE, Sym("n", "", ("L",)), Mul((HALF, Pow(L.e("j"), Num(2.0)))))
        return _sum(Mul((HALF, Pow(_diff(L.y(k), L.a(l_out, k)) if L.numeric else L.e(k),
                                   Num(2.0)))) for k in range(nL))

    def loss_note(self, loss):
        if loss != "mse":
            return ("Haykin's risk is the squared error; this spec's loss is " + loss +
                    ", written as deltaprop's J")
        return ""

    def output_defs(self, l, i, j, loss, elementwise):
        if loss != "mse":
            return [Def(lambda L: L.delta(l, j), lambda L: Add((L.y(j), Neg(L.a(l, j)))),
                        "delta", ("delta", l, (i, j)), l, (i, j),
                        "delta_j = -dE/dv_j", "cross-entropy with its matched output: "
                        "phi' cancels, delta_j = d_j - y_j (minus deltaprop's a - y)")]
        e = Def(lambda L: L.e(j), lambda L: Add((L.y(j), Neg(L.a(l, j)))), "e",
                ("e", None, (i, j)), l, (i, j), "e_j = d_j - y_j")
        if elementwise:
            rhs = lambda L: Mul((L.e(j), L.df(l, j)))  # noqa: E731
        else:
            rhs = lambda L: Neg(self._softmax_mse(L, l, j))  # noqa: E731
        return [e, Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                       "rule (1): delta_j = e_j phi'(v_j)",
                       "Haykin's delta is minus deltaprop's (e_j = d_j - y_j)")]

    def hidden_def(self, l, i, j, n_next):
        def rhs(L):
            s = _sum(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
            return Mul((L.df(l, j), Paren(s) if n_next > 1 else s))
        return Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                   "rule (2): delta_j = phi'(v_j) sum_k delta_k w_kj")

    def grad_defs(self, l, j, k):
        if k is None:
            rhs = lambda L: L.over_samples(lambda Li: Li.delta(l, j), factor=L.c("eta"))  # noqa: E731
            return [Def(lambda L: self.db(l, j), rhs, "db", ("db", l, (j,)), l, (j,),
                        "Delta w_j0 = eta delta_j y_0, y_0 = +1")]

        def rhs(L):
            g = L.over_samples(lambda Li: Mul((Li.delta(l, j), Li.a(l - 1, k))),
                               factor=L.c("eta"))
            if L.V["lam"]:
                g = Add((g, Neg(Mul((Frac(Mul((L.c("eta"), L.c("lam"))), L.c("m")),
                                     L.W(l, j, k))))))
            return g
        return [Def(lambda L: self.dW(l, j, k), rhs, "dW", ("dW", l, (j, k)), l, (j, k),
                    "Delta w_ji = eta delta_j y_i")]

    def update_defs(self, l, j, k):
        if k is None:
            return [Def(lambda L: self.b(l, j), lambda L: Add((L.b(l, j), L.db(l, j))), "b",
                        ("bn", l, (j,)), l, (j,), "w_j0 <- w_j0 + Delta w_j0", relation="<-")]
        return [Def(lambda L: self.W(l, j, k), lambda L: Add((L.W(l, j, k), L.dW(l, j, k))),
                    "W", ("Wn", l, (j, k)), l, (j, k), "w_ji <- w_ji + Delta w_ji",
                    relation="<-")]

    def z_matrix(self, l):
        return Def(lambda L: self.z(l, None), lambda L: Mul((self.W(l), self.a(l - 1, None))),
                   "z", ("z", l, None), l, None, self.z_ref,
                   "column form per sample (w with the bias column, y with y_0 = +1); the "
                   "matrix shows one row per sample")

    def output_matrix(self, l, loss, elementwise):
        e = Add((self.y(None), Neg(self.a(l, None))))
        if loss != "mse":
            return [Def(lambda L: self.delta(l, None), lambda L: e, "delta",
                        ("delta", l, None), l, None, "delta = d - y (matched pair)")]
        return [Def(lambda L: self.e(None), lambda L: e, "e", ("e", None, None), l, None,
                    "e = d - y"),
                Def(lambda L: self.delta(l, None), lambda L: Mul((self.e(None), self.fsym(
                    l, self.z(l, None), True)), "hadamard"), "delta", ("delta", l, None), l,
                    None, "rule (1)", "minus deltaprop's delta")]

    def hidden_matrix(self, l):
        rhs = Mul((self.fsym(l, self.z(l, None), True), Paren(Mul((Transpose(self.W(l + 1)),
                                                                   self.delta(l + 1, None))))),
                  "hadamard")
        return Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                   l, None, "rule (2)", "column form per sample; one row per sample shown")

    def grad_matrix(self, l, lam):
        n = self.sample_letter
        rhs = Mul((Frac(self.const("eta"), self.const("m")), Sigma(n, ONE, self.const("m"), Mul((
            self.delta(l, None, n), Transpose(self.a(l - 1, None, n)))))))
        return [Def(lambda L: self.dW(l), lambda L: rhs, "dtheta", ("dtheta", l, None), l,
                    None, "Delta w = eta delta y^T", "column 0: the bias corrections Delta w_j0")]

    def update_matrix(self, l):
        return [Def(lambda L: self.W(l), lambda L: Add((self.W(l), self.dW(l))), "theta",
                    ("theta", l, None), l, None, "w <- w + Delta w", "column 0: the biases",
                    relation="<-")]


def _with_theta(V):
    """Add the bias-column matrices [b | W] of the updated parameters and the gradients."""
    def cat(b, W):
        return tuple(None if w is None else np.concatenate([bb[:, None], w], axis=1)
                     for bb, w in zip(b, W, strict=True))
    V["theta"] = cat(V["bn"], V["Wn"])
    V["dtheta"] = cat(V["db"], V["dW"])
    return V


# ====================================================================== Bishop
class Bishop(Convention):
    """After Bishop: a_k the weighted sum, z_k = h(a_k); delta w.r.t. the activation output."""

    key = "bishop"
    name = "the Bishop-style"
    title = ("Bishop-style: a_k = sum_j w_kj z_j + b_k, z_k = h(a_k), delta_k = dE/dz_k "
             "(with respect to the activation output)")
    source = ("after C. M. Bishop, Pattern Recognition and Machine Learning (2006), section "
              "5.3, as the 'Error Backpropagation' notes (2023) write it: equations (1)-(4)")
    glossary = (
        "the letters are swapped: a_k^(l) is the weighted sum (deltaprop's z), "
        "z_k^(l) = h(a_k^(l)) the activation output (deltaprop's a); x the input",
        "delta_k^(l) = dE/dz_k^(l), with respect to the OUTPUT z (deltaprop's delta[l] is "
        "this times h'(a^(l)))",
        "E = sum_n (1/2) sum_k (z_k - y_k)^2 sums over the N samples (no 1/N): its "
        "gradient is N times deltaprop's dW",
        "w_kj^(l) from unit j of layer l-1 to unit k of layer l; b_k^(l) the bias of unit k",
    )
    decisions = (
        "Bishop's own eq. (5.51) takes delta with respect to the weighted sum (as deltaprop "
        "does); this notation follows the notes' delta with respect to the activation "
        "output, as docs/derivation.md maps seed 002.",
        "The notes' E sums over samples without 1/N, so dE/dw = N dW; deltaprop's step "
        "W - eta dW is written w <- w - (eta/N) dE/dw, and L2 as (lambda/2) sum w^2.",
        "For cross-entropy the output delta is dE/dz = (z - y)/(z (1 - z)) (sigmoid) or "
        "-y/z (softmax): the division deltaprop never does, shown because this notation "
        "needs it.",
    )
    sample_letter = "n"
    answer_keys = {
        "a": ("z", 0, "a_k^(l), the weighted sums (deltaprop's z)"),
        "z": ("a", 0, "z_k^(l) = h(a_k^(l)), the outputs (deltaprop's a)"),
        "delta": ("delta", 0, "delta_k^(l) = dE/dz_k^(l), w.r.t. the activation output"),
        "dE_dw": ("dW", 0, "dE/dw_kj^(l), summed over samples"),
        "dE_db": ("db", 0, "dE/db_k^(l), summed over samples"),
        "w": ("Wn", 0, "w^(l) after the update"),
        "b": ("bn", 0, "b^(l) after the update"),
        "E": ("J", None, "E, summed over samples"),
    }

    def layer_sup(self, l):
        return f"({l})"

    param_sup = layer_sup

    def z(self, l, j, i=None):
        return self._sym("a", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        if l == 0:
            return self._sym("x", "", (_idx(j),) if j is not None else (), i)
        return self._sym("z", self.layer_sup(l), (_idx(j),) if j is not None else (), i)

    def W(self, l, j=None, k=None):
        return self._w("w", l, j, k)

    def dW(self, l, j=None, k=None):
        if j is None:
            return Partial(Sym("E"), self.W(l))
        return Partial(Sym("E"), self.W(l, j, k))

    def db(self, l, j=None):
        return Partial(Sym("E"), self.b(l, j))

    def f(self, l, prime=False):
        return Sym("h", prime=prime)

    def J(self):
        return Sym("E")

    def const(self, name):
        return Sym({"eta": "eta", "m": "N", "lam": "lambda"}[name])

    def values(self, run):
        V = super().values(run)
        m = run.m
        V["delta"] = run.dJ_da
        V["dW"] = tuple(None if d is None else m * d for d in run.dW)
        V["db"] = tuple(None if d is None else m * d for d in run.db)
        V["J"] = m * run.J
        V["dE_da"] = run.delta
        return V

    z_ref = "(3)"
    a_ref = "(4)"
    loss_ref = "(1): E = sum_n (1/2) sum_k (z_k - y_k)^2"

    def loss_def(self, loss, nL, l_out, explicit, lam, weights):
        def rhs(L):
            E = L.over_samples(lambda Li: self.per_sample_loss(Li, loss, nL, explicit, l_out),
                               mean=False)
            return Add((E, self.penalty(L, weights, m_mean=False))) if lam else E
        return Def(lambda L: self.J(), rhs, "J", ("J", None, ()), None, (), self.loss_ref,
                   "E sums over the samples: N times deltaprop's J")

    def output_defs(self, l, i, j, loss, elementwise):
        if loss == "mse":
            rhs = lambda L: Add((L.a(l, j), Neg(L.y(j))))  # noqa: E731
            note = "dE/dz_k with respect to the output z = h(a): no h' here"
        elif loss == "sigmoid-cross-entropy":
            rhs = lambda L: Frac(Add((L.a(l, j), Neg(L.y(j)))), Mul((L.a(l, j), Paren(Add((  # noqa: E731
                ONE, Neg(L.a(l, j))))))))
            note = "dE/dz for cross-entropy; times h'(a) = z (1 - z) it gives z - y"
        else:
            rhs = lambda L: Neg(Frac(L.y(j), L.a(l, j)))  # noqa: E731
            note = "dE/dz for softmax cross-entropy"
        return [Def(lambda L: L.delta(l, j), rhs, "dJ_da", ("delta", l, (i, j)), l, (i, j),
                    "delta_k = dE/dz_k", note)]

    def hidden_def(self, l, i, j, n_next):
        soft = not _elementwise_at(self, l + 1)

        def rhs(L):
            if soft:  # softmax output: h' is a Jacobian; use dE/da_k (deltaprop's delta)
                terms = (Mul((L.dEda(l + 1, k), L.W(l + 1, k, j)))
                         for k in range(n_next))
            else:
                terms = (Mul((L.delta(l + 1, k), L.df(l + 1, k), L.W(l + 1, k, j)))
                         for k in range(n_next))
            return _sum(terms)
        return Def(lambda L: L.delta(l, j), rhs, "dJ_da", ("delta", l, (i, j)), l, (i, j),
                   "delta_j = sum_k delta_k h'(a_k) w_kj",
                   "the h' of the layer above, not this layer's" +
                   ("; softmax above: dE/da_k is used (h' is a Jacobian)" if soft else ""))

    def _dEdz_times_h(self, L, l, j):
        if not _elementwise_at(self, l):
            return L.dEda(l, j)
        return Mul((L.delta(l, j), L.df(l, j)))

    def grad_defs(self, l, j, k):
        if k is None:
            rhs = lambda L: L.over_samples(lambda Li: self._dEdz_times_h(Li, l, j), mean=False)  # noqa: E731
            return [Def(lambda L: self.db(l, j), rhs, "db", ("db", l, (j,)), l, (j,),
                        "(2): dE/db_k = sum_n delta_k h'(a_k)")]

        def rhs(L):
            g = L.over_samples(lambda Li: Mul((self._dEdz_times_h(Li, l, j), Li.a(l - 1, k))),
                               mean=False)
            if L.V["lam"]:
                g = Add((g, Mul((L.c("lam"), L.W(l, j, k)))))
            return g
        return [Def(lambda L: self.dW(l, j, k), rhs, "dW", ("dW", l, (j, k)), l, (j, k),
                    "(2): dE/dw_kj = sum_n delta_k h'(a_k) z_j",
                    "summed over the samples: N times deltaprop's dW")]

    def update_defs(self, l, j, k):
        def step(p, g):
            return lambda L: Add((p(L), Neg(Mul((Frac(L.c("eta"), L.c("m")), g(L))))))
        if k is None:
            return [Def(lambda L: self.b(l, j), step(lambda L: L.b(l, j), lambda L: L.db(l, j)),
                        "b", ("bn", l, (j,)), l, (j,), "b <- b - (eta/N) dE/db",
                        relation="<-")]
        return [Def(lambda L: self.W(l, j, k), step(lambda L: L.W(l, j, k),
                                                   lambda L: L.dW(l, j, k)),
                    "W", ("Wn", l, (j, k)), l, (j, k), "w <- w - (eta/N) dE/dw",
                    "deltaprop's step on the mean cost, written on Bishop's summed E",
                    relation="<-")]

    def z_matrix(self, l):
        return Def(lambda L: self.z(l, None), lambda L: Add((Mul((self.W(l), self.a(
            l - 1, None))), self.b(l))), "z", ("z", l, None), l, None, "(3)",
            "column form per sample; the matrix shows one row per sample")

    def output_matrix(self, l, loss, elementwise):
        return [Def(lambda L: self.delta(l, None), lambda L: Add((self.a(l, None), Neg(self.y(
            None)))) if loss == "mse" else Partial(Sym("E"), self.a(l, None)), "dJ_da",
            ("delta", l, None), l, None, "delta = dE/dz")]

    def hidden_matrix(self, l):
        rhs = Mul((Transpose(self.W(l + 1)), Paren(Mul((self.delta(l + 1, None), self.fsym(
            l + 1, self.z(l + 1, None), True)), "hadamard"))))
        return Def(lambda L: self.delta(l, None), lambda L: rhs, "dJ_da", ("delta", l, None),
                   l, None, "delta_j = sum_k delta_k h'(a_k) w_kj", "one row per sample")

    def grad_matrix(self, l, lam):
        n = self.sample_letter
        gz = Mul((self.delta(l, None, n), self.fsym(l, self.z(l, None, n), True)), "hadamard")
        dW = Sigma(n, ONE, self.const("m"), Mul((Paren(gz), Transpose(self.a(l - 1, None, n)))))
        if lam:
            dW = Add((dW, Mul((self.const("lam"), self.W(l)))))
        db = Sigma(n, ONE, self.const("m"), gz)
        return [Def(lambda L: self.dW(l), lambda L: dW, "dW", ("dW", l, None), l, None, "(2)"),
                Def(lambda L: self.db(l), lambda L: db, "db", ("db", l, None), l, None, "(2)")]

    def update_matrix(self, l):
        step = Frac(self.const("eta"), self.const("m"))
        return [Def(lambda L: self.W(l), lambda L: Add((self.W(l), Neg(Mul((step, self.dW(
            l)))))), "W", ("Wn", l, None), l, None, "w <- w - (eta/N) dE/dw", relation="<-"),
                Def(lambda L: self.b(l), lambda L: Add((self.b(l), Neg(Mul((step, self.db(
                    l)))))), "b", ("bn", l, None), l, None, "b <- b - (eta/N) dE/db",
                    relation="<-")]


def _elementwise_at(nt, l):
    return nt._acts[l].elementwise


# ====================================================================== Ng
class Ng(Convention):
    """Andrew Ng's course: layers from 1 (a^(1) = x), Theta^(l) = [b | W], Delta and D."""

    key = "ng"
    name = "Ng's course's"
    title = ("Ng's course: a^(1) = x, z^(l+1) = Theta^(l) a^(l) with a_0 = 1, "
             "delta^(l) = dJ/dz^(l), Delta^(l) accumulated, D^(l) = Delta^(l)/m + ...")
    source = "Andrew Ng, Machine Learning (Coursera), lectures and exercise 4 (backpropagation)"
    glossary = (
        "layers are numbered from 1: a^(1) = x, so the course's layer l+1 is deltaprop's "
        "layer l; z^(l+1), a^(l+1) = g(z^(l+1)), delta^(l+1) are deltaprop's z[l], a[l], "
        "delta[l]",
        "Theta^(l) maps layer l to l+1 and holds the bias in column 0 (a_0 = 1): "
        "Theta^(l) = [b[l] | W[l]]",
        "Delta^(l) = sum over samples of delta^(l+1) (a^(l))^T; D^(l) = Delta^(l)/m + "
        "(lambda/m) Theta^(l) off the bias column: the gradient [db[l] | dW[l]]",
        "J = (1/m) sum of the per-sample costs + (lambda/2m) sum of the non-bias Theta^2; "
        "alpha the learning rate",
    )
    decisions = (
        "The course writes delta^(L) = a^(L) - y for its cross-entropy cost; with another "
        "loss (e.g. squared error) the factor g'(z^(L)) is kept.",
        "The course computes a bias entry delta_0 in the hidden recursion and drops it; "
        "deltaprop's W has no bias column, so nothing is dropped here.",
    )
    bias_first = True
    bias_column = True
    sample_style = "sup"
    answer_keys = {
        "z": ("z", 1, "z^(l), l = 2..L+1 (the course's numbering)"),
        "a": ("a", 1, "a^(l) without the bias unit, l = 2..L+1"),
        "delta": ("delta", 1, "delta^(l), l = 2..L+1"),
        "Delta": ("Delta", 0, "Delta^(l) = sum delta^(l+1) a^(l)T, with the bias column 0"),
        "D": ("dtheta", 0, "D^(l), the gradient with the bias column 0"),
        "Theta": ("theta", 0, "Theta^(l) after the update, bias column 0"),
        "J": ("J", None, "the cost J"),
    }

    def layer_sup(self, l):
        return f"({_shift(l, 1)})"

    def param_sup(self, l):
        return f"({l})"

    def layer_title(self, l, L):
        return f"{super().layer_title(l, L).replace(f'layer {l}', f'layer {l + 1}')}" \
               f" (deltaprop's layer {l})"

    def W(self, l, j=None, k=None):
        if j is None:
            return Sym("Theta", self.param_sup(l))
        return Sym("Theta", self.param_sup(l), (_idx(j), _idx(k) if k is not None else "0"))

    def b(self, l, j=None):
        return Sym("Theta", self.param_sup(l), (_idx(j), "0") if j is not None else ())

    def dW(self, l, j=None, k=None):
        if j is None:
            return Sym("D", self.param_sup(l))
        return Sym("D", self.param_sup(l), (_idx(j), _idx(k) if k is not None else "0"))

    def db(self, l, j=None):
        return Sym("D", self.param_sup(l), (_idx(j), "0") if j is not None else ())

    def Delta(self, l, j=None, k=None):
        if j is None:
            return Sym("Delta", self.param_sup(l))
        return Sym("Delta", self.param_sup(l), (_idx(j), _idx(k) if k is not None else "0"))

    def f(self, l, prime=False):
        return Sym("g", prime=prime)

    def const(self, name):
        return Sym({"eta": "alpha", "m": "m", "lam": "lambda"}[name])

    def values(self, run):
        V = _with_theta(super().values(run))
        V["Delta"] = tuple(None if d is None else np.concatenate(
            [s[:, None], w], axis=1) for d, s, w in zip(run.delta, run.delta_sum, run.Delta_W,
                                                        strict=True))
        return V

    z_ref = "z^(l+1) = Theta^(l) a^(l)"
    a_ref = "a^(l+1) = g(z^(l+1))"
    loss_ref = "J = (1/m) sum_i sum_k cost_k + (lambda/2m) sum Theta^2 (bias column excluded)"

    def bias_term(self, L, l, j):
        a0 = ONE if L.numeric else Sym("a", f"({l})", ("0",))
        return Mul((L.b(l, j), a0))

    def output_defs(self, l, i, j, loss, elementwise):
        (d,) = super().output_defs(l, i, j, loss, elementwise)
        note = ("the course's delta^(L) = a^(L) - y is for its cross-entropy cost; with "
                "squared error g'(z^(L)) stays") if loss == "mse" else ""
        return [Def(d.lhs, d.rhs, d.quantity, d.key, d.layer, d.index,
                    "delta^(L) = a^(L) - y" if loss != "mse" else "delta^(L) = dJ/dz^(L)", note)]

    def hidden_def(self, l, i, j, n_next):
        def rhs(L):
            s = _sum(Mul((L.W(l + 1, k, j), L.delta(l + 1, k))) for k in range(n_next))
            return Mul((Paren(s) if n_next > 1 else s, L.df(l, j)))
        return Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                   "delta^(l) = (Theta^(l))^T delta^(l+1) .* g'(z^(l))")

    def grad_defs(self, l, j, k):
        def acc(L):
            if k is None:
                return L.over_samples(lambda Li: Mul((Li.delta(l, j), ONE if L.numeric else
                                                      Sym("a", f"({l})", ("0",)))), mean=False)
            return L.over_samples(lambda Li: Mul((Li.delta(l, j), Li.a(l - 1, k))), mean=False)

        def grad(L):
            g = Mul((Frac(ONE, L.c("m")), L.Delta(l, j, k)))
            if k is not None and L.V["lam"]:
                g = Add((g, Mul((Frac(L.c("lam"), L.c("m")), L.W(l, j, k)))))
            return g
        idx = (j,) if k is None else (j, k)
        col = 0 if k is None else k + 1
        return [Def(lambda L: self.Delta(l, j, k), acc, "Delta", ("Delta", l, (j, col)), l,
                    idx, "Delta^(l) := Delta^(l) + delta^(l+1) (a^(l))^T"),
                Def(lambda L: self.dW(l, j, k), grad, "db" if k is None else "dW",
                    ("db", l, (j,)) if k is None else ("dW", l, (j, k)), l, idx,
                    "D^(l) = Delta^(l)/m" + ("" if k is None else " + (lambda/m) Theta^(l)"))]

    def update_defs(self, l, j, k):
        (d,) = super().update_defs(l, j, k)
        return [Def(d.lhs, d.rhs, d.quantity, d.key, d.layer, d.index,
                    "Theta^(l) := Theta^(l) - alpha D^(l)", relation="<-")]

    def z_matrix(self, l):
        return Def(lambda L: self.z(l, None), lambda L: Mul((self.W(l), self.a(l - 1, None))),
                   "z", ("z", l, None), l, None, self.z_ref,
                   "a^(l) with the bias unit a_0 = 1 added; one row per sample shown")

    def hidden_matrix(self, l):
        rhs = Mul((Paren(Mul((Transpose(self.W(l + 1)), self.delta(l + 1, None)))),
                   self.fsym(l, self.z(l, None), True)), "hadamard")
        return Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                   l, None, "delta^(l) = (Theta^(l))^T delta^(l+1) .* g'(z^(l))",
                   "the bias row of Theta^T delta is dropped; one row per sample shown")

    def grad_matrix(self, l, lam):
        i = self.sample_letter
        acc = Sigma(i, ONE, self.const("m"), Mul((self.delta(l, None, i),
                                                  Transpose(self.a(l - 1, None, i)))))
        D = Mul((Frac(ONE, self.const("m")), self.Delta(l)))
        if lam:
            D = Add((D, Mul((Frac(self.const("lam"), self.const("m")), self.W(l)))))
        return [Def(lambda L: self.Delta(l), lambda L: acc, "Delta", ("Delta", l, None), l,
                    None, "Delta^(l) := Delta^(l) + delta^(l+1) (a^(l))^T", "bias column 0"),
                Def(lambda L: self.dW(l), lambda L: D, "dtheta", ("dtheta", l, None), l, None,
                    "D^(l)", "lambda only off the bias column 0" if lam else "")]

    def update_matrix(self, l):
        return [Def(lambda L: self.W(l), lambda L: Add((self.W(l), Neg(Mul((
            self.const("eta"), self.dW(l)))))), "theta", ("theta", l, None), l, None,
            "Theta^(l) := Theta^(l) - alpha D^(l)", relation="<-")]


# ====================================================================== Brawer
class Brawer(Convention):
    """Brawer (2017): layers 1..L with the input layer 1, theta with a bias node 0."""

    key = "brawer"
    name = "Brawer's"
    title = ("Brawer: z^l_j the value of node j in layer l (input layer 1), "
             "z^{l+1}_j = sum_k theta^(l)_{j,k} h^l(z^l_k) with the bias node k = 0")
    source = "Steven Brawer, Derivation of Back Propagation Equations (2017), eqs. (1)-(48)"
    glossary = (
        "layers 1..L with layer 1 the input (z^1 = x, eq. 1): his layer l+1 is deltaprop's "
        "layer l; z^{l+1} is deltaprop's z[l], h^{l+1}(z^{l+1}) its a[l]",
        "theta^(l)_{p,q} from node q of his layer l to node p of layer l+1; column q = 0 the "
        "bias node (z_0 = 1): theta^(l) = [b[l] | W[l]]",
        "delta^{l+1} is deltaprop's delta[l]; Psi^l = dh^l/dz (eq. 15), a(1 - a) for the "
        "sigmoid (15a)",
        "dJ/dtheta^(l) = (1/m) sum_i delta^{l+1} h^l(z^l) (eqs. 44, 46): [db[l] | dW[l]]",
    )
    decisions = (
        "Brawer stops at the gradient; the update theta <- theta - eta dJ/dtheta is "
        "deltaprop's eq. (9), with eta the spec's learning_rate.",
        "Brawer's (20) delta^L = h^L(z^L) - y is for his cross-entropy (18); with another "
        "loss the factor Psi^L(z^L) is kept.",
        "Brawer has no L2 term; with lambda > 0 deltaprop's (lambda/2m) sum of the non-bias "
        "theta^2 is added.",
    )
    bias_first = True
    bias_column = True
    sample_style = "none"
    answer_keys = {
        "z": ("z", 1, "z^l, l = 2..L+1 (his numbering; the input is layer 1)"),
        "h": ("a", 1, "h^l(z^l), l = 2..L+1"),
        "delta": ("delta", 1, "delta^l, l = 2..L+1"),
        "dJ_dtheta": ("dtheta", 0, "dJ/dtheta^(l), bias column 0"),
        "theta": ("theta", 0, "theta^(l) after the update, bias column 0"),
        "J": ("J", None, "the cost J"),
    }

    def layer_sup(self, l):
        return f"{_shift(l, 1)}"

    def param_sup(self, l):
        return f"({l})"

    def layer_title(self, l, L):
        return f"{super().layer_title(l, L).replace(f'layer {l}', f'layer {l + 1}')}" \
               f" (deltaprop's layer {l})"

    def a(self, l, j, i=None):
        if l == 0:
            return Sym("x", "", (_idx(j),) if j is not None else ())
        return Call(self.f(l), (self.z(l, j, i),))

    def _theta(self, base, l, j, k, zero=False):
        if j is None:
            return Sym(base, self.param_sup(l))
        return Sym(base, self.param_sup(l), (f"{_idx(j)},{'0' if zero else _idx(k)}",))

    def W(self, l, j=None, k=None):
        return self._theta("theta", l, j, k)

    def b(self, l, j=None):
        return self._theta("theta", l, j, None, zero=True)

    def dW(self, l, j=None, k=None):
        return Partial(Sym("J"), self._theta("theta", l, j, k))

    def db(self, l, j=None):
        return Partial(Sym("J"), self._theta("theta", l, j, None, zero=True))

    def f(self, l, prime=False):
        return Sym("Psi" if prime else "h", f"{_shift(l, 1)}")

    def values(self, run):
        return _with_theta(super().values(run))

    z_ref = "eq. (5), bias term (8a)"
    a_ref = "h^l(z), eq. (3)"
    loss_ref = "eq. (18)"
    out_ref = "eqs. (20), (42)"
    hidden_ref = "eqs. (43), (48)"

    def loss_note(self, loss):
        return "" if loss == "sigmoid-cross-entropy" else \
            f"Brawer's (18) is cross-entropy; this spec's loss is {loss}"

    def output_defs(self, l, i, j, loss, elementwise):
        (d,) = super().output_defs(l, i, j, loss, elementwise)
        note = "(20) is for cross-entropy; with squared error Psi^L(z^L) stays" \
            if loss == "mse" else ""
        return [Def(d.lhs, d.rhs, d.quantity, d.key, d.layer, d.index, self.out_ref, note)]

    def hidden_def(self, l, i, j, n_next):
        def rhs(L):
            s = _sum(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
            return Mul((Paren(s) if n_next > 1 else s, L.df(l, j)))
        return Def(lambda L: L.delta(l, j), rhs, "delta", ("delta", l, (i, j)), l, (i, j),
                   "eq. (43)")

    def grad_defs(self, l, j, k):
        (d,) = super().grad_defs(l, j, k)
        ref = "eq. (46)" if k is None else ("eqs. (44), (45)" if l == 1 else "eq. (44)")
        return [Def(d.lhs, d.rhs, d.quantity, d.key, d.layer, d.index, ref)]

    def update_defs(self, l, j, k):
        (d,) = super().update_defs(l, j, k)
        return [Def(d.lhs, d.rhs, d.quantity, d.key, d.layer, d.index,
                    "theta <- theta - eta dJ/dtheta (deltaprop's eq. (9))", relation="<-")]

    def z_matrix(self, l):
        inp = self.a(l - 1, None)
        return Def(lambda L: self.z(l, None), lambda L: Mul((self.W(l), inp)), "z",
                   ("z", l, None), l, None, "eq. (5)",
                   "with the bias node z_0 = 1; one row per sample shown")

    def a_matrix(self, l):
        return Def(lambda L: self.a(l, None), lambda L: self.a(l, None), "a", ("a", l, None),
                   l, None, self.a_ref)

    def output_matrix(self, l, loss, elementwise):
        d = Add((self.a(l, None), Neg(self.y(None))))
        rhs = d if loss != "mse" else Mul((Paren(d), Call(self.f(l, True), (self.z(l, None),))),
                                          "hadamard")
        return [Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                    l, None, self.out_ref)]

    def hidden_matrix(self, l):
        rhs = Mul((Paren(Mul((Transpose(self.W(l + 1)), self.delta(l + 1, None)))),
                   Call(self.f(l, True), (self.z(l, None),))), "hadamard")
        return Def(lambda L: self.delta(l, None), lambda L: rhs, "delta", ("delta", l, None),
                   l, None, "eq. (48)", "the bias column of theta is not used; one row per "
                   "sample shown")

    def grad_matrix(self, l, lam):
        rhs = Mul((Frac(ONE, self.const("m")), Sigma("i", ONE, self.const("m"), Mul((
            self.delta(l, None), Transpose(self.a(l - 1, None)))))))
        return [Def(lambda L: self.dW(l), lambda L: rhs, "dtheta", ("dtheta", l, None), l,
                    None, "eqs. (44), (46)", "with the bias node: column 0 is eq. (46)")]

    def update_matrix(self, l):
        return [Def(lambda L: self.W(l), lambda L: Add((self.W(l), Neg(Mul((
            self.const("eta"), self.dW(l)))))), "theta", ("theta", l, None), l, None,
            "theta <- theta - eta dJ/dtheta", relation="<-")]


#: key -> Convention class
NOTATIONS = {c.key: c for c in (Convention, Haykin, Bishop, Ng, Brawer)}


def names() -> list[str]:
    return list(NOTATIONS)


def get(name, acts=None) -> Convention:
    """A fresh :class:`Convention` for ``name`` (``acts``: the network's activations)."""
    key = str(name).strip().lower()
    if key not in NOTATIONS:
        raise ValueError(f"unknown notation {name!r}; known: {', '.join(NOTATIONS)}")
    nt = NOTATIONS[key]()
    nt._acts = acts
    return nt

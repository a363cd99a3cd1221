"""Bishop-style notation: a the weighted sum, z = h(a), delta with respect to the output z."""

from __future__ import annotations

from ..leaves import ONE
from ..model import (
    Add,
    Frac,
    Mul,
    Neg,
    Paren,
    Partial,
    Sigma,
    Sym,
    Transpose,
)
from .base import Convention, Def, shown, sum_of


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
        "output, as docs/derivation.md maps the notes after Bishop.",
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
        return self._sym("a", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        if l == 0:
            return self._sym("x", "", (shown(j),) if j is not None else (), i)
        return self._sym("z", self.layer_sup(l), (shown(j),) if j is not None else (), i)

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
            return sum_of(terms)
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

"""Andrew Ng's course: layers from 1, Theta = [b | W], Delta accumulated, D = Delta/m + ...."""

from __future__ import annotations

import numpy as np

from ..leaves import ONE
from ..model import (
    Add,
    Frac,
    Mul,
    Neg,
    Paren,
    Sigma,
    Sym,
    Transpose,
)
from .base import Convention, Def, layer_shift, shown, sum_of, with_theta


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
        return f"({layer_shift(l, 1)})"

    def param_sup(self, l):
        return f"({l})"

    def layer_title(self, l, L):
        return f"{super().layer_title(l, L).replace(f'layer {l}', f'layer {l + 1}')}" \
               f" (deltaprop's layer {l})"

    def W(self, l, j=None, k=None):
        if j is None:
            return Sym("Theta", self.param_sup(l))
        return Sym("Theta", self.param_sup(l), (shown(j), shown(k) if k is not None else "0"))

    def b(self, l, j=None):
        return Sym("Theta", self.param_sup(l), (shown(j), "0") if j is not None else ())

    def dW(self, l, j=None, k=None):
        if j is None:
            return Sym("D", self.param_sup(l))
        return Sym("D", self.param_sup(l), (shown(j), shown(k) if k is not None else "0"))

    def db(self, l, j=None):
        return Sym("D", self.param_sup(l), (shown(j), "0") if j is not None else ())

    def Delta(self, l, j=None, k=None):
        if j is None:
            return Sym("Delta", self.param_sup(l))
        return Sym("Delta", self.param_sup(l), (shown(j), shown(k) if k is not None else "0"))

    def f(self, l, prime=False):
        return Sym("g", prime=prime)

    def const(self, name):
        return Sym({"eta": "alpha", "m": "m", "lam": "lambda"}[name])

    def values(self, run):
        V = with_theta(super().values(run))
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
            s = sum_of(Mul((L.W(l + 1, k, j), L.delta(l + 1, k))) for k in range(n_next))
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

"""Haykin's notation: local gradients delta_j = -dE/dv_j, error signals e_j = d_j - y_j."""

from __future__ import annotations

from ..leaves import ONE
from ..model import (
    Add,
    Frac,
    Mul,
    Neg,
    Num,
    Paren,
    Pow,
    Sigma,
    Sym,
    Transpose,
)
from .base import HALF, Convention, Def, difference, shown, sum_of, with_theta


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
        return self._sym("v", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def a(self, l, j, i=None):
        if l == 0:
            return self._sym("x", "", (shown(j),) if j is not None else (), i)
        return self._sym("y", self.layer_sup(l), (shown(j),) if j is not None else (), i)

    def y(self, j, i=None):
        return self._sym("d", "", (shown(j),) if j is not None else (), i)

    def W(self, l, j=None, k=None):
        return self._w("w", l, j, k)

    def b(self, l, j=None):
        sub = () if j is None else (shown(j), "0")
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
        return with_theta(V)

    z_ref = "v_j = sum_i w_ji y_i (i = 0: the bias, y_0 = +1)"
    a_ref = "y_j = phi(v_j)"
    loss_ref = "E = (1/2N) sum_n sum_j e_j(n)^2"

    def per_sample_loss(self, L, loss, nL, explicit, l_out):
        if loss != "mse":
            return super().per_sample_loss(L, loss, nL, explicit, l_out)
        if not explicit:
            return Sigma("j", ONE, Sym("n", "", ("L",)), Mul((HALF, Pow(L.e("j"), Num(2.0)))))
        return sum_of(Mul((HALF, Pow(difference(L.y(k), L.a(l_out, k)) if L.numeric else L.e(k),
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
            s = sum_of(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
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

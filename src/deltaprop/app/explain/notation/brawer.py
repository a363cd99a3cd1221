"""Brawer (2017): the input is layer 1, theta with a bias node 0, his equation numbers."""

from __future__ import annotations

from ..leaves import ONE
from ..model import (
    Add,
    Call,
    Frac,
    Mul,
    Neg,
    Paren,
    Partial,
    Sigma,
    Sym,
    Transpose,
)
from .base import Convention, Def, layer_shift, shown, sum_of, with_theta


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
        return f"{layer_shift(l, 1)}"

    def param_sup(self, l):
        return f"({l})"

    def layer_title(self, l, L):
        return f"{super().layer_title(l, L).replace(f'layer {l}', f'layer {l + 1}')}" \
               f" (deltaprop's layer {l})"

    def a(self, l, j, i=None):
        if l == 0:
            return Sym("x", "", (shown(j),) if j is not None else ())
        return Call(self.f(l), (self.z(l, j, i),))

    def _theta(self, base, l, j, k, zero=False):
        if j is None:
            return Sym(base, self.param_sup(l))
        return Sym(base, self.param_sup(l), (f"{shown(j)},{'0' if zero else shown(k)}",))

    def W(self, l, j=None, k=None):
        return self._theta("theta", l, j, k)

    def b(self, l, j=None):
        return self._theta("theta", l, j, None, zero=True)

    def dW(self, l, j=None, k=None):
        return Partial(Sym("J"), self._theta("theta", l, j, k))

    def db(self, l, j=None):
        return Partial(Sym("J"), self._theta("theta", l, j, None, zero=True))

    def f(self, l, prime=False):
        return Sym("Psi" if prime else "h", f"{layer_shift(l, 1)}")

    def values(self, run):
        return with_theta(super().values(run))

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
            s = sum_of(Mul((L.delta(l + 1, k), L.W(l + 1, k, j))) for k in range(n_next))
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

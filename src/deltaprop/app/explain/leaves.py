"""Leaves of the equations: a notation's symbols, or the engine's numbers in its place.

An equation template is written once, as a function of a :class:`Leaves` ``L``; called with
``L.mode == "symbolic"`` it gives the derivation's equation, with ``"expanded"`` the same
with the activation written out (f'(z) = a (1 - a) for sigmoid), with ``"numeric"`` the
numbers substituted.  The numbers come from the notation's value table (``V``, see
:meth:`deltaprop.app.explain.notation.Convention.values`), which holds the engine's arrays in
the notation's conventions (e.g. Haykin's delta = minus deltaprop's).

Indices: ``l`` is deltaprop's layer, ``j``, ``k`` are 0-based units (printed from 1), ``i``
a 0-based sample (or, symbolically, a letter; ``None``: the sample is implicit).
"""

from __future__ import annotations

from .model import Add, Call, Frac, Mul, Neg, Num, Paren, Partial, Pow, Sigma, Sym

__all__ = ["Leaves", "E", "ONE"]

ONE = Num(1.0)
E = Sym("e", font="rm")


def _op(name):
    return Sym(name, font="op")


class Leaves:
    """Symbols or numbers for the templates of one notation, one sample."""

    def __init__(self, nt, V, mode, sample=None, m=1):
        self.nt, self.V, self.mode, self.sample, self.m = nt, V, mode, sample, m

    @property
    def numeric(self) -> bool:
        return self.mode == "numeric"

    def at(self, i) -> Leaves:
        """The same leaves for sample ``i`` (an int, or a letter in symbolic mode)."""
        return Leaves(self.nt, self.V, self.mode, i, self.m)

    # ------------------------------------------------------------------ per-sample values
    def _i(self):
        return 0 if self.sample is None or isinstance(self.sample, str) else self.sample

    def _sym_i(self):
        """The sample index a symbol carries: None when implicit (m = 1 or one section)."""
        return self.sample if isinstance(self.sample, str) else None

    def _num(self, key, l, *idx):
        arr = self.V[key] if l is None else self.V[key][l]
        return Num(float(arr[idx]))

    def z(self, l, j):
        if self.numeric:
            return self._num("z", l, self._i(), j)
        return self.nt.z(l, j, self._sym_i())

    def a(self, l, j):
        """Layer l's output (l = 0: the input); in Brawer's notation h^l(z^l_j), an Expr."""
        if self.numeric:
            return self._num("a", l, self._i(), j)
        return self.nt.a(l, j, self._sym_i())

    def y(self, j):
        if self.numeric:
            return self._num("y", None, self._i(), j)
        return self.nt.y(j, self._sym_i())

    def delta(self, l, j):
        if self.numeric:
            return self._num("delta", l, self._i(), j)
        return self.nt.delta(l, j, self._sym_i())

    def e(self, j):
        if self.numeric:
            return self._num("e", None, self._i(), j)
        return self.nt.e(j, self._sym_i())

    def dEda(self, l, j):
        """dE/da_j of layer l (Bishop's letters: a the weighted sum): deltaprop's delta."""
        if self.numeric:
            return self._num("dE_da", l, self._i(), j)
        return Partial(Sym("E"), self.nt.z(l, j, self._sym_i()))

    # ------------------------------------------------------------------ parameters
    def W(self, l, j, k):
        return self._num("W", l, j, k) if self.numeric else self.nt.W(l, j, k)

    def b(self, l, j):
        return self._num("b", l, j) if self.numeric else self.nt.b(l, j)

    def dW(self, l, j, k):
        return self._num("dW", l, j, k) if self.numeric else self.nt.dW(l, j, k)

    def db(self, l, j):
        return self._num("db", l, j) if self.numeric else self.nt.db(l, j)

    def Delta(self, l, j, k):
        """Ng's accumulator Delta^(l)_jk; k = None: the bias column k = 0."""
        if self.numeric:
            return self._num("Delta", l, j, 0 if k is None else k + 1)
        return self.nt.Delta(l, j, k)

    def c(self, name):
        """A constant: "eta" (the learning rate), "m", "lam" (lambda)."""
        if self.numeric:
            return Num(float(self.V[name]))
        return self.nt.const(name)

    # ------------------------------------------------------------------ the activation
    def f(self, l, j):
        """a = f(z) written out: sigmoid 1/(1 + e^{-z}), tanh z, ..., softmax e^{z_j}/sum."""
        act = self.V["acts"][l]
        z = self.z(l, j)
        if self.mode == "symbolic":
            return Call(self.nt.f(l), (z,))
        name = act.name
        if name == "sigmoid":
            return Frac(ONE, Add((ONE, Pow(E, Neg(z)))))
        if name == "tanh":
            return Call(_op("tanh"), (z,))
        if name == "relu":
            return Call(_op("max"), (z, Num(0.0)))
        if name == "identity":
            return z
        if name == "softplus":
            return Call(_op("ln"), (Add((ONE, Pow(E, z))),))
        if name == "softmax":
            n = self.V["a"][l].shape[-1]
            return Frac(Pow(E, z), Add(tuple(Pow(E, self.z(l, k)) for k in range(n))))
        return Call(self.nt.f(l), (z,))  # no closed form to show: the engine's value follows

    def df(self, l, j):
        """f'(z) at layer l, unit j: symbolic f'(z); expanded a (1 - a), 1 - a^2, 1;
        numeric the same with numbers (f'(z)'s value where there is no closed form)."""
        act = self.V["acts"][l]
        if self.mode == "symbolic":
            return Call(self.nt.f(l, prime=True), (self.z(l, j),))
        a = self.a(l, j)
        if act.name == "sigmoid":
            return Mul((a, Paren(Add((ONE, Neg(a))))))
        if act.name == "tanh":
            return Add((ONE, Neg(Pow(a, Num(2.0)))))
        if act.name == "identity":
            return ONE
        if self.numeric:
            return self._num("df", l, self._i(), j)
        return Call(self.nt.f(l, prime=True), (self.z(l, j),))

    # ------------------------------------------------------------------ sums over samples
    def over_samples(self, body, mean=True, factor=None):
        """(factor/m) sum_i body(sample i), or without the 1/m when ``mean`` is False.

        With m = 1 the sum and the 1/m are not written (Mazur's and Haykin's online form):
        ``factor * body``.  ``factor`` is e.g. Haykin's eta (None: no factor)."""
        m = self.m
        if m == 1:
            inner = body(self.at(0 if self.numeric else None))
            pre = factor
        else:
            if self.numeric:
                inner = Paren(Add(tuple(body(self.at(i)) for i in range(m))))
                count = Num(float(m))
            else:
                letter = self.nt.sample_letter
                inner = Sigma(letter, ONE, self.c("m"), body(self.at(letter)))
                count = self.c("m")
            pre = Frac(factor or ONE, count) if mean else factor
        return inner if pre is None else Mul((pre, inner))

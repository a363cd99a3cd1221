"""Build a :class:`~deltaprop.app.explain.model.Solution` from the engine's own numbers.

:func:`make_run` runs the spec with :func:`deltaprop.app.trace.run` (the engine: forward,
backward, step) and gathers every array of one step in a :class:`Run`; the few numbers a
notation needs that the engine does not keep (Bishop's dE/da for a hidden layer, Ng's
accumulated Delta) come from the engine's own equations (``hidden_delta`` with the identity
in place of f', ``weight_gradient`` with m = 1).  :func:`solve` then asks the notation
(:mod:`.notation`) for its equations and evaluates each three times: in symbols, with the
activation written out, and with the numbers substituted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ... import _backend
from ... import activations as _act
from ... import equations as eq
from ..._checks import one_hot
from .. import trace
from .leaves import Leaves
from .model import Section, Solution, Step
from .notation import get as get_notation

__all__ = ["Run", "make_run", "solve", "MAX_UNITS"]

#: default hand-size limit: layers of at most this many units and inputs, batches of at
#: most this many samples, are written unit by unit
MAX_UNITS = 4


@dataclass(frozen=True, eq=False)
class Run:
    """Every array of one gradient-descent step, in deltaprop's conventions (NumPy float64).

    Per-layer tuples have slot 0 for the input layer (``a[0] = x``, the rest None there).
    ``y`` is (m, n_L) (integer labels one-hot encoded); ``df[l] = f'(z[l])`` (None for
    softmax); ``dJ_da[l]`` is dJ_i/da[l] (Bishop's delta); ``delta_sum[l]`` and
    ``Delta_W[l]`` are sum_i delta[l]_i and sum_i delta[l]_i^T a[l-1]_i (Ng's Delta);
    ``Wn``, ``bn`` the parameters after the step; ``J`` the cost (penalty included).
    """

    acts: tuple
    loss: str
    m: int
    eta: float
    lam: float
    x: np.ndarray
    y: np.ndarray
    z: tuple
    a: tuple
    df: tuple
    delta: tuple
    dJ_da: tuple
    W: tuple
    b: tuple
    dW: tuple
    db: tuple
    Wn: tuple
    bn: tuple
    J: float
    delta_sum: tuple
    Delta_W: tuple
    spec: object = None
    step: int = 1

    @property
    def L(self) -> int:
        return len(self.W) - 1

    @property
    def sizes(self) -> list[int]:
        return [self.x.shape[1], *(w.shape[0] for w in self.W[1:])]


def _np(v):
    return None if v is None else np.asarray(_backend.to_numpy(v), dtype=np.float64)


def make_run(spec=None, step: int = 1) -> Run:
    """Run ``spec`` (anything :func:`deltaprop.app.trace.load` accepts) up to step ``step``."""
    spec = spec if isinstance(spec, trace.TraceSpec) else trace.load(spec)
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        raise ValueError(f"step must be a positive integer, got {step!r}")
    with np.errstate(all="ignore"):
        steps = trace.run(replace(spec, steps=step))
    before = spec.net if step == 1 else steps[-2].net
    s = steps[-1]
    net, L = before.numpy(), before.L
    acts = (None, *net.activations[1:])
    x = np.asarray(spec.x, dtype=np.float64)
    y = np.asarray(spec.y)
    if y.ndim == 1:  # class labels
        y = one_hot(y, net.sizes[-1])
    y = y.astype(np.float64)
    z = (None, *(_np(s.trace.z[l]) for l in range(1, L + 1)))
    a = (x, *(_np(s.trace.a[l]) for l in range(1, L + 1)))
    delta = (None, *(_np(s.grads.delta[l]) for l in range(1, L + 1)))
    W = (None, *(_np(w) for w in net.W[1:]))
    df = (None, *(acts[l].df(z[l], a[l], np) if acts[l].elementwise else None
                  for l in range(1, L + 1)))
    ident = _act.get("identity")
    dJ_da = [None] * (L + 1)
    for l in range(1, L):  # dJ_i/da[l] = delta[l+1] W[l+1]: eq. (6) before its f'
        dJ_da[l] = eq.hidden_delta(W[l + 1], delta[l + 1], ident, z[l], a[l], np)
    dJ_da[L] = _dJ_da_output(spec.loss.name, a[L], y)
    delta_sum = (None, *(np.sum(delta[l], axis=0) for l in range(1, L + 1)))
    Delta_W = (None, *(eq.weight_gradient(delta[l], a[l - 1], 1) for l in range(1, L + 1)))
    return Run(acts=acts, loss=spec.loss.name, m=x.shape[0], eta=float(spec.learning_rate),
               lam=float(spec.l2), x=x, y=y, z=z, a=a, df=df, delta=delta, dJ_da=tuple(dJ_da),
               W=W, b=(None, *(_np(v) for v in net.b[1:])),
               dW=(None, *(_np(s.grads.dW[l]) for l in range(1, L + 1))),
               db=(None, *(_np(s.grads.db[l]) for l in range(1, L + 1))),
               Wn=(None, *(_np(w) for w in s.net.W[1:])),
               bn=(None, *(_np(v) for v in s.net.b[1:])),
               J=float(_backend.to_numpy(s.grads.J)), delta_sum=delta_sum, Delta_W=Delta_W,
               spec=spec, step=step)


def _dJ_da_output(loss, a, y):
    """dJ_i/da[L], the derivative with respect to the output (Bishop's delta^(L))."""
    with np.errstate(all="ignore"):
        if loss == "mse":
            return a - y
        if loss == "sigmoid-cross-entropy":
            return (a - y) / (a * (1 - a))
        return -y / a


# ---------------------------------------------------------------------- the solution
def solve(spec=None, notation: str = "deltaprop", *, step: int = 1,
          max_units: int = MAX_UNITS, precision: int = 9, run: Run | None = None) -> Solution:
    """The worked solution of one gradient-descent step, in one notation.

    Parameters
    ----------
    spec : path, mapping, TraceSpec or None
        A ``deltaprop trace`` spec; None: Mazur's worked example.
    notation : {"deltaprop", "haykin", "bishop", "ng", "brawer"}
    step : int
        Which step of the spec to explain (the network before it, its gradients, the
        update); default the first.
    max_units : int
        Hand-size limit: a section whose equations involve at most this many units (of
        the layer, and of the layer before or after it where the equation sums over it)
        and at most this many samples is written unit by unit; otherwise in matrix form.
    precision : int
        Digits after the decimal point when the numbers are printed.
    run : Run, optional
        A prepared :func:`make_run` (then ``spec`` and ``step`` are not used).
    """
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units must be a positive integer, got {max_units!r}")
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 17:
        raise ValueError(f"precision must be an integer in 0..17, got {precision!r}")
    run = run or make_run(spec, step)
    nt = get_notation(notation, run.acts)
    parts = _Sections(run, nt, max_units)
    sections = [*parts.forward(), parts.loss(), *parts.output(), *parts.hidden(),
                *parts.per_weight("gradient"), *parts.per_weight("update")]
    title, header = _header(run, nt, max_units)
    notes = (*nt.glossary, *nt.decisions)
    return Solution(nt.notation(), title, tuple(header), notes, tuple(sections), precision,
                    max_units, run)


class _Sections:
    """The sections of one solution, phase by phase: an equation is written unit by unit
    when it involves at most ``max_units`` units, inputs and samples, else in matrix form."""

    def __init__(self, run, nt, max_units):
        self.run, self.nt, self.U = run, nt, max_units
        self.V = nt.values(run)
        self.sizes, self.L, self.m = run.sizes, run.L, run.m

    def hand(self, *counts):
        """Unit by unit when the equation involves at most U units, inputs and samples."""
        return max(*counts, self.m) <= self.U

    def section(self, phase, l, defs, sample=None, title=""):
        unit = all(d.index is not None for d in defs)
        steps = tuple(_evaluate(d, self.nt, self.V, self.m, sample, unit) for d in defs)
        return Section(phase, title, steps, l, sample)

    def per_sample(self, phase, l, make, what):
        nt, m, out = self.nt, self.m, []
        for i in range(m):
            defs = [d for j in range(self.sizes[l]) for d in make(i, j)]
            head = f"{nt.layer_title(l, self.L)}: {what}" + (f", sample {i + 1}" if m > 1 else "")
            out.append(self.section(phase, l, defs, i if m > 1 else None, head))
        return out

    def forward(self):
        nt, sizes, out = self.nt, self.sizes, []
        for l in range(1, self.L + 1):
            what = f"forward ({self.run.acts[l].name})"
            if self.hand(sizes[l - 1], sizes[l]):
                out += self.per_sample("forward", l, lambda i, j, l=l: [
                    nt.z_def(l, i, j, sizes[l - 1]), nt.a_def(l, i, j)], what)
            else:
                out.append(self.section("forward", l, [nt.z_matrix(l), nt.a_matrix(l)],
                                        title=f"{nt.layer_title(l, self.L)}: {what}, matrix form"))
        return out

    def loss(self):
        run, L = self.run, self.L
        explicit = self.sizes[L] <= self.U and self.m <= self.U
        weights = np.concatenate([w.ravel() for w in run.W[1:]])
        loss_def = self.nt.loss_def(run.loss, self.sizes[L], L, explicit, run.lam, weights)
        return Section("loss", f"the cost ({run.loss})", (
            _evaluate(loss_def, self.nt, self.V, self.m, None, explicit),))

    def output(self):
        nt, L, loss = self.nt, self.L, self.run.loss
        elementwise = self.run.acts[L].elementwise
        if self.hand(self.sizes[L]):
            return self.per_sample("output", L, lambda i, j: nt.output_defs(
                L, i, j, loss, elementwise), "output error")
        return [self.section("output", L, nt.output_matrix(L, loss, elementwise),
                             title=f"{nt.layer_title(L, L)}: output error, matrix form")]

    def hidden(self):
        nt, sizes, out = self.nt, self.sizes, []
        for l in range(self.L - 1, 0, -1):
            if self.hand(sizes[l], sizes[l + 1]):
                out += self.per_sample("hidden", l, lambda i, j, l=l: [
                    nt.hidden_def(l, i, j, sizes[l + 1])], "error")
            else:
                out.append(self.section("hidden", l, [nt.hidden_matrix(l)],
                                        title=f"{nt.layer_title(l, self.L)}: error, matrix form"))
        return out

    def per_weight(self, phase):
        """The sections of ``phase`` "gradient" or "update", from layer L down to 1."""
        nt, sizes, out = self.nt, self.sizes, []
        if phase == "gradient":
            unit_defs, matrix_defs, what = (nt.grad_defs, lambda l: nt.grad_matrix(l, self.run.lam),
                                            "gradients")
        else:
            unit_defs, matrix_defs, what = nt.update_defs, nt.update_matrix, "update"
        for l in range(self.L, 0, -1):
            head = f"{nt.layer_title(l, self.L)}: {what}"
            if self.hand(sizes[l - 1], sizes[l]):
                defs = []
                for j in range(sizes[l]):
                    ks = list(range(sizes[l - 1]))
                    ks = [None, *ks] if nt.bias_first else [*ks, None]
                    defs += [d for k in ks for d in unit_defs(l, j, k)]
                out.append(self.section(phase, l, defs, title=head))
            else:
                out.append(self.section(phase, l, matrix_defs(l), title=head + ", matrix form"))
        return out


def _header(run, nt, U):
    """(title, header lines) of a solution."""
    spec, m = run.spec, run.m
    lr = {"ng": "alpha"}.get(nt.key, "eta")
    header = [
        f"network {'-'.join(map(str, run.sizes))} ({', '.join(a.name for a in run.acts[1:])}), "
        f"loss {run.loss}, m = {m} sample{'s' * (m != 1)}, {lr} = {run.eta:g}"
        + (f", lambda = {run.lam:g}" if run.lam else ""),
        f"step {run.step} of gradient descent: the forward pass, the cost, the errors, the "
        "gradients and the update, every number from deltaprop's engine",
        "units are numbered from 1 (unit j is column j - 1 of deltaprop's arrays); an "
        f"equation that involves more than {U} units (of a layer or the layer before or "
        f"after it) or more than {U} samples is written in matrix form",
    ]
    if spec is not None and spec.source:
        header.insert(0, f"source: {spec.source}")
    title = (spec.description if spec is not None and spec.description else
             "Worked solution: one step of backpropagation")
    return title, header


def _evaluate(d, nt, V, m, sample, unit) -> Step:
    """A :class:`~deltaprop.app.explain.notation.Def` as a :class:`Step`: three forms, a value."""
    sym = Leaves(nt, V, "symbolic", None, m)
    lhs, equation = d.lhs(sym), d.rhs(sym)
    expanded = substituted = None
    if unit:
        expanded = d.rhs(Leaves(nt, V, "expanded", None, m))
        substituted = d.rhs(Leaves(nt, V, "numeric", sample, m))
        if expanded == equation:
            expanded = None
    if equation == lhs:
        equation, expanded = expanded or equation, None
    name, l, idx = d.key
    arr = V[name] if l is None else V[name][l]
    value = float(np.asarray(arr)[idx]) if unit and idx is not None else np.asarray(arr)
    if name == "J":
        value = float(arr)
    return Step(lhs=lhs, equation=equation, value=value, quantity=d.quantity, layer=d.layer,
                index=d.index if unit else None, expanded=expanded, substituted=substituted,
                relation=d.relation, ref=d.ref, note=d.note)

"""Shared test data: the table of engine cases and the ``xp`` backend fixture.

Tests as data (STYLE.md habit 7): every engine test draws its networks from ``CASES``,
a table of (sizes, activation per layer, loss) covering

* every activation of :data:`deltaprop.activations.ACTIVATIONS` in the hidden layers, and
* every loss with its admissible output activations: MSE with identity, with a
  non-trivial elementwise output and with softmax; sigmoid cross-entropy with sigmoid;
  softmax cross-entropy with softmax (integer labels and soft distributions).

Fixtures (not autouse, names generic so other test files can reuse them):

``case``  one row of ``CASES`` (parametrised, ids such as ``tanh-mse-sigmoid``);
``xp``    the array module of a backend: numpy, torch (CPU), array_api_strict; a backend
          that is not importable is skipped.  ``Network.to(xp)`` and ``xp.asarray`` accept it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import pytest

from deltaprop import Network

HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu", "softplus", "silu", "gelu")

# (loss, output activation, target kind); "act" = the hidden activation itself
_LOSS_OUTPUTS = (
    ("mse", "identity"),
    ("mse", "act"),
    ("mse", "softmax"),
    ("sigmoid-cross-entropy", "sigmoid"),
    ("softmax-cross-entropy", "softmax"),
)

# a few architectures, cycled through so that depth and width vary across the table
_SIZES = ([3, 4, 2], [2, 5, 3, 3], [4, 3, 4, 2], [1, 4, 4, 4, 2], [5, 3, 1])


@dataclass(frozen=True)
class Case:
    """One row of the table: a network architecture, a loss and a batch."""

    sizes: tuple
    activations: tuple  # one name per layer 1..L (output last)
    loss: str
    l2: float = 0.0
    m: int = 5
    labels: bool = False  # softmax cross-entropy: integer labels instead of distributions
    seed: int = 0

    @property
    def id(self) -> str:
        """E.g. ``relu.tanh-mse-softmax-l2``: hidden activations, loss, output activation."""
        hidden = ".".join(self.activations[:-1]) or "none"
        tag = "-labels" if self.labels else ""
        l2 = "-l2" if self.l2 else ""
        return f"{hidden}-{self.loss}-{self.activations[-1]}{tag}{l2}"

    def network(self, K=None, dtype="float64", backend=None) -> Network:
        """A network with small random biases (so no bias is exactly zero)."""
        return Network.init(list(self.sizes), list(self.activations), init="glorot_normal",
                            seed=self.seed, K=K, dtype=dtype, backend=backend, bias_std=0.3)

    def data(self, K=None, seed=None):
        """NumPy float64 ``x`` (m, n_0) (or (K, m, n_0)) and targets ``y`` for the loss."""
        rng = np.random.default_rng(self.seed + 1000 if seed is None else seed)
        lead = () if K is None else (K,)
        n0, nL = self.sizes[0], self.sizes[-1]
        x = rng.normal(size=(*lead, self.m, n0))
        return x, make_targets(self.loss, rng, (*lead, self.m), nL, labels=self.labels)


def make_targets(loss, rng, batch_shape, nL, *, labels=False):
    """Random targets of the right kind: real (mse), in [0, 1] (sigmoid CE), labels or rows
    summing to one (softmax CE)."""
    if loss == "mse":
        return rng.normal(size=(*batch_shape, nL))
    if loss == "sigmoid-cross-entropy":
        return rng.uniform(size=(*batch_shape, nL))
    if labels:
        return rng.integers(0, nL, batch_shape)
    p = rng.uniform(0.1, 1.0, size=(*batch_shape, nL))
    return p / p.sum(axis=-1, keepdims=True)


def _build_cases():
    cases = []
    i = 0
    for act in HIDDEN:
        for loss, out in _LOSS_OUTPUTS:
            sizes = _SIZES[i % len(_SIZES)]
            if loss != "mse" or out == "softmax":  # cross-entropies and softmax want n_L >= 2
                sizes = (*sizes[:-1], max(sizes[-1], 2))
            if out == "act":
                out = act if act != "identity" else "tanh"
            L = len(sizes) - 1
            # hidden layers: the activation under test, the second hidden layer (if any)
            # tanh for variety
            hidden = [act] * (L - 1)
            if L >= 3:
                hidden[1] = "tanh" if act != "tanh" else "sigmoid"
            cases.append(Case(tuple(sizes), (*hidden, out), loss, l2=0.7 if i % 3 == 0 else 0.0,
                              m=3 + i % 4, labels=loss.startswith("softmax") and i % 2 == 0,
                              seed=i))
            i += 1
    # single-layer networks: the output activation alone
    cases.append(Case((3, 2), ("sigmoid",), "sigmoid-cross-entropy", seed=i))
    cases.append(Case((3, 4), ("softmax",), "softmax-cross-entropy", labels=True, seed=i + 1))
    return tuple(cases)


CASES = _build_cases()


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request) -> Case:
    """One row of :data:`CASES`."""
    return request.param


BACKENDS = ("numpy", "torch", "array_api_strict")


@pytest.fixture(params=BACKENDS)
def xp(request):
    """The array module of one backend (skipped if it is not importable)."""
    name = request.param
    try:
        mod = importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed")
    return mod


def to_numpy(a):
    """Any backend's array as float64 (or integer) NumPy, for comparisons."""
    from deltaprop._backend import to_numpy as _to_numpy

    return np.asarray(_to_numpy(a))


def rel_err(a, b) -> float:
    """Normwise relative error max|a - b| / max|b| (0 when both are zero)."""
    a, b = to_numpy(a).astype(np.float64), to_numpy(b).astype(np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.max(np.abs(b), initial=0.0)
    diff = np.max(np.abs(a - b), initial=0.0)
    return float(diff / scale) if scale > 0 else float(diff)

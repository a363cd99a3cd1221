"""The network: layer sizes, one activation per layer, parameters W[l] and b[l].

Per-layer sequences keep slot 0 for the input layer, so the code reads like the text:
``W[0] is None``, ``b[0] is None``, ``activations[0]`` is the identity, and for
``l = 1 .. L``

* ``W[l]``: (n_l, n_{l-1}) -- or (K, n_l, n_{l-1}) for a stack of K networks;
* ``b[l]``: (n_l,)         -- or (K, n_l).

``theta(l)`` is the bias-node matrix of Brawer, ``[b[l] | W[l]]`` of shape
(n_l, n_{l-1} + 1) (bias in column 0); ``with_theta`` sets it.

A :class:`Network` is immutable: updates return a new network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from . import _backend
from . import activations as _act
from .init import init_layer

__all__ = ["Network"]


@dataclass(frozen=True, eq=False)
class Network:
    """A fully-connected feedforward network (or a stack of K of them)."""

    W: tuple
    b: tuple
    activations: tuple

    def __post_init__(self):
        # normalise to tuples and registry rows (the frozen-dataclass idiom), then check
        W, b, acts = tuple(self.W), tuple(self.b), tuple(_act.get(f) for f in self.activations)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "b", b)
        object.__setattr__(self, "activations", acts)
        if len(W) < 2 or W[0] is not None or b[0] is not None:
            raise ValueError("W and b need slot 0 = None (input layer) and at least one layer")
        if len(b) != len(W) or len(acts) != len(W):
            raise ValueError(
                f"W, b and activations must have the same length (L + 1 = {len(W)}), "
                f"got {len(W)}, {len(b)}, {len(acts)}")
        if acts[0].name != "identity":
            raise ValueError("activations[0] (the input layer) must be the identity")
        for l, f in enumerate(acts[1:-1], start=1):
            if f.output_only:
                raise ValueError(f"activations: {f.name} may only be the output activation "
                                 f"(layer L = {len(acts) - 1}), not layer {l}'s")
        _check_layout(W, b)

    # ------------------------------------------------------------------ construction
    @classmethod
    def init(cls, sizes: Sequence[int], activations="sigmoid", output=None, *,
             init="glorot_uniform", seed=0, K=None, dtype="float64", backend=None,
             device=None, mean=0.0, std=None, bias_mean=0.0, bias_std=0.0, epsilon=None):
        """Draw a network (or a stack of K) with layer sizes ``[n_0, n_1, ..., n_L]``.

        Parameters
        ----------
        sizes : sequence of int
            Units per layer, input first.
        activations : str or sequence of str
            One name for every hidden layer (then ``output`` names the output layer's,
            default ``"identity"``), or a list of L names, one per layer 1..L.
        init : str
            Initialiser (see :mod:`deltaprop.init`).
        seed : int or numpy.random.Generator
            Random seed.  For a stack, network k uses the k-th spawned child seed.
        K : int, optional
            Number of stacked networks; parameters gain a leading axis of size K.
        dtype : str
            ``"float64"`` or ``"float32"``.
        backend, device
            Array library (``"numpy"``, ``"torch"``, ...) and device for the parameters.
        mean, std, bias_mean, bias_std : float or sequence of float (one per layer)
            Weight mean/std and bias mean/std (see :func:`deltaprop.init.init_layer`).
        """
        if any(int(n) != n for n in sizes):
            raise ValueError(f"sizes must list >= 2 positive integer layer widths, got {sizes}")
        sizes = [int(n) for n in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list >= 2 positive layer widths, got {sizes}")
        L = len(sizes) - 1
        acts = _layer_activations(activations, output, L)
        per = {k: per_layer(v, L, k) for k, v in
               dict(mean=mean, std=std, bias_mean=bias_mean, bias_std=bias_std).items()}
        if K is not None and (int(K) != K or K < 1):
            raise ValueError(f"K must be a positive integer, got {K}")
        gens = _generators(seed, K)
        Ws, bs = [None], [None]
        for l in range(1, L + 1):
            pairs = [init_layer(init, g, sizes[l], sizes[l - 1], epsilon=epsilon,
                                **{k: v[l - 1] for k, v in per.items()}) for g in gens]
            Ws.append(np.stack([p[0] for p in pairs]) if K is not None else pairs[0][0])
            bs.append(np.stack([p[1] for p in pairs]) if K is not None else pairs[0][1])
        net = cls(tuple(Ws), tuple(bs), (_act.get("identity"), *acts))
        return net.to(backend, device=device, dtype=dtype)

    @classmethod
    def from_layers(cls, W, b, activations):
        """Build from per-layer lists of length L (no input slot): W[0] is layer 1's."""
        if not (len(W) == len(b) == len(activations)):
            raise ValueError(
                f"W, b and activations need one entry per layer, got {len(W)}, {len(b)}, "
                f"{len(activations)}")
        return cls((None, *W), (None, *b), ("identity", *activations))

    # ------------------------------------------------------------------ properties
    @property
    def L(self) -> int:
        """Number of weight layers (the output layer's index)."""
        return len(self.W) - 1

    @property
    def sizes(self) -> list[int]:
        """[n_0, n_1, ..., n_L]."""
        return [int(self.W[1].shape[-1])] + [int(w.shape[-2]) for w in self.W[1:]]

    @property
    def K(self) -> int | None:
        """Stack size, or ``None`` for a single network."""
        return int(self.W[1].shape[0]) if self.W[1].ndim == 3 else None

    @property
    def dtype(self):
        return self.W[1].dtype

    @property
    def xp(self):
        """The array namespace of the parameters."""
        return _backend.namespace(self.W[1])

    @property
    def n_params(self) -> int:
        """Parameters per network (weights and biases)."""
        return sum(n * (m + 1) for m, n in zip(self.sizes[:-1], self.sizes[1:], strict=True))

    def activation_names(self) -> list[str]:
        """Names of the activations of layers 1..L."""
        return [f.name for f in self.activations[1:]]

    # ------------------------------------------------------------------ bias-node view
    def theta(self, l: int):
        """theta(l) = [b[l] | W[l]], shape (n_l, n_{l-1} + 1) (or (K, ...)): Brawer's matrix."""
        self._check_layer(l)
        xp = self.xp
        return xp.concat([xp.expand_dims(self.b[l], axis=-1), self.W[l]], axis=-1)

    def with_theta(self, l: int, theta) -> Network:
        """A copy whose layer ``l`` is set from theta = [b | W]."""
        self._check_layer(l)
        want = (*self.W[l].shape[:-1], self.W[l].shape[-1] + 1)
        if tuple(theta.shape) != tuple(want):
            raise ValueError(
                f"theta for layer {l} must have shape {want}, got {tuple(theta.shape)}")
        W, b = list(self.W), list(self.b)
        b[l], W[l] = theta[..., 0], theta[..., 1:]
        return replace(self, W=tuple(W), b=tuple(b))

    def _check_layer(self, l):
        if not (isinstance(l, int) and 1 <= l <= self.L):
            raise ValueError(f"layer index must be in 1..{self.L}, got {l!r}")

    # ------------------------------------------------------------------ conversions
    def replace(self, W=None, b=None) -> Network:
        """A copy with new parameter tuples (slot 0 = None), checked like any network
        (parameters of a layout already checked, as after an update step, cost one lookup)."""
        return replace(self, W=self.W if W is None else tuple(W),
                       b=self.b if b is None else tuple(b))

    def __getitem__(self, k) -> Network:
        """Network ``k`` of a stack (a sub-stack for a slice)."""
        if self.K is None:
            raise TypeError("a single network cannot be indexed; only stacks (K networks)")
        return self.replace(W=(None, *(w[k, ...] for w in self.W[1:])),
                            b=(None, *(v[k, ...] for v in self.b[1:])))

    def to(self, backend=None, *, device=None, dtype=None) -> Network:
        """The same network with parameters in ``backend`` (name or namespace), device, dtype."""
        xp = _backend.resolve(backend, device) if backend is not None or device else None
        if xp is None:
            xp = self.xp
        if dtype is not None:
            name = _backend.dtype_name(dtype)
            if name not in ("float32", "float64"):
                raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
            dtype = getattr(xp, name)
        conv = [None] * 2
        for i, seq in enumerate((self.W, self.b)):
            conv[i] = (None, *(_move(p, xp, dtype, device) for p in seq[1:]))
        return replace(self, W=conv[0], b=conv[1])

    def numpy(self) -> Network:
        """A NumPy copy."""
        return replace(self, W=(None, *map(_backend.to_numpy, self.W[1:])),
                       b=(None, *map(_backend.to_numpy, self.b[1:])))

    def __repr__(self):
        k = "" if self.K is None else f", K={self.K}"
        return (f"Network(sizes={self.sizes}, activations={self.activation_names()}, "
                f"dtype={_backend.dtype_name(self.dtype)}{k})")

    def _repr_html_(self):
        from ._display import network_html

        return network_html(self)

    def to_pandas(self):
        """W[l] and b[l] as a tidy DataFrame (needs pandas; columns in :mod:`._display`)."""
        from ._display import network_frame

        return network_frame(self)


#: parameter layouts (library, shapes, dtypes) that passed :func:`_check_layout`
_LAYOUTS: dict = {}


def _check_layout(W, b):
    """Shapes, library and dtype of W[1..L], b[1..L]: ValueError or TypeError unless they
    form a network or a stack.  A layout checked once is remembered (an update step makes
    arrays of the same layout at every step, and the full check costs more than a small
    network's whole step)."""
    params = W[1:] + b[1:]
    key = tuple((type(p), tuple(p.shape), p.dtype) for p in params)
    if key in _LAYOUTS:
        return
    lead = W[1].shape[:-2]
    if len(lead) > 1:
        raise ValueError(f"W[1] must be 2-D or a 3-D stack, got shape {tuple(W[1].shape)}")
    for l in range(1, len(W)):
        w, bl = W[l], b[l]
        if w.ndim != 2 + len(lead) or tuple(w.shape[:-2]) != lead:
            raise ValueError(f"W[{l}] has shape {tuple(w.shape)}; expected stack shape {lead}")
        if tuple(bl.shape) != (*lead, w.shape[-2]):
            raise ValueError(
                f"b[{l}] has shape {tuple(bl.shape)}, expected {(*lead, w.shape[-2])}")
        if l > 1 and w.shape[-1] != W[l - 1].shape[-2]:
            raise ValueError(
                f"W[{l}] has {w.shape[-1]} inputs but layer {l - 1} has "
                f"{W[l - 1].shape[-2]} units")
    kinds = {type(p).__module__.split(".")[0] for p in params}
    if len(kinds) != 1:
        raise TypeError(f"W and b must come from one array library, got {sorted(kinds)}")
    if len({str(p.dtype) for p in params}) != 1:
        raise TypeError("all parameters W, b must share one dtype, got "
                        f"{sorted({str(p.dtype) for p in params})}")
    if len(_LAYOUTS) >= 256:
        _LAYOUTS.clear()
    _LAYOUTS[key] = None


def _move(p, xp, dtype, device):
    if _backend.namespace(p) is not xp:
        return _backend.asarray(_backend.to_numpy(p), xp, dtype=dtype, device=device)
    out = p if dtype is None or p.dtype == dtype else xp.astype(p, dtype)
    return out if device is None else _backend.to_device(out, device)


def _layer_activations(activations, output, L):
    if isinstance(activations, str):
        return [_act.get(activations)] * (L - 1) + [_act.get(output or "identity")]
    acts = [_act.get(a) for a in activations]
    if output is not None:
        raise ValueError("give `output` only when `activations` is a single name")
    if len(acts) != L:
        raise ValueError(f"activations needs one name per layer 1..L ({L}), got {len(acts)}")
    return acts


def per_layer(value, L, name):
    """``value`` for layers 1..L: a scalar (or None) repeated, or a sequence of exactly L."""
    if value is None or np.isscalar(value):
        return [value] * L
    value = list(value)
    if len(value) != L:
        raise ValueError(f"{name} needs one value per layer ({L}), got {len(value)}")
    return value


def _generators(seed, K):
    if isinstance(seed, np.random.Generator):
        return [seed] if K is None else list(seed.spawn(K))
    if K is None:
        return [np.random.default_rng(seed)]
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(K)]

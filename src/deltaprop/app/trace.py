"""Step-by-step traces of a tiny network: every z, a, delta, dW, db and J, step after step.

This is how a learner checks a hand derivation against the machine.  A *spec* (a JSON
object, or the equivalent ``dict``) fixes the network, the batch and the loss:

.. code-block:: json

    {"layers": [{"W": [[0.15, 0.20], [0.25, 0.30]], "b": [0.35, 0.35],
                 "activation": "sigmoid"},
                {"W": [[0.40, 0.45], [0.50, 0.55]], "b": [0.60, 0.60],
                 "activation": "sigmoid"}],
     "x": [[0.05, 0.10]], "y": [[0.01, 0.99]], "loss": "mse",
     "learning_rate": 0.5, "steps": 1, "l2": 0.0}

``layers[l - 1]`` is layer l (1..L): ``W`` has shape (n_l, n_{l-1}) (``W[j][k]`` is the
weight from unit k of layer l-1 to unit j of layer l), ``b`` has n_l entries.  ``x`` is
(m, n_0) and ``y`` is (m, n_L), rows are samples (integer labels (m,) are also accepted for
``softmax-cross-entropy``).  ``learning_rate`` (default 0.1), ``steps`` (default 1) and
``l2`` (lambda of (lambda / 2m) sum ||W||^2, default 0) are optional, and so are the
free-text keys ``description`` and ``source``.  Every step is one full-batch gradient-descent
step on all m samples.

The record of a run (:func:`to_dict`, also ``deltaprop trace --json``) is::

    {"steps": [{"loss": J,
                "layers": [{"z": ..., "a": ..., "delta": ..., "dW": ..., "db": ...,
                            "W": ..., "b": ...},          # layer 1
                           ...]},                         # ... up to layer L
               ...]}

with ``loss`` the J of that step's forward pass (L2 penalty included) and ``W``, ``b`` the
parameters *after* that step's update.  ``z``, ``a``, ``delta`` are (m, n_l), per sample and
unscaled; the 1/m of the batch mean appears only in ``dW`` and ``db``.

The built-in example (:data:`EXAMPLE`, used by ``deltaprop trace`` with no argument) is
Matt Mazur's "A Step by Step Backpropagation Example" (2015).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .. import _backend, _checks
from .. import activations as _act
from .. import equations as eq
from .. import losses as _losses
from ..backprop import Gradients, Trace, gradients, step
from ..network import Network
from . import data as _data

__all__ = ["EXAMPLE", "TraceSpec", "TraceStep", "example_text", "load", "parse", "iter_steps",
           "run", "step_bytes", "step_to_dict", "to_dict", "format_header",
           "format_step", "format_text"]

#: file name of the built-in worked example (package data ``deltaprop/app/_examples/``)
EXAMPLE = "mazur_2015.json"

_REQUIRED = ("layers", "x", "y", "loss")
_OPTIONAL = {"learning_rate": 0.1, "steps": 1, "l2": 0.0, "description": "", "source": ""}


@dataclass(frozen=True, eq=False)
class TraceSpec:
    """A parsed, validated spec: the network, the batch and the training settings.

    Attributes
    ----------
    net : Network
        Float64 NumPy network with the spec's W[l], b[l] and activations.
    x : numpy.ndarray
        (m, n_0) inputs.
    y : numpy.ndarray
        (m, n_L) targets, or integer labels (m,) for softmax cross-entropy.
    loss : deltaprop.losses.Loss
    learning_rate : float
        eta of W[l] <- W[l] - eta dW[l].
    steps : int
        Number of full-batch gradient-descent steps.
    l2 : float
        lambda of the penalty (lambda / 2m) sum_l ||W[l]||^2 (biases excluded).
    description, source : str
        Free text carried over from the spec.
    """

    net: Network
    x: np.ndarray
    y: np.ndarray
    loss: _losses.Loss
    learning_rate: float = 0.1
    steps: int = 1
    l2: float = 0.0
    description: str = ""
    source: str = ""


@dataclass(frozen=True, eq=False)
class TraceStep:
    """One step: the forward pass, the backward pass and the network after the update.

    Attributes
    ----------
    trace : Trace
        ``z[l]``, ``a[l]`` (m, n_l) of the network *before* the update.
    grads : Gradients
        ``J`` (regularisation included), ``delta[l]`` (m, n_l), ``dW[l]``, ``db[l]``.
    net : Network
        The network after W[l] -= eta dW[l], b[l] -= eta db[l].
    """

    trace: Trace
    grads: Gradients
    net: Network

    def _repr_html_(self):
        from .._display import trace_step_html

        return trace_step_html(self)


# ---------------------------------------------------------------------- reading a spec
def example_text() -> str:
    """The JSON text of the built-in worked example (Mazur 2015)."""
    return (resources.files("deltaprop.app") / "_examples" / EXAMPLE).read_text(encoding="utf-8")


def load(source=None) -> TraceSpec:
    """Read and validate a spec.

    Parameters
    ----------
    source : str, os.PathLike, Mapping or None
        A path to a JSON file, an already-decoded spec, or ``None`` for the built-in
        example (:data:`EXAMPLE`).

    Raises
    ------
    ValueError
        The file is not JSON, or the spec is malformed (the message names the key).
    OSError
        The file cannot be read.
    """
    if source is None:
        return parse(_decode(example_text(), f"built-in {EXAMPLE}"))
    if not isinstance(source, str | os.PathLike):
        return parse(source)  # a decoded spec (parse refuses anything but a mapping)
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"spec file {str(path)!r} does not exist") from None
    except UnicodeDecodeError:
        raise ValueError(f"spec file {str(path)!r} is not UTF-8 text (expected JSON)") from None
    except OSError as exc:
        raise OSError(f"cannot read spec file {str(path)!r}: {exc.strerror or exc}") from None
    return parse(_decode(text, f"spec file {str(path)!r}"))


def _decode(text, where):
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{where} is not valid JSON: {exc}") from None


def parse(spec: Mapping) -> TraceSpec:
    """Validate a decoded spec and build the network (float64, NumPy).

    Raises
    ------
    ValueError
        Missing or unknown keys, non-numeric or ragged arrays, NaN or inf, shapes that do
        not chain (W[l] must be (n_l, n_{l-1}), b[l] (n_l,), x (m, n_0), y (m, n_L)),
        unknown activation or loss names, or an output activation that does not suit the
        loss (e.g. softmax cross-entropy needs a softmax output layer).
    """
    if not isinstance(spec, Mapping):
        raise ValueError(f"the spec must be a JSON object, got {type(spec).__name__}")
    missing = [k for k in _REQUIRED if k not in spec]
    if missing:
        raise ValueError(f"the spec is missing {', '.join(map(repr, missing))} "
                         f"(required: {', '.join(_REQUIRED)})")
    unknown = sorted(set(spec) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ValueError(f"unknown spec key(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join([*_REQUIRED, *_OPTIONAL])}")
    net = _network(spec["layers"])
    loss = _losses.get(_string(spec["loss"], "loss"))
    _losses.check_pair(loss, net.activations[-1])
    x = _array(spec["x"], "x", 2)
    labels = loss.targets == "distribution" and _is_int_list(spec["y"])
    y = _array(spec["y"], "y", 1 if labels else 2, integers=labels)
    x = _checks.check_x(net, x, np)
    _checks.check_y(net, loss, y, x.shape[0], np)
    lr = _number(spec.get("learning_rate", _OPTIONAL["learning_rate"]), "learning_rate")
    if not lr > 0:
        raise ValueError(f"learning_rate must be > 0, got {lr}")
    l2 = _number(spec.get("l2", _OPTIONAL["l2"]), "l2")
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    steps = spec.get("steps", _OPTIONAL["steps"])
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    text = {k: _string(spec.get(k, ""), k) for k in ("description", "source")}
    return TraceSpec(net, x, y, loss, lr, steps, l2, **text)


def _network(layers) -> Network:
    if not isinstance(layers, list) or not layers:
        raise ValueError("layers must be a non-empty list of {\"W\", \"b\", \"activation\"} "
                         "objects, one per layer 1..L")
    Ws, bs, acts = [], [], []
    for i, layer in enumerate(layers):
        where = f"layers[{i}] (layer {i + 1})"
        if not isinstance(layer, Mapping):
            raise ValueError(f"{where} must be an object with keys W, b, activation")
        missing = [k for k in ("W", "b", "activation") if k not in layer]
        extra = sorted(set(layer) - {"W", "b", "activation"})
        if missing or extra:
            what = (f"is missing {', '.join(map(repr, missing))}" if missing
                    else f"has unknown key(s) {', '.join(map(repr, extra))}")
            raise ValueError(f"{where} {what} (keys: W, b, activation)")
        W = _array(layer["W"], f"{where} W", 2)
        b = _array(layer["b"], f"{where} b", 1)
        if 0 in W.shape:
            raise ValueError(f"{where} W has shape {W.shape}; it needs at least one row and "
                             "one column")
        if b.shape != W.shape[:1]:
            raise ValueError(f"{where} b has {b.shape[0]} entries; W has {W.shape[0]} rows "
                             f"(n_{i + 1} = {W.shape[0]} units)")
        if Ws and W.shape[1] != Ws[-1].shape[0]:
            raise ValueError(f"{where} W has shape {W.shape}: {W.shape[1]} columns, but layer "
                             f"{i} has {Ws[-1].shape[0]} units (W[l] is (n_l, n_(l-1)))")
        try:
            acts.append(_act.get(_string(layer["activation"], f"{where} activation")))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        Ws.append(W)
        bs.append(b)
    return Network.from_layers(Ws, bs, acts)


def _string(value, name) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, got {json.dumps(value)[:40]}")
    return value


def _number(value, name) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {json.dumps(value)[:40]}")
    return float(value)


def _is_int_list(value) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def _array(value, name, ndim, *, integers=False) -> np.ndarray:
    """A JSON (nested) list as a float64 (or int64) array of ``ndim`` dimensions."""
    shape = {1: "a list of numbers", 2: "a list of lists of numbers (one row per sample or unit)"}
    if not isinstance(value, list):
        raise ValueError(f"{name} must be {shape[ndim]}, got {json.dumps(value)[:40]}")
    try:
        arr = np.asarray(value)
    except ValueError:
        raise ValueError(f"{name} is ragged: its rows must all have the same length") from None
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold numbers only")
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {shape[ndim]}, got an array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr.astype(np.int64 if integers else np.float64)


# ---------------------------------------------------------------------- running
def iter_steps(spec: TraceSpec | Mapping | str | None = None) -> Iterator[TraceStep]:
    """The steps of ``spec`` one at a time, each computed when asked for (nothing is kept).

    This is what ``deltaprop trace`` runs: step k is printed before step k + 1 is computed,
    so a spec of a billion steps streams instead of filling memory.

    Parameters
    ----------
    spec : TraceSpec, Mapping, path or None
        Anything :func:`load` accepts (``None``: the built-in Mazur example).

    Yields
    ------
    TraceStep
        The forward pass and gradients of the network *before* update k and the network
        *after* it.
    """
    spec = spec if isinstance(spec, TraceSpec) else load(spec)
    net = spec.net
    for _ in range(spec.steps):
        tr, grads = gradients(net, spec.x, spec.y, spec.loss, spec.l2)
        net = step(net, grads, spec.learning_rate)
        yield TraceStep(tr, grads, net)


def step_bytes(spec: TraceSpec) -> int:
    """Bytes one :class:`TraceStep` holds: z, a, delta (m, n_l), dW, db and W, b per layer
    in float64, and about 128 bytes of Python object per array."""
    m, n = spec.x.shape[0], spec.net.sizes
    floats = sum(3 * m * n[l] + 2 * (n[l] * n[l - 1] + n[l]) for l in range(1, len(n)))
    return 8 * floats + 128 * (7 * (len(n) - 1) + 8)


def run(spec: TraceSpec | Mapping | str | None = None) -> list[TraceStep]:
    """Run ``spec.steps`` full-batch gradient-descent steps and keep every one.

    Parameters
    ----------
    spec : TraceSpec, Mapping, path or None
        Anything :func:`load` accepts (``None``: the built-in Mazur example).

    Returns
    -------
    list of TraceStep
        Step k holds the forward pass and gradients of the network *before* update k and
        the network *after* it.

    Raises
    ------
    MemoryError
        Before computing anything, when keeping every step would need more than 80% of the
        memory available (:func:`deltaprop.app.data.refuse_unless_fits`): :func:`iter_steps`
        handles one step at a time.
    """
    spec = spec if isinstance(spec, TraceSpec) else load(spec)
    # MemoryError, not the commands' ValueError: this is the library's run(), documented
    # (and tested) to raise it; the trace command streams and refuses one step instead
    _data.refuse_unless_fits(spec.steps * step_bytes(spec),
                             f"keeping all {spec.steps} steps of this trace",
                             "use trace.iter_steps(spec), which computes one step at a time",
                             error=MemoryError)
    return list(iter_steps(spec))


def step_to_dict(s: TraceStep) -> dict:
    """One step as ``{"loss": J, "layers": [{"z", "a", "delta", "dW", "db", "W", "b"}, ...]}``.

    ``layers`` lists layer 1..L; every array is a nested list of floats.
    """
    def tolist(v):
        return np.asarray(_backend.to_numpy(v), dtype=np.float64).tolist()

    return {"loss": float(s.grads.J),
            "layers": [{"z": tolist(s.trace.z[l]), "a": tolist(s.trace.a[l]),
                        "delta": tolist(s.grads.delta[l]), "dW": tolist(s.grads.dW[l]),
                        "db": tolist(s.grads.db[l]), "W": tolist(s.net.W[l]),
                        "b": tolist(s.net.b[l])}
                       for l in range(1, s.net.L + 1)]}


def to_dict(steps: Iterable[TraceStep]) -> dict:
    """The JSON-ready record ``{"steps": [step_to_dict(s), ...]}`` of a run.

    Each entry of ``layers`` (layer 1..L) holds ``z``, ``a``, ``delta`` (m, n_l), ``dW``,
    ``db`` and the updated ``W``, ``b`` as nested lists of floats.  (Named ``record``
    before; :func:`deltaprop.stats.record` is the laboratory's recorder.)
    """
    return {"steps": [step_to_dict(s) for s in steps]}


# ---------------------------------------------------------------------- printing
_OPTS = dict(floatmode="maxprec", suppress_small=False, max_line_width=100)


def format_header(spec: TraceSpec) -> str:
    """The lines above the first step: the network, the loss, m, eta and the notation."""
    net, m = spec.net, spec.x.shape[0]
    lines = []
    if spec.description:
        lines.append(spec.description)
    if spec.source:
        lines.append(f"source: {spec.source}")
    acts = ", ".join(net.activation_names())
    lines += [
        f"network {'-'.join(map(str, net.sizes))} ({acts}), loss {spec.loss.name}, "
        f"m = {m} sample{'s' * (m != 1)}, eta = {spec.learning_rate:g}"
        + (f", l2 lambda = {spec.l2:g}" if spec.l2 else "")
        + f", {spec.steps} full-batch step{'s' * (spec.steps != 1)}",
        "rows of z, a, delta are samples; delta[l] = dJ_i/dz[l] per sample (unscaled); "
        "dW, db are batch means;",
        "W[l] <- W[l] - eta dW[l] and b[l] <- b[l] - eta db[l] are the parameters after "
        "the update.",
    ]
    return "\n".join(lines)


def format_step(spec: TraceSpec, k: int, s: TraceStep, before: Network,
                precision: int = 9) -> str:
    """Step ``k`` (1-based) as text: J, then z, a, delta, dW, db, W, b of every layer.

    ``before`` is the network the step started from (for the L2 penalty's breakdown).
    """
    net, m = spec.net, spec.x.shape[0]
    L = net.L
    width = len(f"delta[{L}]")
    J = float(s.grads.J)
    head = f"step {k}: J = {J:.{precision}g}"
    if spec.l2:
        pen = float(eq.l2_penalty(before.numpy().W, spec.l2, m, np))
        head += f"  (loss {J - pen:.{precision}g} + L2 penalty {pen:.{precision}g})"
    lines = [head]
    for l in range(1, L + 1):
        lines.append(f"  layer {l} ({net.activations[l].name}, "
                     f"{net.sizes[l - 1]} -> {net.sizes[l]})")
        rows = [("z", "=", s.trace.z[l]), ("a", "=", s.trace.a[l]),
                ("delta", "=", s.grads.delta[l]), ("dW", "=", s.grads.dW[l]),
                ("db", "=", s.grads.db[l]), ("W", "<-", s.net.W[l]), ("b", "<-", s.net.b[l])]
        for name, op, value in rows:
            label = f"    {f'{name}[{l}]':<{width}} {op:<2} "
            text = np.array2string(_backend.to_numpy(value), prefix=label, precision=precision,
                                   **_OPTS)
            lines.append(label + text)
    return "\n".join(lines)


def format_text(spec: TraceSpec, steps: list[TraceStep], precision: int = 9) -> str:
    """The human-readable trace, in the notation of docs/derivation.md.

    Parameters
    ----------
    spec : TraceSpec
    steps : list of TraceStep
        The output of :func:`run` on ``spec``.
    precision : int
        Digits after the decimal point (NumPy printing; trailing zeros dropped).
    """
    parts = [format_header(spec)]
    for k, s in enumerate(steps, start=1):
        parts.append(format_step(spec, k, s, _before(spec, steps, k), precision))
    return "\n\n".join(parts)


def _before(spec, steps, k) -> Network:
    """The network before step k (1-based)."""
    return spec.net if k == 1 else steps[k - 2].net

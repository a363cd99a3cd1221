"""Model files and checkpoints in safetensors: plain tensors plus string metadata, never pickle.

A model file holds the tensors ``"W.1", "b.1", ..., "W.L", "b.L"`` (shapes (n_l, n_{l-1})
and (n_l,)) and these metadata strings:

=================  ====================================================================
``format``         ``"deltaprop"`` (a checkpoint: ``"deltaprop-checkpoint"``)
``format_version`` ``"1"``
``sizes``          JSON list ``[n_0, ..., n_L]``
``activations``    JSON list of the L activation names, layer 1 first
``dtype``          ``"float32"`` or ``"float64"``
``meta``           JSON object: loss, standardisation (mean/std), classes, task, training
                   configuration, history summary, ... (whatever the caller passed)
``standardized``   ``"true"`` when ``meta["standardization"]`` holds the inputs'
                   standardisation, else ``"false"``
=================  ====================================================================

Standardisation: a network trained on standardised inputs gives wrong answers, silently,
on raw ones (a digits model evaluated at 0.78 instead of 0.96 when it was lost), so a file
that carries it says so.  :func:`save_model` checks ``meta["standardization"]`` (keys
``mean`` and ``scale``, one finite value per input, scales > 0) and writes
``standardized``; :func:`load_model` raises ``ValueError`` naming the file and the missing
or inconsistent keys when a file says ``"true"`` but its ``standardization`` is missing, has
the wrong length or bad values, or says ``"false"`` but carries one.  A file written before
this marker existed counts as standardised when its ``meta`` comes from
``deltaprop train`` (it has ``settings`` and ``history``: every such run standardises).

:func:`load_model` checks all of it -- the marker, the version, the tensor names, shapes,
dtypes and that every value is finite -- and raises ``ValueError`` naming the file and the
problem for anything else (a foreign safetensors file, a pickle, a truncated file, random
bytes).  Every write is atomic: a temporary file in the same folder, ``fsync``, then
``os.replace``, so a crash never leaves a half-written model or checkpoint behind; an
error names the file the caller asked for, never the temporary one, and says what to do.
:func:`remove_temp_files` clears the temporary files a killed write left behind.

A checkpoint is a model file with format ``"deltaprop-checkpoint"`` and, in addition, the
optimiser state (tensors ``"opt.<key>"``, scalars in metadata ``opt_scalars``), the NumPy
random generator state (``rng``: ``bit_generator.state`` as JSON), the number of finished
epochs and the history so far.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import stat
import struct
from pathlib import Path

import numpy as np

from .. import activations as _act
from .._backend import dtype_name, to_numpy
from ..network import Network

__all__ = ["FORMAT", "FORMAT_VERSION", "save_model", "load_model", "save_checkpoint",
           "load_checkpoint", "atomic_write_bytes", "atomic_write_text", "remove_temp_files"]

FORMAT = "deltaprop"
CHECKPOINT_FORMAT = "deltaprop-checkpoint"
FORMAT_VERSION = 1
#: the file of each format that a run folder of ``deltaprop train`` holds
_FILE_IN_RUN = {FORMAT: "model.safetensors", CHECKPOINT_FORMAT: "checkpoint.safetensors"}
#: what to do when one format is given for the other
_OTHER_KIND = {
    (CHECKPOINT_FORMAT, FORMAT): " (a training checkpoint, read by train --resume RUN_DIR; "
                                 "give the run's model.safetensors)",
    (FORMAT, CHECKPOINT_FORMAT): " (a model file; a run's checkpoint is its "
                                 "checkpoint.safetensors)"}
_DTYPES = {"F32": "float32", "F64": "float64"}
_MAX_HEADER = 16 * 1024 * 1024


# --- atomic writes ----------------------------------------------------------------------

def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, replace).

    The file gets the permissions a plain ``open(path, "w")`` would give it: those of the
    file it replaces, else 0o666 less the umask.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {path}: it is a folder; give a file name")
    try:
        fd, tmp = _temp_file(folder, path.name)
    except OSError as exc:
        raise _write_error(exc, path, folder) from None
    try:
        try:  # keep the mode of the file being replaced
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except OSError:
            pass
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _write_error(exc, path, folder) from None
        raise
    try:  # make the rename itself durable (best effort: not every OS allows this)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _write_error(exc: OSError, path, folder) -> OSError:
    """``exc`` retold about the user's ``path`` (never the temporary file), with what to do;
    the same exception class and ``errno``."""
    import errno as _errno

    what = {_errno.ENOENT: f"folder {folder} does not exist; create it first",
            _errno.EACCES: f"permission denied in folder {folder}; write somewhere else or "
                           "change the folder's permissions",
            _errno.EPERM: f"permission denied in folder {folder}; write somewhere else",
            _errno.EROFS: f"folder {folder} is on a read-only file system; write somewhere "
                          "else",
            _errno.ENOSPC: "no space left on the device; free some space and run again (the "
                           "old file, if any, is unchanged)",
            _errno.EDQUOT: "disk quota exceeded; free some space and run again",
            _errno.EISDIR: "it is a folder; give a file name",
            _errno.ENOTDIR: f"{folder} is not a folder"}.get(exc.errno)
    if what is None:
        what = f"{exc.strerror or type(exc).__name__}"
    new = type(exc)(f"cannot write {path}: {what}")
    new.errno = exc.errno
    return new


def remove_temp_files(folder, names=None) -> list[Path]:
    """Remove the temporary files ``.<name>.<hex>.tmp`` that a killed atomic write left in
    ``folder`` (only for ``names``, if given); returns the paths removed.  Call it when no
    other process writes into ``folder``."""
    import re

    folder, gone = Path(folder), []
    pattern = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")
    if not folder.is_dir():
        return gone
    for p in folder.iterdir():
        m = pattern.match(p.name)
        if m and (names is None or m["name"] in names) and p.is_file():
            try:
                p.unlink()
                gone.append(p)
            except OSError:
                pass
    return gone


def _temp_file(folder, name):
    """(fd, path) of a new, exclusive temporary file ``.<name>.<random>.tmp`` in ``folder``,
    created with mode 0o666 so that the umask applies (``tempfile.mkstemp`` forces 0o600)."""
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                           0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: cannot create a temporary file for {name}")


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


# --- model files ------------------------------------------------------------------------

def _tensors(net: Network, prefix="") -> dict:
    if net.K is not None:
        raise ValueError("model files hold one network; save the members of a stack one by one "
                         "(net[k])")
    net = net.numpy()
    out = {}
    for l in range(1, net.L + 1):
        out[f"{prefix}W.{l}"] = np.ascontiguousarray(net.W[l])
        out[f"{prefix}b.{l}"] = np.ascontiguousarray(net.b[l])
    return out


def _header(net: Network, fmt: str, meta) -> dict:
    meta = _jsonable(meta or {})
    if meta.get("standardization") is not None:
        problem = _standardization_problem(meta["standardization"], net.sizes[0])
        if problem:
            raise ValueError(f"meta['standardization'] {problem}")
    return {"format": fmt, "format_version": str(FORMAT_VERSION),
            "sizes": json.dumps(net.sizes), "activations": json.dumps(net.activation_names()),
            "dtype": dtype_name(net.dtype), "meta": json.dumps(meta, allow_nan=False),
            "standardized": "true" if meta.get("standardization") is not None else "false"}


def _standardization_problem(std, n0) -> str | None:
    """What is wrong with a standardisation ``{"mean": [...], "scale": [...]}`` for ``n0``
    inputs, or None."""
    if not isinstance(std, dict):
        return f"must be an object with keys 'mean' and 'scale', got {type(std).__name__}"
    missing = [k for k in ("mean", "scale") if k not in std]
    if missing:
        return f"lacks the key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
    for key in ("mean", "scale"):
        v = std[key]
        if not (isinstance(v, list) and all(isinstance(x, int | float) and
                                            not isinstance(x, bool) for x in v)):
            return f"{key!r} must be a list of numbers"
        if len(v) != n0:
            return f"{key!r} has {len(v)} values but the model has n_0 = {n0} inputs"
        if not all(math.isfinite(x) and (key == "mean" or x > 0) for x in v):
            return f"{key!r} holds a value that is not finite" + \
                ("" if key == "mean" else " or not > 0")
    return None


def _check_standardization(meta, info, n0, bad):
    """A file that says it is standardised carries a consistent standardisation."""
    flag = meta.get("standardized")
    if flag not in (None, "true", "false"):
        raise bad(f"metadata 'standardized' must be 'true' or 'false', got {flag!r}")
    has = info.get("standardization") is not None
    claims = flag == "true" or (flag is None and {"settings", "history"} <= set(info))
    if claims and not has:
        raise bad("it says its inputs are standardised but meta lacks 'standardization' "
                  "(keys 'mean' and 'scale', one value per input): without them every "
                  "prediction is computed on unstandardised inputs; restore them or retrain")
    if flag == "false" and has:
        raise bad("metadata 'standardized' is 'false' but meta holds a 'standardization'; "
                  "the two must agree")
    if has:
        problem = _standardization_problem(info["standardization"], n0)
        if problem:
            raise bad(f"meta 'standardization' {problem}")


def _jsonable(obj):
    """Metadata as plain JSON (NumPy arrays and scalars become lists and numbers)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _encode(tensors: dict, header: dict) -> bytes:
    from safetensors.numpy import save

    return save(tensors, metadata=header)


def save_model(path, net: Network, meta: dict | None = None) -> Path:
    """Save ``net`` (a single network) and a JSON-able ``meta`` dict to a safetensors file.

    Parameters
    ----------
    path : str or Path
        Destination; written atomically (the old file survives any failure).
    net : Network
        Any backend; the parameters are copied to the host.
    meta : dict, optional
        Loss, standardisation, classes, training configuration, history summary, ...
    """
    return atomic_write_bytes(path, _encode(_tensors(net), _header(net, FORMAT, meta)))


def _read(path, want_format):
    """(tensors, metadata) of a deltaprop safetensors file, or ValueError naming the problem."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        inside = path / _FILE_IN_RUN[want_format]
        hint = f": give {inside}" if inside.is_file() else ""  # a run folder
        raise ValueError(f"{path}: is a folder, not a {want_format} file{hint}")
    try:
        data = path.read_bytes()
    except PermissionError:
        raise PermissionError(f"cannot read {path}: permission denied") from None

    def bad(problem):
        return ValueError(f"{path}: not a valid {want_format} file: {problem}")

    n = struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else -1
    if not 2 <= n <= min(len(data) - 8, _MAX_HEADER):
        if data[:1] == b"\x80" or data[:2] == b"PK":  # checked only once it is not safetensors
            kind = "a pickle" if data[:1] == b"\x80" else "a zip (PyTorch .pt?) archive"
            raise bad(f"it looks like {kind}; deltaprop never loads pickles")
        if len(data) < 8:
            raise bad(f"only {len(data)} bytes, too short for a safetensors header")
        raise bad(f"header length {n} does not fit the file's {len(data)} bytes "
                  "(truncated or not safetensors)")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise bad(f"the header is not JSON ({type(exc).__name__})") from None
    if not isinstance(header, dict):
        raise bad("the header is not a JSON object")
    meta = header.get("__metadata__")
    if not isinstance(meta, dict) or meta.get("format") != want_format:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise bad("no deltaprop format marker (a foreign safetensors file?)" if found is None
                  else f"format is {found!r}, expected {want_format!r}" + _OTHER_KIND.get(
                      (found, want_format), ""))
    if meta.get("format_version") != str(FORMAT_VERSION):
        raise bad(f"format version {meta.get('format_version')!r} is not supported "
                  f"(this deltaprop reads version {FORMAT_VERSION})")
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _DTYPES:
            dt = info.get("dtype") if isinstance(info, dict) else None
            raise bad(f"tensor {key!r} has dtype {dt!r}; only F32 and F64 are allowed")
    try:
        from safetensors.numpy import load

        tensors = load(data)
    except BaseException as exc:  # the Rust parser's errors, a pyo3 PanicException included
        if isinstance(exc, KeyboardInterrupt | SystemExit | MemoryError):
            raise
        msg = " ".join(str(exc).split())[:200]
        raise bad(f"safetensors could not parse it ({msg})") from None
    return tensors, meta, bad


def _json_field(meta, key, bad):
    try:
        return json.loads(meta[key])
    except KeyError:
        raise bad(f"metadata {key!r} is missing") from None
    except (TypeError, json.JSONDecodeError, RecursionError):
        raise bad(f"metadata {key!r} is not valid JSON") from None


def _network(tensors, meta, bad, prefix=""):
    sizes = _json_field(meta, "sizes", bad)
    if not (isinstance(sizes, list) and len(sizes) >= 2 and
            all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)):
        raise bad(f"sizes must be a list of >= 2 positive integers, got {str(sizes)[:80]}")
    L = len(sizes) - 1
    names = _json_field(meta, "activations", bad)
    if not (isinstance(names, list) and len(names) == L and all(isinstance(a, str) for a in names)):
        raise bad(f"activations must list {L} names (one per layer), got {str(names)[:80]}")
    for a in names:
        if a not in _act.ACTIVATIONS:
            raise bad(f"unknown activation {a!r}")
    dtype = meta.get("dtype")
    if dtype not in ("float32", "float64"):
        raise bad(f"dtype must be float32 or float64, got {dtype!r}")
    want = {f"{prefix}{k}.{l}" for l in range(1, L + 1) for k in ("W", "b")}
    if prefix:
        have = {k for k in tensors if k.startswith(prefix)}
    elif meta.get("format") == CHECKPOINT_FORMAT:
        have = {k for k in tensors if not k.startswith(("opt.", "best."))}
    else:
        have = set(tensors)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise bad("tensor names do not match sizes " + str(sizes) +
                  (f"; missing {missing[:4]}" if missing else "") +
                  (f"; unexpected {extra[:4]}" if extra else ""))
    W, b = [None], [None]
    for l in range(1, L + 1):
        for kind, shape, out in (("W", (sizes[l], sizes[l - 1]), W), ("b", (sizes[l],), b)):
            key = f"{prefix}{kind}.{l}"
            t = tensors[key]
            if tuple(t.shape) != shape:
                raise bad(f"tensor {key!r} has shape {tuple(t.shape)}, sizes say {shape}")
            if t.dtype != np.dtype(dtype):
                raise bad(f"tensor {key!r} has dtype {t.dtype}, metadata says {dtype}")
            if not np.all(np.isfinite(t)):
                raise bad(f"tensor {key!r} contains NaN or inf")
            out.append(t)
    try:
        return Network(tuple(W), tuple(b), ("identity", *names))
    except (ValueError, TypeError) as exc:
        raise bad(str(exc)) from None


def load_model(path) -> tuple[Network, dict]:
    """Read a model file written by :func:`save_model`: returns ``(net, meta)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        For anything that is not a valid deltaprop model file; the message names the file
        and the problem.  Files are parsed as data only; nothing is ever unpickled.
    """
    tensors, meta, bad = _read(path, FORMAT)
    net = _network(tensors, meta, bad)
    info = _json_field(meta, "meta", bad)
    if not isinstance(info, dict):
        raise bad("metadata 'meta' must be a JSON object")
    _check_standardization(meta, info, net.sizes[0], bad)
    return net, info


# --- checkpoints ------------------------------------------------------------------------

def save_checkpoint(path, net: Network, opt_state: dict, *, rng_state: dict, epoch: int,
                    history: list, extra: dict | None = None, best: Network | None = None):
    """Write a training checkpoint atomically (see the module docstring for the layout).

    ``opt_state`` values are arrays (stored as tensors ``opt.<key>``) or Python/NumPy
    scalars (stored in the metadata).  ``best`` is an optional second network (the best
    weights so far, kept for early stopping).
    """
    tensors = _tensors(net)
    scalars = {}
    for key, value in opt_state.items():
        if isinstance(value, int | float | np.generic):
            scalars[key] = _jsonable(value)
        else:
            tensors[f"opt.{key}"] = np.ascontiguousarray(to_numpy(value))
    if best is not None:
        tensors.update(_tensors(best, prefix="best."))
    header = _header(net, CHECKPOINT_FORMAT, extra)
    header.update(opt_scalars=json.dumps(scalars), rng=json.dumps(_jsonable(rng_state)),
                  epoch=str(int(epoch)), history=json.dumps(_jsonable(history)))
    return atomic_write_bytes(path, _encode(tensors, header))


def load_checkpoint(path) -> dict:
    """Read a checkpoint: a dict with ``net``, ``opt_state``, ``rng_state``, ``epoch``,
    ``history``, ``extra`` and ``best`` (a network or ``None``)."""
    tensors, meta, bad = _read(path, CHECKPOINT_FORMAT)
    net = _network(tensors, meta, bad)
    best = _network(tensors, meta, bad, prefix="best.") if "best.W.1" in tensors else None
    scalars = _json_field(meta, "opt_scalars", bad)
    rng = _json_field(meta, "rng", bad)
    history = _json_field(meta, "history", bad)
    extra = _json_field(meta, "meta", bad)
    if not (isinstance(scalars, dict) and isinstance(rng, dict) and isinstance(history, list)
            and isinstance(extra, dict)):
        raise bad("optimiser scalars, rng state, history or meta have the wrong JSON type")
    try:
        epoch = int(meta.get("epoch", ""))
    except ValueError:
        raise bad("epoch is not an integer") from None
    opt_state = dict(scalars)
    for key, t in tensors.items():
        if key.startswith("opt."):
            if not np.all(np.isfinite(t)):
                raise bad(f"tensor {key!r} contains NaN or inf")
            opt_state[key[4:]] = t
    return {"net": net, "opt_state": opt_state, "rng_state": rng, "epoch": epoch,
            "history": history, "extra": extra, "best": best}

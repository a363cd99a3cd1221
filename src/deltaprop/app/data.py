"""Data sets: built-in sets, CSV / NumPy / IDX loaders, splits, standardisation, batches.

Shapes (DESIGN.md): rows are samples.

* ``Dataset.x``: (m, n_0) float64 features;
* ``Dataset.y``: (m,) int64 labels indexing ``Dataset.classes`` for classification, or
  (m, k) float64 targets for regression;
* ``one_hot(y, n)``: (m, n); ``batches`` yields index arrays into the m rows.

Every loader error -- missing file, unreadable or wrong-format file, non-numeric CSV cell,
ragged rows, NaN/inf, unknown target column, IDX magic or shape mismatch, truncated gzip,
empty file, an IDX file too large for the available memory -- raises :class:`ValueError`
(or :class:`FileNotFoundError`) with one line that names the file and the problem.

The moons set, the splits and the standardisation are scikit-learn's own (``make_moons``,
``train_test_split``, ``StandardScaler``) behind deltaprop's names; scikit-learn is
imported lazily, on first use, so ``import deltaprop.app.data`` stays fast.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from operator import itemgetter

import numpy as np

from .._checks import one_hot, parse_batch_size

__all__ = ["Dataset", "DataNote", "load", "BUILTINS", "train_val_test_split", "Standardizer",
           "one_hot", "batches", "available_memory", "refuse_unless_fits", "gibibytes"]

TASKS = ("classification", "regression")


class DataNote(UserWarning):
    """A loader changed what it read, and says what (e.g. dropped a pandas index column)."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Features and targets of one data set.

    Attributes
    ----------
    x : ndarray, (m, n_0), float64
    y : ndarray
        (m,) int64 indices into ``classes`` (classification) or (m, k) float64 (regression).
    task : {"classification", "regression"}
    classes : ndarray or None
        The original label values (numbers or strings); ``classes[y]`` are the labels.
    name : str
    feature_names : list of str or None
    """

    x: np.ndarray
    y: np.ndarray
    task: str
    classes: np.ndarray | None = None
    name: str = ""
    feature_names: list[str] | None = None

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.x.ndim != 2 or self.y.shape[:1] != self.x.shape[:1]:
            raise ValueError(f"{self.name or 'dataset'}: x {self.x.shape} and y {self.y.shape} "
                             "must be (m, n) and (m,) or (m, k)")
        if self.task == "classification" and (self.classes is None or self.y.ndim != 1):
            raise ValueError("a classification data set needs 1-D labels and `classes`")
        if self.task == "regression" and self.y.ndim != 2:
            raise ValueError("a regression data set needs 2-D targets y (m, k)")

    @property
    def m(self) -> int:
        """Number of samples."""
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """n_0, the input width."""
        return int(self.x.shape[1])

    @property
    def n_classes(self) -> int | None:
        """Number of classes (``None`` for regression)."""
        return None if self.classes is None else len(self.classes)

    @property
    def n_outputs(self) -> int:
        """n_L a network needs: the number of classes, or k targets."""
        return self.n_classes if self.task == "classification" else int(self.y.shape[1])

    def labels(self) -> np.ndarray:
        """The original label values ``classes[y]`` (classification only)."""
        if self.classes is None:
            raise ValueError("a regression data set has no labels")
        return self.classes[self.y]

    def subset(self, idx, name=None) -> Dataset:
        """The rows ``idx`` (same classes and feature names)."""
        return replace(self, x=self.x[idx], y=self.y[idx], name=name or self.name)

    def __repr__(self):
        extra = f", classes={self.n_classes}" if self.classes is not None else \
            f", k={self.y.shape[1]}"
        return f"Dataset({self.name!r}, m={self.m}, n_0={self.n_features}, {self.task}{extra})"


# ---------------------------------------------------------------------------- built-ins
def _sklearn_set(loader_name):
    def load_():
        from sklearn import datasets
        bunch = getattr(datasets, loader_name)()
        classes = np.asarray(bunch.target_names)
        return bunch.data, bunch.target, classes, list(map(str, bunch.feature_names))
    return load_


def _xor(m=400, seed=0):
    """Noisy XOR: x ~ U(-1, 1)^2, label (x_1 > 0) xor (x_2 > 0)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (m, 2))
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(np.int64)
    return x, y, np.array([0, 1]), ["x1", "x2"]


def _moons(m=400, noise=0.15, seed=0):
    """Two interleaving half circles: scikit-learn's ``make_moons``, Gaussian noise, shuffled."""
    from sklearn.datasets import make_moons

    x, y = make_moons(n_samples=m, noise=noise, random_state=seed)
    return x, y.astype(np.int64), np.array([0, 1]), ["x1", "x2"]


def _regression(m=500, seed=0):
    """y = sin(2 x_1) + x_2^2 / 2 - x_3 + 0.1 eps, x ~ U(-1.5, 1.5)^3, eps ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.5, 1.5, (m, 3))
    y = np.sin(2 * x[:, 0]) + 0.5 * x[:, 1] ** 2 - x[:, 2] + 0.1 * rng.normal(size=m)
    return x, y[:, None], None, ["x1", "x2", "x3"]


#: name -> loader returning (x, y, classes or None, feature_names); nothing is downloaded
BUILTINS = {
    "digits": _sklearn_set("load_digits"),
    "iris": _sklearn_set("load_iris"),
    "wine": _sklearn_set("load_wine"),
    "breast_cancer": _sklearn_set("load_breast_cancer"),
    "xor": _xor,
    "moons": _moons,
    "regression": _regression,
}


def _builtin(name, task):
    x, y, classes, features = BUILTINS[name]()
    x = np.asarray(x, dtype=np.float64)
    if classes is None:
        ds = Dataset(x, np.asarray(y, np.float64), "regression", None, name, features)
    else:
        ds = Dataset(x, np.asarray(y, np.int64), "classification", classes, name, features)
    if task is not None and task != ds.task:
        raise ValueError(f"built-in data set {name!r} is for {ds.task}, not {task}")
    return ds


# ---------------------------------------------------------------------------- load
def load(source, *, target=None, task=None) -> Dataset:
    """Load a built-in data set or a file.

    Parameters
    ----------
    source : str or path
        A built-in name (``digits``, ``iris``, ``wine``, ``breast_cancer``, ``xor``,
        ``moons``, ``regression``), or a file: CSV (``.csv``, ``.tsv``, ``.txt``), ``.npy``
        (last column is the target), ``.npz`` (keys ``x``/``X`` and ``y``/``Y``), or an IDX
        images file (MNIST format, optionally gzipped) whose labels file is found by the
        MNIST naming (``...images-idx3-ubyte`` -> ``...labels-idx1-ubyte``) or given as
        ``"images.idx:labels.idx"``.  Files are recognised by content, not only by suffix.
    target : str or int, optional
        CSV only: the target column, by header name or index (negative counts from the end).
        Default: the last column.  Unnamed leading columns holding 0..m-1 (pandas'
        ``to_csv`` index) are dropped with a :class:`DataNote` warning.
    task : {"classification", "regression"}, optional
        Override the guess: classification if the target is integer-like or text.

    Returns
    -------
    Dataset

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Anything else wrong with the source, in one line naming the file.
    """
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"source must be a data set name or a path, got {type(source).__name__}")
    src = os.fspath(source)
    if src in BUILTINS:
        if target is not None:
            raise ValueError(f"{src}: target= applies to CSV files only, not to built-in sets")
        return _builtin(src, task)
    if not os.path.exists(src) and ":" in src:
        images, labels = src.split(":", 1)
        _must_exist(images)
        _must_exist(labels)
        return _load_idx(images, labels, task)
    _must_exist(src)
    head = _head(src)
    if target is not None and not _looks_like_csv(src, head):
        raise ValueError(f"{src}: target= applies to CSV files only")
    if head.startswith(b"\x93NUMPY"):
        return _load_npy(src, task)
    if head.startswith(b"PK"):
        return _load_npz(src, task)
    if _is_idx(head) or head.startswith(b"\x1f\x8b"):
        return _load_idx(src, None, task)
    if src.lower().endswith((".npy", ".npz", ".idx", ".gz", "ubyte")):
        raise ValueError(f"{src}: not a valid {_suffix(src)} file (unrecognised header)")
    return _load_csv(src, target, task)


def _must_exist(path):
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: no such file (and not a built-in data set: {', '.join(BUILTINS)})")
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a directory, not a data file")
    if not os.path.isfile(path):  # a device or a pipe could block or never end
        raise ValueError(f"{path}: not a regular file")


def _head(path, n=16):
    try:
        with open(path, "rb") as fh:
            head = fh.read(n)
    except OSError as exc:
        raise OSError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not head:
        raise ValueError(f"{path}: empty file")
    return head


def _suffix(path):
    return os.path.splitext(path)[1] or os.path.basename(path)


def _looks_like_csv(path, head):
    return not (head.startswith((b"\x93NUMPY", b"PK", b"\x1f\x8b")) or _is_idx(head))


def _read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise OSError(f"{path}: cannot read ({exc.strerror or exc})") from None


# ---------------------------------------------------------------------------- targets
def _is_integer_like(v: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(v)) and np.all(v == np.round(v)))


def _make(path, x, target, task, features=None, text_target=False):
    """Build a Dataset from features (m, n) and a raw target column (m,) or (m, k)."""
    if x.shape[0] == 0:
        raise ValueError(f"{path}: no samples (m = 0)")
    if x.shape[1] == 0:
        raise ValueError(f"{path}: no feature columns (only the target)")
    if not np.all(np.isfinite(x)):
        r, c = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"{path}: features contain NaN or inf (first at row {r}, column {c})")
    if text_target:
        if task == "regression":
            raise ValueError(f"{path}: the target holds text, so the task cannot be regression")
        task = "classification"
    else:
        target = np.asarray(target, dtype=np.float64)
        if not np.all(np.isfinite(target)):
            raise ValueError(f"{path}: target contains NaN or inf")
        if target.ndim == 2 and target.shape[1] == 1:
            target = target[:, 0]
        if task is None:
            task = "classification" if target.ndim == 1 and _is_integer_like(target) \
                else "regression"
        if task == "classification" and target.ndim == 2:
            onehot = np.all((target == 0) | (target == 1)) and np.all(target.sum(1) == 1)
            if not onehot:
                raise ValueError(f"{path}: a 2-D target with {target.shape[1]} columns is "
                                 "regression (or one-hot rows for classification)")
            target = target.argmax(1)
    name = os.path.basename(path)
    x = np.ascontiguousarray(x, dtype=np.float64)
    if task == "regression":
        y = target.reshape(len(target), -1)
        return Dataset(x, y, task, None, name, features)
    classes, y = np.unique(target, return_inverse=True)
    if not text_target and _is_integer_like(classes) and np.all(np.abs(classes) < 2**53):
        classes = classes.astype(np.int64)
    return Dataset(x, y.reshape(-1).astype(np.int64), task, classes, name, features)


# ---------------------------------------------------------------------------- CSV
def _parse_float(cell):
    try:
        return float(cell)
    except ValueError:
        return None


def _load_csv(path, target, task):
    rows = _csv_rows(path)
    width = len(rows[0])
    header = _has_header(rows)
    names = [c.strip() for c in rows[0]] if header else None
    body = rows[1:] if header else rows
    if not body:
        raise ValueError(f"{path}: a header but no data rows")
    start = 2 if header else 1  # the file's row number of body[0]
    for i, r in enumerate(body):
        if len(r) != width:
            raise ValueError(f"{path}: row {i + start} has {len(r)} columns, expected {width} "
                             "(ragged rows)")
    if width < 2:
        raise ValueError(f"{path}: needs at least two columns (features and a target), "
                         f"found {width}")
    t = _target_index(path, target, names, width)
    feat_cols = [j for j in range(width) if j != t]
    j = 0  # leading unnamed columns of row numbers: pandas' index, once per to_csv
    while header and j < width - 1 and j != t and _is_pandas_index(names[j], j, body):
        feat_cols.remove(j)
        warnings.warn(f"{path}: column {j} has no name and holds the row numbers "
                      f"0..{len(body) - 1} (pandas' default index, written by to_csv): "
                      "dropped, not read as a feature", DataNote, stacklevel=3)
        j += 1
    x = _csv_features(path, body, feat_cols, names, start)
    target_values, text_target = _csv_target(path, body, t, start)
    features = [names[j] for j in feat_cols] if names else None
    return _make(path, x, target_values, task, features, text_target)


def _csv_rows(path):
    """The non-blank rows of a CSV (or TSV) file as lists of cells; the delimiter is the
    most frequent of ``,;\\t`` on the first line (tab for .tsv)."""
    raw = _read(path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not a UTF-8 text (CSV) file (byte {exc.start} cannot be "
                         "decoded)") from None
    if "\x00" in text:
        raise ValueError(f"{path}: binary data (NUL bytes), not a CSV file")
    first = next((ln for ln in text.splitlines() if ln.strip()), None)
    if first is None:
        raise ValueError(f"{path}: empty file (no rows)")
    if path.lower().endswith(".tsv"):
        delim = "\t"
    else:
        counts = {d: first.count(d) for d in ",;\t"}
        delim = max(counts, key=counts.get) if max(counts.values()) else ","
    try:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim, strict=True)
        rows = [r for r in reader if any(c.strip() for c in r)]
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise ValueError(f"{path}: empty file (no rows)")
    return rows


def _csv_features(path, body, feat_cols, names, start):
    """x (m, n_0) from the feature columns; the first cell that is not a number is named."""
    try:  # fast path: NumPy parses every cell at once
        x = np.array(list(map(itemgetter(*feat_cols), body)), dtype=np.float64)
        return x.reshape(len(body), len(feat_cols))
    except ValueError:  # find the first bad cell for the message, parsing as Python does
        x = np.empty((len(body), len(feat_cols)))
        for i, r in enumerate(body):
            for jj, j in enumerate(feat_cols):
                v = _parse_float(r[j])
                if v is None:
                    col = f"{j} ({names[j]!r})" if names else str(j)
                    raise ValueError(f"{path}: row {i + start}, column {col}: {r[j]!r} is not "
                                     "a number") from None
                x[i, jj] = v
        return x


def _csv_target(path, body, t, start):
    """(target values, whether they are text): numbers if every cell parses, else the
    cells as text (class names; an empty one is an error)."""
    cells = [r[t].strip() for r in body]
    values = [_parse_float(c) for c in cells]
    if all(v is not None for v in values):
        return np.array(values), False
    empty = [i for i, c in enumerate(cells) if not c]
    if empty:
        raise ValueError(f"{path}: row {empty[0] + start}: the target cell is empty")
    return np.array(cells), True


def _is_pandas_index(name, j, body):
    """Column j is unnamed (pandas writes "", and "Unnamed: k" for an index it read back)
    and holds exactly 0, 1, ..., m - 1: the index that ``DataFrame.to_csv`` writes."""
    unnamed = name == "" or (name.startswith("Unnamed: ") and name[9:].isdigit())
    return unnamed and \
        [r[j].strip() for r in body] == [str(i) for i in range(len(body))]


def _has_header(rows):
    """The first row is a header if one of its cells is text in a column of numbers."""
    first, rest = rows[0], rows[1:]
    if not rest:
        return all(_parse_float(c) is None for c in first)
    for j, cell in enumerate(first):
        if _parse_float(cell) is None and all(
                j < len(r) and _parse_float(r[j]) is not None for r in rest):
            return True
    return all(_parse_float(c) is None for c in first) and len(rest) > 0 and \
        any(_parse_float(c) is not None for c in rest[0])


def _target_index(path, target, names, width):
    if target is None:
        return width - 1
    if isinstance(target, str) and names is not None and target.strip() in names:
        return names.index(target.strip())
    if isinstance(target, str):
        try:
            target = int(target)
        except ValueError:
            where = f"columns: {', '.join(names)}" if names else "the file has no header row"
            raise ValueError(f"{path}: no target column {target!r} ({where})") from None
    if isinstance(target, bool) or not isinstance(target, int | np.integer):
        raise ValueError(f"{path}: target must be a column name or index, got {target!r}")
    if not -width <= target < width:
        raise ValueError(f"{path}: target column {target} does not exist ({width} columns)")
    return int(target) % width


# ---------------------------------------------------------------------------- NumPy
def _npy_from_bytes(buf: bytes, where: str) -> np.ndarray:
    """Parse .npy bytes with the header checked against the data size (no pickles)."""
    fmt = np.lib.format
    fh = io.BytesIO(buf)
    try:
        version = fmt.read_magic(fh)
        read_header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}
        if version not in read_header:
            raise ValueError(f"unsupported .npy version {version}")
        shape, fortran, dtype = read_header[version](fh)
    except Exception as exc:  # numpy raises ValueError, SyntaxError, EOFError, ...
        raise ValueError(f"{where}: not a valid .npy array ({_one_line(exc)})") from None
    if dtype.hasobject or dtype.names is not None or dtype.kind not in "biuf":
        raise ValueError(f"{where}: holds {dtype} data; numbers are needed")
    count = math.prod(shape)
    data = buf[fh.tell():]
    if len(data) != count * dtype.itemsize:
        raise ValueError(f"{where}: header says shape {shape} ({count * dtype.itemsize} bytes) "
                         f"but {len(data)} bytes of data follow (truncated or corrupt)")
    arr = np.frombuffer(data, dtype=dtype, count=count)
    return arr.reshape(shape, order="F" if fortran else "C")


def _load_npy(path, task):
    arr = _npy_from_bytes(_read(path), path)
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise ValueError(f"{path}: a .npy data file must be 2-D (m, n_0 + 1) with the target "
                         f"in the last column, got shape {arr.shape}")
    arr = arr.astype(np.float64)
    return _make(path, arr[:, :-1], arr[:, -1], task)


def _load_npz(path, task):
    try:
        with zipfile.ZipFile(path) as zf:
            members = {n[:-4] if n.endswith(".npy") else n: n for n in zf.namelist()}
            kx = next((k for k in ("x", "X") if k in members), None)
            ky = next((k for k in ("y", "Y") if k in members), None)
            if kx is None or ky is None:
                raise ValueError(f"{path}: an .npz data file needs arrays 'x' (or 'X') and 'y' "
                                 f"(or 'Y'); found {sorted(members) or 'none'}")
            arrays = {}
            for k in (kx, ky):
                info = zf.getinfo(members[k])
                if info.file_size > 2**34:
                    raise ValueError(f"{path}: array {k!r} is implausibly large")
                arrays[k] = _npy_from_bytes(zf.read(info), f"{path}[{k}]")
    except ValueError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
            RuntimeError) as exc:
        raise ValueError(f"{path}: not a valid .npz file ({_one_line(exc)})") from None
    x, y = arrays[kx], arrays[ky]
    if x.ndim < 2 or y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
        raise ValueError(f"{path}: x must be (m, n_0, ...) and y (m,) or (m, k); got x "
                         f"{x.shape}, y {y.shape}")
    return _make(path, x.reshape(x.shape[0], -1).astype(np.float64), y, task)


# ---------------------------------------------------------------------------- IDX (MNIST)
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _is_idx(head: bytes) -> bool:
    return len(head) >= 4 and head[0] == 0 and head[1] == 0 and head[2] in _IDX_TYPES \
        and 1 <= head[3] <= 4


def _read_exact(fh, n, path, what):
    try:
        buf = fh.read(n)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({_one_line(exc)})") from None
    if len(buf) != n:
        raise ValueError(f"{path}: truncated: {what} needs {n} bytes, only {len(buf)} present")
    return buf


def _read_idx(path) -> np.ndarray:
    """One IDX array (big-endian header: 0, 0, type code, ndim, then ndim uint32 sizes)."""
    gz = _head(path, 2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        fh = opener(path, "rb")
    except OSError as exc:
        raise OSError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        magic = _read_exact(fh, 4, path, "the IDX magic number")
        if not _is_idx(magic):
            raise ValueError(f"{path}: not an IDX file (magic bytes {magic.hex()}; expected "
                             "00 00 <type 08/09/0b/0c/0d/0e> <ndim 1-4>)")
        ndim = magic[3]
        shape = struct.unpack(f">{ndim}I", _read_exact(fh, 4 * ndim, path, "the IDX shape"))
        dtype = np.dtype(_IDX_TYPES[magic[2]])
        nbytes = math.prod(shape) * dtype.itemsize
        _check_memory(path, shape, nbytes + math.prod(shape) * 8)  # the data, then float64
        data = _read_exact(fh, nbytes, path, f"IDX data of shape {shape}")
        try:
            extra = fh.read(1)
        except (EOFError, OSError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({_one_line(exc)})") from None
        if extra:
            raise ValueError(f"{path}: extra bytes after the IDX data of shape {shape}")
    return np.frombuffer(data, dtype=dtype).reshape(shape)


def available_memory() -> int | None:
    """Bytes this process may still allocate: the smaller of the system's MemAvailable
    (/proc/meminfo) and what its cgroup (v2) limit leaves; None where neither is known."""
    found = []
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read().strip())
        if limit != "max":
            found.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def refuse_unless_fits(need, what, advice, *, fraction=0.8, error=ValueError):
    """Refuse ``what``, which would need ``need`` bytes, when that is more than ``fraction``
    (80%) of the memory available now (:func:`available_memory`; nothing is refused where
    that is unknown): one line, "<what> would need about X GiB and Y GiB is available:
    <advice>", sizes in GiB to 3 significant digits (:func:`gibibytes`).

    The one memory check of every command and of the library's own refusals.  ``advice`` is
    a string, or a function of the budget (``fraction`` of what is available, in bytes) that
    is called only on refusal (train's widest layer that fits).  ``error`` is the exception
    raised: ValueError, which the command line prints as one line with exit status 2.
    """
    have = available_memory()
    if have is None or need <= fraction * have:
        return
    if callable(advice):
        advice = advice(fraction * have)
    raise error(f"{what} would need about {gibibytes(need)} GiB and {gibibytes(have)} GiB "
                f"is available: {advice}")


def gibibytes(n) -> str:
    """``n`` bytes in GiB for a message: 3 significant digits, whole GiB with thousands
    separators from 1000 GiB on (never an exponent: ``394,000``, ``0.931``, ``8.67e-06`` only
    below a kibibyte)."""
    g = n / 2.0 ** 30
    rounded = float(f"{g:.3g}")
    return f"{rounded:,.0f}" if rounded >= 1000 else f"{g:.3g}"


def _check_memory(path, shape, need):
    """Refuse, before allocating, an IDX array whose loading would not fit in memory."""
    refuse_unless_fits(need, f"{path}: IDX header says shape {shape}; loading it as float64 "
                       "features", "use a smaller file, or a machine with more memory")


def _labels_path(images):
    d, base = os.path.split(images)
    cands = []
    for a, b in (("images-idx3", "labels-idx1"), ("images.idx3", "labels.idx1"),
                 ("images", "labels")):
        if a in base:
            cands.append(base.replace(a, b))
    for c in list(cands):
        cands += [c[:-3]] if c.endswith(".gz") else [c + ".gz"]
    for c in cands:
        if os.path.exists(os.path.join(d, c)):
            return os.path.join(d, c)
    hint = cands[0] if cands else "a name with 'images' replaced by 'labels'"
    raise ValueError(f"{images}: no labels file found next to it (looked for {hint}); "
                     "give both as IMAGES:LABELS")


def _load_idx(images, labels, task):
    x = _read_idx(images)
    if x.ndim == 1:
        raise ValueError(f"{images}: is a 1-D IDX (labels) file; give the images file")
    labels = labels or _labels_path(images)
    y = _read_idx(labels)
    if y.ndim != 1:
        raise ValueError(f"{labels}: a labels file must be 1-D, got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{labels}: {y.shape[0]} labels for {x.shape[0]} images in {images}")
    return _make(images, x.reshape(x.shape[0], -1).astype(np.float64), y, task)


def _one_line(exc):
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]


# ---------------------------------------------------------------------------- splits
def train_val_test_split(ds: Dataset, val=0.1, test=0.2, seed=0, stratify=True):
    """Split into (train, val, test) with fractions ``val`` and ``test`` of the m samples.

    Counts are ``round(fraction * m)`` (at least one sample when the fraction is > 0; a
    fraction of 0 gives an empty split).  The rows are drawn by scikit-learn's
    ``train_test_split`` (test first, then validation from the rest, both with
    ``random_state=seed``); with ``stratify`` (classification only) each class is spread
    over the splits in proportion, unless a split is too small to hold every class or a
    class has a single sample, where the rows are drawn without stratification.
    """
    for nm, f in (("val", val), ("test", test)):
        if isinstance(f, bool) or not (isinstance(f, int | float) and 0 <= f < 1):
            raise ValueError(f"{nm} must be a fraction in [0, 1), got {f!r}")
    m = ds.m
    n_test = max(round(test * m), 1 if test > 0 else 0)
    n_val = max(round(val * m), 1 if val > 0 else 0)
    if n_test + n_val >= m:
        raise ValueError(f"val={val} and test={test} leave no training samples of m = {m}")
    strat = stratify and ds.task == "classification"
    rest, te = _split_off(np.arange(m), n_test, seed, ds.y if strat else None)
    tr, va = _split_off(rest, n_val, seed, ds.y[rest] if strat else None)
    return tuple(ds.subset(np.sort(i)) for i in (tr, va, te))


def _split_off(idx, n, seed, labels):
    """(rest, n drawn rows) of the index array idx, by scikit-learn's train_test_split."""
    if n == 0:
        return idx, idx[:0]
    from sklearn.model_selection import train_test_split

    if labels is not None:
        try:
            return train_test_split(idx, test_size=n, random_state=seed, stratify=labels)
        except ValueError:  # a class of one sample, or fewer rows than classes
            pass
    return train_test_split(idx, test_size=n, random_state=seed)


# ---------------------------------------------------------------------------- scaling
class Standardizer:
    """x -> (x - mean) / scale, with mean and scale (population std) fitted on training data.

    The fit is scikit-learn's ``StandardScaler`` (its ``mean_`` and ``scale_``); this class
    adds the model-file round trip (:meth:`to_dict`, :meth:`from_dict`) and one-line errors.
    A constant column gets scale 1, so it maps to zeros instead of dividing by zero.
    Fit on the training split only; apply the same transform to validation and test data.
    """

    def __init__(self, mean=None, scale=None):
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float64)
        if (self.mean is None) != (self.scale is None) or (
                self.mean is not None and (self.mean.shape != self.scale.shape
                                           or self.mean.ndim != 1)):
            raise ValueError("mean and scale must both be given as 1-D arrays of one length")
        if self.scale is not None and not np.all(np.isfinite(self.scale) & (self.scale > 0)):
            raise ValueError("scale must be positive and finite")

    def fit(self, x) -> Standardizer:
        """Fit mean and scale on x (m, n_0) with scikit-learn's StandardScaler; returns self."""
        from sklearn.preprocessing import StandardScaler

        x = _as_2d(x, "x")
        if x.shape[0] == 0:
            raise ValueError("cannot fit a Standardizer on 0 samples")
        scaler = StandardScaler().fit(x)
        self.mean, self.scale = scaler.mean_, scaler.scale_
        return self

    def _check(self, x):
        if self.mean is None:
            raise ValueError("Standardizer is not fitted; call fit(x_train) first")
        x = _as_2d(x, "x")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"x has {x.shape[1]} columns; the Standardizer was fitted on "
                             f"{self.mean.shape[0]}")
        return x

    def transform(self, x) -> np.ndarray:
        """(x - mean) / scale, shape (m, n_0)."""
        return (self._check(x) - self.mean) / self.scale

    def inverse_transform(self, x) -> np.ndarray:
        """x * scale + mean."""
        return self._check(x) * self.scale + self.mean

    def to_dict(self) -> dict:
        """``{"mean": [...], "scale": [...]}`` (plain lists) for model-file metadata."""
        if self.mean is None:
            raise ValueError("Standardizer is not fitted")
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, d) -> Standardizer:
        """The inverse of :meth:`to_dict`."""
        if not isinstance(d, dict) or not {"mean", "scale"} <= set(d):
            raise ValueError("a Standardizer dict needs 'mean' and 'scale' lists")
        return cls(d["mean"], d["scale"])

    def __repr__(self):
        n = "unfitted" if self.mean is None else f"n_0={self.mean.shape[0]}"
        return f"Standardizer({n})"


def _as_2d(x, name):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (m, n_0), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


# ---------------------------------------------------------------------------- encoding
def batches(m: int, batch_size, rng=None) -> Iterator[np.ndarray]:
    """Index arrays covering 0..m-1 once (one epoch) in minibatches.

    ``batch_size``: 1 = online (one sample per step); ``None``, 0 or ``"full"`` = the full
    batch (one step, indices in order); otherwise minibatches of that size (the last may be
    smaller).  ``rng`` (a ``numpy.random.Generator``) shuffles the order (one permutation per
    epoch; a single batch is never shuffled and draws nothing); ``None`` keeps the order.
    """
    batch_size = parse_batch_size(batch_size)  # 0 for the full batch
    if not batch_size or batch_size >= m:  # one batch: in order, no random draw
        yield np.arange(m)
        return
    order = rng.permutation(m) if rng is not None else np.arange(m)
    for start in range(0, m, int(batch_size)):
        yield order[start:start + int(batch_size)]

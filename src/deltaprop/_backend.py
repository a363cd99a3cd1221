"""The one place that knows about array libraries.

Every public entry point calls :func:`namespace` once on its inputs and passes the
returned ``xp`` down; the rest of the package uses only the Python array API standard
through ``xp``.  Random numbers are drawn on the host with NumPy and moved with
:func:`asarray` to the namespace and device of the caller's arrays, so every backend
starts from identical numbers.  ``array_api_compat`` is optional: without it only
NumPy arrays are accepted.
"""

from __future__ import annotations

import types

import numpy as np

from . import _kernels

try:  # optional: the core imports with NumPy alone
    import array_api_compat as _compat
except ImportError:  # pragma: no cover - exercised only without the dependency
    _compat = None

__all__ = ["namespace", "asarray", "to_numpy", "device", "is_numpy", "resolve"]


def namespace(*arrays):
    """Return the array API namespace shared by ``arrays`` (``None`` entries ignored).

    Raises
    ------
    TypeError
        If the arrays come from different libraries (e.g. a NumPy network fed torch
        tensors) or are not arrays at all.
    """
    numpy = False  # the common case, NumPy arrays, without array_api_compat's lookup
    for a in arrays:
        if type(a) is np.ndarray:
            numpy = True
        elif a is not None:
            break
    else:
        if numpy:
            return _NUMPY
    arrays = [a for a in arrays if a is not None]
    if _compat is None:
        if all(isinstance(a, np.ndarray | np.generic) for a in arrays):
            return _NUMPY
        raise TypeError("non-NumPy arrays need the array-api-compat package")
    try:
        xp = _compat.array_namespace(*arrays)
        return _NUMPY if _compat.is_numpy_namespace(xp) else xp
    except TypeError as exc:
        kinds = sorted({type(a).__module__.split(".")[0] + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"arrays from different libraries or non-arrays were mixed ({', '.join(kinds)}); "
            "move the network to the inputs' library with Network.to(...)"
        ) from exc


def _numpy_namespace():
    """array-api-compat's NumPy namespace (NumPy itself without it), with the reductions
    ``sum``, ``mean``, ``max``, ``min`` of :mod:`deltaprop._kernels`: the same numbers,
    without NumPy's Python dispatch layer (it costs more than a small array's sum)."""
    base = np if _compat is None else _compat.array_namespace(np.empty(0))
    ns = types.ModuleType(base.__name__, base.__doc__)
    ns.__dict__.update(vars(base))
    ns.__dict__.update(sum=_kernels.sum, mean=_kernels.mean, max=_kernels.max,
                       min=_kernels.min)
    return ns


#: the namespace :func:`namespace` and :func:`resolve` return for NumPy
_NUMPY = _numpy_namespace()


def is_numpy(obj) -> bool:
    """True if ``obj`` is a NumPy array or NumPy's namespace (or its array-api-compat wrapper).

    The one test of "is this NumPy": an array counts only if it is exactly
    ``numpy.ndarray`` (subclasses such as masked arrays and matrices take the generic path);
    the in-place kernels of :mod:`deltaprop._kernels` run on arrays for which it holds.
    """
    if type(obj) is np.ndarray or obj is _NUMPY or obj is np:
        return True
    return _compat is not None and isinstance(getattr(obj, "__name__", None), str) and \
        _compat.is_numpy_namespace(obj)


def device(x):
    """Device of array ``x`` (``"cpu"`` for NumPy)."""
    return "cpu" if _compat is None else _compat.device(x)


def to_device(x, device_):
    """``x`` moved to ``device_`` within its own library."""
    return x if _compat is None else _compat.to_device(x, _native_device(namespace(x), device_))


def resolve(backend, device_=None):
    """Namespace for a backend name: ``"numpy"``, ``"torch"``, ``"cupy"``, ``"array_api_strict"``.

    A module object is returned as its compat namespace.
    """
    if backend is None or backend == "numpy" or backend is np or backend is _NUMPY:
        return _NUMPY
    if not isinstance(backend, str):
        probe = backend.asarray([0.0]) if hasattr(backend, "asarray") else None
        return namespace(probe)
    import importlib

    try:
        mod = importlib.import_module(backend)
    except ImportError as exc:
        raise ValueError(f"backend {backend!r} is not installed") from exc
    xp = namespace(mod.asarray([0.0]))  # cupy.asarray has no device keyword
    if device_ is not None:  # fail early on a device the library lacks
        xp.asarray([0.0], device=_native_device(xp, device_))
    return xp


def _native_device(xp, device_):
    """``device_`` in the form ``xp`` takes: CuPy wants an integer, not ``"cuda:1"``."""
    if _compat is None or not isinstance(device_, str) or not _compat.is_cupy_namespace(xp):
        return device_
    head, _, index = device_.partition(":")
    if head not in ("cuda", "gpu") and not head.isdigit():
        raise ValueError(f"CuPy device must be 'cuda', 'cuda:N' or N, got {device_!r}")
    return int(head) if head.isdigit() else int(index or 0)


def asarray(x, xp, like=None, dtype=None, device=None):
    """Host data ``x`` as an array of namespace ``xp`` (on the device of ``like``)."""
    if like is not None and device is None and _compat is not None:
        device = _compat.device(like)
    if dtype is None and like is not None:
        dtype = like.dtype
    if isinstance(x, np.ndarray | np.generic) and not is_numpy(xp) and dtype is not None:
        # convert on the host first so that e.g. float64 -> float32 rounding is identical
        x = np.asarray(x, dtype=_numpy_dtype(dtype))
        dtype = None
    if device is None or is_numpy(xp):
        return xp.asarray(x, dtype=dtype)
    return xp.asarray(x, dtype=dtype, device=_native_device(xp, device))


def dtype_name(dtype) -> str:
    """"float32", "float64", ... for a dtype of any library."""
    try:
        return np.dtype(dtype).name
    except TypeError:
        return str(dtype).rsplit(".", 1)[-1]


def _numpy_dtype(dtype):
    return np.dtype(dtype_name(dtype))


def to_numpy(x):
    """A NumPy copy of any supported array (for plots, files and reports only)."""
    if x is None or isinstance(x, np.ndarray):
        return x
    if _compat is not None:
        if _compat.is_torch_array(x):
            return x.detach().cpu().numpy()
        if _compat.is_cupy_array(x):
            return x.get()
        if _compat.is_dask_array(x):
            return np.asarray(x.compute())
    return np.asarray(x)

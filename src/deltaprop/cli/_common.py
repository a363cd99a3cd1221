"""Options shared by several subcommands: ``--backend``, ``--device`` and thread limits.

Every command that computes takes the same two options.  The network and the data are
built on the host with NumPy (so every backend starts from identical numbers), moved once
to the chosen library and device, the engine and the laboratory run there, and results come
back to the host (:func:`deltaprop._backend.to_numpy`) only to be printed or written.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import numpy as np

#: values of ``--backend``
BACKENDS = ("numpy", "torch", "cupy")


def add_backend_options(parser, what="the network and the data"):
    """Add ``--backend numpy|torch|cupy`` and ``--device`` to an argparse ``parser``."""
    parser.add_argument("--backend", default=None, choices=BACKENDS,
                        help=f"array library for {what} (default numpy)")
    parser.add_argument("--device", default=None,
                        help="device for --backend: cpu, cuda, cuda:N (default: the "
                        "library's default; CuPy: the current GPU)")


@dataclass(frozen=True)
class Backend:
    """A checked ``--backend``/``--device`` pair.

    Attributes
    ----------
    name : str
        ``"numpy"``, ``"torch"`` or ``"cupy"`` (a string, so it can travel to Dask workers).
    device : str or None
    xp : namespace
        The array API namespace of ``name``.
    """

    name: str
    device: str | None
    xp: object

    @property
    def is_numpy(self) -> bool:
        return self.name == "numpy"

    def network(self, net):
        """``net`` with its parameters in this library, on this device (dtype kept)."""
        return net if self.is_numpy else net.to(self.xp, device=self.device)

    def asarray(self, x, like=None):
        """Host data ``x`` on this backend: floats in ``like``'s dtype, integers kept."""
        if x is None or self.is_numpy:
            return x
        from .. import _backend

        x = np.asarray(x)
        if x.dtype.kind in "iub":  # class labels stay integers
            dev = self.device if like is None else _backend.device(like)
            return _backend.asarray(x, self.xp, device=dev)
        return _backend.asarray(x, self.xp, like=like, device=None if like is not None
                                else self.device)


def backend_from_args(args) -> Backend:
    """The :class:`Backend` of ``args.backend`` and ``args.device``, checked now.

    Raises
    ------
    ValueError
        One line: the library is not installed, or the device does not exist (e.g.
        ``--device cuda`` without a GPU), or ``--device`` names a GPU for NumPy.
    """
    from .. import _backend

    name = getattr(args, "backend", None) or "numpy"
    device = getattr(args, "device", None) or None
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"--device {device} needs --backend torch or cupy "
                             "(NumPy runs on the CPU only)")
        return Backend("numpy", None, _backend.resolve("numpy"))
    try:
        xp = _backend.resolve(name, device)
    except ValueError as exc:
        if "not installed" in str(exc):
            raise ValueError(f"--backend {name}: {name} is not installed") from None
        raise ValueError(f"--backend {name} --device {device}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - CUDA missing, no GPU, bad ordinal, ...
        where = f" --device {device}" if device else ""
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"--backend {name}{where} is not available here: {msg}") from None
    return Backend(name, device, xp)


@contextlib.contextmanager
def limit_threads(n):
    """At most ``n`` threads for BLAS and, when PyTorch is loaded, for PyTorch's own pool.

    threadpoolctl (installed with scikit-learn) limits the BLAS libraries; PyTorch keeps
    an intra-op thread pool of its own (one thread a core by default) that it does not
    reach.  On 2 cores that default made ``--backend torch`` training 6-45x slower than
    NumPy, and one thread matches NumPy, so ``torch.set_num_threads(n)`` is applied too,
    and undone on exit.  torch is never imported here: it is limited only when already
    loaded (``--backend torch`` loads it), so a NumPy run never pays for it.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        blas = contextlib.nullcontext()
    else:
        blas = threadpool_limits(limits=n, user_api="blas")
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with blas:
        if torch is not None:
            torch.set_num_threads(n)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


__all__ = ["BACKENDS", "Backend", "add_backend_options", "backend_from_args", "limit_threads"]

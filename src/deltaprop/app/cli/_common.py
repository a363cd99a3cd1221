"""Options and edges shared by several subcommands.

* ``--backend``, ``--device`` and thread limits (:func:`add_backend_options`,
  :func:`backend_from_args`, :func:`limit_threads`);
* ``--config FILE`` (TOML or JSON; flags override it): :func:`read_config`,
  :func:`add_config_option` and :func:`apply_config`;
* flags that were renamed (:func:`add_retired`): one line naming the flag to use;
* output files and folders that are never replaced without ``--force``
  (:func:`check_out_file`, :func:`prepare_out_dir`);
* a run that would not fit in memory, refused before allocating (:func:`refuse_unless_fits`,
  which is :func:`deltaprop.app.data.refuse_unless_fits`);
* a progress bar on stderr, silent with ``--quiet`` (:func:`progress_bar`).

Every command that computes takes ``--backend`` and ``--device``.  The network and the data are
built on the host with NumPy (so every backend starts from identical numbers), moved once
to the chosen library and device, the engine and the laboratory run there, and results come
back to the host (:func:`deltaprop._backend.to_numpy`) only to be printed or written.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import refuse_unless_fits  # the one memory check, re-exported for the commands

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
        from ... import _backend

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
    from ... import _backend

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


# ------------------------------------------------------------------------------ --config

def load_config_file(path) -> tuple[dict, bool]:
    """``(table, run)``: the table of a TOML (``.toml``) or JSON config file as written,
    and whether it is a run's ``config.json`` (then ``table`` is its ``"settings"``).
    Every problem is one line naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"config file {path} is a folder; give a .toml or .json file")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_bytes()
    try:
        if path.suffix.lower() == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib  # type: ignore[no-redef]
            cfg = tomllib.loads(text.decode("utf-8"))
        else:
            cfg = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error becomes one line
        raise ValueError(f"config file {path} cannot be parsed: {exc}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"config file {path} must hold a table/object of settings")
    run = isinstance(cfg.get("settings"), dict)  # a run's config.json
    return (cfg["settings"] if run else cfg), run


def read_config(path, known) -> dict:
    """The settings of a config file (:func:`load_config_file`), keys with ``_`` for ``-``;
    ``known`` lists the setting names, and any other key is an error naming them."""
    cfg, _run = load_config_file(path)
    out = {}
    for key, value in cfg.items():
        k = str(key).replace("-", "_")
        if k not in known:
            raise ValueError(f"config file {path}: unknown setting {key!r}; known: "
                             f"{', '.join(known)}")
        out[k] = value
    return out


#: options that a config file cannot set
_NOT_CONFIG = {"help", "config", "func", "version", "force"}  # --force: on the line only


def add_config_option(parser):
    """Add ``--config FILE`` to ``parser``; :func:`apply_config` reads it (flags win)."""
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="TOML or JSON file of settings, named like the flags "
                        "(weight_std or weight-std); flags given on the line override it")
    parser.set_defaults(_config_parser=parser)


def _config_actions(parser):
    return {a.dest: a for a in parser._actions  # noqa: SLF001 - argparse has no public list
            if a.dest not in _NOT_CONFIG and not a.dest.startswith("_")
            and a.option_strings and a.default is not argparse.SUPPRESS}


def apply_config(top, args, argv):
    """Parse ``argv`` again with the ``--config`` file's settings as the defaults.

    ``top`` is the whole command line's parser, ``args`` its first result.  Each value
    goes through the flag's own conversion and check (``type``, ``choices``), so a config
    file accepts exactly what the flag accepts; lists become comma lists.
    """
    parser = getattr(args, "_config_parser", None)
    if parser is None or not getattr(args, "config", None):
        return args
    actions = _config_actions(parser)
    values = {}
    for key, value in read_config(args.config, list(actions)).items():
        values[key] = _config_value(args.config, key, value, actions[key])
    parser.set_defaults(**values)
    return top.parse_args(argv)


def _config_value(path, key, value, action):
    where = f"config file {path}: {key}"
    if action.nargs == 0:  # store_true / store_false
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false, got {value!r}")
        return value
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    elif isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{where} must be a number, a string or a list, got {value!r}")
    text = str(value)
    try:
        out = action.type(text) if action.type is not None else text
    except (ValueError, TypeError, argparse.ArgumentTypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"{where} must be one of {', '.join(map(str, action.choices))}, "
                         f"got {value!r}")
    return out


# ------------------------------------------------------------------------------ renamed flags

class _Retired(argparse.Action):
    def __init__(self, option_strings, dest, use=None, **kw):
        self.use = use
        super().__init__(option_strings, argparse.SUPPRESS, nargs="?", help=argparse.SUPPRESS,
                         default=argparse.SUPPRESS)

    def __call__(self, parser, namespace, values, option_string=None):
        raise argparse.ArgumentError(self, f"renamed; use {self.use}")


def int_list(text) -> tuple:
    """argparse type of ``--sizes 64,32,10`` and the like: integers separated by commas."""
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") \
            from None


def add_retired(parser, retired):
    """Register old spellings (``{"--sigma-w": "--sigma-w2 (sigma_w squared)"}``) so that
    each ends in one line naming the flag to use, instead of being taken by argparse for
    a longer flag it prefixes (``--sigma-w 1.5`` would silently set ``--sigma-w2``)."""
    for flag, use in retired.items():
        parser.add_argument(flag, action=_Retired, use=use)


#: the retired spellings of the weight scale and the sample count (issue 11's one vocabulary)
RETIRED = {"--sigma-w": "--sigma-w2 (sigma_w^2; Var W[l] = sigma_w2 / n_{l-1}) or --weight-std "
           "(the raw std of each weight)",
           "--sigma-b": "--sigma-b2 (the bias variance sigma_b^2)",
           "--m": "--samples (the number of samples m)"}


# ------------------------------------------------------------------------------ output files

def check_out_file(flag, name, force, suffixes=None) -> Path:
    """The output file ``name`` of ``flag``, checked before any work: its format (one of
    ``suffixes``, if given), its folder, and no silent replacement without ``force``."""
    out = Path(name)
    if suffixes and out.suffix.lower() not in suffixes:
        raise ValueError(f"{flag} {name}: give a {', '.join(suffixes[:-1])} or {suffixes[-1]} "
                         "file name" if len(suffixes) > 1 else
                         f"{flag} {name}: give a {suffixes[0]} file name")
    if out.is_dir():
        raise ValueError(f"{flag} {name} is a folder; give a file name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(f"{flag} {name}: folder {parent} does not exist; create it first")
    if out.exists() and not force:
        raise ValueError(f"{flag} {name} exists; use --force to replace it, or give another "
                         "name")
    return out


def prepare_out_dir(flag, name, force, own) -> Path:
    """The output folder ``name`` of ``flag``, created if missing.

    A folder that already holds files is refused without ``force`` (a second run would
    replace the first one's results); with ``force`` the files named in ``own`` (the
    command's own outputs) are removed, so no stale result of the earlier run stays
    beside the new ones, and every other file is left alone.  The hidden temporary files
    of ``own`` that a killed run left (``.<name>.<hex>.tmp``) are removed first.
    """
    from .. import files as dio

    out = Path(name)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {name} is a file, not a folder; give a folder name")
    dio.remove_temp_files(out, own)  # what a killed earlier run left of its own files
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ValueError(f"{flag} {name} is not empty (an earlier run's results?); use "
                             "--force to replace them, or give a new folder")
        for f in own:
            p = out / f
            if p.is_file() or p.is_symlink():
                p.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OSError(f"{flag} {name}: cannot create the folder ({exc.strerror}); "
                      "choose another place") from None
    return out


# ------------------------------------------------------------------------------ progress

def progress_bar(quiet, total, desc, unit="it"):
    """A tqdm bar on stderr (time left included), or ``None`` with ``quiet``.

    tqdm is what ``deltaprop train`` uses; the bar is drawn on a terminal and left out
    when stderr is not one (``disable=None``), so logs and pipes stay clean.
    """
    if quiet:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True,
                disable=None, file=sys.stderr)


__all__ = ["BACKENDS", "Backend", "RETIRED", "add_backend_options", "add_config_option",
           "add_retired", "apply_config", "backend_from_args", "check_out_file", "int_list",
           "limit_threads", "load_config_file", "prepare_out_dir", "progress_bar", "read_config",
           "refuse_unless_fits"]

"""The ``deltaprop`` command line.

Each subcommand lives in its own module of this package, which exposes
``register(subparsers)``; ``register`` adds a parser whose default ``func(args)``
runs the command and returns the exit status.  Bad input ends with one line on
stderr and status 2, never a traceback.  Every subcommand takes ``--config FILE`` and
``--quiet``: a module that does not add them itself gets them here (:func:`_uniform`),
``--quiet`` then keeping its notes and warnings off stderr (errors still print).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys

from ... import __version__, _compiled
from ._common import add_config_option, apply_config

#: modules of this package that add subcommands, in the order of ``deltaprop --help``
COMMAND_MODULES = ["engine", "explain", "train", "stats", "sweep", "theory", "jacobian"]


#: optional extras of pyproject.toml, named in the hint for a missing package
_EXTRAS = ("torch", "dask")


class UsageError(Exception):
    """A bad command line or bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line instead of usage + message
        where = self.prog.removeprefix("deltaprop").strip()
        raise UsageError(f"{where}: {message}" if where else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deltaprop", description="Backpropagation exactly as the "
                     "derivations write it, and the statistics of the backward pass.")
    parser.add_argument("--version", action="version",
                        version=f"deltaprop {__version__}; {_compiled.describe()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__).register(sub)
    for command in sub.choices.values():
        _uniform(command)
    return parser


def _uniform(parser):
    """Give ``parser`` the flags every subcommand takes, where its module did not add them:
    ``--config FILE`` and ``--quiet`` (then applied by :func:`main` around the command)."""
    flags = parser._option_string_actions  # noqa: SLF001 - argparse has no public lookup
    if "--quiet" not in flags:
        parser.add_argument("--quiet", action="store_true",
                            help="no notes or warnings on stderr (errors still print)")
        parser.set_defaults(_quiet_here=True)
    if "--config" not in flags:
        add_config_option(parser)


def _run(args):
    """Run the command; with a ``--quiet`` that :func:`_uniform` added, stderr is held
    back while it runs (an error still reaches :func:`main`, which prints it)."""
    if getattr(args, "_quiet_here", False) and args.quiet:
        with contextlib.redirect_stderr(io.StringIO()):
            return args.func(args)
    return args.func(args)


def main(argv=None) -> int:
    """Entry point of the ``deltaprop`` console script."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args = apply_config(parser, args, argv)  # --config: its settings, then the flags
        if getattr(args, "func", None) is None:
            parser.print_help()
            return 2
        return int(_run(args) or 0)
    except KeyboardInterrupt:
        print("deltaprop: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:  # an optional dependency (extras in pyproject.toml)
        name = (exc.name or "?").split(".")[0]
        extra = {"distributed": "dask"}.get(name, name)
        hint = f"pip install 'deltaprop[{extra}]'" if extra in _EXTRAS else f"pip install {name}"
        print(f"deltaprop: error: this needs the optional package {name!r} ({hint})",
              file=sys.stderr)
        return 2
    except MemoryError as exc:  # a check that should have refused this up front did not
        msg = " ".join(str(exc).split()) or "an allocation failed"
        print(f"deltaprop: error: not enough memory ({msg}); ask for less: smaller sizes, "
              "fewer samples or networks, or milder values", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `deltaprop predict ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (UsageError, ValueError, TypeError, OSError, KeyError) as exc:
        msg = str(exc) if not isinstance(exc, KeyError) else f"missing key {exc}"
        msg = " ".join(msg.split())  # one line
        print(f"deltaprop: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

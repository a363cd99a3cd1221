"""The five notations: each derivation's symbols, conventions and equations.

A :class:`Convention` knows, for one derivation,

* its symbols (``z``, ``a``, ``delta``, ``W``, ... of deltaprop's layer l, unit j);
* its values (:meth:`Convention.values`): the engine's arrays converted to the numbers that
  derivation writes (Haykin's delta is minus deltaprop's; Bishop's E sums over samples, so
  his gradient is m times deltaprop's dW; Ng's and Brawer's Theta carry the bias in
  column 0; ...);
* its equations: ``*_defs`` methods return :class:`Def` records, each an equation template
  (a function of :class:`~deltaprop.app.explain.leaves.Leaves`) and where its value lives;
* the names a student may use in an answers file (:attr:`Convention.answer_keys`).

The mapping is docs/derivation.md's.  Decisions that page leaves open are written in
:attr:`Convention.decisions` and printed with the solution.  Registry: :data:`NOTATIONS`,
lookup :func:`get`.
"""

from __future__ import annotations

from .base import Convention, Def
from .bishop import Bishop
from .brawer import Brawer
from .haykin import Haykin
from .ng import Ng

__all__ = ["Def", "Convention", "NOTATIONS", "get", "names"]


#: key -> Convention class
NOTATIONS = {c.key: c for c in (Convention, Haykin, Bishop, Ng, Brawer)}


def names() -> list[str]:
    return list(NOTATIONS)


def get(name, acts=None) -> Convention:
    """A fresh :class:`Convention` for ``name`` (``acts``: the network's activations)."""
    key = str(name).strip().lower()
    if key not in NOTATIONS:
        raise ValueError(f"unknown notation {name!r}; known: {', '.join(NOTATIONS)}")
    nt = NOTATIONS[key]()
    nt._acts = acts
    return nt

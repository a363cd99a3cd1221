"""Worked solutions of backpropagation, in the notation of each classic derivation.

* :func:`solve` -- the worked solution of one gradient-descent step of a ``deltaprop trace``
  spec as data (:class:`Solution` > :class:`Section` > :class:`Step`, see :mod:`.model`),
  with the engine's own numbers, in one notation (:mod:`.notation`: deltaprop, haykin,
  bishop, ng, brawer);
* :func:`render` -- text, Markdown (``$...$`` math) or a LaTeX document (:mod:`.render`);
* :func:`check` -- a student's values against the engine, with the first wrong quantity
  and the likely slip (:mod:`.check`);
* :mod:`.exercise` -- a fresh network with round numbers, a problem sheet and answer key.
"""

from .build import Run, make_run, solve
from .check import CheckReport, check
from .model import Notation, Section, Solution, Step
from .notation import NOTATIONS
from .render import formats, render

__all__ = ["solve", "render", "formats", "check", "make_run", "Run", "CheckReport",
           "Notation", "Section", "Solution", "Step", "NOTATIONS"]

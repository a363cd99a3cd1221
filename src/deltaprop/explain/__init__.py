"""Worked solutions of backpropagation, in the notation of each classic derivation.

:mod:`.model` holds the data structure (a :class:`Solution` of :class:`Section` of
:class:`Step`, each an equation in symbols, its numbers substituted and its result);
renderers consume it.
"""

from .model import Notation, Section, Solution, Step

__all__ = ["Notation", "Section", "Solution", "Step"]

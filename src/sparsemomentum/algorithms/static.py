"""Static sparse training: the random initial mask is never changed (the paper's lower bar)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.sparsifier import Sparsifier


@dataclass(eq=False)
class Static(Sparsifier):
    """The same initial masks as sparse momentum (random, exact counts per layer), kept for
    the whole run: the base :class:`Sparsifier` with nothing added."""

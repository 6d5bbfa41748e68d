"""Sparse momentum (Dettmers & Zettlemoyer 2019): the reference configuration of the core."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.dynamic import DynamicSparsifier


@dataclass(eq=False)
class SparseMomentum(DynamicSparsifier):
    """Momentum decides how many weights each layer gets back and which ones.

    Layers whose active weights have a large mean |momentum| are reducing the error
    efficiently and receive more of the regrowth; inside a layer the missing weights with the
    largest |momentum| come back. Every default of :class:`DynamicSparsifier` is this
    method's (uniform initial density, prune rate 0.5 with cosine decay, magnitude pruning,
    momentum redistribution and growth), so this class only names it; the ablations are its
    options, e.g. ``growth="random"`` or ``redistribution="none"``.
    """

"""Static sparse training: the random initial mask is never changed (the paper's lower bar)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.sparsifier import Sparsifier


@dataclass(eq=False)
class Static(Sparsifier):
    """Same initial masks as sparse momentum; ``update_masks`` never changes them."""

    prune_rate_schedule: str = "constant"
    redistribution: str = "none"
    growth: str = "random"

    def update_due(self) -> bool:
        return False

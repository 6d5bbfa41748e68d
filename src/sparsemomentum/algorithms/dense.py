"""The dense baseline, run through the same loop so that comparisons are like for like."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.sparsifier import Sparsifier
from ..errors import UserError


@dataclass(eq=False)
class Dense(Sparsifier):
    """All-ones masks, no updates, and no masking cost: a plain ``optimizer.step()``."""

    density: float = 1.0
    prune_rate_schedule: str = "constant"
    redistribution: str = "none"
    growth: str = "random"

    def __post_init__(self) -> None:
        if self.backend != "masked":
            raise UserError(
                "the dense baseline has no sparse layers to run on sparse kernels; drop --backend sparse."
            )
        self.density = 1.0
        super().__post_init__()

    def initial_masks(self) -> dict[str, torch.Tensor]:
        return self.dense_masks()

    def apply_masks(self, skip=()) -> None:
        """Nothing is masked, so nothing is multiplied (the baseline pays no masking cost)."""

    def update_due(self) -> bool:
        return False

"""RigL (Evci et al. 2020): drop by magnitude, grow by the dense gradient of the current batch."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.dynamic import DynamicSparsifier
from ..core.optimizer_state import reset_state_at


@dataclass(eq=False)
class RigL(DynamicSparsifier):
    """ERK masks; every ``update_interval`` steps until 75 % of training, each layer drops
    the ``prune_rate`` (cosine-decayed) smallest weights and regrows as many where the
    gradient is largest. Grown weights start at zero *and* with their optimizer state reset,
    unlike sparse momentum, whose growth signal is that state.

    The gradient read is the one the last ``step()`` applied, unmasked, so it is the dense
    gradient of the current batch (the sparse backend computes it for that step).
    """

    distribution: str = "erk"
    prune_rate: float = 0.3
    final_prune_rate: float = 0.0
    update_interval: int | None = 100
    stop_fraction: float = 0.75
    redistribution: str = "none"
    growth: str = "gradient"

    def after_growth(self, grown_masks: dict[str, torch.Tensor]) -> None:
        for name, grown in grown_masks.items():
            reset_state_at(self.optimizer, self.weights[name], grown)

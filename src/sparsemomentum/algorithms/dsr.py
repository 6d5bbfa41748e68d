"""DSR, dynamic sparse reparameterization (Mostafa & Wang 2019)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core.dynamic import DynamicSparsifier
from ..core.sparsifier import option


@dataclass(eq=False)
class DSR(DynamicSparsifier):
    """One global magnitude threshold, adapted so the number pruned tracks its target.

    Every update prunes all active weights with |w| below ``threshold`` in every layer, then
    doubles the threshold if fewer than (1 - ``tolerance``) x the target were pruned, or
    halves it if more than (1 + ``tolerance``) x: the target being the scheduled prune
    rate times the non-zeros. The pruned total is regrown over layers in proportion to the
    non-zeros each layer has *left* (the "surviving" redistribution), at random positions, so
    the total never changes.
    """

    threshold: float = option(0.001, "DSR: initial global magnitude threshold")
    tolerance: float = option(
        0.1, "DSR: allowed relative miss of the pruning target before the threshold adapts"
    )
    redistribution: str = "surviving"
    growth: str = "random"

    def drop(self, prune_rate: float, shares: dict[str, float]) -> dict[str, int]:
        removed = {}
        for name, mask in self.masks.items():
            below = mask & (self.weights[name].detach().abs() < self.threshold)
            removed[name] = int(torch.count_nonzero(below))
            self.masks[name] = mask & ~below
        wanted = prune_rate * self.target_nonzero_count()
        pruned = sum(removed.values())
        if pruned < (1.0 - self.tolerance) * wanted:
            self.threshold *= 2.0
        elif pruned > (1.0 + self.tolerance) * wanted:
            self.threshold /= 2.0
        return removed

    def method_state(self) -> dict[str, Any]:
        return {"threshold": self.threshold}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.threshold = float(state["threshold"])

"""DSR, dynamic sparse reparameterization (Mostafa & Wang 2019)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import allocation
from ..core.sparsifier import Sparsifier


@dataclass(eq=False)
class DSR(Sparsifier):
    """One global magnitude threshold, adapted so the number pruned tracks its target.

    Every update prunes all active weights with |w| below ``threshold`` in every layer, then
    doubles the threshold if fewer than (1 - ``tolerance``) x the target were pruned, or
    halves it if more than (1 + ``tolerance``) x: the target being the scheduled prune
    rate times the non-zeros. The pruned total is regrown over layers in proportion to the
    non-zeros each layer has *left*, at random positions, so the total never changes.
    """

    threshold: float = 0.001
    tolerance: float = 0.1
    redistribution: str = "nonzero"
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

    def regrowth_counts(self, removed: dict[str, int], shares: dict[str, float]) -> dict[str, int]:
        names = list(self.masks)
        left = [float(torch.count_nonzero(self.masks[n])) for n in names]
        room = [self.masks[n].numel() - int(torch.count_nonzero(self.masks[n])) for n in names]
        return dict(zip(names, allocation.allocate(sum(removed.values()), left, room)))

    def state_dict(self):
        return {**super().state_dict(), "threshold": self.threshold}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.threshold = float(state["threshold"])

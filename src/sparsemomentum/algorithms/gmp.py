"""Gradual magnitude pruning (Zhu & Gupta 2017): dense to the target with a cubic schedule."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core import allocation, selection
from ..core.sparsifier import Sparsifier


@dataclass(eq=False)
class GMP(Sparsifier):
    """Starts dense; every ``update_interval`` steps between ``start_fraction`` and
    ``end_fraction`` of training, prunes each layer by magnitude towards the scheduled density

        density(t) = d + (1 - d) (1 - progress)^3,   progress = (t - t0) / (t1 - t0) in [0, 1],

    which removes many weights early, while they are redundant, and few near the end.
    Pruned weights never return. The scheduled count is exact at every update and equals
    ``target_nonzero_count()`` from ``end_fraction`` on.
    """

    update_interval: int | None = 100
    start_fraction: float = 0.0
    end_fraction: float = 0.75
    prune_rate_schedule: str = "constant"
    redistribution: str = "none"
    growth: str = "random"

    def initial_masks(self) -> dict[str, torch.Tensor]:
        return self.dense_masks()

    def scheduled_density(self) -> float:
        start, end = self.start_fraction * self.total_steps, self.end_fraction * self.total_steps
        progress = min(max((self.step_count - start) / max(end - start, 1.0), 0.0), 1.0)
        return self.density + (1.0 - self.density) * (1.0 - progress) ** 3

    def update_due(self) -> bool:
        """Between start and end of pruning, and until the target is reached exactly."""
        started = self.step_count >= self.start_fraction * self.total_steps
        return started and (
            self.step_count <= self.end_fraction * self.total_steps
            or self.nonzero_count() > self.target_nonzero_count()
        )

    @torch.no_grad()
    def drop(self, prune_rate: float, shares: dict[str, float]) -> dict[str, int]:
        names = list(self.masks)
        sizes = [self.masks[n].numel() for n in names]
        current = [int(torch.count_nonzero(self.masks[n])) for n in names]
        total = allocation.target_nonzeros(self.scheduled_density(), sum(sizes))
        total = max(min(total, sum(current)), self.target_nonzero_count())
        keep = allocation.allocate(total, [float(s) for s in sizes], current)
        removed = {}
        for name, now, kept in zip(names, current, keep):
            self.masks[name] = selection.drop_smallest(
                self.masks[name], self.weights[name].detach().abs(), now - kept
            )
            removed[name] = now - kept
        return removed

    def regrowth_counts(self, removed: dict[str, int], shares: dict[str, float]) -> dict[str, int]:
        return {name: 0 for name in removed}

"""Gradual magnitude pruning (Zhu & Gupta 2017): dense to the target with a cubic schedule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core import allocation, selection
from ..core.schedules import UpdateSchedule
from ..core.sparsifier import Sparsifier, UpdateReport, option
from ..errors import UserError, check_interval


@dataclass(eq=False)
class GMP(Sparsifier):
    """Starts dense; every ``update_interval`` steps between ``start_fraction`` and
    ``end_fraction`` of training, prunes each layer by magnitude towards the scheduled density

        density(t) = d + (1 - d) (1 - progress)^3,   progress = (t - t0) / (t1 - t0) in [0, 1],

    which removes many weights early, while they are redundant, and few near the end.
    Pruned weights never return. The scheduled count is exact at every update and equals
    ``target_nonzero_count()`` from ``end_fraction`` on.
    """

    update_interval: int | None = option(
        100, "update masks every this many steps (default: at the end of every epoch)"
    )
    start_fraction: float = option(0.0, "GMP: fraction of training at which pruning starts")
    end_fraction: float = option(
        0.75, "GMP: fraction of training at which the target density is reached"
    )

    def validate(self) -> None:
        super().validate()
        check_interval("start fraction", self.start_fraction, "[0, 1)")
        check_interval("end fraction", self.end_fraction, "(0, 1]")
        if self.end_fraction <= self.start_fraction:
            raise UserError(
                f"GMP's end fraction ({self.end_fraction}) must come after its start fraction "
                f"({self.start_fraction})."
            )
        if self.update_interval is not None and self.update_interval <= 0:
            raise UserError(
                f"update interval must be a positive number of steps, got {self.update_interval}."
            )
        if self.distribution != "uniform":
            raise UserError(
                f"GMP prunes every layer to the same density; distribution {self.distribution!r} "
                "does not apply to it: leave it out."
            )

    def initial_masks(self) -> dict[str, torch.Tensor]:
        return self.dense_masks()

    def update_schedule(self) -> UpdateSchedule:
        return UpdateSchedule(
            total_steps=self.total_steps,
            interval=self.update_interval,
            steps_per_epoch=self.steps_per_epoch,
        )

    def scheduled_density(self) -> float:
        start, end = self.start_fraction * self.total_steps, self.end_fraction * self.total_steps
        progress = min(max((self.step_count - start) / max(end - start, 1.0), 0.0), 1.0)
        return self.density + (1.0 - self.density) * (1.0 - progress) ** 3

    def allowed_nonzero_counts(self, method_state: dict[str, Any]) -> tuple[int, int]:
        return self.target_nonzero_count(), self.sparse_size  # pruning from dense to the target

    def update_due(self) -> bool:
        """From ``start_fraction`` on, until the target is reached (by ``end_fraction``)."""
        started = self.step_count >= self.start_fraction * self.total_steps
        return started and self.nonzero_count() > self.target_nonzero_count()

    def scheduled_count(self) -> int:
        """Non-zeros the schedule asks for now: never more than are active, never below the
        target."""
        scheduled = allocation.target_nonzeros(self.scheduled_density(), self.sparse_size)
        return max(min(scheduled, self.nonzero_count()), self.target_nonzero_count())

    def current_prune_rate(self) -> float:
        """The fraction of the active weights an update now would remove."""
        return 1.0 - self.scheduled_count() / self.nonzero_count()

    def update(self) -> UpdateReport:
        names = list(self.masks)
        sizes = [self.masks[n].numel() for n in names]
        current = [int(torch.count_nonzero(self.masks[n])) for n in names]
        keep = allocation.allocate(self.scheduled_count(), [float(s) for s in sizes], current)
        removed = {}
        for name, now, kept in zip(names, current, keep):
            self.masks[name] = selection.drop_smallest(
                self.masks[name], self.weights[name].detach().abs(), now - kept
            )
            removed[name] = now - kept
        prune_rate = sum(removed.values()) / sum(current)
        return UpdateReport(self.step_count, prune_rate, removed, {name: 0 for name in names})

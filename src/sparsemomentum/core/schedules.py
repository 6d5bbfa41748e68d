"""Schedules: how much an update replaces, and when updates happen.

:func:`prune_rate_at` gives the fraction of each layer's weights an update replaces.
:class:`UpdateSchedule` is the one owner of update timing: whether an update is due, which
kind of loop drives it (every k steps, or once per epoch from the training loop), when the
next one comes, and so whether the steps before it need dense weight gradients. The
sparsifier, the training loop and the methods all ask it rather than count for themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PRUNE_RATE_SCHEDULES = ("cosine", "linear", "constant")


def prune_rate_at(
    schedule: str, initial_rate: float, final_rate: float, step: int, total_steps: float
) -> float:
    """The prune rate after ``step`` of ``total_steps`` training steps.

    ``cosine`` anneals from ``initial_rate`` to ``final_rate`` over training as the paper
    does (early updates move many weights, late ones few, so the network settles);
    ``linear`` does the same on a straight line; ``constant`` keeps ``initial_rate``.
    """
    if schedule == "constant" or total_steps <= 0:
        return initial_rate
    progress = min(max(step / total_steps, 0.0), 1.0)
    if schedule == "cosine":
        return final_rate + (initial_rate - final_rate) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return initial_rate + (final_rate - initial_rate) * progress


@dataclass
class UpdateSchedule:
    """When a sparsifier updates its masks.

    ``interval``: every this many optimizer steps, triggered by the sparsifier's own
    ``step()``; None: once per epoch, triggered by the training loop's ``update_masks()``
    call, every ``steps_per_epoch`` steps (learned from the first two calls when not given).
    Updates happen from ``start_fraction`` up to (not including) ``stop_fraction`` of
    ``total_steps`` (0: no end); ``enabled=False`` never updates (static masks).
    """

    total_steps: int = 0
    interval: int | None = None
    steps_per_epoch: int | None = None
    start_fraction: float = 0.0
    stop_fraction: float = 1.0
    enabled: bool = True
    last_update_step: int = 0
    learned_period: int | None = None

    @classmethod
    def never(cls) -> "UpdateSchedule":
        return cls(enabled=False)

    @property
    def epoch_wise(self) -> bool:
        """Whether the training loop must call ``update_masks()`` at the end of every epoch."""
        return self.enabled and self.interval is None

    def active(self, step: int) -> bool:
        """Whether an update may happen after ``step`` steps."""
        if not self.enabled:
            return False
        if self.total_steps == 0:
            return True
        return (
            self.start_fraction * self.total_steps <= step < self.stop_fraction * self.total_steps
        )

    def periodic_update_at(self, step: int) -> bool:
        """Whether the sparsifier updates by itself after ``step`` steps (every k steps)."""
        return self.interval is not None and step % self.interval == 0

    def next_update(self, step: int) -> int | None:
        """The step after which the next update comes; None while the period is unknown."""
        if self.interval is not None:
            return step + self.interval - step % self.interval
        period = self.steps_per_epoch or self.learned_period
        return None if period is None else self.last_update_step + period

    def window_open(self, step: int, window: int) -> bool:
        """Whether the step after ``step`` lies within ``window`` steps before an update.

        While the period of epoch-wise updates is unknown, every step counts as within.
        An update that will not happen (past ``stop_fraction``) opens no window.
        """
        if window == 0 or not self.active(step):
            return False
        upcoming = self.next_update(step)
        if upcoming is None:
            return True
        within_stop = self.total_steps == 0 or upcoming < self.stop_fraction * self.total_steps
        return upcoming - step <= window and within_stop

    def record_update(self, step: int) -> None:
        self.learned_period = step - self.last_update_step
        self.last_update_step = step

    def state_dict(self) -> dict[str, Any]:
        return {"last_update_step": self.last_update_step, "learned_period": self.learned_period}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.last_update_step = int(state["last_update_step"])
        period = state["learned_period"]
        self.learned_period = None if period is None else int(period)

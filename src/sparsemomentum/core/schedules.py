"""Prune-rate schedules: how large a fraction of each layer's weights an update replaces."""

from __future__ import annotations

import math

from ..errors import check_choice

PRUNE_RATE_SCHEDULES = ("cosine", "linear", "constant")


def prune_rate_at(
    schedule: str, initial_rate: float, final_rate: float, step: int, total_steps: float
) -> float:
    """The prune rate after ``step`` of ``total_steps`` training steps.

    ``cosine`` anneals from ``initial_rate`` to ``final_rate`` over training as the paper
    does (early updates move many weights, late ones few, so the network settles);
    ``linear`` does the same on a straight line; ``constant`` keeps ``initial_rate``.
    """
    check_choice("prune-rate schedule", schedule, PRUNE_RATE_SCHEDULES)
    if schedule == "constant" or total_steps <= 0:
        return initial_rate
    progress = min(max(step / total_steps, 0.0), 1.0)
    if schedule == "cosine":
        return final_rate + (initial_rate - final_rate) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return initial_rate + (final_rate - initial_rate) * progress

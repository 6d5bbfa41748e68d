"""Exact integer allocation of non-zeros over layers.

Every count the library hands out (initial non-zeros per layer, regrown weights per
layer) goes through :func:`allocate`, so the totals are exact by construction: floating
point shares are only used to *rank* layers, never to decide the total. This is what keeps
the number of non-zeros from drifting, a known defect of the reference code.
"""

from __future__ import annotations

import math
from typing import Sequence

DISTRIBUTIONS = ("uniform", "erdos_renyi", "erk")


def allocate(
    total: int,
    weights: Sequence[float],
    capacity: Sequence[int],
    overflow: str = "proportional",
) -> list[int]:
    """Split ``total`` into integers proportional to ``weights``, each at most its ``capacity``.

    Water-filling: a layer whose proportional share exceeds its capacity is filled to the
    brim and the overflow is shared among the layers that still have room (in proportion to
    their weights, or with ``overflow="equal"`` in equal parts, the reference code's rule),
    until nothing overflows; fractional shares are then rounded by the largest-remainder rule
    (ties go to the earlier layer). If every layer with room has weight 0, the rest is spread
    in proportion to free room, so the total is always placed.
    """
    if total < 0 or total > sum(capacity):
        raise ValueError(f"cannot place {total} items into capacity {sum(capacity)}")
    if overflow == "equal":
        weights = _equal_overflow_targets(total, weights, capacity)
    counts = [0] * len(capacity)
    open_layers = [i for i, cap in enumerate(capacity) if cap > 0]
    remaining = total
    while remaining > 0:
        share_weights = {i: max(float(weights[i]), 0.0) for i in open_layers}
        weight_sum = sum(share_weights.values())
        if not math.isfinite(weight_sum) or weight_sum <= 0.0:
            share_weights = {i: float(capacity[i] - counts[i]) for i in open_layers}
            weight_sum = sum(share_weights.values())
        shares = {i: remaining * w / weight_sum for i, w in share_weights.items()}
        overflowing = [i for i in open_layers if shares[i] >= capacity[i] - counts[i]]
        if overflowing:
            for i in overflowing:
                remaining -= capacity[i] - counts[i]
                counts[i] = capacity[i]
            open_layers = [i for i in open_layers if i not in overflowing]
            continue
        floors = {i: int(math.floor(shares[i])) for i in open_layers}
        for i in open_layers:
            counts[i] += floors[i]
        remaining -= sum(floors.values())
        by_remainder = sorted(open_layers, key=lambda i: (-(shares[i] - floors[i]), i))
        for i in by_remainder:
            if remaining == 0:
                break
            if counts[i] < capacity[i]:
                counts[i] += 1
                remaining -= 1
        open_layers = [i for i in open_layers if counts[i] < capacity[i]]
    return counts


def _equal_overflow_targets(
    total: int, weights: Sequence[float], capacity: Sequence[int]
) -> list[float]:
    """Proportional shares of ``total`` where a layer's excess over its capacity is split in
    equal parts over the layers that still have room (weights 0 included), until none
    overflows. Their sum is ``total``, so :func:`allocate` only rounds them."""
    positive = [max(float(w), 0.0) for w in weights]
    weight_sum = sum(positive)
    if not math.isfinite(weight_sum) or weight_sum <= 0.0:
        return positive
    targets = [total * w / weight_sum for w in positive]
    open_layers = set(range(len(targets)))
    while open_layers:
        full = [i for i in open_layers if targets[i] > capacity[i]]
        if not full:
            break
        excess = sum(targets[i] - capacity[i] for i in full)
        for i in full:
            targets[i] = float(capacity[i])
        open_layers -= set(full)
        for i in open_layers:
            targets[i] += excess / len(open_layers)
    return targets


def target_nonzeros(density: float, total_size: int) -> int:
    """The rounding rule, stated once: round(density x size), half up, and at least one."""
    return max(1, int(math.floor(density * total_size + 0.5)))


def _erdos_renyi_scale(shape: Sequence[int], include_kernel: bool) -> float:
    """Relative density of a layer under ER (SET) or ERK (RigL): sum of dims / product of dims."""
    dims = list(shape) if include_kernel else list(shape[:2])
    return sum(dims) / math.prod(dims)


def initial_counts(distribution: str, shapes: Sequence[Sequence[int]], density: float) -> list[int]:
    """Non-zeros per layer for a global ``density``, summing exactly to the target.

    ``uniform`` gives every layer the same density (the paper); ``erdos_renyi`` and ``erk``
    give layer l a density proportional to its ER / ERK scale, capped at 1 with the surplus
    spread over the other layers (the water-filling in :func:`allocate`).
    """
    sizes = [math.prod(shape) for shape in shapes]
    total = target_nonzeros(density, sum(sizes))
    if distribution == "uniform":
        weights = [float(size) for size in sizes]
    else:
        include_kernel = distribution == "erk"
        weights = [_erdos_renyi_scale(s, include_kernel) * n for s, n in zip(shapes, sizes)]
    return allocate(total, weights, sizes)

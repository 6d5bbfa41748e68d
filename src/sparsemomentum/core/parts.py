"""The interchangeable parts of a mask update, by name: who gets regrowth, and what grows.

A method picks a part from each table by name (``redistribution="momentum"``,
``growth="random"``) or overrides one hook of the update loop, the way JaxPruner's RigL is
SET with one score replaced. "none" is a part like the others, not a special case.

* :data:`REDISTRIBUTIONS`: how the weights removed over all layers are handed back per
  layer, from a statistic each layer has before pruning (its *share*; the dense-layer guard
  reads it too);
* :data:`GROWTHS`: the score of every missing position of a layer (the largest grow), and
  how many steps before an update need dense weight gradients for that score to be right.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from . import allocation
from .optimizer_state import momentum_of

if TYPE_CHECKING:
    from .dynamic import DynamicSparsifier

Shares = dict[str, float]
Counts = dict[str, int]

# The reference code never fills a layer past 99 % of its free slots when it passes overflow on.
_REFERENCE_FILL = 0.99


def _room(sparsifier: DynamicSparsifier) -> list[int]:
    return [m.numel() - int(torch.count_nonzero(m)) for m in sparsifier.masks.values()]


def _mean_abs_over_active(values: torch.Tensor, mask: torch.Tensor) -> float:
    active = values.detach()[mask]  # a gather: multiplying by the bool mask converts it first
    return float(active.abs().sum()) / active.numel() if active.numel() else 0.0


def _momentum(sparsifier: DynamicSparsifier, name: str) -> float:
    weight = sparsifier.weights[name]
    return _mean_abs_over_active(momentum_of(sparsifier.optimizer, weight), sparsifier.masks[name])


def _magnitude(sparsifier: DynamicSparsifier, name: str) -> float:
    return _mean_abs_over_active(sparsifier.weights[name], sparsifier.masks[name])


def _nonzero(sparsifier: DynamicSparsifier, name: str) -> float:
    return float(torch.count_nonzero(sparsifier.masks[name]))


class Redistribution:
    """How many of the removed weights each layer gets back."""

    needs_momentum = False

    def shares(self, sparsifier: DynamicSparsifier) -> Shares:
        """Each layer's claim on the regrowth, measured before pruning; they sum to 1 (or 0)."""
        raise NotImplementedError

    def regrowth(self, sparsifier: DynamicSparsifier, removed: Counts, shares: Shares) -> Counts:
        raise NotImplementedError


class Proportional(Redistribution):
    """Regrowth in proportion to a per-layer statistic of the active weights, exactly.

    A layer cannot take more than its free slots: the overflow goes to the layers with room
    in proportion to their shares (``overflow="reference"``: split equally and no layer
    filled past 99 % of its free slots, as the authors' code does).
    """

    def __init__(self, statistic: Callable[[DynamicSparsifier, str], float], momentum: bool):
        self.statistic = statistic
        self.needs_momentum = momentum

    def shares(self, sparsifier: DynamicSparsifier) -> Shares:
        statistics = {name: self.statistic(sparsifier, name) for name in sparsifier.masks}
        total = sum(statistics.values())
        return {name: (s / total if total > 0 else 0.0) for name, s in statistics.items()}

    def regrowth(self, sparsifier: DynamicSparsifier, removed: Counts, shares: Shares) -> Counts:
        names = list(sparsifier.masks)
        total, room = sum(removed.values()), _room(sparsifier)
        weights = [shares[n] for n in names]
        if sparsifier.overflow == "reference":
            capped = [math.floor(_REFERENCE_FILL * free) for free in room]
            room = capped if sum(capped) >= total else room
            return dict(zip(names, allocation.allocate(total, weights, room, overflow="equal")))
        return dict(zip(names, allocation.allocate(total, weights, room)))


class Unchanged(Redistribution):
    """No redistribution: each layer regrows what it lost."""

    def shares(self, sparsifier: DynamicSparsifier) -> Shares:
        return {name: 0.0 for name in sparsifier.masks}

    def regrowth(self, sparsifier: DynamicSparsifier, removed: Counts, shares: Shares) -> Counts:
        return dict(removed)


class Surviving(Proportional):
    """In proportion to the non-zeros each layer has left after pruning (DSR)."""

    def __init__(self) -> None:
        super().__init__(_nonzero, momentum=False)

    def regrowth(self, sparsifier: DynamicSparsifier, removed: Counts, shares: Shares) -> Counts:
        names = list(sparsifier.masks)
        left = [_nonzero(sparsifier, name) for name in names]
        counts = allocation.allocate(sum(removed.values()), left, _room(sparsifier))
        return dict(zip(names, counts))


REDISTRIBUTIONS: dict[str, Redistribution] = {
    "momentum": Proportional(_momentum, momentum=True),
    "magnitude": Proportional(_magnitude, momentum=False),
    "nonzero": Proportional(_nonzero, momentum=False),
    "surviving": Surviving(),
    "none": Unchanged(),
}


class Growth:
    """Which missing weights of a layer grow back: those with the largest scores."""

    needs_momentum = False

    def scores(self, sparsifier: DynamicSparsifier, name: str) -> torch.Tensor:
        raise NotImplementedError

    def dense_gradient_steps(self, sparsifier: DynamicSparsifier) -> int:
        """Steps before an update whose missing weights need their gradient (sparse kernels
        compute gradients at the non-zeros only)."""
        return 0


class MomentumGrowth(Growth):
    """|momentum|. The missing weights' momentum is an average over past steps, so the
    sparse backend computes their gradients in a window of ``momentum_window`` steps before
    each update (0.9^50 = 0.5 % of the history is left out)."""

    needs_momentum = True

    def scores(self, sparsifier: DynamicSparsifier, name: str) -> torch.Tensor:
        return momentum_of(sparsifier.optimizer, sparsifier.weights[name]).abs()

    def dense_gradient_steps(self, sparsifier: DynamicSparsifier) -> int:
        return sparsifier.momentum_window


class GradientGrowth(Growth):
    """|gradient| of the last step's batch (RigL): only that step needs it dense."""

    def scores(self, sparsifier: DynamicSparsifier, name: str) -> torch.Tensor:
        weight = sparsifier.weights[name]
        return weight.grad.abs() if weight.grad is not None else torch.zeros_like(weight)

    def dense_gradient_steps(self, sparsifier: DynamicSparsifier) -> int:
        return 1


class RandomGrowth(Growth):
    """Uniformly random positions (SET), from the sparsifier's seeded generator."""

    def scores(self, sparsifier: DynamicSparsifier, name: str) -> torch.Tensor:
        weight = sparsifier.weights[name]
        return torch.rand(weight.shape, generator=sparsifier.generator).to(weight.device)


GROWTHS: dict[str, Growth] = {
    "momentum": MomentumGrowth(),
    "gradient": GradientGrowth(),
    "random": RandomGrowth(),
}

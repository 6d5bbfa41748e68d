"""The prune-and-grow update that sparse momentum, SET, DSR and RigL share.

One update is always the same moves; methods pick parts by name (``parts.py``) or
override one hook::

    how many to drop      current_prune_rate()           (schedule over training)
    who gets regrowth     redistribution part: shares()  (before pruning)
    which to drop         drop()                         -> removed count per layer
    how many per layer    redistribution part: regrowth() (exact integer allocation)
    which to grow         growth part: scores()          (top-k of the missing positions)
    afterwards            after_growth()                 (RigL resets optimizer state)

Gradients are not masked: missing weights keep accumulating momentum, which is what
momentum growth reads. Grown weights start at exactly zero and keep their optimizer state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UserError, check_choice, check_interval
from . import schedules, selection
from .optimizer_state import check_has_momentum
from .parts import GROWTHS, REDISTRIBUTIONS
from .schedules import UpdateSchedule
from .sparsifier import Sparsifier, UpdateReport, option

# The reference code's guard against starving dense layers: a layer above this density
# whose share exceeds its fair share 1/#layers prunes at most its own sparsity.
_DENSE_LAYER_GUARD = 0.8
OVERFLOW_RULES = ("proportional", "reference")


@dataclass(eq=False)
class DynamicSparsifier(Sparsifier):
    """Every update drops the weakest active weights and regrows as many elsewhere.

    Defaults are sparse momentum's (the paper): prune rate 0.5 with cosine decay, magnitude
    pruning, momentum redistribution and momentum growth, an update at the end of every
    epoch (or every ``update_interval`` steps) until ``stop_fraction`` of training.
    """

    prune_rate: float = option(
        0.5, "initial fraction of each layer's weights replaced per update, in [0, 1)"
    )
    prune_rate_schedule: str = option("cosine", "prune-rate decay: cosine, linear or constant")
    final_prune_rate: float = option(0.005, "prune rate at the end of the cosine/linear decay")
    redistribution: str = option(
        "momentum", "regrowth per layer: momentum, magnitude, nonzero, surviving or none"
    )
    growth: str = option("momentum", "which missing weights grow: momentum, gradient or random")
    overflow: str = option(
        "proportional",
        "where a full layer's regrowth goes: proportional (to the shares of layers with room) "
        "or reference (equal parts, at most 99 % of a layer's free slots, as the authors' code)",
    )
    update_interval: int | None = option(
        None, "update masks every this many steps (default: at the end of every epoch)"
    )
    stop_fraction: float = option(1.0, "no mask updates after this fraction of training")
    momentum_window: int = option(
        50, "sparse backend: steps before each update that compute dense weight gradients"
    )

    def validate(self) -> None:
        super().validate()
        check_interval("prune rate", self.prune_rate, "[0, 1)", "the paper uses 0.5")
        check_interval("final prune rate", self.final_prune_rate, "[0, 1)")
        check_interval("stop fraction", self.stop_fraction, "(0, 1]")
        check_choice(
            "prune-rate schedule", self.prune_rate_schedule, schedules.PRUNE_RATE_SCHEDULES
        )
        check_choice("redistribution", self.redistribution, REDISTRIBUTIONS)
        check_choice("growth", self.growth, GROWTHS)
        check_choice("overflow rule", self.overflow, OVERFLOW_RULES)
        if self.total_steps == 0 and self.prune_rate_schedule != "constant":
            raise UserError(
                "total_steps must be the number of optimizer steps of the whole run (got 0); "
                "the prune-rate schedule anneals over it."
            )
        if self.update_interval is not None and self.update_interval <= 0:
            raise UserError(
                f"update interval must be a positive number of steps, got {self.update_interval}."
            )
        if self.momentum_window < 1:
            raise UserError(
                f"momentum window must be at least one step, got {self.momentum_window}."
            )
        if (
            REDISTRIBUTIONS[self.redistribution].needs_momentum
            or GROWTHS[self.growth].needs_momentum
        ):
            check_has_momentum(self.optimizer)

    def update_schedule(self) -> UpdateSchedule:
        return UpdateSchedule(
            total_steps=self.total_steps,
            interval=self.update_interval,
            steps_per_epoch=self.steps_per_epoch,
            stop_fraction=self.stop_fraction,
        )

    def dense_gradient_window(self) -> int:
        return GROWTHS[self.growth].dense_gradient_steps(self)

    def current_prune_rate(self) -> float:
        """The schedule anneals over the updating part of training (``stop_fraction``), as
        RigL does."""
        return schedules.prune_rate_at(
            self.prune_rate_schedule,
            self.prune_rate,
            self.final_prune_rate,
            self.step_count,
            self.stop_fraction * self.total_steps,
        )

    def update(self) -> UpdateReport:
        redistribution = REDISTRIBUTIONS[self.redistribution]
        prune_rate = self.current_prune_rate()
        shares = redistribution.shares(self)
        before = {name: mask.clone() for name, mask in self.masks.items()}
        removed = self.drop(prune_rate, shares)
        regrow = redistribution.regrowth(self, removed, shares)
        for name, count in regrow.items():
            self.masks[name] = self.grow(name, count)
        self.after_growth({name: self.masks[name] & ~before[name] for name in self.masks})
        return UpdateReport(self.step_count, prune_rate, removed, regrow)

    # ----------------------------------------------------------------- hooks
    def layer_prune_rates(self, prune_rate: float, shares: dict[str, float]) -> dict[str, float]:
        """The prune rate per layer, with the reference code's guard for dense, growing layers."""
        rates = {}
        for name, mask in self.masks.items():
            layer_density = float(torch.count_nonzero(mask)) / mask.numel()
            rate = prune_rate
            if layer_density > _DENSE_LAYER_GUARD and shares[name] > 1.0 / len(self.masks):
                rate = min(rate, 1.0 - layer_density)
            rates[name] = rate
        return rates

    def drop(self, prune_rate: float, shares: dict[str, float]) -> dict[str, int]:
        """Switch off the ceil(rate x nnz) smallest-magnitude active weights of each layer."""
        removed = {}
        for name, rate in self.layer_prune_rates(prune_rate, shares).items():
            mask = self.masks[name]
            count = math.ceil(rate * int(torch.count_nonzero(mask)))
            magnitudes = self.weights[name].detach().abs()
            self.masks[name] = selection.drop_smallest(mask, magnitudes, count)
            removed[name] = count
        return removed

    def grow(self, name: str, count: int) -> torch.Tensor:
        """Layer ``name``'s mask with the ``count`` best-scoring missing positions switched on."""
        scores = GROWTHS[self.growth].scores(self, name)
        return selection.grow_largest(self.masks[name], scores, count)

    def after_growth(self, grown_masks: dict[str, torch.Tensor]) -> None:
        """Called with the newly grown positions of each layer; RigL resets their optimizer
        state."""

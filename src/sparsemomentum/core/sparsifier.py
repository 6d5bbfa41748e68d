"""The dynamic-sparse-training loop that every algorithm shares.

A :class:`Sparsifier` owns one boolean mask per sparse weight and keeps three promises:

* after every :meth:`step`, masked weights are exactly zero;
* after every :meth:`update_masks`, the number of active positions equals
  :meth:`target_nonzero_count` (fixed at construction by one rounding rule);
* no layer ever holds more active positions than it has elements.

An update is always the same five moves, and algorithms differ only in the parts they
plug in (see ``algorithms/``)::

    statistic per layer   layer_statistics()          (before pruning)
    which to drop         drop()                      -> removed count per layer
    how many per layer    regrowth_counts()           (exact integer allocation)
    which to grow         growth_scores(name)         (top-k of missing positions)
    bookkeeping           apply_masks(), counters, history

Gradients are not masked: missing weights keep accumulating momentum, which is what
momentum growth reads (with ``backend="sparse"`` they do so in a window of steps before
each update; see ``dense_gradient_needed``). Grown weights start at exactly zero and keep
their optimizer state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import UserError, check_choice
from . import allocation, schedules, selection
from .optimizer_state import check_has_momentum, momentum_of
from .targets import DEFAULT_SPARSE_TYPES, sparse_parameters

PRUNE_MODES = ("magnitude",)
BACKENDS = ("masked", "sparse")
REDISTRIBUTIONS = ("momentum", "magnitude", "nonzero", "none")
GROWTHS = ("momentum", "random", "gradient")

# The reference code's guard against starving dense layers: a layer above this density
# whose momentum share exceeds its fair share 1/#layers prunes at most its own sparsity.
_DENSE_LAYER_GUARD = 0.8


class NonFiniteWeights(UserError):
    """Training diverged; a mask update on NaN weights would corrupt the masks."""


@dataclass
class UpdateReport:
    """What one mask update did, per layer (for tests, logs and plots)."""

    step: int
    prune_rate: float
    pruned: dict[str, int]
    grown: dict[str, int]


@dataclass(eq=False)
class Sparsifier:
    """Masks, exact bookkeeping and the update loop; algorithms subclass and pick parts.

    Call :meth:`step` in place of ``optimizer.step()`` and :meth:`update_masks` at the end
    of every epoch (or pass ``update_interval`` to update every k steps automatically).
    ``total_steps`` is the number of optimizer steps of the whole run: the prune-rate
    schedule anneals over it and updates stop once it (times ``stop_fraction``) is reached,
    so the end-of-training call makes no change.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    density: float = 0.05
    total_steps: int = 0
    prune_rate: float = 0.5
    prune_rate_schedule: str = "cosine"
    final_prune_rate: float = 0.005
    distribution: str = "uniform"
    prune: str = "magnitude"
    redistribution: str = "momentum"
    growth: str = "momentum"
    update_interval: int | None = None
    stop_fraction: float = 1.0
    layer_types: Sequence[type[nn.Module]] = DEFAULT_SPARSE_TYPES
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    seed: int = 0
    backend: str = "masked"
    momentum_window: int = 50
    # Where sparse kernels beat dense ones on a 2-core CPU (benchmarks/kernels.py,
    # docs/speed.md): not for tiny Linear layers, and below a density that depends on the
    # layer kind (None: backends.layers.DEFAULT_MAX_DENSITY, 20 % Linear, 50 % Conv2d).
    kernel_max_density: float | None = None
    kernel_min_weights: int = 16384
    mask_check: Callable[[dict[str, torch.Tensor]], None] | None = field(default=None, repr=False)

    step_count: int = field(default=0, init=False)
    update_count: int = field(default=0, init=False)
    history: list[UpdateReport] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self._validate()
        self.weights: dict[str, nn.Parameter] = sparse_parameters(
            self.model, self.layer_types, self.include, self.exclude
        )
        self._check_optimizer_holds_weights()
        self.generator = torch.Generator().manual_seed(self.seed)
        self._target = allocation.target_nonzeros(
            self.density, sum(w.numel() for w in self.weights.values())
        )
        self.masks: dict[str, torch.Tensor] = self.initial_masks()
        self._multiplier_sources: list[torch.Tensor] = []
        self.apply_masks()
        self._last_update_step = 0
        self._update_period: int | None = None
        self.kernels = None
        self._values_sgd = None
        self._dense_gradient = True
        if self.backend == "sparse":
            from ..backends import sparsify_layers, values_sgd

            self.kernels = sparsify_layers(
                self.model,
                self.masks,
                max_density=self.kernel_max_density,
                min_weights=self.kernel_min_weights,
            )
            if values_sgd.supports(self.optimizer):
                self._values_sgd = values_sgd.ValuesOnlySGD(
                    self.optimizer, self.kernels, self.weights
                )
            self._choose_weight_gradient()

    # ----------------------------------------------------------------- validation
    def _validate(self) -> None:
        if not 0.0 < self.density <= 1.0:
            raise UserError(
                f"density must be in (0, 1], got {self.density}; use e.g. 0.05 for 5 % non-zeros."
            )
        if not 0.0 <= self.prune_rate < 1.0:
            raise UserError(
                f"prune rate must be in [0, 1), got {self.prune_rate}; the paper uses 0.5."
            )
        if not 0.0 <= self.final_prune_rate < 1.0:
            raise UserError(f"final prune rate must be in [0, 1), got {self.final_prune_rate}.")
        if self.total_steps < 0 or (
            self.total_steps == 0 and self.prune_rate_schedule != "constant"
        ):
            raise UserError(
                f"total_steps must be the number of optimizer steps of the whole run (got {self.total_steps}); "
                "the prune-rate schedule anneals over it."
            )
        if self.update_interval is not None and self.update_interval <= 0:
            raise UserError(
                f"update interval must be a positive number of steps, got {self.update_interval}."
            )
        if not 0.0 < self.stop_fraction <= 1.0:
            raise UserError(f"stop fraction must be in (0, 1], got {self.stop_fraction}.")
        check_choice(
            "prune-rate schedule", self.prune_rate_schedule, schedules.PRUNE_RATE_SCHEDULES
        )
        check_choice("density distribution", self.distribution, allocation.DISTRIBUTIONS)
        check_choice("prune mode", self.prune, PRUNE_MODES)
        check_choice("redistribution", self.redistribution, REDISTRIBUTIONS)
        check_choice("growth", self.growth, GROWTHS)
        check_choice("backend", self.backend, BACKENDS)
        if self.momentum_window < 1:
            raise UserError(
                f"momentum window must be at least one step, got {self.momentum_window}."
            )
        if "momentum" in (self.redistribution, self.growth):
            check_has_momentum(self.optimizer)

    def _check_optimizer_holds_weights(self) -> None:
        held = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        missing = [name for name, weight in self.weights.items() if id(weight) not in held]
        if missing:
            raise UserError(
                f"the optimizer does not hold the model's parameter {missing[0]!r}; "
                "build the optimizer from model.parameters() of the same model."
            )

    # ----------------------------------------------------------------- hooks
    def initial_masks(self) -> dict[str, torch.Tensor]:
        """Random positions, with exactly the count the density distribution allots per layer."""
        shapes = [w.shape for w in self.weights.values()]
        counts = allocation.initial_counts(self.distribution, shapes, self.density)
        return {
            name: selection.random_mask(w.shape, count, self.generator, w.device)
            for (name, w), count in zip(self.weights.items(), counts)
        }

    def dense_masks(self) -> dict[str, torch.Tensor]:
        """All-ones masks, for methods that start dense (GMP, SNIP before its first gradient)."""
        return {name: torch.ones_like(w, dtype=torch.bool) for name, w in self.weights.items()}

    def layer_statistics(self) -> dict[str, float]:
        """Per-layer statistic over *active* weights that decides who gets regrowth."""
        stats = {}
        for name, mask in self.masks.items():
            if self.redistribution == "none":
                stats[name] = 0.0
            elif self.redistribution == "nonzero":
                stats[name] = float(torch.count_nonzero(mask))
            else:
                weight = self.weights[name]
                source = (
                    momentum_of(self.optimizer, weight)
                    if self.redistribution == "momentum"
                    else weight
                )
                active = source.detach()[
                    mask
                ]  # a gather: multiplying by the bool mask converts it first
                stats[name] = float(active.abs().sum()) / active.numel() if active.numel() else 0.0
        return stats

    def layer_prune_rates(self, prune_rate: float, shares: dict[str, float]) -> dict[str, float]:
        """The prune rate per layer, with the reference code's guard for dense, growing layers."""
        rates = {}
        for name, mask in self.masks.items():
            layer_density = float(torch.count_nonzero(mask)) / mask.numel()
            rate = prune_rate
            if (
                self.redistribution != "none"
                and layer_density > _DENSE_LAYER_GUARD
                and shares[name] > 1.0 / len(self.masks)
            ):
                rate = min(rate, 1.0 - layer_density)
            rates[name] = rate
        return rates

    def drop(self, prune_rate: float, shares: dict[str, float]) -> dict[str, int]:
        """Switch off the ceil(rate x nnz) smallest-magnitude active weights of each layer."""
        removed = {}
        for name, rate in self.layer_prune_rates(prune_rate, shares).items():
            mask = self.masks[name]
            count = math.ceil(rate * int(torch.count_nonzero(mask)))
            self.masks[name] = selection.drop_smallest(
                mask, self.weights[name].detach().abs(), count
            )
            removed[name] = count
        return removed

    def regrowth_counts(self, removed: dict[str, int], shares: dict[str, float]) -> dict[str, int]:
        """Hand the removed total back in proportion to ``shares``, overflow passed on, exactly."""
        if self.redistribution == "none":
            return dict(removed)
        names = list(self.masks)
        room = [self.masks[n].numel() - int(torch.count_nonzero(self.masks[n])) for n in names]
        counts = allocation.allocate(sum(removed.values()), [shares[n] for n in names], room)
        return dict(zip(names, counts))

    def growth_scores(self, name: str) -> torch.Tensor:
        """Score of every position of layer ``name``; the largest missing ones are grown."""
        weight = self.weights[name]
        if self.growth == "momentum":
            return momentum_of(self.optimizer, weight).abs()
        if self.growth == "gradient":
            return weight.grad.abs() if weight.grad is not None else torch.zeros_like(weight)
        return torch.rand(weight.shape, generator=self.generator).to(weight.device)

    def grow(self, name: str, count: int) -> torch.Tensor:
        """Layer ``name``'s mask with the ``count`` best-scoring missing positions switched on."""
        return selection.grow_largest(self.masks[name], self.growth_scores(name), count)

    def after_growth(self, grown_masks: dict[str, torch.Tensor]) -> None:
        """Called with the newly grown positions of each layer; RigL resets their optimizer state."""

    # ----------------------------------------------------------------- sparse backend
    def masks_changed(self) -> None:
        """Zero the newly masked weights and give the sparse kernels the new layout."""
        self._multiplier_sources = []
        self.apply_masks()
        if self.kernels is not None:
            self.kernels.rebuild(self.masks)

    def _steps_to_next_update(self) -> int | None:
        """None while unknown: epoch-wise updates reveal their period only at the first one."""
        if self.update_interval is not None:
            return self.update_interval - self.step_count % self.update_interval
        if self._update_period is None:
            return None
        return self._last_update_step + self._update_period - self.step_count

    def dense_gradient_needed(self) -> bool:
        """Whether the next step needs the dense weight gradient of missing weights.

        Sparse kernels compute dW only at the non-zeros, which leaves the momentum of missing
        weights to decay. Growth by momentum reads exactly that momentum, so the dense dW is
        computed for the last ``momentum_window`` steps before each update (0.9^50 = 0.5 %
        of the history is left out); growth by gradient needs it for the last step only.
        """
        window = {"momentum": self.momentum_window, "gradient": 1}.get(self.growth, 0)
        remaining = self._steps_to_next_update()
        if window == 0 or not self.update_due():
            return False
        if remaining is None:
            return True
        next_update = self.step_count + remaining  # no window before an update that will not happen
        return remaining <= window and (
            self.total_steps == 0 or next_update < self.stop_fraction * self.total_steps
        )

    def _choose_weight_gradient(self) -> None:
        self._dense_gradient = self.dense_gradient_needed()
        self.kernels.set_dense_weight_gradient(self._dense_gradient)

    # ----------------------------------------------------------------- the loop
    @torch.no_grad()
    def apply_masks(self, skip: Sequence[str] = ()) -> None:
        """Zero every masked weight: one fused multiply over all sparse tensors.

        The multipliers are the masks in the weights' dtype, kept between steps: multiplying
        by a boolean mask makes torch build a float copy of it first, every step (measured:
        80 ms against 4 ms per step for a 784-4096-4096-10 MLP). They are rebuilt whenever a
        mask tensor is replaced; after changing a mask *in place*, call :meth:`masks_changed`.
        """
        masks = list(self.masks.values())
        if len(masks) != len(self._multiplier_sources) or any(
            a is not b for a, b in zip(masks, self._multiplier_sources)
        ):
            self._multipliers = {
                name: mask.to(self.weights[name].dtype) for name, mask in self.masks.items()
            }
            self._multiplier_sources = masks
        names = [name for name in self.weights if name not in skip]
        if names:
            torch._foreach_mul_(
                [self.weights[n] for n in names], [self._multipliers[n] for n in names]
            )

    def step(self, scaler: torch.amp.GradScaler | None = None) -> bool:
        """``optimizer.step()``, re-mask, advance the schedule; update masks if one is due.

        With a gradient ``scaler`` (float16 mixed precision), a step the scaler skips for
        inf/NaN gradients changed no weight, so it does not advance the schedule either.
        Returns whether the step was taken.
        """
        if self._values_sgd is not None and scaler is None:
            # Sparse layers step their non-zeros only (and, in the momentum window, the missing
            # weights' momenta); their missing weights never move.
            self._values_sgd.step(dense_gradient=self._dense_gradient)
            self.apply_masks(skip=self.kernels.sparse)
        else:
            if self._values_sgd is not None:
                self._values_sgd.flush()
            if scaler is None:
                self.optimizer.step()
            else:
                scale = scaler.get_scale()
                scaler.step(self.optimizer)
                scaler.update()
                if scaler.get_scale() < scale:
                    return False
            self.apply_masks()
        self.step_count += 1
        if self.update_interval is not None and self.step_count % self.update_interval == 0:
            self.update_masks()
        if self.kernels is not None:
            self._choose_weight_gradient()
        return True

    def current_prune_rate(self) -> float:
        """The schedule anneals over the updating part of training (``stop_fraction``), as RigL does."""
        return schedules.prune_rate_at(
            self.prune_rate_schedule,
            self.prune_rate,
            self.final_prune_rate,
            self.step_count,
            self.stop_fraction * self.total_steps,
        )

    def update_due(self) -> bool:
        """Updates stop at ``stop_fraction`` of training, so the final epoch's call is a no-op."""
        return self.total_steps == 0 or self.step_count < self.stop_fraction * self.total_steps

    @torch.no_grad()
    def update_masks(self) -> UpdateReport | None:
        """Prune, redistribute and grow; the total number of non-zeros does not change.

        Refuses to run on non-finite weights: ranking NaNs would silently scramble the masks.
        """
        if not self.update_due():
            return None
        if self._values_sgd is not None:
            self._values_sgd.flush()
        # A finite sum proves every element finite (one reduction); only a non-finite one needs the element check.
        broken = [
            name
            for name, weight in self.weights.items()
            if not bool(torch.isfinite(weight.sum())) and not bool(torch.isfinite(weight).all())
        ]
        if broken:
            raise NonFiniteWeights(
                f"weight {broken[0]!r} holds NaN or infinite values, so the masks were left unchanged; "
                "training diverged: lower the learning rate and start again from the last good checkpoint."
            )
        prune_rate = self.current_prune_rate()
        statistics = self.layer_statistics()
        total = sum(statistics.values())
        shares = {n: (s / total if total > 0 else 0.0) for n, s in statistics.items()}
        before = {n: m.clone() for n, m in self.masks.items()}
        removed = self.drop(prune_rate, shares)
        regrow = self.regrowth_counts(removed, shares)
        for name, count in regrow.items():
            self.masks[name] = self.grow(name, count)
        self.after_growth({n: self.masks[n] & ~before[n] for n in self.masks})
        self.masks_changed()
        self._update_period = self.step_count - self._last_update_step
        self._last_update_step = self.step_count
        if self.kernels is not None:
            self._choose_weight_gradient()
        if self.mask_check is not None:
            self.mask_check(self.masks)
        self.update_count += 1
        report = UpdateReport(self.step_count, prune_rate, removed, regrow)
        self.history.append(report)
        return report

    # ----------------------------------------------------------------- counting
    def nonzero_count(self) -> int:
        """Active (unmasked) positions over all sparse tensors."""
        return sum(int(torch.count_nonzero(mask)) for mask in self.masks.values())

    def target_nonzero_count(self) -> int:
        """round(density x sparse elements), half up, at least one: fixed for the whole run."""
        return self._target

    def layer_densities(self) -> dict[str, float]:
        return {
            name: float(torch.count_nonzero(mask)) / mask.numel()
            for name, mask in self.masks.items()
        }

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Masks, schedule position, counters and the update reports: everything needed to resume exactly."""
        return {
            "masks": {name: mask.detach().cpu().clone() for name, mask in self.masks.items()},
            "step_count": self.step_count,
            "update_count": self.update_count,
            "target_nonzero_count": self._target,
            "generator_state": self.generator.get_state(),
            "last_update_step": self._last_update_step,
            "update_period": self._update_period,
            "pending_momentum_decay": dict(self._values_sgd.pending_decay)
            if self._values_sgd
            else {},
            "history": [dataclasses.asdict(report) for report in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        masks = state.get("masks")
        if not isinstance(masks, dict) or set(masks) != set(self.weights):
            expected = ", ".join(self.weights)
            raise UserError(
                f"the checkpoint's masks do not match the model: expected masks for {expected}; "
                "resume with the model and options the checkpoint was written with."
            )
        for name, mask in masks.items():
            if tuple(mask.shape) != tuple(self.weights[name].shape):
                raise UserError(
                    f"the checkpoint's mask for {name!r} has shape {tuple(mask.shape)} but the weight has "
                    f"{tuple(self.weights[name].shape)}; resume with the model the checkpoint was written with."
                )
        if int(state["target_nonzero_count"]) != self._target:
            raise UserError(
                f"the checkpoint keeps {int(state['target_nonzero_count'])} non-zeros but density {self.density} "
                f"means {self._target}; resume with the density the checkpoint was written with."
            )
        self.masks = {
            name: masks[name].to(device=w.device, dtype=torch.bool)
            for name, w in self.weights.items()
        }
        self.step_count = int(state["step_count"])
        self.update_count = int(state["update_count"])
        self.generator.set_state(state["generator_state"])
        self._last_update_step = int(state.get("last_update_step", 0))
        self._update_period = state.get("update_period")
        if self._values_sgd is not None:
            self._values_sgd.pending_decay.update(state.get("pending_momentum_decay", {}))
        self.history = [
            UpdateReport(**report) for report in state.get("history", [])
        ]  # older checkpoints: none
        self.masks_changed()
        if self.kernels is not None:
            self._choose_weight_gradient()

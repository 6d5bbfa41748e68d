"""Masks, exact bookkeeping and update timing: what every training method shares.

A :class:`Sparsifier` owns one boolean mask per sparse weight and keeps three promises:

* after every :meth:`step`, masked weights are exactly zero;
* after every :meth:`update_masks`, the number of active positions equals
  :meth:`target_nonzero_count` (fixed at construction by one rounding rule);
* no layer ever holds more active positions than it has elements.

What a mask update *does* is the method's :meth:`update` hook (the prune-and-grow loop of
sparse momentum, SET, DSR and RigL is in ``dynamic.py``); *when* it happens is asked of
the :class:`~.schedules.UpdateSchedule`; *how* the arithmetic runs (dense weights times
masks, or sparse kernels) is the backend's business (``backend.py``).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..errors import UserError, check_choice, check_interval
from . import allocation, selection
from .backend import Backend, create_backend
from .schedules import UpdateSchedule
from .targets import DEFAULT_SPARSE_TYPES, choose_targets


class NonFiniteWeights(UserError):
    """Training diverged; a mask update on NaN weights would corrupt the masks."""


@dataclass
class UpdateReport:
    """What one mask update did, per layer (for tests, logs and plots)."""

    step: int
    prune_rate: float
    pruned: dict[str, int]
    grown: dict[str, int]


def option(default: Any, help: str) -> Any:
    """A method option: a dataclass field whose ``help`` the command line shows."""
    return field(default=default, metadata={"help": help})


@dataclass(eq=False)
class Sparsifier:
    """Masks drawn at random with exactly the target count, kept fixed (a static mask).

    Call :meth:`step` in place of ``optimizer.step()``. Methods that change masks override
    :meth:`update_schedule` and :meth:`update`; the training loop calls
    :meth:`update_masks` at the end of each epoch when ``schedule.epoch_wise``.
    ``total_steps`` is the number of optimizer steps of the whole run and
    ``steps_per_epoch`` the number per epoch (it tells the sparse backend when the next
    epoch-wise update comes; without it the first update reveals it).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    density: float = option(0.05, "fraction of non-zero weights over all sparse layers, in (0, 1]")
    total_steps: int = 0
    steps_per_epoch: int | None = None
    distribution: str = option("uniform", "initial density per layer: uniform, erdos_renyi or erk")
    layer_types: Sequence[type[nn.Module]] = DEFAULT_SPARSE_TYPES
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    seed: int = 0
    backend: str | Backend = option(
        "masked",
        "masked (dense weights times masks) or sparse (compiled sparse kernels for Linear and "
        "Conv2d layers)",
    )
    mask_check: Callable[[dict[str, torch.Tensor]], None] | None = field(default=None, repr=False)

    step_count: int = field(default=0, init=False)
    update_count: int = field(default=0, init=False)
    history: list[UpdateReport] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.validate()
        targets = choose_targets(self.model, self.layer_types, self.include, self.exclude)
        self.weights: dict[str, nn.Parameter] = targets.sparse
        self.dense_tensors: dict[str, str] = targets.dense  # candidates left dense, and why
        self._check_optimizer_holds_weights()
        self.generator = torch.Generator().manual_seed(self.seed)
        self.sparse_size = sum(w.numel() for w in self.weights.values())
        self._target = allocation.target_nonzeros(self.density, self.sparse_size)
        self.schedule = self.update_schedule()
        self.masks: dict[str, torch.Tensor] = self.initial_masks()
        self._warn_about_empty_layers()
        self.backend = create_backend(self.backend)
        self.backend.attach(self.model, self.optimizer, self.weights, self.masks)
        self.backend.set_dense_gradient(self.dense_gradient_needed())
        if self.backend.uses_gradient_window and self.dense_gradient_window():
            self._warn_about_unknown_period()

    # ----------------------------------------------------------------- checks
    def validate(self) -> None:
        """Refuse option values no run can use, each with one sentence; methods extend it."""
        check_interval("density", self.density, "(0, 1]", "use e.g. 0.05 for 5 % non-zeros")
        if self.total_steps < 0:
            raise UserError(f"total_steps must be zero or positive, got {self.total_steps}.")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise UserError(
                f"steps_per_epoch must be a positive number of steps, got {self.steps_per_epoch}."
            )
        check_choice("density distribution", self.distribution, allocation.DISTRIBUTIONS)

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

    def update_schedule(self) -> UpdateSchedule:
        """When :meth:`update` runs; a static mask never updates."""
        return UpdateSchedule.never()

    def update(self) -> UpdateReport:
        """Change ``self.masks`` (replace the tensors) and say what changed."""
        raise NotImplementedError(f"{type(self).__name__} does not update its masks")

    def current_prune_rate(self) -> float:
        """The fraction of active weights an update now would replace (0: masks are fixed)."""
        return 0.0

    def method_state(self) -> dict[str, Any]:
        """What the method adds to :meth:`state_dict` (DSR's threshold, SNIP's progress)."""
        return {}

    def load_method_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`method_state`; the keys were checked against the method's own."""

    def dense_gradient_window(self) -> int:
        """Steps before each update whose missing weights need a gradient (see ``parts.Growth``)."""
        return 0

    # ----------------------------------------------------------------- the loop
    def dense_gradient_needed(self) -> bool:
        """Whether the next step must give missing weights their gradient (sparse backend)."""
        return self.schedule.window_open(self.step_count, self.dense_gradient_window())

    def masks_changed(self) -> None:
        """Zero the newly masked weights and give the backend the new layout; call it after
        editing a mask in place (replacing a mask tensor is noticed by itself)."""
        self.backend.masks_changed(self.masks)

    def step(self, scaler: torch.amp.GradScaler | None = None) -> bool:
        """``optimizer.step()``, re-mask, count; update masks if a periodic update is due.

        With a gradient ``scaler`` (float16 mixed precision), a step the scaler skips for
        inf/NaN gradients changed no weight, so it does not advance the schedule either.
        Returns whether the step was taken.
        """
        if not self.backend.step(self.masks, scaler):
            return False
        self._count_step()
        return True

    def optimizer_stepped(self) -> None:
        """For training loops that call ``optimizer.step()`` themselves (Hugging Face's
        Trainer, Lightning; see ``integrations/``): re-mask and count the step, as
        :meth:`step` does after its own optimizer step."""
        self.backend.stepped_elsewhere(self.masks)
        self._count_step()

    def _count_step(self) -> None:
        """One more optimizer step: a periodic update if one is due, the gradient window."""
        self.step_count += 1
        if self.step_count == self.total_steps + 1 > 1 and self.schedule.enabled:
            warnings.warn(
                f"step {self.step_count} is past total_steps={self.total_steps}: the prune-rate "
                "schedule has ended and no more mask updates happen; pass the run's real number "
                "of optimizer steps as total_steps.",
                stacklevel=3,
            )
        if self.schedule.periodic_update_at(self.step_count):
            self.update_masks()
        self.backend.set_dense_gradient(self.dense_gradient_needed())

    def update_due(self) -> bool:
        """Whether :meth:`update_masks` changes anything now (no-op outside the schedule)."""
        return self.schedule.active(self.step_count)

    @torch.no_grad()
    def update_masks(self) -> UpdateReport | None:
        """Run the method's :meth:`update` if one is due; the total of non-zeros stays exact.

        Refuses to run on non-finite weights: ranking NaNs would silently scramble the masks.
        """
        if not self.update_due():
            return None
        self.backend.sync_optimizer_state()
        self._refuse_non_finite_weights()
        report = self.update()
        self.masks_changed()
        self.schedule.record_update(self.step_count)
        self.backend.set_dense_gradient(self.dense_gradient_needed())
        if self.mask_check is not None:
            self.mask_check(self.masks)
        self.update_count += 1
        self.history.append(report)
        return report

    def _warn_about_unknown_period(self) -> None:
        if self.schedule.epoch_wise and self.steps_per_epoch is None:
            warnings.warn(
                f"the {self.backend.name} backend computes dense weight gradients in every step "
                "until the first mask update reveals the epoch length; pass "
                "steps_per_epoch=len(loader) so that it does so only before each update.",
                stacklevel=4,
            )

    def _warn_about_empty_layers(self) -> None:
        empty = [name for name, mask in self.masks.items() if not bool(mask.any())]
        if empty:
            warnings.warn(
                f"density {self.density} leaves {empty[0]!r}"
                + (f" and {len(empty) - 1} more layers" if len(empty) > 1 else "")
                + " without a single weight (the layer passes on only its bias); raise the "
                "density or use distribution='erk', which gives small layers more.",
                stacklevel=4,
            )

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0) -> torch.Tensor:
        """``torch.nn.utils.clip_grad_norm_`` over the optimizer's parameters, with the
        gradients of missing weights left out of the norm; returns the norm.

        Missing weights do not move, so their gradients (which feed momentum, not weights)
        should not scale the step of the others; and the sparse backend computes them only in
        the steps before an update. Leaving them out makes both backends clip alike. Every
        gradient, missing ones included, is scaled by the same factor.
        """
        masks = {id(weight): self.masks[name] for name, weight in self.weights.items()}
        parameters = [
            p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None
        ]
        if not parameters:
            return torch.zeros(())
        norms = [
            torch.linalg.vector_norm(p.grad[masks[id(p)]] if id(p) in masks else p.grad, norm_type)
            for p in parameters
        ]
        total = torch.linalg.vector_norm(torch.stack(norms), norm_type)
        factor = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_([p.grad for p in parameters], factor)
        return total

    def _refuse_non_finite_weights(self) -> None:
        # A finite sum proves every element finite (one reduction); only a non-finite one
        # needs the element check.
        broken = [
            name
            for name, weight in self.weights.items()
            if not bool(torch.isfinite(weight.sum())) and not bool(torch.isfinite(weight).all())
        ]
        if broken:
            raise NonFiniteWeights(
                f"weight {broken[0]!r} holds NaN or infinite values, so the masks were left "
                "unchanged; training diverged: lower the learning rate and start again from "
                "the last good checkpoint."
            )

    # ----------------------------------------------------------------- counting
    def nonzero_count(self) -> int:
        """Active (unmasked) positions over all sparse tensors."""
        return sum(int(torch.count_nonzero(mask)) for mask in self.masks.values())

    def overall_density(self) -> float:
        """Active positions over all sparse elements, as the run logs it (the target density
        to rounding, unless masks were edited by hand)."""
        return self.nonzero_count() / self.sparse_size

    def target_nonzero_count(self) -> int:
        """round(density x sparse elements), half up, at least one: fixed for the whole run."""
        return self._target

    def summary(self) -> str:
        """What is sparse and what stays dense, and why: one line per tensor."""
        lines = [
            f"{type(self).__name__}: {self.target_nonzero_count():,} of {self.sparse_size:,} "
            f"weights ({self.density:.2%}) in {len(self.weights)} sparse tensors"
        ]
        for name, density in self.layer_densities().items():
            lines.append(f"  sparse {name} {tuple(self.weights[name].shape)}: {density:.2%}")
        for name, reason in self.dense_tensors.items():
            lines.append(f"  dense  {name}: {reason}")
        backend = self.backend.summary()
        return "\n".join(lines + ([f"  {backend}"] if backend else []))

    def layer_densities(self) -> dict[str, float]:
        return {
            name: float(torch.count_nonzero(mask)) / mask.numel()
            for name, mask in self.masks.items()
        }

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Masks, schedule position, counters, reports and the backend's own state: all a
        resume needs to continue exactly."""
        return {
            "masks": {name: mask.detach().cpu().clone() for name, mask in self.masks.items()},
            "step_count": self.step_count,
            "update_count": self.update_count,
            "target_nonzero_count": self._target,
            "generator_state": self.generator.get_state(),
            "schedule": self.schedule.state_dict(),
            "backend": self.backend.state_dict(),
            "method": self.method_state(),
            "history": [dataclasses.asdict(report) for report in self.history],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; everything is checked before anything changes."""
        self._check_state(state)
        self.masks = {
            name: state["masks"][name].to(device=w.device) for name, w in self.weights.items()
        }
        self.step_count = int(state["step_count"])
        self.update_count = int(state["update_count"])
        self.generator.set_state(state["generator_state"])
        self.schedule.load_state_dict(state["schedule"])
        self.history = [UpdateReport(**report) for report in state["history"]]
        self.load_method_state(state["method"])
        self.masks_changed()
        self.backend.load_state_dict(state["backend"])
        self.backend.set_dense_gradient(self.dense_gradient_needed())

    def allowed_nonzero_counts(self, method_state: dict[str, Any]) -> tuple[int, int]:
        """The least and most non-zeros a saved state of this method may hold."""
        return self._target, self._target

    def _check_state(self, state: Any) -> None:
        keys = set(self.state_dict())
        if not isinstance(state, dict) or not keys <= set(state):
            missing = sorted(keys - set(state)) if isinstance(state, dict) else ["everything"]
            raise UserError(
                f"the saved sparsifier state lacks {missing[0]!r}; it was written by another "
                "version of sparsemomentum or is damaged: start the run again."
            )
        if not isinstance(state["method"], dict) or set(state["method"]) != set(
            self.method_state()
        ):
            raise UserError(
                f"the saved sparsifier state was written by another method than "
                f"{type(self).__name__}; resume with the method it was written with."
            )
        self._check_masks(state["masks"])
        if int(state["target_nonzero_count"]) != self._target:
            raise UserError(
                f"the checkpoint keeps {int(state['target_nonzero_count'])} non-zeros but density "
                f"{self.density} means {self._target}; resume with the density the checkpoint "
                "was written with."
            )
        count = sum(int(torch.count_nonzero(mask)) for mask in state["masks"].values())
        low, high = self.allowed_nonzero_counts(state["method"])
        if not low <= count <= high:
            raise UserError(
                f"the checkpoint's masks hold {count} non-zeros where {type(self).__name__} keeps "
                f"{low if low == high else f'{low} to {high}'}; the checkpoint is damaged: "
                "resume from an earlier one or start again."
            )

    def _check_masks(self, masks: Any) -> None:
        if not isinstance(masks, dict) or set(masks) != set(self.weights):
            expected = ", ".join(self.weights)
            raise UserError(
                f"the checkpoint's masks do not match the model: expected masks for {expected}; "
                "resume with the model and options the checkpoint was written with."
            )
        for name, mask in masks.items():
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
                raise UserError(
                    f"the checkpoint's mask for {name!r} is not a boolean tensor; the checkpoint "
                    "is damaged: start the run again."
                )
            if tuple(mask.shape) != tuple(self.weights[name].shape):
                raise UserError(
                    f"the checkpoint's mask for {name!r} has shape {tuple(mask.shape)} but the "
                    f"weight has {tuple(self.weights[name].shape)}; resume with the model the "
                    "checkpoint was written with."
                )

"""SNIP (Lee et al. 2019): prune once at initialisation by connection sensitivity, then static."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..core import selection
from ..core.sparsifier import Sparsifier
from ..errors import UserError


@dataclass(eq=False)
class SNIP(Sparsifier):
    """Keeps the weights with the largest |w x gradient|, ranked over all layers at once.

    The scores need one batch's gradient at initialisation, which is exactly what the first
    ``step()`` receives: the model trains dense for no step at all, since the mask is chosen
    and applied before the optimizer moves anything. Masks are never updated afterwards.
    """

    def __post_init__(self) -> None:
        self.scored = False
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.distribution != "uniform":
            raise UserError(
                f"SNIP ranks all layers together, so each layer's density follows from the scores; "
                f"distribution {self.distribution!r} does not apply to it: leave it out."
            )

    def initial_masks(self) -> dict[str, torch.Tensor]:
        return self.dense_masks()

    @torch.no_grad()
    def choose_masks_from_gradients(self) -> None:
        names = list(self.weights)
        scores = [
            (self.weights[n] * self.weights[n].grad).abs().flatten()
            if self.weights[n].grad is not None
            else torch.zeros(self.weights[n].numel(), device=self.weights[n].device)
            for n in names
        ]
        everything = torch.cat([s.cpu() for s in scores])
        keep = selection.grow_largest(
            torch.zeros_like(everything, dtype=torch.bool), everything, self.target_nonzero_count()
        )
        for name, part in zip(names, keep.split([s.numel() for s in scores])):
            self.masks[name] = part.view_as(self.weights[name]).to(self.weights[name].device)
        self.scored = True

    def step(self, scaler: torch.amp.GradScaler | None = None) -> bool:
        gradients = [w.grad for w in self.weights.values() if w.grad is not None]
        if not self.scored and not gradients:
            raise UserError(
                "SNIP chooses its masks from the gradients of the first batch, but no sparse "
                "weight has a gradient yet; call loss.backward() before sparsifier.step()."
            )
        if not self.scored and all(bool(torch.isfinite(g).all()) for g in gradients):
            # A batch whose gradients overflowed (mixed precision) is no basis for the masks: wait.
            self.choose_masks_from_gradients()
            self.masks_changed()
        return super().step(scaler)

    def dense_gradient_needed(self) -> bool:
        """Only the first step: its dense gradient is what the scores are made of."""
        return not self.scored

    def allowed_nonzero_counts(self, method_state: dict[str, Any]) -> tuple[int, int]:
        count = self.target_nonzero_count() if method_state["scored"] else self.sparse_size
        return count, count  # dense until the first gradient, then the target

    def method_state(self) -> dict[str, Any]:
        return {"scored": self.scored}

    def load_method_state(self, state: dict[str, Any]) -> None:
        self.scored = bool(state["scored"])

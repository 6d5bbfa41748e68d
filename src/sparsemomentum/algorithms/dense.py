"""The dense baseline, run through the same loop so that comparisons are like for like."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.backend import backend_name
from ..core.sparsifier import Sparsifier
from ..errors import UserError


@dataclass(eq=False)
class Dense(Sparsifier):
    """All-ones masks and no updates. The masked backend multiplies only layers with missing
    weights, so this costs nothing over a plain ``optimizer.step()``."""

    density: float = 1.0

    def validate(self) -> None:
        super().validate()
        if self.density != 1.0:
            raise UserError(
                f"the dense baseline trains every weight, so its density is 1, not {self.density}; "
                "leave density out or choose a sparse method."
            )
        if backend_name(self.backend) != "masked":
            raise UserError(
                "the dense baseline has no sparse layers to run on sparse kernels; "
                "drop --backend sparse."
            )

    def initial_masks(self) -> dict[str, torch.Tensor]:
        return self.dense_masks()

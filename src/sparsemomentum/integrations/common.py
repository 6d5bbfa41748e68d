"""What both trainer callbacks share: building the sparsifier and its checkpoint file."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..algorithms import create_sparsifier
from ..atomic import atomic_file
from ..core.sparsifier import Sparsifier
from ..core.targets import DEFAULT_SPARSE_TYPES
from ..errors import UserError

STATE_FILE = "sparsemomentum.pt"


def unwrapped(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a trainer's wrapper (accelerate, Lightning), if any."""
    while isinstance(getattr(optimizer, "optimizer", None), torch.optim.Optimizer):
        optimizer = optimizer.optimizer  # accelerate's and Lightning's wrappers hold it here
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise UserError(
            "the trainer has no torch optimizer for the sparsifier to read; create one before "
            "training starts."
        )
    return optimizer


def build(
    method: str,
    density: float,
    options: dict[str, Any],
    model: nn.Module,
    optimizer: Any,
    total_steps: int,
    steps_per_epoch: int | None,
    extra_types: Sequence[type[nn.Module]] = (),
    mask_check: Callable | None = None,
) -> Sparsifier:
    """The method on the trainer's model and optimizer, masked backend (trainers step the
    optimizer themselves), told the run's length."""
    options = dict(options)
    options.setdefault("layer_types", (*DEFAULT_SPARSE_TYPES, *extra_types))
    if mask_check is not None:
        options["mask_check"] = mask_check
    return create_sparsifier(
        method, model, unwrapped(optimizer), density=density, total_steps=total_steps,
        steps_per_epoch=steps_per_epoch, **options,
    )  # fmt: skip


def restore(
    sparsifier: Sparsifier, state: dict[str, Any], weights: dict[str, torch.Tensor]
) -> None:
    """Resume: the saved masks and counters, and the checkpoint's weights back in place (the
    new sparsifier's initial masks zeroed some of them)."""
    sparsifier.load_state_dict(state)
    with torch.no_grad():
        for name, weight in sparsifier.weights.items():
            weight.copy_(weights[name])
    sparsifier.masks_changed()


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the parameters, taken before a sparsifier's initial masks touch them."""
    return {name: parameter.detach().clone() for name, parameter in model.named_parameters()}


def save_state(sparsifier: Sparsifier, folder: str | Path) -> None:
    with atomic_file(Path(folder) / STATE_FILE) as out:
        torch.save(
            {"format": "sparsemomentum-callback-1", "sparsifier": sparsifier.state_dict()}, out
        )


def load_state(folder: str | Path) -> dict[str, Any] | None:
    """The sparsifier state saved in a trainer checkpoint folder, or None if it has none."""
    path = Path(folder) / STATE_FILE
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        return payload["sparsifier"]
    except Exception:
        raise UserError(f"{path} is damaged; resume from an earlier checkpoint.") from None

"""Methods by name, as ``--method`` and the experiment files refer to them."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn

from ..core.sparsifier import Sparsifier
from ..errors import UserError
from .dense import Dense
from .dsr import DSR
from .gmp import GMP
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .sparse_momentum import SparseMomentum
from .static import Static

METHODS: dict[str, type[Sparsifier]] = {
    "sparse-momentum": SparseMomentum,
    "set": SET,
    "dsr": DSR,
    "rigl": RigL,
    "snip": SNIP,
    "gmp": GMP,
    "static": Static,
    "dense": Dense,
}


def create_sparsifier(
    method: str, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any
) -> Sparsifier:
    """Build method ``method`` on ``model``; ``options`` are the method's dataclass fields."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}.")
    accepted = {f.name for f in fields(METHODS[method]) if f.init}
    for option in options:
        if option not in accepted:
            owners = sorted(
                name for name, cls in METHODS.items() if option in {f.name for f in fields(cls)}
            )
            raise UserError(
                f"option {option!r} does not apply to method {method!r}; it is an option of: {', '.join(owners) or 'no method'}."
            )
    return METHODS[method](model, optimizer, **options)


def resolved_options(sparsifier: Sparsifier) -> dict[str, Any]:
    """Every setting the method ended up with, its own defaults included (for config.json)."""
    skip = {"model", "optimizer", "layer_types", "mask_check"}
    return {
        f.name: getattr(sparsifier, f.name)
        for f in fields(sparsifier)
        if f.init and f.name not in skip
    }

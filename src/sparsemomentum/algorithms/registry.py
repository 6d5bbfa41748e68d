"""Methods by name, as ``--method`` and the experiment files refer to them."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.sparsifier import Sparsifier
from ..errors import UserError
from .dense import Dense
from .sparse_momentum import SparseMomentum

METHODS: dict[str, type[Sparsifier]] = {
    "sparse-momentum": SparseMomentum,
    "dense": Dense,
}


def create_sparsifier(method: str, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any) -> Sparsifier:
    """Build method ``method`` on ``model``; ``options`` are the method's dataclass fields."""
    if method not in METHODS:
        raise UserError(f"unknown method {method!r}; choose one of: {', '.join(sorted(METHODS))}.")
    return METHODS[method](model, optimizer, **options)

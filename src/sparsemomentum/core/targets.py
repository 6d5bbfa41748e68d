"""Which parameters are sparse.

By default the weight of every Linear and Conv1d/2d/3d layer, first and last layer
included ("fully sparse", as the paper trains); biases, normalisation and embedding
parameters stay dense. ``include`` / ``exclude`` take shell-style patterns over parameter
names (``"fc1.weight"``, ``"features.*"``) for the cases a type rule cannot express.
"""

from __future__ import annotations

import fnmatch
from typing import Sequence

from torch import nn

from ..errors import UserError

DEFAULT_SPARSE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def sparse_parameters(
    model: nn.Module,
    layer_types: Sequence[type[nn.Module]] = DEFAULT_SPARSE_TYPES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> dict[str, nn.Parameter]:
    """Name -> weight of every tensor to sparsify, in the model's own order."""
    chosen: dict[str, nn.Parameter] = {}
    for module_name, module in model.named_modules():
        if not isinstance(module, tuple(layer_types)):
            continue
        weight = getattr(module, "weight", None)
        if not isinstance(weight, nn.Parameter):
            continue
        name = f"{module_name}.weight" if module_name else "weight"
        if include and not any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            continue
        chosen[name] = weight
    if not chosen:
        types = ", ".join(t.__name__ for t in layer_types)
        raise UserError(
            f"the model has nothing to sparsify: no {types} weight matched "
            f"(include={list(include)}, exclude={list(exclude)}); add such layers or loosen the "
            "patterns."
        )
    return chosen

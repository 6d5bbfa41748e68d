"""Which parameters are sparse, and why the others are not.

By default the weight of every Linear and Conv1d/2d/3d layer, first and last layer
included ("fully sparse", as the paper trains); biases, normalisation and embedding
parameters stay dense. ``include`` / ``exclude`` take shell-style patterns over parameter
names (``"fc1.weight"``, ``"features.*"``) for the cases a type rule cannot express.

Three rules keep the bookkeeping honest:

* frozen parameters (``requires_grad=False``) stay dense: the optimizer never moves them, so
  a mask would only zero pretrained weights;
* a tensor shared by several modules (weight tying) gets one mask, under its first name;
* a tensor tied to a module that stays dense (an ``nn.Embedding`` tied to the output layer)
  stays dense too, since masking the layer would mask the embedding; name it in ``include``
  to sparsify both.
"""

from __future__ import annotations

import fnmatch
import warnings
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from ..errors import UserError

DEFAULT_SPARSE_TYPES: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


@dataclass
class Targets:
    """The tensors to sparsify (name -> parameter, in the model's order) and, for the
    candidates left dense, why."""

    sparse: dict[str, nn.Parameter] = field(default_factory=dict)
    dense: dict[str, str] = field(default_factory=dict)


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def _owners(model: nn.Module) -> dict[int, list[tuple[str, nn.Module]]]:
    """Every (parameter name, module) holding each parameter object, tied ones included."""
    owners: dict[int, list[tuple[str, nn.Module]]] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        for parameter_name, parameter in module._parameters.items():
            if parameter is not None:
                name = f"{module_name}.{parameter_name}" if module_name else parameter_name
                owners.setdefault(id(parameter), []).append((name, module))
    return owners


def choose_targets(
    model: nn.Module,
    layer_types: Sequence[type[nn.Module]] = DEFAULT_SPARSE_TYPES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Targets:
    """The sparse tensors of ``model`` and the reasons the other candidates stay dense."""
    kinds = tuple(layer_types)
    owners = _owners(model)
    targets = Targets()
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if not isinstance(module, kinds) or not isinstance(weight, nn.Parameter):
            continue
        name = f"{module_name}.weight" if module_name else "weight"
        if isinstance(weight, nn.parameter.UninitializedParameter):
            raise UserError(
                f"{name} belongs to a lazy layer whose weights do not exist yet; run one forward "
                "pass with a batch before building the sparsifier."
            )
        if id(weight) in seen:
            continue  # tied: one mask per tensor, under its first name
        seen.add(id(weight))
        reason = _why_dense(name, weight, owners[id(weight)], kinds, include, exclude)
        if reason is None:
            targets.sparse[name] = weight
        else:
            targets.dense[name] = reason
    _note_fused_attention(model, targets)
    if not targets.sparse:
        _refuse_empty(targets, kinds, include, exclude)
    return targets


def _note_fused_attention(model: nn.Module, targets: Targets) -> None:
    """nn.MultiheadAttention keeps its query/key/value projection as a bare parameter that
    no layer type reaches: say so rather than leave a quarter of a layer dense unseen."""
    for module_name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention) and module.in_proj_weight is not None:
            name = f"{module_name}.in_proj_weight" if module_name else "in_proj_weight"
            targets.dense[name] = "the fused query/key/value projection is not sparsified"
            warnings.warn(
                f"{name} (nn.MultiheadAttention's query/key/value projection) stays dense; only "
                "its out_proj is sparse, so the attention layer is denser than the target.",
                stacklevel=2,
            )


def _why_dense(
    name: str,
    weight: nn.Parameter,
    owners: list[tuple[str, nn.Module]],
    kinds: tuple[type[nn.Module], ...],
    include: Sequence[str],
    exclude: Sequence[str],
) -> str | None:
    if not weight.requires_grad:
        return "frozen (requires_grad=False)"
    if include and not _matches(name, include):
        return "not matched by include"
    if _matches(name, exclude):
        return "matched by exclude"
    dense_owners = [(other, type(module).__name__) for other, module in owners
                    if not isinstance(module, kinds)]  # fmt: skip
    if dense_owners and not _matches(name, include):
        other, kind = dense_owners[0]
        return f"tied to {other} ({kind}), which stays dense; include {name!r} to sparsify both"
    return None


def _refuse_empty(
    targets: Targets,
    kinds: tuple[type[nn.Module], ...],
    include: Sequence[str],
    exclude: Sequence[str],
) -> None:
    types = ", ".join(t.__name__ for t in kinds)
    if targets.dense and all(reason.startswith("frozen") for reason in targets.dense.values()):
        raise UserError(
            f"the model has nothing to sparsify: every {types} weight is frozen "
            "(requires_grad=False); unfreeze the layers to train sparse, or leave them dense."
        )
    raise UserError(
        f"the model has nothing to sparsify: no {types} weight matched "
        f"(include={list(include)}, exclude={list(exclude)}); add such layers or loosen the "
        "patterns."
    )


def sparse_parameters(
    model: nn.Module,
    layer_types: Sequence[type[nn.Module]] = DEFAULT_SPARSE_TYPES,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> dict[str, nn.Parameter]:
    """Name -> weight of every tensor to sparsify, in the model's own order."""
    return choose_targets(model, layer_types, include, exclude).sparse

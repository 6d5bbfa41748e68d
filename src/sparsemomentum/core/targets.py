"""Which parameters are sparse, and why the others are not.

By default every weight matrix of the layers that compute with one, first and last layer
included ("fully sparse", as the paper trains): Linear and Conv1d/2d/3d weights, the
query/key/value projection of ``nn.MultiheadAttention`` (``in_proj_weight`` as one tensor
with one mask, or ``q/k/v_proj_weight``; its ``out_proj`` is a Linear), and the input and
recurrent matrices of ``nn.RNN``/``nn.LSTM``/``nn.GRU`` (``weight_ih_l*``, ``weight_hh_l*``,
every layer and direction; the gates stacked in one tensor keep one mask). Biases and
normalisation stay dense. Embeddings are candidates only on request (``layer_types`` naming
``Embedding``, or ``include`` naming the tensor): a sparse lookup table drops whole
features of rare tokens. ``include`` / ``exclude`` take shell-style patterns over parameter
names (``"fc1.weight"``, ``"features.*"``) for the cases a type rule cannot express.

For the Erdős–Rényi distributions a tensor counts by its own shape: the fused projection
as a [3E, E] matrix, a stacked LSTM matrix as [4H, in].

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
from dataclasses import dataclass, field
from typing import Sequence

from torch import nn

from ..errors import UserError

DEFAULT_SPARSE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.MultiheadAttention, nn.RNNBase,
)  # fmt: skip
_OPT_IN = (nn.Embedding,)


def candidate_tensors(module: nn.Module) -> list[str]:
    """The names of the weight matrices of ``module`` that may be sparse (none: not a layer
    that computes with one)."""
    if isinstance(module, nn.MultiheadAttention):
        names = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")
        return [name for name in names if isinstance(getattr(module, name, None), nn.Parameter)]
    if isinstance(module, nn.RNNBase):
        return [name for name in module._flat_weights_names if name.startswith("weight_")]
    # Linear, convolutions, embeddings, and any layer type a user names (e.g. the Conv1D of
    # Hugging Face's GPT-2): their weight
    return ["weight"] if isinstance(getattr(module, "weight", None), nn.Parameter) else []


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
        chosen_type = isinstance(module, kinds)
        if not chosen_type and not isinstance(module, _OPT_IN):
            continue
        for tensor in candidate_tensors(module):
            weight = getattr(module, tensor)
            name = f"{module_name}.{tensor}" if module_name else tensor
            if isinstance(weight, nn.parameter.UninitializedParameter):
                raise UserError(
                    f"{name} belongs to a lazy layer whose weights do not exist yet; run one "
                    "forward pass with a batch before building the sparsifier."
                )
            if id(weight) in seen:
                continue  # tied: one mask per tensor, under its first name
            seen.add(id(weight))
            reason = _why_dense(name, weight, owners[id(weight)], kinds, include, exclude)
            if reason is None and not chosen_type and not _matches(name, include):
                reason = "an embedding: sparse only on request (include it, or layer_types)"
            if reason is None:
                targets.sparse[name] = weight
            else:
                targets.dense[name] = reason
    if not targets.sparse:
        _refuse_empty(targets, kinds, include, exclude)
    return targets


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
                    if other != name and not isinstance(module, kinds)]  # fmt: skip
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

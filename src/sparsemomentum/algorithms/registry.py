"""Methods by name, as ``--method`` and the experiment files refer to them.

A method is a dataclass deriving from :class:`~sparsemomentum.core.sparsifier.Sparsifier`;
its fields are its options. :func:`method_options` collects them from every registered
method, so the command line and the experiment files offer a new method's options as soon
as it is registered with :func:`register_method`.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from ..core.backend import Backend
from ..core.sparsifier import Sparsifier
from ..errors import UserError, check_choice
from .dense import Dense
from .dsr import DSR
from .gmp import GMP
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .sparse_momentum import SparseMomentum
from .static import Static

METHODS: dict[str, type[Sparsifier]] = {}

# Fields the training loop fills in from its own settings; the other fields are options.
RUN_FIELDS = (
    "model", "optimizer", "density", "total_steps", "steps_per_epoch", "seed",
    "layer_types", "include", "exclude", "mask_check",
)  # fmt: skip


def register_method(name: str, cls: type[Sparsifier]) -> type[Sparsifier]:
    """Make ``cls`` available as ``create_sparsifier(name, ...)``, ``--method name`` and in
    experiment files; its dataclass fields become options."""
    if not (
        isinstance(cls, type) and issubclass(cls, Sparsifier) and dataclasses.is_dataclass(cls)
    ):
        raise UserError(
            f"method {name!r} must be a dataclass deriving from Sparsifier, got {cls!r}."
        )
    if METHODS.get(name, cls) is not cls:
        raise UserError(f"a method named {name!r} is already registered; choose another name.")
    METHODS[name] = cls
    return cls


for _name, _cls in (
    ("sparse-momentum", SparseMomentum), ("set", SET), ("dsr", DSR), ("rigl", RigL),
    ("snip", SNIP), ("gmp", GMP), ("static", Static), ("dense", Dense),
):  # fmt: skip
    register_method(_name, _cls)


def _option_fields(cls: type[Sparsifier]) -> list[dataclasses.Field]:
    return [f for f in fields(cls) if f.init and f.name not in RUN_FIELDS]


def create_sparsifier(
    method: str, model: nn.Module, optimizer: torch.optim.Optimizer, **options: Any
) -> Sparsifier:
    """Build method ``method`` on ``model``; ``options`` are the method's dataclass fields."""
    check_choice("method", method, METHODS)
    accepted = {f.name for f in fields(METHODS[method]) if f.init}
    for option in options:
        if option not in accepted:
            owners = sorted(name for name, cls in METHODS.items() if option in _names(cls))
            raise UserError(
                f"option {option!r} does not apply to method {method!r}; "
                f"it is an option of: {', '.join(owners) or 'no method'}."
            )
    return METHODS[method](model, optimizer, **options)


def _names(cls: type[Sparsifier]) -> set[str]:
    return {f.name for f in fields(cls)}


@dataclass(frozen=True)
class MethodOption:
    """One option of one or more methods, as the command line and experiment files see it."""

    name: str
    kind: type
    help: str
    defaults: dict[str, Any]  # method name -> its default


def method_options() -> dict[str, MethodOption]:
    """Every option of every registered method, in declaration order."""
    collected: dict[str, dict[str, Any]] = {}
    for method, cls in METHODS.items():
        hints = typing.get_type_hints(cls)
        for spec in _option_fields(cls):
            entry = collected.setdefault(spec.name, {"kind": _plain_type(hints[spec.name])})
            entry.setdefault("help", spec.metadata.get("help"))
            entry.setdefault("defaults", {})[method] = _plain_default(spec.default)
    return {
        name: MethodOption(name, entry["kind"], entry["help"] or name, entry["defaults"])
        for name, entry in collected.items()
    }


def _plain_type(hint: Any) -> type:
    """The value type of a field as written on a command line: int, float, str or bool."""
    candidates = (hint, *typing.get_args(hint))
    return next(t for t in (bool, int, float, str) if t in candidates)


def _plain_default(value: Any) -> Any:
    return value.name if isinstance(value, Backend) else value


def resolved_options(sparsifier: Sparsifier) -> dict[str, Any]:
    """Every setting the method ended up with, its own defaults included (for config.json)."""
    objects = ("model", "optimizer", "layer_types", "mask_check")
    return {
        f.name: _plain_default(getattr(sparsifier, f.name))
        for f in fields(sparsifier)
        if f.init and f.name not in objects
    }

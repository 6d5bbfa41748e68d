"""A model registry in the style of timm: ``create_model(name)`` builds any registered model."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import check_choice

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_INPUTS: dict[str, tuple[str, ...]] = {}


def register_model(
    name: str, inputs: tuple[str, ...] = ()
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: make a model constructor available to ``create_model`` and the CLI.

    ``inputs``: the kinds of input it takes (``sparsemomentum.inputs``); none: any.
    """

    def decorate(constructor: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS[name] = constructor
        _INPUTS[name] = tuple(inputs)
        return constructor

    return decorate


def model_inputs(name: str) -> tuple[str, ...]:
    """The kinds of input a registered model takes; empty when it did not say."""
    return _INPUTS.get(name, ())


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered model ``name`` (e.g. ``"lenet300-100"``) with its own initialisation."""
    return _MODELS[check_choice("model", name, _MODELS)](**kwargs)

"""Data sets by name, as the CLI and the experiment files refer to them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import check_choice

_DATASETS: dict[str, Callable] = {}
_INPUTS: dict[str, str | None] = {}
_CLASSES: dict[str, int | None] = {}


def register_dataset(
    name: str, inputs: str | None = None, classes: int | None = None
) -> Callable[[Callable], Callable]:
    """Decorator: a loader ``(data_root, download) -> DataSplits`` for ``load_dataset(name)``;
    ``inputs``: the kind of input its examples are (``sparsemomentum.inputs``); None: unsaid,
    and any model may try it. ``classes``: how many classes a classification set's labels
    take, known without loading it, so that a report can tell a run that never learned (its
    test loss still ln(classes)) from one that learned little; None: not said."""

    def decorate(loader: Callable) -> Callable:
        _DATASETS[name] = loader
        _INPUTS[name] = inputs
        _CLASSES[name] = classes
        return loader

    return decorate


def dataset_inputs(name: str) -> str | None:
    """The kind of input a registered data set gives; None when it did not say."""
    return _INPUTS[check_choice("data set", name, _DATASETS)]


def dataset_classes(name: str) -> int | None:
    """The class count a data set registered; None when it said none or is not registered here
    (a run folder may name a data set of another program)."""
    return _CLASSES.get(name)


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def load_dataset(name: str, data_root: Path, download: bool = True):
    """Load data set ``name`` from ``data_root/<name>/`` (downloading missing files if allowed)."""
    return _DATASETS[check_choice("data set", name, _DATASETS)](data_root, download)

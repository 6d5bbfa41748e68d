"""Data sets by name, as the CLI and the experiment files refer to them."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..errors import UserError

_DATASETS: dict[str, Callable] = {}


def register_dataset(name: str) -> Callable[[Callable], Callable]:
    def decorate(loader: Callable) -> Callable:
        _DATASETS[name] = loader
        return loader

    return decorate


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


def load_dataset(name: str, data_root: Path, download: bool = True):
    """Load data set ``name`` from ``data_root/<name>/`` (downloading missing files if allowed)."""
    if name not in _DATASETS:
        raise UserError(f"unknown data set {name!r}; choose one of: {', '.join(list_datasets())}.")
    return _DATASETS[name](data_root, download)

"""Data sets: verified files, in-memory splits and batching; importing registers them all."""

from . import (  # noqa: F401  (registers cifar10, cifar100 and imagenet)
    cifar,
    imagenet,
    mnist,  # noqa: F401  (registers mnist and fashion-mnist)
)
from .files import DATA_DIR_VARIABLE, data_root
from .registry import list_datasets, load_dataset
from .splits import DataSplits, Split, TensorSplit, batch_count

__all__ = [
    "DATA_DIR_VARIABLE",
    "DataSplits",
    "Split",
    "TensorSplit",
    "batch_count",
    "data_root",
    "list_datasets",
    "load_dataset",
]

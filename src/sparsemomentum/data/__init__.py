"""Data sets: verified files, in-memory splits and batching; importing registers them all."""

# Importing the loaders registers them: mnist and fashion-mnist, cifar10 and cifar100,
# imagenet, shakespeare-char.
from . import cifar, imagenet, mnist, shakespeare  # noqa: F401
from .files import DATA_DIR_VARIABLE, data_root
from .registry import dataset_classes, dataset_inputs, list_datasets, load_dataset
from .splits import DataSplits, Split, TensorSplit, batch_count

__all__ = [
    "DATA_DIR_VARIABLE",
    "DataSplits",
    "Split",
    "TensorSplit",
    "batch_count",
    "data_root",
    "dataset_classes",
    "dataset_inputs",
    "list_datasets",
    "load_dataset",
]

"""In-memory data sets and batching.

MNIST-sized sets fit in memory, so they are loaded into tensors once and batched by
indexing: the epoch loop never waits on Python-side data handling.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

VALIDATION_FRACTION = 0.1

Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class DataSplits:
    name: str
    train: Pair
    validation: Pair
    test: Pair
    num_classes: int


def split_validation(inputs: torch.Tensor, labels: torch.Tensor, fraction: float = VALIDATION_FRACTION) -> tuple[Pair, Pair]:
    """Hold out the last ``fraction`` of the training set, as the reference code does.

    The split is fixed (not drawn from the seed) so every seed and method is validated on
    the same samples.
    """
    keep = int((1.0 - fraction) * len(inputs))
    return (inputs[:keep], labels[:keep]), (inputs[keep:], labels[keep:])


def batches(
    data: Pair, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
) -> Iterator[Pair]:
    """Mini-batches of an in-memory pair; a fresh permutation per call when ``shuffle``."""
    inputs, labels = data
    count = len(inputs)
    order = torch.randperm(count, generator=generator) if shuffle else None
    for start in range(0, count, batch_size):
        if order is None:
            yield inputs[start : start + batch_size], labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield inputs[index], labels[index]


def batch_count(data: Pair, batch_size: int) -> int:
    return -(-len(data[0]) // batch_size)

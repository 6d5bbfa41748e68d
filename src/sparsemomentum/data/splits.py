"""Data splits and batching.

A split is anything with ``len()`` and ``batches(batch_size, shuffle, generator)``. Sets
that fit in memory (MNIST, CIFAR) are :class:`TensorSplit`: loaded into tensors once and
batched by indexing, with augmentation applied to whole batches, so the epoch loop never
waits on Python-side data handling. Larger sets (ImageNet) provide their own split type
with worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol

import torch

VALIDATION_FRACTION = 0.1

Batch = tuple[torch.Tensor, torch.Tensor]
BatchTransform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class Split(Protocol):
    def __len__(self) -> int: ...

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]: ...


@dataclass
class TensorSplit:
    """An in-memory split; ``augment`` (training only) transforms a whole batch at once."""

    inputs: torch.Tensor
    labels: torch.Tensor
    augment: BatchTransform | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Mini-batches; a fresh permutation per call when ``shuffle`` (augmentation only then)."""
        count = len(self.inputs)
        order = torch.randperm(count, generator=generator) if shuffle else None
        for start in range(0, count, batch_size):
            if order is None:
                yield (
                    self.inputs[start : start + batch_size],
                    self.labels[start : start + batch_size],
                )
                continue
            index = order[start : start + batch_size]
            inputs = self.inputs[index]
            if self.augment is not None:
                inputs = self.augment(inputs, generator)
            yield inputs, self.labels[index]


@dataclass
class DataSplits:
    name: str
    train: Split
    validation: Split
    test: Split
    num_classes: int
    # Sequence data (language modelling): a target per position; the loss is reported in
    # bits per character as well.
    sequence: bool = False


def split_validation(
    inputs: torch.Tensor, labels: torch.Tensor, fraction: float = VALIDATION_FRACTION
) -> tuple[TensorSplit, TensorSplit]:
    """Hold out the last ``fraction`` of the training set, as the reference code does.

    The split is fixed (not drawn from the seed) so every seed and method is validated on
    the same samples.
    """
    keep = int((1.0 - fraction) * len(inputs))
    return TensorSplit(inputs[:keep], labels[:keep]), TensorSplit(inputs[keep:], labels[keep:])


def batch_count(split: Split, batch_size: int) -> int:
    return -(-len(split) // batch_size)

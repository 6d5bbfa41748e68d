"""CIFAR-10 and CIFAR-100 from the official python-version archives.

The pickled batches are read straight out of the ``.tar.gz`` (no extraction step, nothing
else written to the data folder). The archive's md5 is checked before anything in it is
unpickled. Images are normalised once at load time and kept in memory; the training split
is augmented batch-wise with :func:`pad_crop_flip`, as the reference code does per image.
"""

from __future__ import annotations

import pickle
import tarfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..inputs import COLOUR_32
from .files import verified_file
from .registry import register_dataset
from .splits import DataSplits, TensorSplit, split_validation
from .transforms import normalise, pad_crop_flip

MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
# Looked up at load time, so tests can substitute the checksum of a generated archive.
ARCHIVE_MD5 = {
    "cifar10": "c58f30108f718f92721af3b95e74349a",
    "cifar100": "eb9058c3a382ffc7106e4002c42a8d85",
}


@dataclass(frozen=True)
class _Layout:
    archive: str
    train_members: tuple[str, ...]
    test_member: str
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


_LAYOUTS = {
    # The reference code's constants (its std is the mean per-image std, not the pixel std;
    # kept so inputs match the reference exactly).
    "cifar10": _Layout(
        archive="cifar-10-python.tar.gz",
        train_members=tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
        test_member="cifar-10-batches-py/test_batch",
        label_key=b"labels",
        num_classes=10,
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2023, 0.1994, 0.2010),
    ),
    # The reference code has no CIFAR-100; these are the pixel statistics of its training set.
    "cifar100": _Layout(
        archive="cifar-100-python.tar.gz",
        train_members=("cifar-100-python/train",),
        test_member="cifar-100-python/test",
        label_key=b"fine_labels",
        num_classes=100,
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
    ),
}


def read_archive(
    path: Path, members: tuple[str, ...], label_key: bytes
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(uint8 images (N, 3, 32, 32), int64 labels) of each pickled batch ``members`` in the
    archive."""
    batches = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:  # one pass: seeking backwards in a gzip stream re-reads it
                if member.name in members:
                    batches[member.name] = pickle.load(
                        archive.extractfile(member), encoding="bytes"
                    )
    # A damaged stream or pickle can fail in many ways; pickle documents several beyond
    # UnpicklingError.
    except (
        OSError,
        EOFError,
        zlib.error,
        tarfile.TarError,
        pickle.UnpicklingError,
        AttributeError,
        ImportError,
        IndexError,
        KeyError,
        TypeError,
        ValueError,
    ) as error:
        raise UserError(
            f"{path} is not a readable CIFAR archive ({error}); delete it and download the "
            "original again."
        ) from None
    missing = [name for name in members if name not in batches]
    if missing:
        raise UserError(
            f"{path} lacks {', '.join(missing)}; delete it and download the original archive again."
        )
    return {
        name: _images_and_labels(path, name, batch, label_key) for name, batch in batches.items()
    }


def _images_and_labels(
    path: Path, name: str, batch: object, label_key: bytes
) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``data`` is one image as three 32x32 channel planes (R, G, B), row-major."""
    if not isinstance(batch, dict) or b"data" not in batch or label_key not in batch:
        raise UserError(
            f"{name} in {path} is not a CIFAR batch (no data or {label_key.decode()}); replace the "
            "archive with the original."
        )
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key], dtype=np.int64)
    if (
        data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
        or len(labels) != len(data)
    ):
        raise UserError(
            f"{name} in {path} holds data of shape {data.shape} for {len(labels)} labels; replace "
            "the archive with the original."
        )
    return data.reshape(-1, 3, 32, 32), labels


def _load(name: str, data_root: Path, download: bool) -> DataSplits:
    layout = _LAYOUTS[name]
    path = verified_file(
        data_root / name, layout.archive, ARCHIVE_MD5[name], MIRRORS, download, name
    )
    batches = read_archive(path, layout.train_members + (layout.test_member,), layout.label_key)

    def tensors(members: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.concatenate([batches[m][0] for m in members])
        labels = np.concatenate([batches[m][1] for m in members])
        return normalise(torch.from_numpy(images), layout.mean, layout.std), torch.from_numpy(
            labels
        )

    train, validation = split_validation(*tensors(layout.train_members))
    test = TensorSplit(*tensors((layout.test_member,)))
    train = replace(train, augment=pad_crop_flip(padding=4))
    return DataSplits(
        name=name, train=train, validation=validation, test=test, num_classes=layout.num_classes
    )


@register_dataset("cifar10", inputs=COLOUR_32, classes=_LAYOUTS["cifar10"].num_classes)
def load_cifar10(data_root: Path, download: bool = True) -> DataSplits:
    return _load("cifar10", data_root, download)


@register_dataset("cifar100", inputs=COLOUR_32, classes=_LAYOUTS["cifar100"].num_classes)
def load_cifar100(data_root: Path, download: bool = True) -> DataSplits:
    return _load("cifar100", data_root, download)

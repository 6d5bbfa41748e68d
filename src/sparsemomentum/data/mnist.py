"""MNIST and Fashion-MNIST from the original IDX ``.gz`` files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..inputs import GREY_28
from .files import verified_file
from .registry import register_dataset
from .splits import DataSplits, TensorSplit, split_validation

CLASSES = 10  # digits; Fashion-MNIST's ten kinds of garment

_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

_MD5 = {
    "mnist": (
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    "fashion-mnist": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
}
_MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}
# Mean and standard deviation of the training pixels in [0, 1], as the reference code normalises.
_PIXEL_STATS = {"mnist": (0.1307, 0.3081), "fashion-mnist": (0.2860, 0.3530)}


def read_idx(path: Path) -> np.ndarray:
    """Parse a gzipped IDX file (big-endian header: magic, dimension sizes; then uint8 data)."""
    with gzip.open(path, "rb") as handle:
        raw = handle.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(
            f"{path} is not an unsigned-byte IDX file; replace it with the original file."
        )
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise UserError(
            f"{path} holds {data.size} values but its header promises {int(np.prod(shape))}; "
            "replace it."
        )
    return data.reshape(shape)


def _load(name: str, data_root: Path, download: bool) -> DataSplits:
    folder = data_root / name
    paths = [
        verified_file(folder, filename, md5, _MIRRORS[name], download, name)
        for filename, md5 in zip(_IDX_FILES, _MD5[name])
    ]
    train_images, train_labels, test_images, test_labels = (read_idx(p) for p in paths)
    mean, std = _PIXEL_STATS[name]

    def to_tensor(images: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(images.copy()).float() / 255.0 - mean) / std).unsqueeze(1)

    train, validation = split_validation(
        to_tensor(train_images), torch.from_numpy(train_labels.astype(np.int64))
    )
    test = TensorSplit(to_tensor(test_images), torch.from_numpy(test_labels.astype(np.int64)))
    return DataSplits(name=name, train=train, validation=validation, test=test, num_classes=CLASSES)


@register_dataset("mnist", inputs=GREY_28, classes=CLASSES)
def load_mnist(data_root: Path, download: bool = True) -> DataSplits:
    return _load("mnist", data_root, download)


@register_dataset("fashion-mnist", inputs=GREY_28, classes=CLASSES)
def load_fashion_mnist(data_root: Path, download: bool = True) -> DataSplits:
    return _load("fashion-mnist", data_root, download)

"""ImageNet (ILSVRC-2012) from a folder of class folders, decoded by worker processes.

Layout: ``<data root>/imagenet/{train,val}/<class>/<image>.JPEG``, classes numbered in
sorted order of their folder names (the usual "ImageFolder" layout; the official
validation images have to be sorted into class folders first). ImageNet cannot be
downloaded on the user's behalf (its licence requires registering), so ``download`` is
ignored.

Validation: the official validation set serves as both the per-epoch validation split and
the test split, as in the paper and its reference code, which report ImageNet results on
it. Holding 10 % of the training images out instead would be cheap, but would train on
fewer images than the results being reproduced. The catch: anything chosen by looking at
the per-epoch numbers is chosen on the test set, so tune hyperparameters elsewhere.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..errors import UserError
from ..inputs import COLOUR_224
from .registry import register_dataset
from .splits import Batch, DataSplits
from .transforms import normalise

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CROP = 224
RESIZE = 256
SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)


def default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def class_folders(folder: Path) -> list[str]:
    """Sorted names of the class folders in ``folder`` (which must exist and hold some)."""
    classes = (
        sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
        if folder.is_dir()
        else []
    )
    if not classes:
        raise UserError(
            f"ImageNet folder {folder} is missing or holds no class folders; put one folder per "
            f"class with its images there, as {folder}/<class>/<image>.JPEG (the same for train "
            "and val)."
        )
    return classes


def image_files(folder: Path, classes: Sequence[str]) -> list[tuple[str, int]]:
    """(path, label) of every image in ``folder/<class>/``, labelled by the class's index in
    ``classes``."""
    index = {name: label for label, name in enumerate(classes)}
    samples = []
    for name in class_folders(folder):
        if name not in index:
            raise UserError(
                f"ImageNet class folder {folder / name} has no counterpart in the training folder; "
                "remove it or add it to train."
            )
        files = sorted(
            entry.path
            for entry in os.scandir(folder / name)
            if entry.is_file() and os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES
        )
        samples += [(path, index[name]) for path in files]
    if not samples:
        raise UserError(
            f"ImageNet folder {folder} holds no .JPEG, .jpg or .png images in its class folders; "
            "put the images there."
        )
    return samples


def random_resized_box(width: int, height: int, rng: random.Random) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering SCALE of the area with aspect ratio in
    RATIO.

    Ten tries at a box that fits, then the largest centred box whose ratio is within RATIO.
    """
    area = width * height
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        crop_width, crop_height = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            left, top = rng.randint(0, width - crop_width), rng.randint(0, height - crop_height)
            return left, top, left + crop_width, top + crop_height
    ratio = min(max(width / height, RATIO[0]), RATIO[1])
    crop_width, crop_height = (
        (width, round(width / ratio)) if width / height < ratio else (round(height * ratio), height)
    )
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def train_transform(image: Image.Image, seed: int) -> Image.Image:
    """Random-resized crop to CROP x CROP and a coin-flip mirror, all drawn from ``seed``."""
    rng = random.Random(seed)
    box = random_resized_box(*image.size, rng)
    image = image.resize((CROP, CROP), Image.Resampling.BILINEAR, box=box)
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def eval_transform(image: Image.Image) -> Image.Image:
    """Shorter side to RESIZE, then the centre CROP x CROP."""
    width, height = image.size
    scale = RESIZE / min(width, height)
    width, height = max(RESIZE, int(width * scale)), max(RESIZE, int(height * scale))
    image = image.resize((width, height), Image.Resampling.BILINEAR)
    left, top = round((width - CROP) / 2), round((height - CROP) / 2)
    return image.crop((left, top, left + CROP, top + CROP))


class _Images(Dataset):
    """Decodes one image per key ``(index, seed)``: augmented from ``seed``, or the evaluation
    view when it is None. Seeds travel with the keys, so no worker's RNG state matters."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int | None]) -> tuple[torch.Tensor, int]:
        index, seed = key
        path, label = self.samples[index]
        try:
            with Image.open(path) as file:
                image = file.convert("RGB")  # a few ImageNet JPEGs are greyscale or CMYK
        except OSError as error:
            raise UserError(
                f"{path} is not a readable image ({error}); replace it or delete it."
            ) from None
        image = eval_transform(image) if seed is None else train_transform(image, seed)
        # uint8 through the worker queue: a quarter of the bytes of float; normalised per batch.
        return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1), label


class _KeyedBatches:
    """Batches of (index, seed) keys in the order ``batches()`` drew; a DataLoader batch_sampler."""

    def __init__(self, order: list[int], seeds: list[int] | list[None], batch_size: int) -> None:
        self.order, self.seeds, self.batch_size = order, seeds, batch_size

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int | None]]]:
        for start in range(0, len(self.order), self.batch_size):
            end = start + self.batch_size
            yield list(zip(self.order[start:end], self.seeds[start:end]))


class ImageFolderSplit:
    """A split of image files decoded on the fly by ``num_workers`` processes.

    Like :class:`TensorSplit`, an ``augment`` split augments (random-resized crop and
    flip) only when shuffled; otherwise, and for evaluation splits, every image gets the
    centre crop. The generator passed to :meth:`batches` draws the order and one seed per
    image, so an epoch is the same for a seed whatever the number of workers.
    """

    def __init__(
        self, folder: Path, classes: Sequence[str], augment: bool, num_workers: int | None = None
    ) -> None:
        self.folder, self.classes, self.augment = Path(folder), list(classes), augment
        self.num_workers = default_workers() if num_workers is None else num_workers
        self._images = _Images(image_files(self.folder, self.classes))

    def __len__(self) -> int:
        return len(self._images)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[Batch]:
        """Normalised float batches (B, 3, CROP, CROP) and int64 labels; shuffled when
        ``shuffle``."""
        count = len(self._images)
        if shuffle:
            order = torch.randperm(count, generator=generator).tolist()
            seeds = (
                torch.randint(2**62, (count,), generator=generator).tolist()
                if self.augment
                else [None] * count
            )
        else:
            order, seeds = list(range(count)), [None] * count
        loader = DataLoader(
            self._images,
            batch_sampler=_KeyedBatches(order, seeds, batch_size),
            num_workers=self.num_workers,
        )
        for images, labels in loader:
            yield normalise(images, MEAN, STD), labels


@register_dataset("imagenet", inputs=COLOUR_224)
def load_imagenet(
    data_root: Path, download: bool = True, num_workers: int | None = None
) -> DataSplits:
    """The ImageNet splits; ``download`` is ignored (see the module docstring)."""
    folder = data_root / "imagenet"
    classes = class_folders(folder / "train")
    train = ImageFolderSplit(folder / "train", classes, augment=True, num_workers=num_workers)
    test = ImageFolderSplit(folder / "val", classes, augment=False, num_workers=num_workers)
    return DataSplits(
        name="imagenet", train=train, validation=test, test=test, num_classes=len(classes)
    )

"""ImageNet loading on a small class-folder tree of generated JPEGs."""

import random

import numpy as np
import pytest
import torch
from PIL import Image

from sparsemomentum import UserError
from sparsemomentum.data import load_dataset
from sparsemomentum.data.imagenet import (
    CROP,
    MEAN,
    RATIO,
    SCALE,
    STD,
    ImageFolderSplit,
    default_workers,
    eval_transform,
    load_imagenet,
    random_resized_box,
)

CLASSES = ["n01440764", "n01443537", "n01484850"]
SIZES = [(64, 48), (40, 72), (50, 50)]


def write_jpeg(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, quality=95)


@pytest.fixture
def root(tmp_path):
    """Three classes; two RGB training images and one greyscale validation image each, plus a stray
    text file."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "imagenet"
    for label, name in enumerate(CLASSES):
        for index, (width, height) in enumerate(SIZES[:2]):
            write_jpeg(
                folder / "train" / name / f"{name}_{index}.JPEG",
                rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            )
        write_jpeg(
            folder / "val" / name / f"ILSVRC2012_val_{label}.JPEG",
            rng.integers(0, 256, (50, 50), dtype=np.uint8),
        )
    (folder / "train" / CLASSES[0] / "notes.txt").write_text("not an image")
    return tmp_path


def test_splits_label_sorted_class_folders_and_use_val_for_validation_and_test(root):
    splits = load_dataset("imagenet", root, download=False)
    assert splits.num_classes == 3 and splits.train.classes == CLASSES
    assert [len(splits.train), len(splits.validation), len(splits.test)] == [6, 3, 3]
    assert splits.validation is splits.test
    _, labels = next(splits.train.batches(6))
    assert labels.dtype == torch.int64 and labels.tolist() == [0, 0, 1, 1, 2, 2]


def test_training_batches_are_normalised_crops_of_224(root):
    splits = load_imagenet(root, num_workers=0)
    batches = list(
        splits.train.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0))
    )
    assert [tuple(images.shape) for images, _ in batches] == [(4, 3, 224, 224), (2, 3, 224, 224)]
    assert all(images.dtype == torch.float32 for images, _ in batches)
    assert sorted(torch.cat([labels for _, labels in batches]).tolist()) == [0, 0, 1, 1, 2, 2]
    images, _ = next(splits.test.batches(3))
    assert images.shape == (3, 3, 224, 224)


def test_augmentation_is_reproducible_for_a_seed_and_varies_between_seeds(root):
    train = load_imagenet(root, num_workers=0).train

    def epoch(seed):
        return torch.cat(
            [
                images
                for images, _ in train.batches(
                    6, shuffle=True, generator=torch.Generator().manual_seed(seed)
                )
            ]
        )

    assert torch.equal(epoch(1), epoch(1))
    assert not torch.equal(epoch(1), epoch(2))


def test_worker_processes_give_the_same_epoch_as_the_main_process(root):
    generator = torch.Generator().manual_seed(3)
    alone = list(
        load_imagenet(root, num_workers=0).train.batches(
            4, shuffle=True, generator=generator.clone_state()
        )
    )
    workers = list(
        load_imagenet(root, num_workers=1).train.batches(
            4, shuffle=True, generator=generator.clone_state()
        )
    )
    assert all(
        torch.equal(a[0], w[0]) and torch.equal(a[1], w[1])
        for a, w in zip(alone, workers, strict=True)
    )


def test_unshuffled_batches_are_the_deterministic_centre_crop(tmp_path):
    colour = np.array([200, 100, 30], dtype=np.uint8)
    flat = tmp_path / "flat" / "imagenet"
    write_jpeg(flat / "train" / "a" / "x.JPEG", np.broadcast_to(colour, (40, 30, 3)).copy())
    write_jpeg(flat / "val" / "a" / "x.JPEG", np.broadcast_to(colour, (40, 30, 3)).copy())
    splits = load_imagenet(flat.parent, num_workers=0)
    first, _ = next(splits.train.batches(1))
    assert torch.equal(first, next(splits.train.batches(1))[0])
    expected = (torch.tensor(colour / 255.0) - torch.tensor(MEAN)) / torch.tensor(STD)
    assert torch.allclose(
        first[0].mean((1, 2)), expected.float(), atol=0.03
    )  # JPEG keeps a flat colour nearly exact


def test_eval_transform_resizes_the_shorter_side_and_keeps_the_centre():
    image = np.zeros((200, 400, 3), dtype=np.uint8)
    image[:, 100:300] = (
        255  # the middle half is white; the centre crop of the 256 x 512 resize sees only it
    )
    result = np.array(eval_transform(Image.fromarray(image)))
    assert result.shape == (CROP, CROP, 3) and result.min() == 255


def test_random_resized_boxes_stay_inside_and_respect_scale_and_ratio():
    """Including a strip too narrow for most draws, which falls back to the widest 3:4 box."""
    rng = random.Random(0)
    for width, height in [(500, 375), (375, 500), (50, 400), (224, 224)]:
        boxes = {random_resized_box(width, height, rng) for _ in range(200)}
        assert len(boxes) > 50
        for left, top, right, bottom in boxes:
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            area, ratio = (
                (right - left) * (bottom - top) / (width * height),
                (right - left) / (bottom - top),
            )
            assert (
                SCALE[0] * 0.95 <= area <= SCALE[1] and RATIO[0] * 0.95 <= ratio <= RATIO[1] * 1.05
            )  # rounding


def test_missing_folder_says_where_to_put_the_class_folders(tmp_path):
    with pytest.raises(
        UserError,
        match=(
            r"ImageNet folder .*imagenet/train is missing or holds no class folders; put one "
            r"folder per class"
        ),
    ):
        load_dataset("imagenet", tmp_path, download=False)


def test_missing_val_folder_is_a_user_error(root):
    for path in sorted((root / "imagenet" / "val").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    with pytest.raises(UserError, match=r"imagenet/val is missing or holds no class folders"):
        load_dataset("imagenet", root, download=False)


def test_validation_class_unknown_to_training_is_a_user_error(root):
    write_jpeg(root / "imagenet" / "val" / "n99999999" / "x.JPEG", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UserError, match="n99999999 has no counterpart in the training folder"):
        load_dataset("imagenet", root, download=False)


def test_class_folders_without_images_are_a_user_error(tmp_path):
    (tmp_path / "imagenet" / "train" / "a").mkdir(parents=True)
    with pytest.raises(UserError, match=r"imagenet/train holds no .JPEG, .jpg or .png images"):
        load_dataset("imagenet", tmp_path, download=False)


def test_unreadable_image_names_the_file(root):
    (root / "imagenet" / "val" / CLASSES[1] / "broken.JPEG").write_bytes(b"not a jpeg")
    test = load_imagenet(root, num_workers=0).test
    with pytest.raises(
        UserError, match=r"broken.JPEG is not a readable image .*; replace it or delete it"
    ):
        list(test.batches(8))


def test_default_worker_count_is_capped_at_eight(root):
    assert (
        ImageFolderSplit(root / "imagenet" / "val", CLASSES, augment=False).num_workers
        == default_workers()
        <= 8
    )

"""CIFAR loading and batch augmentation, on small archives written in the official format."""

import io
import pickle
import tarfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparsemomentum import UserError
from sparsemomentum.data import cifar, load_dataset
from sparsemomentum.data.files import digest_of
from sparsemomentum.data.transforms import normalise, pad_crop_flip

PER_BATCH = 10  # 5 training batches -> 50 training images -> 45 train, 5 validation


def batch_bytes(data: np.ndarray, labels: list[int], label_key: bytes) -> bytes:
    return pickle.dumps(
        {
            b"batch_label": b"generated",
            label_key: labels,
            b"data": data,
            b"filenames": [b"x.png"] * len(labels),
        }
    )


def write_archive(path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))


def cifar_members(
    name: str, rng: np.random.Generator
) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, list[int]]]]:
    """Archive members in the official layout, and the (data, labels) each holds."""
    classes, key = (10, b"labels") if name == "cifar10" else (100, b"fine_labels")
    if name == "cifar10":
        names = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)] + [
            "cifar-10-batches-py/test_batch"
        ]
        sizes = [PER_BATCH] * 6
    else:
        names, sizes = (
            ["cifar-100-python/train", "cifar-100-python/test"],
            [5 * PER_BATCH, PER_BATCH],
        )
    contents = {}
    for member, size in zip(names, sizes):
        contents[member] = (
            rng.integers(0, 256, size=(size, 3072), dtype=np.uint8),
            rng.integers(0, classes, size).tolist(),
        )
    members = {
        member: batch_bytes(data, labels, key) for member, (data, labels) in contents.items()
    }
    members[names[0].split("/")[0] + "/batches.meta"] = pickle.dumps({b"label_names": []})
    return members, contents


@pytest.fixture
def archive(tmp_path, monkeypatch, request):
    """Write a small archive for ``request.param`` and accept its md5."""
    name = getattr(request, "param", "cifar10")
    members, contents = cifar_members(name, np.random.default_rng(0))
    path = tmp_path / name / cifar._LAYOUTS[name].archive
    write_archive(path, members)
    monkeypatch.setitem(cifar.ARCHIVE_MD5, name, digest_of(path))
    return name, tmp_path, contents


@pytest.mark.parametrize("archive", ["cifar10", "cifar100"], indirect=True)
def test_archive_loads_with_the_paper_split_and_normalisation(archive):
    name, root, contents = archive
    splits = load_dataset(name, root, download=False)
    assert splits.num_classes == (10 if name == "cifar10" else 100)
    assert [len(s) for s in (splits.train, splits.validation, splits.test)] == [45, 5, PER_BATCH]
    assert (
        splits.train.inputs.shape == (45, 3, 32, 32) and splits.train.inputs.dtype == torch.float32
    )
    assert splits.train.labels.dtype == torch.int64
    train_data = np.concatenate(
        [data for member, (data, _) in contents.items() if "test" not in member]
    )
    train_labels = sum(
        (labels for member, (_, labels) in contents.items() if "test" not in member), []
    )
    assert splits.train.labels.tolist() + splits.validation.labels.tolist() == train_labels
    layout = cifar._LAYOUTS[name]
    mean, std = torch.tensor(layout.mean).view(3, 1, 1), torch.tensor(layout.std).view(3, 1, 1)
    pixels = torch.cat([splits.train.inputs, splits.validation.inputs]) * std + mean
    # Rows are three channel planes, each 32 rows of 32 pixels: the round trip checks the
    # layout too.
    assert torch.equal(
        (pixels * 255).round().to(torch.uint8), torch.from_numpy(train_data.reshape(-1, 3, 32, 32))
    )
    test_data, test_labels = next(
        (data, labels) for member, (data, labels) in contents.items() if "test" in member
    )
    assert splits.test.labels.tolist() == test_labels
    assert torch.allclose(
        splits.test.inputs,
        normalise(torch.from_numpy(test_data.reshape(-1, 3, 32, 32)), layout.mean, layout.std),
    )


def test_only_shuffled_training_batches_are_augmented(archive):
    name, root, _ = archive
    splits = load_dataset(name, root, download=False)
    assert (
        splits.train.augment is not None
        and splits.validation.augment is None
        and splits.test.augment is None
    )
    inputs, labels = next(
        splits.train.batches(8, shuffle=True, generator=torch.Generator().manual_seed(0))
    )
    assert inputs.shape == (8, 3, 32, 32) and labels.shape == (8,)
    order = torch.randperm(45, generator=torch.Generator().manual_seed(0))[:8]
    assert not torch.equal(inputs, splits.train.inputs[order])
    assert torch.equal(next(splits.train.batches(8))[0], splits.train.inputs[:8])


def test_missing_archive_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(
        UserError,
        match=(
            r"cifar10 file cifar-10-python.tar.gz is missing from .*cifar10; put the original "
            r"file there \(from https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz\)"
        ),
    ):
        load_dataset("cifar10", tmp_path, download=False)


def test_archive_with_the_wrong_md5_is_refused(tmp_path):
    write_archive(
        tmp_path / "cifar100" / "cifar-100-python.tar.gz",
        cifar_members("cifar100", np.random.default_rng(0))[0],
    )
    with pytest.raises(
        UserError,
        match=(
            "cifar-100-python.tar.gz is corrupt or truncated .*expected "
            "eb9058c3a382ffc7106e4002c42a8d85.*delete it"
        ),
    ):
        load_dataset("cifar100", tmp_path, download=False)


def test_download_fetches_from_the_toronto_mirror(tmp_path, monkeypatch):
    source = tmp_path / "source.tar.gz"
    write_archive(source, cifar_members("cifar10", np.random.default_rng(0))[0])
    monkeypatch.setitem(cifar.ARCHIVE_MD5, "cifar10", digest_of(source))
    requested = []

    def serve(url, timeout):
        requested.append(url)
        return io.BytesIO(source.read_bytes())

    monkeypatch.setattr("urllib.request.urlopen", serve)
    assert len(load_dataset("cifar10", tmp_path / "data", download=True).test) == PER_BATCH
    assert requested == ["https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"]


def damaged(kind: str) -> dict[str, bytes]:
    members = cifar_members("cifar10", np.random.default_rng(0))[0]
    if kind == "missing member":
        del members["cifar-10-batches-py/data_batch_3"]
    elif kind == "bad pickle":
        members["cifar-10-batches-py/data_batch_3"] = b"not a pickle"
    else:  # wrong shape
        members["cifar-10-batches-py/data_batch_3"] = batch_bytes(
            np.zeros((2, 100), np.uint8), [0, 1], b"labels"
        )
    return members


@pytest.mark.parametrize(
    "kind, message",
    [
        (
            "missing member",
            r"lacks cifar-10-batches-py/data_batch_3; delete it and download the original archive "
            r"again",
        ),
        (
            "bad pickle",
            r"is not a readable CIFAR archive .*; delete it and download the original again",
        ),
        (
            "wrong shape",
            r"data_batch_3 in .* holds data of shape \(2, 100\) for 2 labels; replace the archive",
        ),
    ],
)
def test_corrupt_archive_with_a_matching_md5_is_a_user_error(tmp_path, monkeypatch, kind, message):
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    write_archive(path, damaged(kind))
    monkeypatch.setitem(cifar.ARCHIVE_MD5, "cifar10", digest_of(path))
    with pytest.raises(UserError, match=message):
        load_dataset("cifar10", tmp_path, download=False)


def test_a_file_that_is_no_tar_archive_is_a_user_error(tmp_path, monkeypatch):
    path = tmp_path / "cifar10" / "cifar-10-python.tar.gz"
    path.parent.mkdir()
    path.write_bytes(b"<html>not found</html>")
    monkeypatch.setitem(cifar.ARCHIVE_MD5, "cifar10", digest_of(path))
    with pytest.raises(UserError, match="is not a readable CIFAR archive"):
        load_dataset("cifar10", tmp_path, download=False)


# --- pad_crop_flip -----------------------------------------------------------------------


def reference_pad_crop_flip(inputs: torch.Tensor, padding: int, mode: str) -> set[bytes]:
    """Every image pad_crop_flip may make of a single input, by brute force over offsets."""
    padded = F.pad(inputs[None], (padding,) * 4, mode=mode)[0]
    size = inputs.shape[-1]
    crops = set()
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crop = padded[:, top : top + size, left : left + size]
            crops |= {
                crop.contiguous().numpy().tobytes(),
                crop.flip(-1).contiguous().numpy().tobytes(),
            }
    return crops


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_every_augmented_image_is_a_padded_crop_or_its_mirror(mode):
    inputs = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    outputs = pad_crop_flip(4, mode)(inputs, torch.Generator().manual_seed(2))
    assert outputs.shape == inputs.shape and outputs.dtype == inputs.dtype
    for source, output in zip(inputs, outputs):
        assert output.numpy().tobytes() in reference_pad_crop_flip(source, 4, mode)


def test_augmentation_is_reproducible_for_a_seed_and_varies_between_seeds():
    inputs = torch.randn(32, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    augment = pad_crop_flip()
    first = augment(inputs, torch.Generator().manual_seed(5))
    assert torch.equal(first, augment(inputs, torch.Generator().manual_seed(5)))
    assert not torch.equal(first, augment(inputs, torch.Generator().manual_seed(6)))
    assert (first - inputs).abs().flatten(1).amax(1).gt(0).sum() > 16  # most samples moved


def test_without_padding_each_sample_is_kept_or_mirrored_and_both_happen():
    inputs = torch.randn(64, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = pad_crop_flip(padding=0)(inputs, torch.Generator().manual_seed(0))
    kept = torch.tensor([torch.equal(o, i) for o, i in zip(outputs, inputs)])
    mirrored = torch.tensor([torch.equal(o, i.flip(-1)) for o, i in zip(outputs, inputs)])
    assert bool((kept | mirrored).all()) and 10 < int(mirrored.sum()) < 54


def test_offsets_cover_the_whole_padding_range():
    """A single bright pixel at the centre lands anywhere within +-4 pixels, in both directions."""
    inputs = torch.zeros(2000, 1, 32, 32)
    inputs[:, :, 16, 16] = 1.0
    outputs = pad_crop_flip(4, "constant")(inputs, torch.Generator().manual_seed(0))
    rows, columns = torch.nonzero(outputs[:, 0], as_tuple=True)[1:]
    assert sorted(set(rows.tolist())) == list(range(12, 21))
    assert sorted(set(columns.tolist())) == list(range(11, 21))  # mirrored column 16 is 15


def test_normalise_maps_uint8_to_standardised_floats():
    images = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(2, 3, 1, 2)
    result = normalise(images, (0.5, 0.5, 0.5), (0.5, 0.25, 0.5))
    assert result.dtype == torch.float32
    assert torch.allclose(result[0, :, 0, 0], torch.tensor([-1.0, -2.0, -1.0]))
    assert torch.allclose(result[0, :, 0, 1], torch.tensor([1.0, 2.0, 1.0]))

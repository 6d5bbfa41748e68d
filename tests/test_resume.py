"""Checkpoints: a run killed with SIGKILL mid-epoch and resumed ends bit-identical."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from sparsemomentum.cli import main
from sparsemomentum.errors import UserError
from sparsemomentum.runs import CHECKPOINT, load_checkpoint, save_checkpoint

ARGUMENTS = [
    "train",
    "--epochs",
    "3",
    "--seed",
    "5",
    "--threads",
    "1",
    "--checkpoint-every",
    "60",
    "--growth",
    "random",
]


def command(data_dir, out, *extra):
    return [
        sys.executable,
        "-m",
        "sparsemomentum",
        *ARGUMENTS,
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        *extra,
    ]


def final_state(run_dir):
    state = load_checkpoint(run_dir)
    return state["model"], state["sparsifier"]["masks"], state["optimizer"]


def test_killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(tmp_path, data_dir):
    subprocess.run(command(data_dir, tmp_path / "whole"), check=True, capture_output=True)

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        command(data_dir, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        metrics = killed / "metrics.jsonl"
        if metrics.exists() and metrics.read_text().count("\n") >= 1:
            time.sleep(0.3)  # into epoch 2, past at least one mid-epoch checkpoint
            break
        time.sleep(0.05)
    assert process.poll() is None, (
        "the run finished before it could be killed; the test needs a slower run"
    )
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (killed / "summary.json").exists()
    interrupted_at = load_checkpoint(killed)
    assert (interrupted_at["epoch"], interrupted_at["step_in_epoch"]) != (4, 0)

    subprocess.run(
        [
            sys.executable,
            "-m",
            "sparsemomentum",
            "train",
            "--resume",
            str(killed),
            "--data-dir",
            str(data_dir),
            "--threads",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    whole_model, whole_masks, whole_optimizer = final_state(tmp_path / "whole")
    resumed_model, resumed_masks, resumed_optimizer = final_state(killed)
    assert all(torch.equal(whole_masks[n], resumed_masks[n]) for n in whole_masks)
    assert all(torch.equal(whole_model[n], resumed_model[n]) for n in whole_model)
    for key, value in whole_optimizer["state"].items():
        assert torch.equal(
            value["momentum_buffer"], resumed_optimizer["state"][key]["momentum_buffer"]
        )
    epochs = [
        json.loads(line)["epoch"] for line in (killed / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [1, 2, 3]
    whole_summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    resumed_summary = json.loads((killed / "summary.json").read_text())
    assert resumed_summary["test_accuracy"] == whole_summary["test_accuracy"]


def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    save_checkpoint(tmp_path, {"epoch": 1})
    save_checkpoint(tmp_path, {"epoch": 2})
    (tmp_path / CHECKPOINT).write_bytes(b"\x00garbage")
    assert load_checkpoint(tmp_path)["epoch"] == 1


def test_resume_without_checkpoint_or_run_folder_is_a_clear_error(tmp_path, capsys, monkeypatch):
    # No data anywhere: the checkpoint is looked for before any data is loaded.
    monkeypatch.setenv("SPARSEMOMENTUM_DATA", str(tmp_path / "no-data"))
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "is not a run folder (no config.json)" in capsys.readouterr().err
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 1}))
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        f"sparsemomentum: error: {tmp_path} has no checkpoint yet (the run stopped before its "
        f"first one was written); start it again with --out {tmp_path} --overwrite.\n"
    )


def test_flipped_byte_in_the_newest_checkpoint_falls_back_to_the_previous_one(tmp_path):
    weights = torch.arange(1000, dtype=torch.float32)
    save_checkpoint(tmp_path, {"epoch": 1, "weights": weights})
    save_checkpoint(tmp_path, {"epoch": 2, "weights": weights + 1})
    data = bytearray((tmp_path / CHECKPOINT).read_bytes())
    position = bytes(data).find((weights + 1)[500:502].numpy().tobytes())
    data[position] ^= 0x01  # one bit of one weight: torch.load alone does not notice
    (tmp_path / CHECKPOINT).write_bytes(bytes(data))
    assert torch.load(tmp_path / CHECKPOINT, weights_only=True)["state"]["epoch"] == 2
    assert load_checkpoint(tmp_path)["epoch"] == 1
    (tmp_path / "checkpoint-previous.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="content does not match its digest"):
        load_checkpoint(tmp_path)


def test_resume_refuses_flags_it_would_ignore_and_leaves_a_finished_run_alone(
    tmp_path, data_dir, capsys
):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--lr", "0.001", "--density", "0.3"]) == 2
    assert "so --density, --lr cannot be given with it" in capsys.readouterr().err
    summary = (out / "summary.json").read_bytes()
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 0
    assert "has finished; nothing to resume, nothing changed" in capsys.readouterr().out
    assert (out / "summary.json").read_bytes() == summary


def test_checkpoint_whose_masks_do_not_fit_the_model_is_refused(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--data-dir", str(data_dir)]) == 0
    state = load_checkpoint(out)
    state["sparsifier"]["masks"]["fc1.weight"] = torch.ones(3, 3, dtype=torch.bool)
    save_checkpoint(out, state)
    config = json.loads((out / "config.json").read_text())
    config["epochs"] = 2
    (out / "config.json").write_text(json.dumps(config))
    (out / "summary.json").unlink()  # as if it had stopped after epoch 1 of 2
    assert main(["train", "--resume", str(out), "--data-dir", str(data_dir)]) == 2
    assert "mask for 'fc1.weight' has shape (3, 3)" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder_is_a_clear_error(tmp_path, data_dir, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    assert (
        main(["train", "--epochs", "1", "--out", str(folder / "run"), "--data-dir", str(data_dir)])
        == 2
    )
    assert "cannot create the run folder" in capsys.readouterr().err

"""End-to-end: real MNIST through the command line, the run folder, and user errors."""

import json
import math
import subprocess
import sys

import pytest

from sparsemomentum.cli import main


def run_cli(*arguments, data_dir=None):
    extra = ["--data-dir", str(data_dir)] if data_dir else []
    return main(["train", *arguments, *extra])


def test_short_real_training_writes_a_complete_run_folder(tmp_path, data_dir):
    out = tmp_path / "run"
    assert run_cli("--epochs", "2", "--seed", "3", "--out", str(out), data_dir=data_dir) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoint-previous.pt",
        "checkpoint.pt",
        "config.json",
        "curves.png",
        "density.png",
        "metrics.jsonl",
        "summary.json",
    ]
    config = json.loads((out / "config.json").read_text())
    assert (
        config["density"] == 0.05
        and config["lr"] == 0.1
        and config["nesterov"] is True
        and config["seed"] == 3
    )
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"train_loss", "validation_accuracy", "prune_rate", "layer_density", "seconds"} <= set(
        metrics[0]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert (
        summary["nonzero"]
        == summary["target_nonzero"]
        == round(0.05 * (784 * 300 + 300 * 100 + 100 * 10))
    )
    assert summary["test_accuracy"] > 90.0
    assert summary["test_error"] == pytest.approx(100 - summary["test_accuracy"])
    assert set(summary["layer_density"]) == {"fc1.weight", "fc2.weight", "fc3.weight"}


def test_same_seed_gives_the_same_numbers(tmp_path, data_dir):
    """Bit-identical for the same seed and thread count (the default thread count follows the
    idle cores, and float sums depend on how many threads share them)."""
    summaries = []
    for name in ("a", "b"):
        run_cli(
            "--threads",
            "2",
            "--epochs",
            "1",
            "--model",
            "lenet300-100",
            "--out",
            str(tmp_path / name),
            data_dir=data_dir,
        )
        summaries.append(json.loads((tmp_path / name / "summary.json").read_text()))
    for key in ("test_accuracy", "test_loss", "layer_density", "nonzero"):
        assert summaries[0][key] == summaries[1][key]


def test_dense_flag_trains_the_dense_baseline(tmp_path, data_dir):
    assert run_cli("--dense", "--epochs", "1", "--out", str(tmp_path / "d"), data_dir=data_dir) == 0
    summary = json.loads((tmp_path / "d" / "summary.json").read_text())
    assert summary["method"] == "dense" and set(summary["layer_density"].values()) == {1.0}


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "lenet-9"], "unknown model 'lenet-9'"),
        (["--dataset", "svhn"], "unknown data set 'svhn'"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--density", "0"], r"density must be in \(0, 1\], got 0.0"),
        (["--density", "1.5"], r"density must be in \(0, 1\], got 1.5"),
        (["--prune-rate", "1"], r"prune rate must be in \[0, 1\)"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--batch-size", "-1"], "--batch-size must be at least 1, got -1"),
        (["--growth", "best"], "unknown growth 'best'"),
        (["--optimizer", "lbfgs"], "unknown optimizer 'lbfgs'"),
        (["--layer-types", "Dense"], "unknown layer type 'Dense'"),
        (["--backend", "gpu"], "unknown backend 'gpu'"),
        (
            ["--model", "lenet5-caffe", "--dataset", "shakespeare-char"],
            "model 'lenet5-caffe' takes 28x28 grey images, but data set 'shakespeare-char' gives "
            r"character sequences; choose a model for it \(gpt-char, gpt-char-tied, lstm-char\) "
            r"or a data set for the model \(fashion-mnist, mnist\)\.",
        ),
        (["--model", "wrn-16-8"], r"model 'wrn-16-8' takes 32x32 colour images or 224x224"),
        (
            ["--method", "set", "--threshold", "0.1"],
            "option 'threshold' does not apply to method 'set'",
        ),
    ],
)
def test_bad_input_is_one_sentence_and_exit_code_2(arguments, message, tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    assert run_cli(*arguments, "--out", str(out), data_dir=data_dir) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sparsemomentum: error: ") and len(error.splitlines()) == 1
    assert __import__("re").search(message, error)
    assert not out.exists()  # refused before anything was written


def test_missing_data_is_a_clear_error_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli("--no-download", "--out", str(out), data_dir=tmp_path / "empty") == 2
    assert "mnist file train-images-idx3-ubyte.gz is missing" in capsys.readouterr().err
    assert not out.exists()


def test_overwrite_keeps_the_old_run_when_the_new_one_cannot_start(tmp_path, data_dir):
    out = tmp_path / "run"
    assert run_cli("--epochs", "1", "--out", str(out), data_dir=data_dir) == 0
    before = (out / "summary.json").read_text()
    arguments = ("--no-download", "--overwrite", "--out", str(out))
    assert run_cli(*arguments, data_dir=tmp_path / "empty") == 2  # the data are missing
    assert (out / "summary.json").read_text() == before
    assert (
        run_cli("--epochs", "1", "--seed", "1", "--overwrite", "--out", str(out), data_dir=data_dir)
        == 0
    )
    assert (out / "summary.json").read_text() != before  # a run that starts does replace it


def test_existing_run_folder_is_refused_unless_overwrite(tmp_path, data_dir, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    assert run_cli("--epochs", "1", "--out", str(out), data_dir=data_dir) == 2
    assert "already exists; choose another --out or pass --overwrite" in capsys.readouterr().err
    assert (out / "summary.json").read_text() == "{}"


def test_python_dash_m_is_the_same_program():
    result = subprocess.run(
        [sys.executable, "-m", "sparsemomentum", "train", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in (
        "--density",
        "--prune-rate",
        "--growth",
        "--redistribution",
        "--distribution",
        "--update-interval",
        "--include",
        "--exclude",
        "--data-dir",
        "--dense",
        "--optimizer",
        "--seed",
    ):
        assert flag in result.stdout


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, data_dir, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert run_cli("--epochs", "1", "--out", str(tmp_path), "--overwrite", data_dir=data_dir) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--weight-decay", "-1"], "--weight-decay must be at least 0, got -1.0"),
        (["--momentum", "1"], r"momentum must be in \[0, 1\)"),
        (["--momentum-window", "0"], "momentum window must be at least one step"),
        (["--stop-fraction", "2"], r"stop fraction must be in \(0, 1\]"),
        (["--momentum", "0"], "needs SGD with momentum > 0"),
    ],
)
def test_method_options_are_checked_before_anything_is_written(
    arguments, message, tmp_path, capsys
):
    out = tmp_path / "run"
    assert run_cli(*arguments, "--out", str(out), data_dir=tmp_path / "no-data-needed") == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not out.exists()


def test_sparse_backend_trains_from_the_command_line(tmp_path, data_dir, capsys):
    out = tmp_path / "sparse"
    assert (
        run_cli(
            "--backend",
            "sparse",
            "--epochs",
            "2",
            "--batch-size",
            "500",
            "--out",
            str(out),
            data_dir=data_dir,
        )
        == 0
    )
    assert "sparse kernels: fc1.weight, fc2.weight; dense: fc3.weight" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["nonzero"] == summary["target_nonzero"] and summary["test_accuracy"] > 80.0
    assert json.loads((out / "config.json").read_text())["resolved"]["backend"] == "sparse"


def test_preset_sets_the_papers_recipe_and_given_flags_win(monkeypatch):
    from sparsemomentum import cli

    seen = {}

    def record(config, progress=True):
        seen["config"] = config
        return {
            "test_accuracy": 0.0,
            "test_error": 100.0,
            "nonzero": 0,
            "target_nonzero": 0,
            "seconds": 0.0,
        }

    monkeypatch.setattr("sparsemomentum.train.loop.train", record)
    cli.main(["train", "--preset", "imagenet", "--epochs", "2", "--lr-milestones", "1"])
    config = seen["config"]
    assert (config.dataset, config.model, config.batch_size, config.weight_decay) == (
        "imagenet",
        "resnet50",
        256,
        1e-4,
    )
    prune_rate = config.method_options["prune_rate"]
    assert (config.warmup_epochs, config.label_smoothing, prune_rate, config.density) == (
        5,
        0.1,
        0.2,
        0.1,
    )
    assert (config.epochs, config.lr_milestones) == (2, [1])


def test_lr_schedule_warms_up_then_decays_at_milestones():
    import torch

    from sparsemomentum.train.config import TrainConfig
    from sparsemomentum.train.loop import build_lr_schedule

    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    schedule = build_lr_schedule(
        TrainConfig(lr_milestones=[2, 3], warmup_epochs=1), optimizer, 4, total_steps=14
    )
    rates = []
    for _ in range(14):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates[4:8] == pytest.approx([0.1] * 4) and rates[8:12] == pytest.approx([0.01] * 4)
    assert rates[12:] == pytest.approx([0.001] * 2)


def test_cosine_lr_schedule_warms_up_then_decays_to_a_tenth():
    import torch

    from sparsemomentum.train.config import TrainConfig
    from sparsemomentum.train.loop import build_lr_schedule

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    config = TrainConfig(lr_schedule="cosine", warmup_epochs=0.5)
    schedule = build_lr_schedule(config, optimizer, 4, total_steps=12)
    rates = []
    for _ in range(12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:2] == pytest.approx([0.5, 1.0])  # two warm-up steps
    assert rates[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.4)))
    assert rates[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.9)))

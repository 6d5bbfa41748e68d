"""The examples run as a user runs them (a fresh interpreter, small settings) and end with an
exact count: smoke tests that keep examples/ true."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(*command: str, data_dir: Path) -> str:
    finished = subprocess.run(
        [*command, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=600
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


def test_own_loop(data_dir):
    out = run(
        sys.executable, str(EXAMPLES / "own_loop.py"), "--epochs", "2", "--steps-per-epoch",
        "100", data_dir=data_dir,
    )  # fmt: skip
    assert "13310 of 266200 weights non-zero" in out and "epoch 2:" in out


def test_own_loop_under_torchrun_gives_each_process_the_same_model(data_dir):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    out = run(
        *command, "--nproc-per-node", "2", str(EXAMPLES / "own_loop.py"), "--epochs", "2",
        "--steps-per-epoch", "100", data_dir=data_dir,
    )  # fmt: skip
    single = run(
        sys.executable, str(EXAMPLES / "own_loop.py"), "--epochs", "2", "--steps-per-epoch",
        "100", data_dir=data_dir,
    )  # fmt: skip
    assert "13310 of 266200 weights non-zero" in out
    accuracy = [line.split("test accuracy")[1] for line in out.splitlines() if "epoch" in line]
    alone = [line.split("test accuracy")[1] for line in single.splitlines() if "epoch" in line]
    assert accuracy == alone  # two halves of each batch, averaged: the same steps as one


@pytest.mark.skipif(not importlib.util.find_spec("lightning"), reason="lightning not installed")
def test_lightning_mnist(data_dir):
    out = run(
        sys.executable, str(EXAMPLES / "lightning_mnist.py"), "--epochs", "2",
        "--limit-batches", "50", data_dir=data_dir,
    )  # fmt: skip
    assert "13,310 of 266,200 weights (5.00%)" in out and "test accuracy" in out


@pytest.mark.skipif(
    not (importlib.util.find_spec("transformers") and importlib.util.find_spec("accelerate")),
    reason="transformers or accelerate not installed",
)
def test_hugging_face_gpt2_on_shakespeare(data_dir, tmp_path):
    out = run(
        sys.executable, str(EXAMPLES / "hf_trainer_gpt2.py"), "--max-steps", "20", "--out",
        str(tmp_path / "gpt2"), data_dir=data_dir,
    )  # fmt: skip
    assert "78,643 of 786,432 weights (10.00%)" in out and "bits per character" in out
    assert (tmp_path / "gpt2" / "checkpoint-20" / "sparsemomentum.pt").exists()

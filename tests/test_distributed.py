"""Two CPU processes on localhost (gloo): identical masks on every rank, equal to one process."""

import json
import subprocess
import sys
from pathlib import Path

import torch

WORKER = Path(__file__).with_name("distributed_worker.py")


def torchrun(*arguments, timeout=600):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_masks_and_weights_are_identical_on_both_ranks_after_several_updates(tmp_path):
    result = torchrun(str(WORKER), str(tmp_path))
    assert result.returncode == 0, result.stderr
    first, second = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert first["updates"] == second["updates"] == 4
    assert all(torch.equal(first["masks"][n], second["masks"][n]) for n in first["masks"])
    assert all(torch.equal(first["weights"][n], second["weights"][n]) for n in first["weights"])


def test_a_rank_whose_masks_differ_stops_the_run_with_a_clear_error(tmp_path):
    torchrun(str(WORKER), str(tmp_path), "diverge")
    message = (tmp_path / "error0.txt").read_text()
    assert "the masks of rank(s) [1] differ from rank 0's after a mask update" in message


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path, data_dir):
    """Same global batch (2 x 2700 under DDP against 5400 in one process), same seed, two
    epochs of 10 steps with one mask update in between.

    The runs differ only in floating-point summation order (a mean over 5400 samples against
    the all-reduced mean of two means over 2700), so weights agree to 1e-5, not bitwise;
    the state is compared just after the update (end of epoch 1, kept as the previous
    checkpoint) and the masks must be identical.
    """
    arguments = [
        "-m",
        "sparsemomentum",
        "train",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--threads",
        "1",
        "--batch-size",
        "5400",
        "--data-dir",
        str(data_dir),
    ]
    single = subprocess.run(
        [sys.executable, *arguments, "--out", str(tmp_path / "one")], capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr[-2000:]
    double = torchrun(*arguments, "--out", str(tmp_path / "two"))
    assert double.returncode == 0, double.stderr
    one = torch.load(tmp_path / "one" / "checkpoint-previous.pt", weights_only=True)["state"]
    two = torch.load(tmp_path / "two" / "checkpoint-previous.pt", weights_only=True)["state"]
    assert one["epoch"] == two["epoch"] == 2 and one["sparsifier"]["update_count"] == 1
    masks_one, masks_two = one["sparsifier"]["masks"], two["sparsifier"]["masks"]
    active = sum(int(m.sum()) for m in masks_one.values())
    overlap = sum(int((masks_one[n] & masks_two[n]).sum()) for n in masks_one) / active
    both = {n: masks_one[n] & masks_two[n] for n in masks_one}
    difference = max(
        float((one["model"][n] - two["model"][n])[both.get(n, slice(None))].abs().max())
        for n in one["model"]
    )
    print(
        f"2 vs 1 process after epoch 1 and one mask update: mask overlap {overlap:.6f}, "
        f"largest weight difference {difference:.2e}"
    )
    assert overlap == 1.0
    assert difference < 1e-5
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["processes"] == 2

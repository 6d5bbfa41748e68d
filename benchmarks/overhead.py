"""Cost of sparse momentum's bookkeeping against a plain dense training step, in one run.

    python benchmarks/overhead.py [--models lenet300-100 lenet5-caffe] [--batch-size 100]
        [--rounds 7]

For each model it alternates, in chunks of 5 steps, (a) a dense step (forward, backward,
optimizer.step), (b) the same step through SparseMomentum.step() (adds re-masking), (c)
the re-masking alone and (d) one full mask update (statistic, prune, redistribute, grow).
Medians over rounds; every figure is printed as a ratio to the dense step measured in the
same round, so machine noise cancels as far as it can.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import sparsemomentum as sm


def timed(function, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def measure(
    model_name: str, batch_size: int, rounds: int, steps: int, density: float
) -> dict[str, float]:
    torch.manual_seed(0)
    inputs, labels = torch.randn(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))
    dense_model = sm.create_model(model_name)
    dense_optimizer = torch.optim.SGD(
        dense_model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparse_model = sm.create_model(model_name)
    sparse_optimizer = torch.optim.SGD(
        sparse_model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparsifier = sm.SparseMomentum(
        sparse_model,
        sparse_optimizer,
        density=density,
        total_steps=10**9,
        prune_rate_schedule="constant",
    )

    def dense_step():
        dense_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(dense_model(inputs), labels).backward()
        dense_optimizer.step()

    def sparse_step():
        sparse_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(sparse_model(inputs), labels).backward()
        sparsifier.step()

    for _ in range(20):  # warm up allocations and optimizer state
        dense_step()
        sparse_step()
    samples: dict[str, list[float]] = {
        "dense_step": [],
        "sparse_step": [],
        "masking": [],
        "mask_update": [],
    }
    for _ in range(rounds):
        # Alternate in chunks of 5 steps so that load from other processes hits both alike.
        dense_chunks, sparse_chunks = [], []
        for _ in range(steps // 5):
            dense_chunks.append(timed(dense_step, 5))
            sparse_chunks.append(timed(sparse_step, 5))
        samples["dense_step"].append(statistics.median(dense_chunks))
        samples["sparse_step"].append(statistics.median(sparse_chunks))
        samples["masking"].append(
            timed(lambda: sparsifier.backend.apply_masks(sparsifier.masks), steps)
        )
        samples["mask_update"].append(timed(sparsifier.update_masks, 3))
    return {key: statistics.median(values) for key, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet300-100", "lenet5-caffe"])
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch "
        f"{arguments.batch_size}, density {arguments.density}, medians of {arguments.rounds} rounds"
    )
    print(
        f"{'model':14s} {'dense step':>11s} {'sparse step':>12s} {'step ratio':>11s} "
        f"{'masking':>9s} {'mask update':>12s} {'update/step':>12s} {'per epoch*':>11s}"
    )
    for name in arguments.models:
        t = measure(
            name, arguments.batch_size, arguments.rounds, arguments.steps, arguments.density
        )
        per_epoch = t["mask_update"] / (540 * t["dense_step"])
        print(
            f"{name:14s} {t['dense_step'] * 1e3:9.3f}ms {t['sparse_step'] * 1e3:10.3f}ms "
            f"{t['sparse_step'] / t['dense_step']:10.3f}x {t['masking'] / t['dense_step']:8.1%} "
            f"{t['mask_update'] * 1e3:10.2f}ms {t['mask_update'] / t['dense_step']:11.1f}x "
            f"{per_epoch:10.2%}"
        )
    print(
        "* one mask update per epoch of 540 steps (MNIST, batch 100), as a fraction of the epoch's "
        "dense steps"
    )


if __name__ == "__main__":
    main()

"""First epoch against later ones with the sparse backend and epoch-wise mask updates.

The sparse backend computes dense weight gradients only in a window of steps before each
mask update, which it can place only if it knows when the next update comes. With
epoch-wise updates (``update_masks()`` after each epoch) that is the epoch length: given as
``steps_per_epoch`` (the training loop passes it) the window is paid from the first epoch
on; not given, the sparsifier learns it at the first update and runs the whole first epoch
with dense weight gradients. This script trains three epochs of each variant, alternated,
and prints the median seconds per epoch and the ratios, all from one run:

    python benchmarks/first_epoch.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import sparsemomentum as sm

VARIANTS = ("dense", "sparse, period given", "sparse, period learned")


def mlp(sizes: list[int]) -> torch.nn.Sequential:
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def train_epochs(
    variant: str, sizes: list[int], steps: int, batch: int, epochs: int
) -> list[float]:
    """Seconds of each of ``epochs`` epochs of ``steps`` steps, mask update at every end."""
    torch.manual_seed(0)
    model = mlp(sizes)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    inputs = torch.randn(batch, sizes[0]).t().contiguous().t()  # X^T in memory, as a loader could
    labels = torch.randint(0, sizes[-1], (batch,))
    sparsifier = None
    if variant != "dense":
        period = {"steps_per_epoch": steps} if variant == "sparse, period given" else {}
        sparsifier = sm.SparseMomentum(
            model, optimizer, density=0.05, total_steps=100 * steps, backend="sparse", **period
        )
    seconds = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(inputs), labels).backward()
            (sparsifier or optimizer).step()
        if sparsifier is not None:
            sparsifier.update_masks()
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[784, 300, 100, 10])
    parser.add_argument("--steps", type=int, default=540, help="steps per epoch (MNIST, batch 100)")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="alternated repeats of each variant")
    parser.add_argument("--threads", type=int, default=None)
    arguments = parser.parse_args()
    if arguments.threads:
        torch.set_num_threads(arguments.threads)
    times: dict[str, list[list[float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(arguments.rounds):
        for variant in VARIANTS:
            times[variant].append(
                train_epochs(variant, arguments.sizes, arguments.steps, arguments.batch, 3)
            )
    dense_first = statistics.median(epochs[0] for epochs in times["dense"])
    print(
        f"MLP {'-'.join(map(str, arguments.sizes))}, 5 %, {arguments.steps} steps of "
        f"{arguments.batch}, {torch.get_num_threads()} threads, medians of {arguments.rounds}"
    )
    print("| variant | epoch 1 (s) | epochs 2-3 (s) | epoch 1 / later | dense / this, epoch 1 |")
    print("|---|---:|---:|---:|---:|")
    for variant, runs in times.items():
        first = statistics.median(epochs[0] for epochs in runs)
        later = statistics.median(t for epochs in runs for t in epochs[1:])
        print(
            f"| {variant} | {first:.2f} | {later:.2f} | {first / later:.2f} | "
            f"{dense_first / first:.2f}x |"
        )


if __name__ == "__main__":
    main()

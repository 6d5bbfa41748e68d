"""Sparse momentum in a hand-written training loop: LeNet-300-100 on MNIST with 5 % of its
weights, on one process or several.

    python examples/own_loop.py --data-dir ../shared/data
    torchrun --nproc-per-node 2 examples/own_loop.py --data-dir ../shared/data

Sparse training is three lines of the loop: build the sparsifier beside the optimizer, call
``sparsifier.step()`` in place of ``optimizer.step()``, and ``sparsifier.update_masks()`` at
the end of each epoch. Under torchrun every process takes its share of each batch and
DistributedDataParallel averages the gradients, so every process, seeded alike, makes the
same mask decisions from the same momentum.
"""

import argparse
import math
import os

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import sparsemomentum as sm
from sparsemomentum.data import data_root, load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="folder holding mnist/ (default: the library's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--steps-per-epoch", type=int, help="fewer steps, for a quick look")
    args = parser.parse_args()
    rank, world = 0, int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
        rank = dist.get_rank()

    torch.manual_seed(0)
    mnist = load_dataset("mnist", data_root(args.data_dir))
    model = sm.create_model("lenet300-100")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    steps = args.steps_per_epoch or math.ceil(len(mnist.train) / args.batch_size)
    sparsifier = sm.SparseMomentum(
        model, optimizer, density=args.density, total_steps=args.epochs * steps,
        steps_per_epoch=steps,
    )  # fmt: skip
    network = DistributedDataParallel(model) if world > 1 else model
    shuffle = torch.Generator().manual_seed(0)  # the same order on every process

    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(mnist.train), generator=shuffle)
        for step in range(steps):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size][rank::world]
            optimizer.zero_grad()
            loss = F.cross_entropy(network(mnist.train.inputs[batch]), mnist.train.labels[batch])
            loss.backward()
            sparsifier.step()  # the optimizer's step, then the masks re-applied
        sparsifier.update_masks()  # prune, redistribute, regrow
        if rank == 0:
            print(
                f"epoch {epoch}: loss {loss.item():.3f}, test accuracy {accuracy(model, mnist):.2f}"
            )
    assert sparsifier.nonzero_count() == sparsifier.target_nonzero_count()
    if rank == 0:
        print(f"{sparsifier.nonzero_count()} of {sparsifier.sparse_size} weights non-zero")
        print(sparsifier.summary())
    if world > 1:
        dist.destroy_process_group()


@torch.no_grad()
def accuracy(model: torch.nn.Module, mnist) -> float:
    model.eval()
    predictions = model(mnist.test.inputs).argmax(1)
    return 100.0 * (predictions == mnist.test.labels).float().mean().item()


if __name__ == "__main__":
    main()

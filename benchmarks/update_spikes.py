"""The training loss step by step around mask updates: does an update destabilise training?

    python benchmarks/update_spikes.py --data-dir ../shared/data
    python benchmarks/update_spikes.py --variants rigl --backends masked sparse

LeNet-5-Caffe on MNIST with the paper's recipe (SGD, lr 0.1, Nesterov momentum 0.9, weight
decay 5e-4, batch 100, 5 %), the first ``--steps`` steps of a 100-epoch run, ``--seed`` (0), one
thread. Two variants of RigL (ERK start, prune rate 0.3 with cosine decay, updates every
``--update-interval`` steps, grown weights from zero with their optimizer state reset) that
differ only in what grows: the largest gradients (RigL) or random positions. Prints the
loss of the steps just before and after each update and the largest loss in the interval
after it.

Written for issue 12: the paper's LeNet-5 recipe with RigL ran to a constant output
(loss ln 10) in its first epoch; this shows where that begins.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import sparsemomentum as sm
from sparsemomentum import data

VARIANTS = {"rigl": {}, "rigl-random-growth": {"growth": "random"}}
STEPS_PER_EPOCH = 540  # MNIST: 54,000 training images at batch 100


def losses(variant: str, backend: str, steps: int, interval: int, data_dir: str | None, seed: int):
    """The loss of every step, and the steps after which the masks changed."""
    splits = data.load_dataset("mnist", data.data_root(data_dir), download=False)
    torch.manual_seed(seed)
    model = sm.create_model("lenet5-caffe")
    optimizer = torch.optim.SGD(
        model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4
    )
    sparsifier = sm.RigL(
        model, optimizer, density=0.05, total_steps=100 * STEPS_PER_EPOCH,
        steps_per_epoch=STEPS_PER_EPOCH, backend=backend, update_interval=interval,
        **VARIANTS[variant],
    )  # fmt: skip
    order = torch.randperm(len(splits.train.labels), generator=torch.Generator().manual_seed(seed))
    trace, updates = [], []
    for step in range(steps):
        batch = order[step * 100 : (step + 1) * 100]
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(splits.train.inputs[batch]), splits.train.labels[batch])
        loss.backward()
        before = sparsifier.update_count
        sparsifier.step()
        trace.append(loss.item())
        if sparsifier.update_count > before:
            updates.append(step)
    return trace, updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--backends", nargs="*", default=["masked"], choices=["masked", "sparse"])
    parser.add_argument("--steps", type=int, default=STEPS_PER_EPOCH)
    parser.add_argument("--update-interval", type=int, default=100)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    torch.set_num_threads(1)
    print("| variant | backend | update after step | loss before | loss 1 step after | "
          "largest loss in the next interval |")  # fmt: skip
    print("|---" * 6 + "|")
    for variant in arguments.variants:
        for backend in arguments.backends:
            trace, updates = losses(
                variant, backend, arguments.steps, arguments.update_interval,
                arguments.data_dir, arguments.seed,
            )  # fmt: skip
            for step in updates:
                after = trace[step + 1 : step + 1 + arguments.update_interval]
                if len(after) < 2:
                    continue
                print(f"| {variant} | {backend} | {step} | {trace[step]:.3f} | {after[1]:.3f} | "
                      f"{max(after):.3f} |")  # fmt: skip
            print(f"| {variant} | {backend} | last step | {trace[-1]:.3f} | | |", flush=True)


if __name__ == "__main__":
    main()

"""Where a sparse training step of one of the paper's networks spends its time.

    python benchmarks/profile_step.py vgg16-d [--distribution learned] [--threads 2]

Builds the network as ``paper_models.py`` does (CIFAR-shaped batch of 128, SparseMomentum
on the sparse backend, the chosen per-layer densities), takes a few warm-up steps, then
profiles plain steps with torch's profiler and sums the self time of the operations into
groups: sparse kernels, dense convolutions and matrix products (layers left dense), batch
norm, ReLU, pooling, dropout, the optimizer and the rest. Beside it, the same for the dense
model, so each group's share of the gap is visible.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import paper_models as pm
import torch
from torch.profiler import ProfilerActivity, profile

GROUPS = {  # operation name fragment -> group, first match wins
    "Sparse": "sparse kernels",
    "convolution": "dense conv", "conv2d": "dense conv", "mkldnn": "dense conv",
    "aten::mm": "dense matmul", "aten::addmm": "dense matmul",
    "batch_norm": "batch norm",
    "threshold": "ReLU", "relu": "ReLU", "clamp_min": "ReLU",
    "pool": "pooling",
    "Dropout": "dropout", "bernoulli": "dropout",
    "Optimizer": "optimizer", "values": "optimizer", "_foreach": "optimizer",
}  # fmt: skip


def grouped_ms(variant: pm.Variant, inputs, labels, steps: int) -> dict[str, float]:
    for _ in range(2):
        variant.step(inputs, labels)
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            variant.step(inputs, labels)
    totals: dict[str, float] = defaultdict(float)
    for event in profiler.key_averages():
        group = next((g for key, g in GROUPS.items() if key in event.key), "other")
        totals[group] += event.self_cpu_time_total / 1e3 / steps
    return dict(totals)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--distribution", choices=("uniform", "erk", "learned"), default="learned")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    setting = next(s for s in pm.SETTINGS if s.model == arguments.model)
    density = setting.densities[0]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(setting.batch, 3, setting.size, setting.size, generator=generator)
    labels = torch.randint(0, 10, (setting.batch,), generator=generator)
    distribution = "uniform" if arguments.distribution == "learned" else arguments.distribution
    sparse = pm.build(setting, density, "sparse", distribution)
    if arguments.distribution == "learned":
        pm.place(sparse.sparsifier, pm.learned_counts(setting, density, sparse.sparsifier))
    dense = pm.build(setting, density, None)
    times = {name: grouped_ms(v, inputs, labels, arguments.steps)
             for name, v in (("dense", dense), ("sparse", sparse))}  # fmt: skip
    print(f"{setting.model} at {density:.0%}, {arguments.distribution}, batch {setting.batch}, "
          f"{arguments.threads} threads: ms per step (profiler self time)")  # fmt: skip
    print("| group | dense | sparse |\n|---|---:|---:|")
    groups = sorted(
        set(times["dense"]) | set(times["sparse"]), key=lambda g: -times["sparse"].get(g, 0)
    )
    for group in groups:
        print(
            f"| {group} | {times['dense'].get(group, 0):.0f} "
            f"| {times['sparse'].get(group, 0):.0f} |"
        )
    print(
        f"| **total** | {sum(times['dense'].values()):.0f} | {sum(times['sparse'].values()):.0f} |"
    )
    print(
        "layers on dense kernels:",
        "; ".join(f"{k} ({v})" for k, v in sparse.sparsifier.backend.kernels.dense.items()),
    )


if __name__ == "__main__":
    main()

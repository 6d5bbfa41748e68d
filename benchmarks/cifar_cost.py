"""What a CIFAR-10 experiment file costs on a GPU: runs, training FLOPs, GPU hours.

    python benchmarks/cifar_cost.py experiments/cifar10-*.toml [--tflops 20]

No GPU was lent to this work, so the hours are an estimate, not a measurement: an epoch's
training FLOPs (forward FLOPs of one 32x32 image, counted by torch's FlopCounterMode, x3 for
forward and backward, x45,000 training images) over an assumed effective throughput, but
never less than a floor for data loading and evaluation, which bounds the small networks.
The defaults are assumptions: 20 TFLOP/s (an eighth of an A100's TF32 peak; a WRN-16-8
epoch in 21 s) and a 5 s floor per epoch. Masked training runs dense kernels, so sparsity
saves nothing here; the figures scale inversely with --tflops.
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import sparsemomentum as sm
from sparsemomentum.train.experiment import load_experiment

TRAIN_IMAGES = 45_000  # CIFAR-10's 50,000 less the 5,000 held out for validation


def forward_flops(model_name: str) -> int:
    model = sm.create_model(model_name, num_classes=10).eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+")
    parser.add_argument("--tflops", type=float, default=20.0, help="effective TFLOP/s per GPU")
    parser.add_argument("--floor", type=float, default=5.0, help="least seconds per epoch")
    arguments = parser.parse_args()

    def epoch_seconds(name: str) -> float:
        if name not in flops:
            flops[name] = forward_flops(name)
        return max(3 * flops[name] * TRAIN_IMAGES / (arguments.tflops * 1e12), arguments.floor)

    flops: dict[str, int] = {}
    print("| experiment | runs | GPU hours |")
    print("|---|---:|---:|")
    total_hours = 0.0
    for file in arguments.experiments:
        runs = load_experiment(file, out="/nonexistent/cost-estimate").runs
        hours = sum(epoch_seconds(r.config.model) * r.config.epochs for r in runs) / 3600
        total_hours += hours
        print(f"| {file} | {len(runs)} | {hours:,.0f} |")
    print(f"| all | | **{total_hours:,.0f}** |")
    print("\n| network | forward GFLOP per image | seconds per epoch | hours per 250 epochs |")
    print("|---|---:|---:|---:|")
    for name, count in sorted(flops.items(), key=lambda item: item[1]):
        seconds = epoch_seconds(name)
        print(f"| {name} | {count / 1e9:.2f} | {seconds:.0f} | {seconds * 250 / 3600:.1f} |")


if __name__ == "__main__":
    main()

"""The paper's forward-pass speed-up estimate for LeNet-5-Caffe and WRN-16-8 at 5 % density.

    python benchmarks/speedup_estimate.py

Trains nothing: each model gets SparseMomentum's random initial masks, one random batch
(MNIST-shaped for LeNet, CIFAR-shaped for the WRN) goes through it, and
``analysis.speedup.estimate_speedup`` times every layer's dense forward and scales it as
the paper did (weight x input-activation density; non-empty channels) beside the FLOP
ratio. Estimates, not measured sparse kernels: benchmarks/training_step.py measures those.
"""

from __future__ import annotations

import torch

import sparsemomentum as sm
from sparsemomentum.analysis.speedup import estimate_speedup

DENSITY = 0.05
# (model, batch shape): WRN-16-8's forward costs about 3 GFLOP per image, so its batch is
# kept small on a shared 2-core machine; the estimate is a ratio and barely depends on it.
MODELS = [("lenet5-caffe", (100, 1, 28, 28)), ("wrn-16-8", (32, 3, 32, 32))]


def main() -> None:
    # One thread: while other processes keep both cores busy, two OpenMP threads wait on each
    # other at every barrier and the dense times, hence every estimate, become noise.
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, density {DENSITY:.0%}, "
        "random masks (SparseMomentum's initial ones), forward pass only, train mode (dropout on)\n"
    )
    for name, shape in MODELS:
        model = sm.create_model(name)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        sparsifier = sm.SparseMomentum(model, optimizer, density=DENSITY, total_steps=1)
        result = estimate_speedup(model, sparsifier.masks, torch.randn(shape), repeats=5)
        print(f"## {name}, batch {shape[0]}, input {'x'.join(map(str, shape[1:]))}\n")
        print(result.format_table() + "\n", flush=True)
    print(
        "FLOP x = 1 / weight density; sparse conv x = 1 / (weight density x input-activation "
        "density); channel skip x = 1 / (non-empty input channels x non-empty feature maps); "
        "totals = summed dense time / summed estimated time.\n"
        "Input-activation densities here come from random inputs through untrained weights: "
        "trained networks on real images have other (often lower) activation densities, so the "
        "sparse-conv column moves with training. Random masks leave almost no channel empty, so "
        "channel skipping gains ~1x until training empties channels. All three assume sparse work "
        "runs at dense speed; on this CPU unstructured CSR kernels reach about 0.17 / density "
        "(docs/cpu-sparse-kernels.md), not 1 / density."
    )


if __name__ == "__main__":
    main()

"""One Linear layer, forward + backward (dX and dW), dense against the sparse kernels, in one run.

    python benchmarks/kernels.py [--quick] [--rounds 5] [--threads N]

For LeNet-300-100's layers and 4096x4096, each batch size and weight density, it times a
training step of one layer (forward, backward with dX, dW and db, gradients reset to None
as ``zero_grad`` does) for:

* dense: ``F.linear`` with a dense weight (what training without sparse kernels costs);
* ours, sparse dW / dense dW: ``backends.masked_linear``, input and gradient feature-major
  as they arrive from a neighbouring sparse layer;
* torch.sparse.mm: torch's own autograd through a CSR weight, feature-major;
* F.linear(CSR): torch's own autograd, batch-major (its weight gradient comes back dense);
* SparseProp (Nikdan et al., ICML 2023): its ``SparseLinear`` built from the same masked
  weight, batch-major, when ``import sparseprop`` works ("not installed" otherwise). Like
  ours with sparse dW, it computes dW only at the non-zeros (its weight is the CSR values).
  Before timing, every setting checks its output, dX, db and dW (at the mask) against the
  dense masked reference, so both sides do the same work.

Variants alternate within every round (the order rotates); each figure is the median over
rounds of dense time / variant time, so > 1 means faster than dense.

SparseProp (pip ``sparseprop`` 0.1.14, a pybind11 + OpenMP extension with AVX2 intrinsics
compiled from the sdist) installs into the same Python as torch with:

    pip install pybind11     # its setup.py runs `python3 -m pybind11 --includes` while building
    pip install --no-deps --no-build-isolation sparseprop   # g++ -march=native -fopenmp; scipy already here

It declares no torch dependency, so pip leaves torch alone. Its extension is a top-level
module named ``backend`` and shares torch's libgomp (same soname), so ``torch.set_num_threads``
(``--threads``) governs its OpenMP threads too.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sparsemomentum.backends import SparseLinearLayout, masked_linear

try:
    from sparseprop.modules import SparseLinear as SparsePropLinear
except ImportError:
    SparsePropLinear = None

SPARSEPROP = "SparseProp"
LAYERS = [(784, 300), (300, 100), (100, 10), (4096, 4096)]
TOO_SLOW = 0.25  # speed ratio below which a variant is not timed further


def training_step(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Callable[[], None]:
    """Forward, backward with a fixed upstream gradient laid out like the output, grads reset."""
    grad_output = torch.randn_like(forward())  # randn_like keeps the output's strides

    def step() -> None:
        forward().backward(grad_output)
        for leaf in leaves:
            leaf.grad = None

    return step


def csr_leaf(weight: torch.Tensor) -> torch.Tensor:
    csr = weight.to_sparse_csr()
    return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape,
                                   check_invariants=False).requires_grad_()


def steps_for(weight: torch.Tensor, mask: torch.Tensor, batch: int) -> dict[str, Callable[[], None]]:
    """Every variant on its own copies, so no gradient buffer is shared between them."""
    out_features, in_features = weight.shape

    def dense_weight() -> nn.Parameter:
        return nn.Parameter(weight.clone())

    def bias() -> nn.Parameter:
        return nn.Parameter(torch.zeros(out_features))

    def batch_major() -> torch.Tensor:
        return torch.randn(batch, in_features, requires_grad=True)

    def feature_major() -> torch.Tensor:
        return torch.randn(in_features, batch, requires_grad=True)

    steps = {}
    x, w, b = batch_major(), dense_weight(), bias()
    steps["dense"] = training_step(lambda: F.linear(x, w, b), [x, w, b])
    for name, dense_weight_gradient in (("ours, sparse dW", False), ("ours, dense dW", True)):
        x_t, w_o, b_o = feature_major(), dense_weight(), bias()
        layout = SparseLinearLayout(w_o, mask)
        steps[name] = training_step(partial(masked_linear, x_t.t(), w_o, b_o, layout, dense_weight_gradient), [x_t, w_o, b_o])
    x_s, w_s, b_s = feature_major(), csr_leaf(weight), bias()
    steps["torch.sparse.mm"] = training_step(lambda: torch.sparse.mm(w_s, x_s) + b_s.unsqueeze(1), [x_s, w_s, b_s])
    x_l, w_l, b_l = batch_major(), csr_leaf(weight), bias()
    steps["F.linear(CSR)"] = training_step(lambda: F.linear(x_l, w_l, b_l), [x_l, w_l, b_l])
    if SparsePropLinear is not None:
        x_p, module = batch_major(), SparsePropLinear(weight.clone(), bias())
        check_sparseprop(module, weight, mask, batch)
        steps[SPARSEPROP] = training_step(lambda: module(x_p), [x_p, *module.parameters()])
    return steps


def check_sparseprop(module: nn.Module, weight: torch.Tensor, mask: torch.Tensor, batch: int) -> None:
    """SparseProp against F.linear with the dense masked weight: same pattern, same results.

    SparseProp takes its pattern from the weight's non-zeros and keeps dW only there (the
    gradient of its CSR values), so dW is compared at the mask, in its CSR order.
    """
    row_starts, columns = module.W_idx
    rows = torch.repeat_interleave(torch.arange(weight.shape[0]), row_starts.diff().long())
    pattern = torch.zeros_like(mask)
    pattern[rows, columns.long()] = True
    assert torch.equal(pattern, mask), "SparseProp's non-zeros differ from the mask"
    x = torch.randn(batch, weight.shape[1], requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    w_ref, b_ref = weight.clone().requires_grad_(), module.bias.detach().clone().requires_grad_()
    grad_output = torch.randn(batch, weight.shape[0])
    output, output_ref = module(x), F.linear(x_ref, w_ref, b_ref)
    output.backward(grad_output)
    output_ref.backward(grad_output)
    assert module.W_val.grad.shape == (int(mask.sum()),), "SparseProp's dW is not one value per non-zero"
    for name, actual, expected in (("output", output, output_ref), ("dX", x.grad, x_ref.grad),
                                   ("db", module.bias.grad, b_ref.grad),
                                   ("dW at the non-zeros", module.W_val.grad, w_ref.grad[rows, columns.long()])):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4, msg=lambda m: f"SparseProp {name}: {m}")
    for parameter in module.parameters():
        parameter.grad = None


def cpu_name() -> str:
    """The CPU model, for the record: sparse kernels' speed depends on it."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def seconds_per_call(step: Callable[[], None], repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def measure(steps: dict[str, Callable[[], None]], rounds: int, target_seconds: float) -> dict[str, float | None]:
    """Median seconds per step, or None for a variant too slow to be worth timing.

    One warm-up call each (first touch of every buffer, lazy allocations) sizes the repeats
    so that one timing lasts about ``target_seconds``; a variant whose warm-up took over
    1 / TOO_SLOW times dense's is left out: it only loses, and slowly (F.linear with a CSR
    weight at 4096x4096, batch 1024, would take most of the run).
    """
    first = {name: seconds_per_call(step, 1) for name, step in steps.items()}
    names = [name for name in steps if first[name] * TOO_SLOW <= first["dense"]]
    repeats = {name: max(1, round(target_seconds / first[name])) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names):] + names[:index % len(names)]:
            samples[name].append(seconds_per_call(steps[name], repeats[name]))
    return {name: statistics.median(samples[name]) if name in samples else None for name in steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: batch 128, density 5 %%, 3 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per setting (default 5, quick 3)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    batches, densities = ([128], [0.05]) if arguments.quick else ([128, 1024], [0.01, 0.05, 0.1, 0.2])
    rounds = arguments.rounds or (3 if arguments.quick else 5)
    target_seconds = 0.02 if arguments.quick else 0.03
    generator = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {arguments.threads} threads, {cpu_name()}, "
          f"medians of {rounds} rounds, SparseProp {'on' if SparsePropLinear else 'not installed'}\n")
    header = None
    for in_features, out_features in LAYERS:
        for batch in batches:
            for density in densities:
                mask = torch.rand(out_features, in_features, generator=generator) < density
                weight = torch.randn(out_features, in_features, generator=generator) / in_features**0.5 * mask
                times = measure(steps_for(weight, mask, batch), rounds, target_seconds)
                if header is None:  # SparseProp's column stays, saying "not installed", when it is
                    header = [name for name in times if name != "dense"] + [SPARSEPROP] * (SPARSEPROP not in times)
                    print("| layer | batch | density | dense ms | " + " | ".join(header) + " |")
                    print("|---|---|---|---|" + "---|" * len(header))
                ratios = " | ".join("not installed" if name not in times else f"< {TOO_SLOW:.2f}x" if times[name] is None
                                    else f"{times['dense'] / times[name]:.2f}x" for name in header)
                print(f"| {in_features}->{out_features} | {batch} | {density:.0%} | {times['dense'] * 1e3:.3f} | {ratios} |",
                      flush=True)
    print("\nratio = dense time / variant time for forward + backward (dX, dW, db); > 1: faster than dense; "
          f"< {TOO_SLOW:.2f}x: its warm-up call alone said so, not timed further."
          + ("\nSparseProp's output, dX, db and dW at the non-zeros matched the dense masked reference "
             "(rtol = atol = 1e-4) in every setting." if SparsePropLinear else ""))


if __name__ == "__main__":
    main()

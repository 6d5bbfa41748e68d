"""One Linear or Conv2d layer, forward + backward, dense against the sparse kernels, in one run.

    python benchmarks/kernels.py [--section linear|conv|all] [--quick] [--rounds 5] [--threads N]

Linear section (``--section linear``): for LeNet-300-100's layers and 4096x4096, batch sizes
128 and 1024 and each weight density, it times a training step of one layer (forward,
backward with dX, dW and db, gradients reset to None as ``zero_grad`` does) for:

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

Conv section (``--section conv``): for the 3x3 WRN layer (128->128 channels, 16x16 images,
stride 1, padding 1) at batch 128 and LeNet-5-Caffe's conv2 (20->50 channels, 5x5, 12x12
input, no padding) at batch 100, each weight density, the same training step (the input
requires grad; dX, dW and db) for:

* dense: ``F.conv2d`` with the masked weight as a dense Parameter;
* ours, sparse dW: ``backends.masked_conv2d`` with a ``SparseConvLayout`` of the mask, dW at
  the non-zeros only (zeros elsewhere), NCHW input;
* ours, dense dW: the same with ``dense_weight_gradient=True``, the full dW that sparse
  momentum's window reads (what the window costs per step);
* SparseProp, over batch / over width: its ``SparseConv2d`` built from the same masked weight
  with ``vectorizing_over_on=False`` (its default: the input is permuted to channels-height-
  width-batch and the kernels vectorise over the batch) and ``=True`` (vectorised over the
  output's width, NCHW). Its own ``swap_modules_with_sparse`` / ``sparsify_if_faster`` times
  one step of each and keeps the faster (and swaps only layers above 80 % sparsity), so the
  better of the two columns is what SparseProp would run. Its kernels take strides 1 and 2
  and square kernels only; a shape outside that shows as text in the column. Like ours with
  sparse dW, it computes dW only at the non-zeros. A variant whose check fails shows which
  result was wrong in how many entries instead of a ratio, and is not timed: in 0.1.14 the
  over-batch forward is wrong when the batch is not a multiple of 8 (the scalar remainder of
  its loop unrolled over 4 output columns updates only the first; sparse_conv2d.cpp), so
  LeNet-5-Caffe's conv2 at batch 100 shows "wrong output" there.

Before timing, every conv setting checks ours (output, dX, db, and dW: at the mask and zero
elsewhere for sparse dW, everywhere for dense dW) and each SparseProp variant (output, dX, db,
dW at the non-zeros) against ``F.conv2d`` with the masked weight (rtol 1e-4, atol 1e-4 times
the largest reference entry, at least 1e-4).

Each table row: the layer, batch, weight density (1, 5, 10 and 20 %), dense's milliseconds
per step, then one column per variant above. Variants alternate within every round (the
order rotates); each figure is the median over rounds of dense time / variant time, so > 1
means faster than dense; text instead of a figure says why the variant was not timed.
``--quick`` runs density 5 % only (and batch 128 only for Linear) with 3 rounds; the
default ``--section all`` prints the Linear table, then the Conv2d one.

SparseProp (pip ``sparseprop`` 0.1.14, a pybind11 + OpenMP extension with AVX2 intrinsics
compiled from the sdist) installs into the same Python as torch with:

    pip install pybind11     # its setup.py runs `python3 -m pybind11 --includes` while building
    # g++ -march=native -fopenmp; scipy already here
    pip install --no-deps --no-build-isolation sparseprop

It declares no torch dependency, so pip leaves torch alone. Its extension is a top-level
module named ``backend`` and shares torch's libgomp (same soname), so ``torch.set_num_threads``
(``--threads``) governs its OpenMP threads too.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Union

import torch
import torch.nn.functional as F
from torch import nn

from sparsemomentum.backends import (
    SparseConvLayout,
    SparseLinearLayout,
    masked_conv2d,
    masked_linear,
)

try:
    from sparseprop.modules import SparseConv2d as SparsePropConv2d
    from sparseprop.modules import SparseLinear as SparsePropLinear
    from sparseprop.modules.utils import from_sparse_format_conv2d
except ImportError:
    SparsePropLinear = SparsePropConv2d = from_sparse_format_conv2d = None

SPARSEPROP = "SparseProp"
NOT_INSTALLED = "not installed"
OURS = (("ours, sparse dW", False), ("ours, dense dW", True))  # (column, dense_weight_gradient)
LAYERS = [(784, 300), (300, 100), (100, 10), (4096, 4096)]
TOO_SLOW = 0.25  # speed ratio below which a variant is not timed further
TOLERANCE = 1e-4  # relative; see assert_matches

Step = Callable[[], None]
Steps = dict[
    str, Union[Step, str]
]  # a str instead of a step: why the variant cannot run, shown in its column
Setting = tuple[str, int, float, Callable[[], Steps]]  # layer, batch, density, the steps' factory


@dataclass(frozen=True)
class ConvLayer:
    name: str
    in_channels: int
    out_channels: int
    kernel: int
    size: int  # input height = width
    stride: int
    padding: int
    batch: int

    @property
    def label(self) -> str:
        return (
            f"{self.name} {self.kernel}x{self.kernel} {self.in_channels}->{self.out_channels}, "
            f"{self.size}x{self.size}, s{self.stride} p{self.padding}"
        )

    def input(self) -> torch.Tensor:
        return torch.randn(self.batch, self.in_channels, self.size, self.size, requires_grad=True)

    def dense(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, bias, self.stride, self.padding)


CONV_LAYERS = [
    ConvLayer("WRN", 128, 128, 3, 16, 1, 1, 128),
    ConvLayer("LeNet-5-Caffe conv2", 20, 50, 5, 12, 1, 0, 100),
]


def training_step(forward: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> Step:
    """Forward, backward with a fixed upstream gradient laid out like the output, grads reset."""
    grad_output = torch.randn_like(forward())  # randn_like keeps the output's strides

    def step() -> None:
        forward().backward(grad_output)
        for leaf in leaves:
            leaf.grad = None

    return step


class Mismatch(AssertionError):
    """A variant's result differs from the dense masked reference; ``cell`` says which and how much,
    briefly."""

    def __init__(self, message: str, cell: str) -> None:
        super().__init__(message)
        self.cell = cell


def assert_matches(who: str, comparisons: list[tuple[str, torch.Tensor, torch.Tensor]]) -> None:
    """Each (what, actual, expected) equal to float tolerance, or a Mismatch naming who and what.

    rtol 1e-4, and atol 1e-4 times the largest |expected| entry (at least 1e-4): gradients
    summed over tens of thousands of terms (a conv's db and dW) differ in summation order, and
    an entry that cancels to near zero keeps the rounding of its large terms.
    """
    for what, actual, expected in comparisons:
        atol = TOLERANCE * max(1.0, expected.abs().max().item())
        try:
            torch.testing.assert_close(actual, expected, rtol=TOLERANCE, atol=atol)
        except AssertionError as error:
            wrong = (
                int((~torch.isclose(actual, expected, rtol=TOLERANCE, atol=atol)).sum())
                if (actual.shape == expected.shape)
                else actual.numel()
            )
            raise Mismatch(
                f"{who} {what}: {error}", f"wrong {what} ({wrong} of {expected.numel()})"
            ) from None


def csr_leaf(weight: torch.Tensor) -> torch.Tensor:
    csr = weight.to_sparse_csr()
    return torch.sparse_csr_tensor(
        csr.crow_indices().int(),
        csr.col_indices().int(),
        csr.values(),
        csr.shape,
        check_invariants=False,
    ).requires_grad_()


def linear_steps(weight: torch.Tensor, mask: torch.Tensor, batch: int) -> Steps:
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

    steps: Steps = {}
    x, w, b = batch_major(), dense_weight(), bias()
    steps["dense"] = training_step(lambda: F.linear(x, w, b), [x, w, b])
    for name, dense_weight_gradient in OURS:
        x_t, w_o, b_o = feature_major(), dense_weight(), bias()
        layout = SparseLinearLayout(w_o, mask)
        steps[name] = training_step(
            partial(masked_linear, x_t.t(), w_o, b_o, layout, dense_weight_gradient),
            [x_t, w_o, b_o],
        )
    x_s, w_s, b_s = feature_major(), csr_leaf(weight), bias()
    steps["torch.sparse.mm"] = training_step(
        lambda: torch.sparse.mm(w_s, x_s) + b_s.unsqueeze(1), [x_s, w_s, b_s]
    )
    x_l, w_l, b_l = batch_major(), csr_leaf(weight), bias()
    steps["F.linear(CSR)"] = training_step(lambda: F.linear(x_l, w_l, b_l), [x_l, w_l, b_l])
    steps[SPARSEPROP] = NOT_INSTALLED
    if SparsePropLinear is not None:
        x_p, module = batch_major(), SparsePropLinear(weight.clone(), bias())
        try:
            check_sparseprop(module, weight, mask, batch)
            steps[SPARSEPROP] = training_step(lambda: module(x_p), [x_p, *module.parameters()])
        except (
            Mismatch
        ) as mismatch:  # shown in its column, not timed: it would not be doing the same work
            steps[SPARSEPROP] = mismatch.cell
    return steps


def check_sparseprop(
    module: nn.Module, weight: torch.Tensor, mask: torch.Tensor, batch: int
) -> None:
    """SparseProp against F.linear with the dense masked weight: same pattern, same results.

    SparseProp takes its pattern from the weight's non-zeros and keeps dW only there (the
    gradient of its CSR values), so dW is compared at the mask, in its CSR order.
    """
    row_starts, columns = module.W_idx
    rows = torch.repeat_interleave(torch.arange(weight.shape[0]), row_starts.diff().long())
    pattern = torch.zeros_like(mask)
    pattern[rows, columns.long()] = True
    if not torch.equal(pattern, mask):  # seen at 4096x4096, 20 %: 3.4 M non-zeros
        wrong = int((pattern != mask).sum())
        raise Mismatch(
            f"{SPARSEPROP}'s non-zeros differ from the mask at {wrong} positions",
            f"wrong pattern ({wrong} of {mask.numel()})",
        )
    x = torch.randn(batch, weight.shape[1], requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    w_ref, b_ref = weight.clone().requires_grad_(), module.bias.detach().clone().requires_grad_()
    grad_output = torch.randn(batch, weight.shape[0])
    output, output_ref = module(x), F.linear(x_ref, w_ref, b_ref)
    output.backward(grad_output)
    output_ref.backward(grad_output)
    assert module.W_val.grad.shape == (int(mask.sum()),), (
        "SparseProp's dW is not one value per non-zero"
    )
    assert_matches(
        SPARSEPROP,
        [
            ("output", output, output_ref),
            ("dX", x.grad, x_ref.grad),
            ("db", module.bias.grad, b_ref.grad),
            ("dW at the non-zeros", module.W_val.grad, w_ref.grad[rows, columns.long()]),
        ],
    )
    for parameter in module.parameters():
        parameter.grad = None


def conv_steps(
    layer: ConvLayer, weight: torch.Tensor, mask: torch.Tensor, bias: torch.Tensor
) -> Steps:
    """Every variant on its own copies; ours and SparseProp's checked against the dense masked
    reference first."""

    def dense_weight() -> nn.Parameter:
        return nn.Parameter(weight.clone())

    def new_bias() -> nn.Parameter:
        return nn.Parameter(bias.clone())

    steps: Steps = {}
    x, w, b = layer.input(), dense_weight(), new_bias()
    steps["dense"] = training_step(partial(layer.dense, x, w, b), [x, w, b])
    reference = conv_reference(layer, weight, bias)
    check_ours_conv(layer, weight, mask, bias, reference)
    for name, dense_weight_gradient in OURS:
        x_o, w_o, b_o = layer.input(), dense_weight(), new_bias()
        layout = SparseConvLayout(w_o, mask, layer.stride, layer.padding)
        forward = partial(masked_conv2d, x_o, w_o, b_o, layout, dense_weight_gradient)
        steps[name] = training_step(forward, [x_o, w_o, b_o])
    for name, over_width in (
        (f"{SPARSEPROP}, over batch", False),
        (f"{SPARSEPROP}, over width", True),
    ):
        if SparsePropConv2d is None:
            steps[name] = NOT_INSTALLED
        elif layer.stride not in (
            1,
            2,
        ):  # its kernels exist for these strides only (square kernels, int padding)
            steps[name] = f"no stride {layer.stride}"
        else:
            x_p = layer.input()
            module = SparsePropConv2d(
                weight.clone(),
                new_bias(),
                layer.padding,
                layer.stride,
                vectorizing_over_on=over_width,
            )
            try:
                check_sparseprop_conv(name, module, mask, reference)
            except (
                Mismatch
            ) as mismatch:  # shown in its column, not timed: it would not be doing the same work
                steps[name] = mismatch.cell
                continue
            steps[name] = training_step(partial(module, x_p), [x_p, *module.parameters()])
    return steps


def conv_reference(
    layer: ConvLayer, weight: torch.Tensor, bias: torch.Tensor
) -> dict[str, torch.Tensor]:
    """F.conv2d with the dense masked weight: its input, upstream gradient, output, dX, dW and
    db."""
    x, w, b = layer.input(), weight.clone().requires_grad_(), bias.clone().requires_grad_()
    output = layer.dense(x, w, b)
    grad_output = torch.randn_like(output)
    output.backward(grad_output)
    return dict(
        input=x.detach(),
        grad_output=grad_output,
        output=output.detach(),
        dX=x.grad,
        dW=w.grad,
        db=b.grad,
    )


def run_conv(
    forward: Callable[[torch.Tensor], torch.Tensor], reference: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward + backward on the reference's input and upstream gradient: (output, dX)."""
    x = reference["input"].clone().requires_grad_()
    output = forward(x)
    output.backward(reference["grad_output"])
    return output.detach(), x.grad


def check_ours_conv(
    layer: ConvLayer,
    weight: torch.Tensor,
    mask: torch.Tensor,
    bias: torch.Tensor,
    reference: dict[str, torch.Tensor],
) -> None:
    """masked_conv2d against the reference; sparse dW must also be zero outside the mask."""
    for name, dense_weight_gradient in OURS:
        w, b = weight.clone().requires_grad_(), bias.clone().requires_grad_()
        layout = SparseConvLayout(w, mask, layer.stride, layer.padding)
        output, grad_input = run_conv(
            lambda x: masked_conv2d(x, w, b, layout, dense_weight_gradient), reference
        )
        expected_dw = reference["dW"] if dense_weight_gradient else reference["dW"] * mask
        assert_matches(
            name,
            [
                ("output", output, reference["output"]),
                ("dX", grad_input, reference["dX"]),
                ("db", b.grad, reference["db"]),
                ("dW", w.grad, expected_dw),
            ],
        )


def check_sparseprop_conv(
    name: str, module: nn.Module, mask: torch.Tensor, reference: dict[str, torch.Tensor]
) -> None:
    """SparseProp's SparseConv2d against the reference: same pattern (its weight's non-zeros),
    same results.

    Its dW is one value per non-zero in its own order; densified through its own format
    converter, it is compared at the mask.
    """
    shape = tuple(mask.shape)
    pattern = from_sparse_format_conv2d(torch.ones_like(module.W_val), module.W_idx, shape) != 0
    assert torch.equal(pattern, mask), f"{name}: its non-zeros differ from the mask"
    output, grad_input = run_conv(module, reference)
    assert module.W_val.grad.shape == (int(mask.sum()),), (
        f"{name}: dW is not one value per non-zero"
    )
    grad_weight = from_sparse_format_conv2d(module.W_val.grad, module.W_idx, shape)
    assert_matches(
        name,
        [
            ("output", output, reference["output"]),
            ("dX", grad_input, reference["dX"]),
            ("db", module.bias.grad, reference["db"]),
            ("dW at the non-zeros", grad_weight[mask], reference["dW"][mask]),
        ],
    )
    for parameter in module.parameters():
        parameter.grad = None


def cpu_name() -> str:
    """The CPU model, for the record: sparse kernels' speed depends on it."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def seconds_per_call(step: Step, repeats: int) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - started) / repeats


def measure(steps: Steps, rounds: int, target_seconds: float) -> dict[str, float | str | None]:
    """Median seconds per step, None for a variant too slow to be worth timing, a step's text as
    it is.

    One warm-up call each (first touch of every buffer, lazy allocations) sizes the repeats
    so that one timing lasts about ``target_seconds``; a variant whose warm-up took over
    1 / TOO_SLOW times dense's is left out: it only loses, and slowly (F.linear with a CSR
    weight at 4096x4096, batch 1024, would take most of the run).
    """
    first = {
        name: seconds_per_call(step, 1) for name, step in steps.items() if not isinstance(step, str)
    }
    names = [name for name in first if first[name] * TOO_SLOW <= first["dense"]]
    repeats = {name: max(1, round(target_seconds / first[name])) for name in names}
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        for name in names[index % len(names) :] + names[: index % len(names)]:
            samples[name].append(seconds_per_call(steps[name], repeats[name]))
    return {
        name: step
        if isinstance(step, str)
        else statistics.median(samples[name])
        if name in samples
        else None
        for name, step in steps.items()
    }


def print_table(settings: Iterator[Setting], rounds: int, target_seconds: float) -> None:
    """One markdown row per (layer, batch, density, steps factory): dense ms, then dense / variant
    time per column."""
    header = None
    for layer, batch, density, make_steps in settings:
        times = measure(make_steps(), rounds, target_seconds)
        if header is None:
            header = [name for name in times if name != "dense"]
            print("| layer | batch | density | dense ms | " + " | ".join(header) + " |")
            print("|---|---|---|---|" + "---|" * len(header))
        cells = [
            times[name]
            if isinstance(times[name], str)
            else f"< {TOO_SLOW:.2f}x"
            if times[name] is None
            else f"{times['dense'] / times[name]:.2f}x"
            for name in header
        ]
        print(
            f"| {layer} | {batch} | {density:.0%} | {times['dense'] * 1e3:.3f} | "
            f"{' | '.join(cells)} |",
            flush=True,
        )


def linear_settings(batches: list[int], densities: list[float]) -> Iterator[Setting]:
    generator = torch.Generator().manual_seed(0)
    for in_features, out_features in LAYERS:
        for batch in batches:
            for density in densities:
                mask = torch.rand(out_features, in_features, generator=generator) < density
                weight = (
                    torch.randn(out_features, in_features, generator=generator)
                    / in_features**0.5
                    * mask
                )
                yield (
                    f"{in_features}->{out_features}",
                    batch,
                    density,
                    partial(linear_steps, weight, mask, batch),
                )


def conv_settings(densities: list[float]) -> Iterator[Setting]:
    generator = torch.Generator().manual_seed(0)
    for layer in CONV_LAYERS:
        shape = (layer.out_channels, layer.in_channels, layer.kernel, layer.kernel)
        fan_in = layer.in_channels * layer.kernel**2
        for density in densities:
            mask = torch.rand(shape, generator=generator) < density
            weight = torch.randn(shape, generator=generator) / fan_in**0.5 * mask
            bias = torch.randn(layer.out_channels, generator=generator) * 0.1
            yield layer.label, layer.batch, density, partial(conv_steps, layer, weight, mask, bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--section",
        choices=("linear", "conv", "all"),
        default="all",
        help="which table(s): Linear layers, Conv2d layers or both (default all)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: density 5 %% (Linear: batch 128), 3 rounds"
    )
    parser.add_argument(
        "--rounds", type=int, default=None, help="rounds per setting (default 5, quick 3)"
    )
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--densities", type=float, nargs="+", help="instead of 1 5 10 20 %% (e.g. 0.2)"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", help="Linear batch sizes instead of 128 1024"
    )
    parser.add_argument(
        "--layers", nargs="+", help="Linear layers to measure, e.g. 4096->4096 (default: all)"
    )
    arguments = parser.parse_args()
    torch.set_num_threads(arguments.threads)
    batches, densities = (
        ([128], [0.05]) if arguments.quick else ([128, 1024], [0.01, 0.05, 0.1, 0.2])
    )
    batches, densities = arguments.batches or batches, arguments.densities or densities
    if arguments.layers:
        LAYERS[:] = [layer for layer in LAYERS if f"{layer[0]}->{layer[1]}" in arguments.layers]
    rounds = arguments.rounds or (3 if arguments.quick else 5)
    target_seconds = 0.02 if arguments.quick else 0.03
    sparseprop = SparsePropLinear is not None
    print(
        f"torch {torch.__version__}, {arguments.threads} threads, {cpu_name()}, "
        f"medians of {rounds} rounds, SparseProp {'on' if sparseprop else NOT_INSTALLED}"
    )
    ratio = (
        "ratio = dense time / variant time for forward + backward (dX, dW, db); > 1: faster than "
        f"dense; < {TOO_SLOW:.2f}x: its warm-up call alone said so, not timed further."
    )
    if arguments.section in ("linear", "all"):
        print("\nLinear layers\n")
        print_table(linear_settings(batches, densities), rounds, target_seconds)
        print(
            "\n"
            + ratio
            + (
                "\nSparseProp's output, dX, db and dW at the non-zeros matched the dense masked "
                "reference (rtol 1e-4, atol 1e-4 x the largest entry) in every setting."
                if sparseprop
                else ""
            )
        )
    if arguments.section in ("conv", "all"):
        print("\nConv2d layers\n")
        print_table(conv_settings(densities), rounds, target_seconds)
        print(
            "\n"
            + ratio
            + "\nOurs matched F.conv2d with the masked weight in every setting (output, dX, db; dW "
            "at the mask and zero elsewhere with sparse dW, everywhere with dense dW; rtol 1e-4, "
            "atol 1e-4 x the largest entry)"
            + (
                ". So did SparseProp's variants wherever their column shows a ratio (output, dX, "
                "db, dW at the non-zeros); 'wrong X (n of N)': X failed that check in n of its N "
                "entries, so it was not timed."
                if sparseprop
                else "."
            )
        )


if __name__ == "__main__":
    main()

"""The paper's speed-up *estimate* for a sparse model, layer by layer, next to the FLOP ratio.

Dettmers & Zettlemoyer did not time sparse kernels: they timed the dense forward pass of
each convolution and scaled it (section "Speed-ups" of the paper):

* sparse convolution: dense time x weight density x input-activation density, the work
  left when both zero weights and zero inputs are skipped;
* channel skipping: dense time x fraction of non-empty input channels x fraction of
  non-empty output feature maps, what a *dense* convolution gains by leaving out channels
  whose mask slice is all zero.

Both assume that the work left runs at the dense layer's speed. Unstructured sparse work
does not on a CPU (docs/speed.md: a sparse product reads one activation row per non-zero and
runs far below dense GFLOP/s), so this module reports them beside the plain FLOP ratio
1 / density and leaves it to measured kernels (benchmarks/training_step.py) to say what is
real. The paper counted conv layers and the forward pass only; the totals here come once over
conv layers (the paper's number) and once over every Conv and Linear layer, still forward
only.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import torch
from torch import nn

from ..core.targets import DEFAULT_SPARSE_TYPES
from ..errors import UserError

# The layers the estimate covers: the ones a sparsifier masks by default.
LAYER_TYPES = DEFAULT_SPARSE_TYPES


def _ratio(dense: float, estimated: float) -> float:
    """dense / estimated; a layer estimated at zero cost (all weights pruned) is infinitely
    faster."""
    return dense / estimated if estimated else float("inf")


class _SpeedUps:
    """Speed-ups shared by one layer and a sum of layers: dense cost / estimated cost (> 1:
    faster)."""

    dense_flops: float
    sparse_flops: float
    dense_ms: float
    sparse_conv_ms: float
    channel_skip_ms: float

    @property
    def flop_speedup(self) -> float:
        """The FLOP ratio, 1 / weight density for one layer: what ideal sparse kernels would
        give."""
        return _ratio(self.dense_flops, self.sparse_flops)

    @property
    def sparse_conv_speedup(self) -> float:
        """The paper's "sparse convolution": zero weights and zero inputs both skipped for free."""
        return _ratio(self.dense_ms, self.sparse_conv_ms)

    @property
    def channel_skip_speedup(self) -> float:
        """The paper's "channel skipping": a dense kernel that leaves out empty channels and feature
        maps."""
        return _ratio(self.dense_ms, self.channel_skip_ms)


@dataclass(frozen=True)
class LayerEstimate(_SpeedUps):
    """What was measured for one Conv or Linear layer, and the estimates derived from it.

    ``input_channels`` / ``output_channels`` are the fractions of input channels (Linear:
    input features) and output feature maps (Linear: outputs) whose mask slice holds at
    least one active weight; a layer without a mask counts as dense.
    """

    name: str
    kind: str  # "conv" or "linear"
    weight_shape: tuple[int, ...]
    dense_flops: int
    dense_ms: float
    weight_density: float
    input_density: float
    input_channels: float
    output_channels: float

    @property
    def sparse_flops(self) -> float:
        return self.dense_flops * self.weight_density

    @property
    def sparse_conv_ms(self) -> float:
        return self.dense_ms * self.weight_density * self.input_density

    @property
    def channel_skip_ms(self) -> float:
        return self.dense_ms * self.input_channels * self.output_channels


@dataclass(frozen=True)
class TotalEstimate(_SpeedUps):
    """Sums over a set of layers: the network speed-up is summed dense time / summed estimated time,
    so a layer counts by its dense cost, not one vote each."""

    scope: str
    layers: int
    dense_flops: int
    sparse_flops: float
    dense_ms: float
    sparse_conv_ms: float
    channel_skip_ms: float

    @classmethod
    def over(cls, scope: str, layers: list[LayerEstimate]) -> TotalEstimate:
        return cls(
            scope=scope,
            layers=len(layers),
            dense_flops=sum(layer.dense_flops for layer in layers),
            sparse_flops=sum(layer.sparse_flops for layer in layers),
            dense_ms=sum(layer.dense_ms for layer in layers),
            sparse_conv_ms=sum(layer.sparse_conv_ms for layer in layers),
            channel_skip_ms=sum(layer.channel_skip_ms for layer in layers),
        )


@dataclass(frozen=True)
class SpeedupEstimate:
    """Per-layer estimates in forward order, and totals over conv layers (the paper's) and all
    layers."""

    layers: list[LayerEstimate]
    totals: list[TotalEstimate]

    def format_table(self) -> str:
        """A markdown table: one row per layer, then one per total (densities left blank there)."""
        header = (
            "| layer | weight | MFLOP | dense ms | weight density | input density | in ch. | out "
            "ch. | FLOP x | sparse conv x | channel skip x |"
        )
        lines = [header, "|" + "---|" * (header.count("|") - 1)]
        for layer in self.layers:
            shape = "x".join(map(str, layer.weight_shape))
            lines.append(
                f"| {layer.name} | {layer.kind} {shape} | {layer.dense_flops / 1e6:.1f} | "
                f"{layer.dense_ms:.3f} | {layer.weight_density:.1%} | {layer.input_density:.1%} | "
                f"{layer.input_channels:.1%} | {layer.output_channels:.1%} | "
                f"{_speedup_text(layer)} |"
            )
        for total in self.totals:
            lines.append(
                f"| **total, {total.scope}** | {total.layers} layers | "
                f"{total.dense_flops / 1e6:.1f} | {total.dense_ms:.3f} | | | | | "
                f"{_speedup_text(total)} |"
            )
        return "\n".join(lines)


def _speedup_text(estimate: _SpeedUps) -> str:
    return (
        f"{estimate.flop_speedup:.2f} | {estimate.sparse_conv_speedup:.2f} "
        f"| {estimate.channel_skip_speedup:.2f}"
    )


def _median_ms(call: Callable[[], object], repeats: int) -> float:
    """Median of single calls after one untimed call (lazy allocations, kernel selection)."""
    call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def _non_empty_fractions(mask: torch.Tensor, groups: int) -> tuple[float, float]:
    """Fractions of input channels and output feature maps whose mask slice is not all zero.

    A weight is [out, in / groups, *kernel]; input channel c of group g feeds only that
    group's outputs, so it is looked at within its group.
    """
    out_channels = mask.shape[0]
    active = mask.reshape(groups, out_channels // groups, mask.shape[1], -1)
    inputs = active.any(dim=3).any(dim=1)  # [groups, in / groups]
    outputs = active.any(dim=3).any(dim=2)  # [groups, out / groups]
    return float(inputs.float().mean()), float(outputs.float().mean())


def _masks_per_layer(
    layers: Mapping[str, nn.Module], masks: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Each layer's mask as booleans beside its weight; all ones (dense) for a layer without a
    mask."""
    layer_of = {f"{name}.weight" if name else "weight": name for name in layers}
    unknown = sorted(set(masks) - set(layer_of))
    if unknown:
        raise UserError(
            f"the mask {unknown[0]!r} names no Conv or Linear weight of this model; pass the masks "
            "of this model (Sparsifier.masks)."
        )
    per_layer = {}
    for weight_name, name in layer_of.items():
        weight = layers[name].weight
        mask = masks.get(weight_name, torch.ones_like(weight, dtype=torch.bool))
        if tuple(mask.shape) != tuple(weight.shape):
            raise UserError(
                f"the mask {weight_name!r} has shape {tuple(mask.shape)} but the weight has "
                f"{tuple(weight.shape)}; pass the masks of this model."
            )
        per_layer[name] = mask.to(device=weight.device, dtype=torch.bool)
    return per_layer


@torch.no_grad()
def estimate_speedup(
    model: nn.Module, masks: Mapping[str, torch.Tensor], inputs: torch.Tensor, repeats: int = 7
) -> SpeedupEstimate:
    """Estimate the speed-up of ``model``'s forward pass under ``masks`` on the batch ``inputs``.

    ``masks`` maps weight names to boolean masks, as ``Sparsifier.masks`` (``"conv1.weight"``);
    Conv and Linear layers without a mask count as dense. One forward pass of ``inputs``
    records each layer's input (forward hooks, first call of a layer only), its density
    (fraction of non-zero inputs) and the output size for the FLOP count; then each layer's
    dense forward is timed on its recorded input, median of ``repeats`` calls.

    The model runs in the mode it is in: in train mode dropout's zeros count toward the
    activation density as they would in a training step (and BatchNorm's running statistics
    move by one batch). The dense time comes from the module class's own ``forward``, so a
    model on the sparse backend, whose Linear layers run sparse kernels, is still timed dense.
    """
    layers = {
        name: module for name, module in model.named_modules() if isinstance(module, LAYER_TYPES)
    }
    layer_masks = _masks_per_layer(layers, masks)
    # Per layer: its input (to time on), the input's density, taken in the hook because a later
    # in-place op may change the tensor, and the output size.
    recorded: dict[str, tuple[torch.Tensor, float, int]] = {}

    def record(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            if name not in recorded:
                density = float(torch.count_nonzero(args[0])) / args[0].numel()
                recorded[name] = (args[0], density, output.numel())

        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in layers.items()]
    try:
        model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    if not recorded:
        raise UserError(
            "the batch reached no Conv or Linear layer of the model, so there is nothing to "
            "estimate."
        )

    estimates = []
    for name, (layer_input, input_density, output_size) in recorded.items():  # forward order
        module, mask = layers[name], layer_masks[name]
        weight = module.weight
        input_channels, output_channels = _non_empty_fractions(mask, getattr(module, "groups", 1))
        dense_forward = type(module).forward
        estimates.append(
            LayerEstimate(
                name=name or "(model)",
                kind="linear" if isinstance(module, nn.Linear) else "conv",
                weight_shape=tuple(weight.shape),
                # One multiply-add (2 FLOPs) per output element and fan-in weight.
                dense_flops=2 * output_size * (weight.numel() // weight.shape[0]),
                dense_ms=_median_ms(lambda: dense_forward(module, layer_input), repeats),
                weight_density=float(torch.count_nonzero(mask)) / mask.numel(),
                input_density=input_density,
                input_channels=input_channels,
                output_channels=output_channels,
            )
        )
    convs = [layer for layer in estimates if layer.kind == "conv"]
    totals = [TotalEstimate.over("conv layers (the paper's scope)", convs)] if convs else []
    totals.append(TotalEstimate.over("all layers", estimates))
    return SpeedupEstimate(estimates, totals)

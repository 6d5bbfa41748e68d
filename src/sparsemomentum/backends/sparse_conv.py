"""A direct sparse 2-D convolution for masked ``nn.Conv2d`` weights on the CPU.

``masked_conv2d(input, weight, bias, layout)`` computes ``F.conv2d(input, weight * mask,
bias, stride, padding, dilation)`` with work proportional to the mask's non-zeros: the
forward, the input gradient and the weight gradient (at the non-zeros only) run in the
compiled kernels of ``csrc/sparse_conv.c``, which read the weight's values in place
through the layout's CSR pattern, as the linear kernels do (``sparse_linear.py``).

Why a direct convolution and not im2col + sparse matmul: im2col materialises kh*kw copies
of the input per step whatever the density, so at 1-5 % it costs more than the sparse
product it feeds (0.1-0.8x of dense measured on this CPU). The direct kernels copy each
sample's input once into a zero-padded scratch (no per-element padding branches) and run
every non-zero as one unit-stride, vectorised loop over the output plane; see the C file.

The pattern: rows are output channels, columns the flat (c, kh, kw) index of a weight
[out, in, kh, kw]. The input gradient uses a second, transposed pattern grouped by input
channel (and, for strides above 1, by stride phase), so that each input channel's
gradient is a gather that one thread writes alone: no atomics.

The weight gradient reaches the optimizer as autograd's ordinary dense-shaped gradient of
the dense Parameter, zeros outside the mask, or the full dense gradient with
``dense_weight_gradient=True`` (sparse momentum's growth reads the momentum of missing
weights; see ``sparse_linear.py``). Unlike the linear layers there is no persistent dW
buffer: a conv weight is small next to the work done with each of its entries (each is
used batch x out_h x out_w times), so zero-filling a fresh dW costs well under 1 % of a step.

Supported: float32 CPU tensors, groups = 1, any stride, dilation and zero padding (ints,
pairs, "valid", or "same"). Everything else -- other dtypes or devices, or no C compiler --
takes the fallback: ``F.conv2d`` with the masked weight (same results, dense speed).
Grouped and depthwise convolutions have no sparse kernel, nor do ``padding_mode`` other than
"zeros": keep such layers dense (:class:`SparseConvLayout` cannot tell groups from its
weight, so ``masked_conv2d`` raises a :class:`UserError` when the input's channels do not
match the weight's). The compiled path is differentiable once (no double backward).

Measured against dense ``F.conv2d`` forward + backward (dX, dW, db), one thread, on a
2-core AVX-512 machine while a training sweep ran on it (medians of 15-45 interleaved
repeats, three runs): WRN 3x3 128->128, 16x16, batch 128: 4.8-5.9x faster at 5 %, 9.3-11x
at 1 %; LeNet-5-Caffe's conv2 (5x5 20->50, 12x12, batch 100): 5.4-6.3x at 5 %, 7.8-9.7x
at 1 %. At 1 % about half of the time is reading and writing the activations (the same
traffic a dense convolution has).
"""

from __future__ import annotations

from typing import Any, Union

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from ..errors import UserError
from . import compiled
from .sparse_linear import row_offsets

Pair = Union[int, tuple[int, int]]
Padding = Union[int, tuple[int, int], str]


def _pair(value: Pair, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise UserError(
            f"a sparse convolution's {name} must be an int or a pair of ints, got {value!r}."
        )
    return pair


class SparseConvLayout:
    """The CSR pattern of one masked conv weight [out, in, kh, kw], its transposed pattern, and the
    geometry.

    Build one per mask (a nonzero scan of the mask and a sort of its non-zeros). The values
    stay in the dense weight. ``stride``, ``padding`` and ``dilation`` are those of the
    ``nn.Conv2d``; the transposed pattern depends on stride and dilation, hence they live here.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        mask: torch.Tensor,
        stride: Pair = 1,
        padding: Padding = 0,
        dilation: Pair = 1,
    ) -> None:
        if weight.dim() != 4 or tuple(mask.shape) != tuple(weight.shape):
            raise UserError(
                "a sparse convolution layout needs a 4-D weight and a mask of its shape, got "
                f"weight {tuple(weight.shape)} and mask {tuple(mask.shape)}; pass the Sparsifier's "
                "masks of this model."
            )
        self.out_channels, self.in_channels, self.kernel_h, self.kernel_w = weight.shape
        self.stride = _pair(stride, "stride")
        self.dilation = _pair(dilation, "dilation")
        if min(self.stride) < 1 or min(self.dilation) < 1:
            raise UserError(
                f"stride and dilation must be at least 1, got {self.stride} and {self.dilation}."
            )
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self.pads = self._pads()  # (top, bottom, left, right)
        # a copy: masks are updated in place, and the fallback must use the mask of this pattern
        self.mask = mask.detach().to(dtype=torch.bool, copy=True)
        taps = self.kernel_h * self.kernel_w
        rows, cols = self.mask.cpu().reshape(self.out_channels, -1).nonzero(as_tuple=True)
        self.offsets = row_offsets(rows, self.out_channels)
        self.columns = cols.to(torch.int32)
        self.flat_index = (rows * (self.in_channels * taps) + cols).to(
            weight.device
        )  # positions in weight.view(-1)
        self.compiled = compiled.usable(
            weight
        )  # whether the values-only SGD step may use the compiled kernel
        # Transposed pattern: rows (c, phase) = c * sh*sw + phase, entries o * taps + tap, in row
        # order.
        channel, tap = cols // taps, cols % taps
        (sh, sw), (dh, dw) = self.stride, self.dilation
        phase = ((tap // self.kernel_w) * dh % sh) * sw + (tap % self.kernel_w) * dw % sw
        group = channel * (sh * sw) + phase
        order = torch.argsort(group, stable=True)  # keeps (o, tap) ascending within a row
        self.transposed_offsets = row_offsets(group[order], self.in_channels * sh * sw)
        self.transposed_entries = (rows * taps + tap)[order].to(torch.int32)

    def _pads(self) -> tuple[int, int, int, int]:
        if self.padding == "valid":
            return (0, 0, 0, 0)
        if self.padding == "same":
            if self.stride != (1, 1):
                raise UserError(
                    "padding='same' needs stride 1 (as in torch); give the padding as numbers "
                    "instead."
                )
            total_h = self.dilation[0] * (self.kernel_h - 1)
            total_w = self.dilation[1] * (self.kernel_w - 1)
            # torch pads the odd extra row and column at the bottom and right
            return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
        if isinstance(self.padding, str):
            raise UserError(
                f"unknown padding {self.padding!r}; use an int, a pair of ints, 'valid' or 'same'."
            )
        if min(self.padding) < 0:
            raise UserError(f"padding must not be negative, got {self.padding}.")
        ph, pw = self.padding
        return (ph, ph, pw, pw)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The output's (height, width) for an input of this size."""
        top, bottom, left, right = self.pads
        (sh, sw), (dh, dw) = self.stride, self.dilation
        out_h = (height + top + bottom - dh * (self.kernel_h - 1) - 1) // sh + 1
        out_w = (width + left + right - dw * (self.kernel_w - 1) - 1) // sw + 1
        return out_h, out_w

    def geometry(self, input_shape: torch.Size) -> torch.Tensor:
        """The kernels' int64 geometry: N, C, H, W, O, kh, kw, sh, sw, pad top, pad left, dh, dw,
        out_h, out_w."""
        batch, channels, height, width = input_shape
        out_h, out_w = self.output_size(height, width)
        top, _, left, _ = self.pads
        return torch.tensor(
            [
                batch,
                channels,
                height,
                width,
                self.out_channels,
                self.kernel_h,
                self.kernel_w,
                *self.stride,
                top,
                left,
                *self.dilation,
                out_h,
                out_w,
            ],
            dtype=torch.int64,
        )

    def check(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        """One sentence for arguments this layout cannot take (the kernels trust these shapes)."""
        shape = (self.out_channels, self.in_channels, self.kernel_h, self.kernel_w)
        if tuple(weight.shape) != shape or (
            bias is not None and tuple(bias.shape) != (self.out_channels,)
        ):
            raise UserError(
                f"this layout was built for a weight of shape {shape} (and a bias of "
                f"{self.out_channels}), got "
                f"{tuple(weight.shape)}{'' if bias is None else f' and {tuple(bias.shape)}'}; "
                "rebuild the layout."
            )
        if input.dim() != 4:
            raise UserError(
                f"a sparse convolution takes a 4-D [batch, channels, height, width] input, "
                f"got shape {tuple(input.shape)}."
            )
        if input.shape[1] != self.in_channels:
            raise UserError(
                f"the input has {input.shape[1]} channels but the weight takes {self.in_channels}: "
                "grouped convolutions (groups > 1) have no sparse kernel, keep such layers dense."
            )
        out_h, out_w = self.output_size(input.shape[2], input.shape[3])
        if out_h < 1 or out_w < 1:
            raise UserError(
                f"an input of {input.shape[2]}x{input.shape[3]} is smaller than the padded "
                f"{self.kernel_h}x{self.kernel_w} kernel (dilation {self.dilation}); "
                "give it a larger input or more padding."
            )

    def dense_weight_gradient(
        self, input: torch.Tensor, weight_shape: torch.Size, grad_output: torch.Tensor
    ) -> torch.Tensor:
        """The full dW of the convolution (torch's dense kernel), for the momentum window."""
        top, bottom, left, right = self.pads
        if (
            top != bottom or left != right
        ):  # asymmetric ("same" with an even kernel): pad explicitly
            input, padding = F.pad(input, (left, right, top, bottom)), (0, 0)
        else:
            padding = (top, left)
        return torch.nn.grad.conv2d_weight(
            input, weight_shape, grad_output, self.stride, padding, self.dilation
        )


class SparseConv2dFunction(torch.autograd.Function):
    """``F.conv2d(input, weight * mask, bias, ...)`` through the compiled kernels; float32 CPU,
    contiguous NCHW.

    The dense weight is an input so that its gradient goes through autograd, and it is
    saved so that autograd's version check catches a weight changed between forward and
    backward, as it would for ``F.conv2d``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layout: SparseConvLayout,
        dense_weight_gradient: bool,
    ) -> torch.Tensor:
        input = input.contiguous()
        geometry = layout.geometry(input.shape)
        out_h, out_w = int(geometry[13]), int(geometry[14])
        output = torch.empty(input.shape[0], layout.out_channels, out_h, out_w, dtype=input.dtype)
        compiled.conv2d_forward(
            geometry,
            layout.offsets,
            layout.columns,
            weight.detach().contiguous(),
            input,
            None if bias is None else bias.detach().contiguous(),
            output,
        )
        ctx.save_for_backward(input, weight)
        ctx.layout = layout
        ctx.geometry = geometry
        ctx.dense_weight_gradient = dense_weight_gradient
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, weight = ctx.saved_tensors
        layout: SparseConvLayout = ctx.layout
        grad_output = grad_output.contiguous()
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.empty_like(input)
        if ctx.needs_input_grad[1]:
            if ctx.dense_weight_gradient:
                grad_weight = layout.dense_weight_gradient(input, weight.shape, grad_output)
            else:
                grad_weight = torch.zeros(weight.shape, dtype=grad_output.dtype)
        sparse_weight_gradient = None if ctx.dense_weight_gradient else grad_weight
        if grad_input is not None or sparse_weight_gradient is not None:
            compiled.conv2d_backward(
                ctx.geometry,
                layout.offsets,
                layout.columns,
                layout.transposed_offsets,
                layout.transposed_entries,
                weight.detach().contiguous(),
                input,
                grad_output,
                grad_input,
                sparse_weight_gradient,
            )
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output.sum((0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None


def masked_conv2d(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    layout: SparseConvLayout,
    dense_weight_gradient: bool = False,
) -> torch.Tensor:
    """``F.conv2d(input, weight * mask, bias, stride, padding, dilation)`` with the layout's mask
    and geometry.

    ``input`` is [batch, in, h, w] (or unbatched [in, h, w]). The weight's gradient is zero
    outside the mask unless ``dense_weight_gradient`` (then the full dense gradient).
    Float32 CPU tensors run the compiled sparse kernels; anything else the dense fallback.
    """
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    layout.check(input, weight, bias)
    if compiled.usable(input, weight, bias):
        output = SparseConv2dFunction.apply(input, weight, bias, layout, dense_weight_gradient)
    else:
        output = _fallback(input, weight, bias, layout, dense_weight_gradient)
    return output.squeeze(0) if unbatched else output


def _fallback(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    layout: SparseConvLayout,
    dense_weight_gradient: bool,
) -> torch.Tensor:
    """The same results through ``F.conv2d`` (correct, dense speed): no compiler, another dtype or
    device."""
    mask = layout.mask.to(device=weight.device, dtype=weight.dtype)
    if dense_weight_gradient:
        # the value of weight * mask, but a gradient that passes to every weight
        masked = weight + (weight * mask - weight).detach()
    else:
        masked = weight * mask  # its gradient is dW * mask: zero outside the mask
    return F.conv2d(input, masked, bias, layout.stride, layout.padding, layout.dilation)

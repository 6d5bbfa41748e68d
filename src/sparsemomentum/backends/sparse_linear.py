"""Sparse CPU kernels for masked ``nn.Linear`` layers.

The optimizer keeps seeing the dense ``nn.Parameter`` and its dense state; only the
arithmetic changes. The products run in the compiled kernels of ``compiled.py``, which
read the weight's values in place through the layer's CSR pattern; without them (no C
compiler, or not float32 on the CPU) in torch's CSR operations on refreshed CSR copies.
Facts this design rests on (measured on this CPU; benchmarks/kernels.py):

* a CSR x dense product is fast only feature-major, Y^T = W X^T. The API stays
  batch-major ([batch, in] -> [batch, out], a drop-in for ``nn.Linear``) but the memory is
  feature-major: the output is returned as the transpose of a contiguous [out, batch]
  tensor, so the next sparse layer (through element-wise ops such as ReLU, which keep
  strides) reads its X^T without a copy, and gradients flow back the same way. Only an
  input stored batch-major is copied once (store a data set as X^T and pass ``X_T.t()``).
* dX = (W^T dY^T)^T uses a second CSR pattern, of W^T, built at mask updates: torch's own
  autograd through a CSR weight rebuilds W^T on every backward.
* dW is needed at the non-zeros only: an SDDMM, written straight into the gradient buffer.

How dW reaches the optimizer: as a dense-shaped gradient of the dense Parameter, through
autograd's normal accumulation (so hooks, DDP and ``zero_grad`` behave as usual), zeros
outside the mask. Its memory is one persistent buffer per layer whose zeros are kept, not
rewritten: a backward writes the nnz SDDMM values (O(nnz)) and hands out a view that
autograd adopts as ``.grad`` without a copy. A fresh dense tensor per step would cost a
zero-fill of out x in floats, and tensors of 32 MB and more come fresh from the OS every
time (page faults): 4096x4096 at 5 %, batch 128, one thread, took 41 ms per forward +
backward with the buffer and 56 ms with a fresh tensor.
The buffer is reused only while nothing else holds it; gradient accumulation without
``zero_grad(set_to_none=True)``, a layer used twice in one graph or a kept reference to
``.grad`` fall back to a fresh zero-filled tensor (correct, slower). The optimizer's own
step would stay dense, O(out x in) per step; for SGD, ``values_sgd`` steps the non-zeros only.

With sparse dW the gradient of a missing weight is zero, so its momentum only decays.
Sparse momentum's growth reads exactly that momentum (RigL's reads the gradient), hence
``dense_weight_gradient=True``: the full dW = dY^T X (a dense GEMM written into the same
buffer), switched on for a "momentum window" before each mask update.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.autograd.function import once_differentiable

from ..errors import UserError
from . import compiled

# References to a tensor's memory. A private torch API: where a torch lacks it, every
# backward gets a fresh gradient tensor (correct, slower) instead of the reused buffer.
_STORAGE_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)


def _storage_use_count(tensor: torch.Tensor) -> int:
    return _STORAGE_USE_COUNT(tensor.untyped_storage()._cdata)


def row_offsets(rows: torch.Tensor, size: int) -> torch.Tensor:
    """CSR row offsets (int64) of sorted row indices (the linear and the convolution patterns)."""
    offsets = torch.zeros(size + 1, dtype=torch.int64, device=rows.device)
    offsets[1:] = torch.bincount(rows, minlength=size).cumsum(0)
    return offsets


def _csr(
    offsets: torch.Tensor, columns: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]
) -> torch.Tensor:
    """A CSR tensor that shares ``values``, so in-place refreshes reach it."""
    with (
        warnings.catch_warnings()
    ):  # torch's "CSR support is in beta" notice asks nothing of the user
        warnings.filterwarnings(
            "ignore", message="Sparse CSR tensor support is in beta", category=UserWarning
        )
        return torch.sparse_csr_tensor(offsets, columns, values, shape, check_invariants=False)


class _TorchCSR:
    """The fallback kernels' CSR copies of W and W^T (values gathered from the dense weight) and the
    SDDMM output."""

    def __init__(self, layout: SparseLinearLayout, weight: torch.Tensor) -> None:
        index_dtype = torch.int32 if layout.flat_index.numel() < 2**31 else torch.int64
        values = weight.detach().reshape(-1)[layout.flat_index]
        offsets, columns = layout.offsets.to(index_dtype), layout.columns.to(index_dtype)
        shape = (layout.out_features, layout.in_features)
        self.weight = _csr(offsets, columns, values, shape)
        self.transposed = _csr(
            layout.transposed_offsets.to(index_dtype),
            layout.transposed_columns.to(index_dtype),
            values[layout.transpose_permutation],
            shape[::-1],
        )
        self.gradient = _csr(
            offsets, columns, torch.empty_like(values), shape
        )  # never leaves the layout

    @torch.no_grad()
    def refresh_values(self, weight: torch.Tensor, layout: SparseLinearLayout) -> None:
        """Copy the dense weight's values at the non-zeros into both CSRs (O(nnz), in place)."""
        values = self.weight.values()
        torch.index_select(weight.detach().reshape(-1), 0, layout.flat_index, out=values)
        torch.index_select(values, 0, layout.transpose_permutation, out=self.transposed.values())


class SparseLinearLayout:
    """The CSR pattern of one masked [out, in] weight, of its transpose, and the products through
    them.

    Build one per mask (cheap: a nonzero scan and a sort of the nnz). The values stay in the
    dense weight: the compiled kernels (``compiled.py``) read them there in place; where
    those are unavailable (no compiler, not float32 on the CPU) torch's CSR operations run
    on CSR copies refreshed from the weight before each product.
    """

    def __init__(self, weight: torch.Tensor, mask: torch.Tensor) -> None:
        if weight.dim() != 2 or tuple(mask.shape) != tuple(weight.shape):
            raise UserError(
                f"a sparse linear layout needs a 2-D weight and a mask of its shape, got weight "
                f"{tuple(weight.shape)} and mask {tuple(mask.shape)}; pass the Sparsifier's masks "
                "of this model."
            )
        self.out_features, self.in_features = weight.shape
        mask = mask.to(device=weight.device, dtype=torch.bool)
        # Row-major order of the non-zeros: W's CSR order.
        rows, cols = mask.nonzero(as_tuple=True)
        self.flat_index = rows * self.in_features + cols
        self.offsets = row_offsets(rows, self.out_features)
        self.columns = cols.to(torch.int32)
        # W^T's k-th non-zero is W's transpose_permutation[k]: a stable sort by column keeps rows
        # ascending.
        self.transpose_permutation = torch.argsort(cols, stable=True)
        self.transposed_offsets = row_offsets(cols[self.transpose_permutation], self.in_features)
        self.transposed_columns = rows[self.transpose_permutation].to(torch.int32)
        self.compiled = compiled.usable(weight)
        self._torch_csr = None if self.compiled else _TorchCSR(self, weight)
        if (
            self.compiled
        ):  # W's values as the last forward read them, for the backward's W^T product
            self._values = torch.empty(self.flat_index.numel(), dtype=torch.float32)
            self._sums = torch.empty_like(self._values)  # the SDDMM's products, pattern order
            self._transposed_value_index = self.transpose_permutation.to(torch.int32)
        self._gradient: torch.Tensor | None = (
            None  # flat dense dW buffer, allocated by the first backward
        )
        self._gradient_idle_count: int | None = None
        self._gradient_dirty = False  # holds values outside the mask (after a dense dW)

    def __getstate__(self) -> dict[str, torch.Tensor]:
        """CSR tensors cannot be deep-copied: a copied or pickled model keeps the mask and
        rebuilds."""
        mask = torch.zeros(
            self.out_features * self.in_features, dtype=torch.bool, device=self.flat_index.device
        )
        mask[self.flat_index] = True
        shape = (self.out_features, self.in_features)
        return {
            "weight": torch.zeros(shape, dtype=self._dtype, device=mask.device),
            "mask": mask.view(shape),
        }

    def __setstate__(self, state: dict[str, torch.Tensor]) -> None:
        self.__init__(state["weight"], state["mask"])

    @property
    def _dtype(self) -> torch.dtype:
        return torch.float32 if self._torch_csr is None else self._torch_csr.weight.dtype

    def _use_compiled(self, *tensors: torch.Tensor | None) -> bool:
        return self.compiled and compiled.usable(*tensors)

    def _csr_for(self, weight: torch.Tensor) -> _TorchCSR:
        """The fallback's CSRs, built on first need (a layout made for float32 that now sees another
        dtype)."""
        if self._torch_csr is None or self._torch_csr.weight.dtype != weight.dtype:
            self._torch_csr = _TorchCSR(self, weight)
        return self._torch_csr

    def multiply(
        self,
        weight: torch.Tensor,
        input_t: torch.Tensor,
        bias: torch.Tensor | None,
        out: torch.Tensor,
    ) -> torch.Tensor:
        """Y^T = W X^T (+ b) into ``out``: ``input_t`` [in, batch] and ``out`` [out, batch],
        both contiguous."""
        if self._use_compiled(weight, input_t, bias):
            return compiled.spmm(
                self.offsets,
                self.columns,
                weight.detach(),
                self.in_features,
                1,
                input_t,
                None if bias is None else bias.detach().contiguous(),
                out,
                values_out=self._values,
            )
        csr = self._csr_for(weight)
        csr.refresh_values(weight, self)  # always: O(nnz), and a stale CSR would be a silent error
        if bias is None:
            return torch.mm(csr.weight, input_t, out=out)
        return torch.addmm(bias.detach().unsqueeze(1), csr.weight, input_t, out=out)

    def multiply_transposed(
        self, weight: torch.Tensor, grad_output_t: torch.Tensor
    ) -> torch.Tensor:
        """dX^T = W^T dY^T: ``grad_output_t`` [out, batch] contiguous -> [in, batch]."""
        if self._use_compiled(weight, grad_output_t):
            out = torch.empty(self.in_features, grad_output_t.shape[1], dtype=grad_output_t.dtype)
            # The values this step's forward recorded: the weight cannot have changed since
            # (autograd's version check), and reading W^T from the dense weight would jump a row
            # length per entry.
            return compiled.spmm(
                self.transposed_offsets,
                self.transposed_columns,
                weight.detach(),
                1,
                self.in_features,
                grad_output_t,
                None,
                out,
                values=self._values,
                value_index=self._transposed_value_index,
            )
        return torch.mm(
            self._csr_for(weight).transposed, grad_output_t
        )  # refreshed by this step's forward

    def weight_gradient(
        self, grad_output_t: torch.Tensor, input_t: torch.Tensor, dense: bool
    ) -> torch.Tensor:
        """dW = dY^T X as an [out, in] tensor: at the non-zeros only (zeros elsewhere) or, if
        ``dense``, in full.

        ``grad_output_t`` is dY^T [out, batch], ``input_t`` is X^T [in, batch], both contiguous.
        """
        buffer = self._free_gradient_buffer(grad_output_t.dtype)
        reused = buffer is not None
        if not reused:  # still held by an earlier gradient: a fresh one (a dense allocation)
            buffer = (torch.empty if dense else torch.zeros)(
                self.out_features * self.in_features,
                dtype=grad_output_t.dtype,
                device=grad_output_t.device,
            )
        elif self._gradient_dirty and not dense:
            buffer.zero_()
            self._gradient_dirty = False
        # A new view each time: autograd adopts it as .grad without copying when nothing else holds
        # it.
        target = buffer.view(self.out_features, self.in_features)
        if dense:
            torch.mm(grad_output_t, input_t.t(), out=target)
            self._gradient_dirty = self._gradient_dirty or reused
        elif self._use_compiled(grad_output_t, input_t):
            compiled.sddmm(
                self.offsets,
                self.columns,
                grad_output_t,
                input_t,
                buffer,
                self.in_features,
                1,
                sums=self._sums,
            )
        else:
            csr = self._csr_for(grad_output_t)
            torch.sparse.sampled_addmm(
                csr.weight, grad_output_t, input_t.t(), beta=0.0, out=csr.gradient
            )
            buffer.index_copy_(0, self.flat_index, csr.gradient.values())
        return target

    def _free_gradient_buffer(self, dtype: torch.dtype) -> torch.Tensor | None:
        """The persistent dW buffer if no gradient handed out earlier still uses it, else None."""
        if _STORAGE_USE_COUNT is None:
            return None
        if self._gradient is None or self._gradient.dtype != dtype:
            self._gradient = torch.zeros(
                self.out_features * self.in_features, dtype=dtype, device=self.flat_index.device
            )
            self._gradient_idle_count = _storage_use_count(self._gradient)
            self._gradient_dirty = False
        return (
            self._gradient
            if _storage_use_count(self._gradient) == self._gradient_idle_count
            else None
        )


def autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 knows no device argument
        return (
            torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()
        )


class SparseLinearFunction(torch.autograd.Function):
    """Y = X W^T + b with W given by a :class:`SparseLinearLayout`; X is [batch, in], any strides.

    The dense weight is an input so that its gradient goes through autograd, and it is saved
    so that autograd's version check catches a weight changed between forward and backward,
    as it would for ``F.linear``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layout: SparseLinearLayout,
        dense_weight_gradient: bool,
    ) -> torch.Tensor:
        input_t = input.t().contiguous()  # free when the input is feature-major
        # [batch, out] with feature-major memory: the next layer reads Y^T without a copy. A
        # tensor of its own, not a view made here, so that in-place ops (ReLU(inplace=True))
        # may modify it.
        batch = input.shape[0]
        output = torch.empty_strided(
            (batch, layout.out_features), (1, batch), dtype=input.dtype, device=input.device
        )
        layout.multiply(weight, input_t, bias, out=output.t())
        ctx.save_for_backward(input_t, weight)
        ctx.layout = layout
        ctx.dense_weight_gradient = dense_weight_gradient
        return output

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        # The forward ran in float32; a backward called under autocast must too (torch's CSR
        # products have no bfloat16 kernels). Entering the context costs 5 us: only when needed.
        if not autocast_enabled(grad_output.device.type):
            return SparseLinearFunction._backward(ctx, grad_output.float())
        with torch.autocast(grad_output.device.type, enabled=False):
            return SparseLinearFunction._backward(ctx, grad_output.float())

    @staticmethod
    def _backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input_t, weight = ctx.saved_tensors
        layout: SparseLinearLayout = ctx.layout
        grad_output_t = grad_output.t().contiguous()  # free when the gradient arrives feature-major
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = layout.multiply_transposed(weight, grad_output_t).t()
        if ctx.needs_input_grad[1]:
            grad_weight = layout.weight_gradient(grad_output_t, input_t, ctx.dense_weight_gradient)
        if ctx.needs_input_grad[2]:
            grad_bias = grad_output_t.sum(1)
        return grad_input, grad_weight, grad_bias, None, None


def masked_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    layout: SparseLinearLayout,
    dense_weight_gradient: bool = False,
) -> torch.Tensor:
    """``F.linear(input, weight * mask, bias)`` through sparse kernels; input [*, in] -> [*, out].

    The weight's gradient is zero outside the mask unless ``dense_weight_gradient``.
    """
    if input.shape[-1] != layout.in_features:  # as F.linear would say it
        rows = input.numel() // max(1, input.shape[-1])
        raise RuntimeError(
            f"mat1 and mat2 shapes cannot be multiplied ({rows}x{input.shape[-1]} and "
            f"{layout.in_features}x{layout.out_features})"
        )
    if input.dim() == 2:
        return SparseLinearFunction.apply(input, weight, bias, layout, dense_weight_gradient)
    flat = input.reshape(-1, layout.in_features)
    output = SparseLinearFunction.apply(flat, weight, bias, layout, dense_weight_gradient)
    return output.reshape(*input.shape[:-1], layout.out_features)

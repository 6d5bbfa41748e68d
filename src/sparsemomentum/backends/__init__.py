"""Execution backends: faster kernels for the same masked model (the math is unchanged)."""

from . import values_sgd
from .layers import SparseLayersHandle, sparsify_layers
from .sparse_conv import SparseConv2dFunction, SparseConvLayout, masked_conv2d
from .sparse_linear import SparseLinearFunction, SparseLinearLayout, masked_linear

__all__ = [
    "values_sgd",
    "SparseLayersHandle",
    "sparsify_layers",
    "SparseConv2dFunction",
    "SparseConvLayout",
    "masked_conv2d",
    "SparseLinearFunction",
    "SparseLinearLayout",
    "masked_linear",
]

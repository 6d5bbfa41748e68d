"""Execution backends: faster kernels for the same masked model (the math is unchanged).

Importing this package registers ``backend="sparse"`` with the core.
"""

from . import values_sgd
from .layers import SparseLayersHandle, sparsify_layers
from .sparse import SparseBackend
from .sparse_conv import SparseConv2dFunction, SparseConvLayout, masked_conv2d
from .sparse_linear import SparseLinearFunction, SparseLinearLayout, masked_linear

__all__ = [
    "SparseBackend", "SparseConv2dFunction", "SparseConvLayout", "SparseLayersHandle",
    "SparseLinearFunction", "SparseLinearLayout", "masked_conv2d", "masked_linear",
    "sparsify_layers", "values_sgd",
]  # fmt: skip

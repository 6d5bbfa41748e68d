"""Execution backends: faster kernels for the same masked model (the math is unchanged)."""
from . import values_sgd
from .sparse_linear import (
    SparseLinearFunction,
    SparseLinearHandle,
    SparseLinearLayout,
    masked_linear,
    sparsify_linear_layers,
)

__all__ = ["values_sgd", "SparseLinearFunction", "SparseLinearHandle", "SparseLinearLayout", "masked_linear", "sparsify_linear_layers"]

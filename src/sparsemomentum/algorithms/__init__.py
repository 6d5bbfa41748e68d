"""Training methods: small dataclasses that choose parts of the shared loop in ``core``."""

from .dense import Dense
from .dsr import DSR
from .gmp import GMP
from .registry import (
    METHODS,
    MethodOption,
    create_sparsifier,
    method_options,
    register_method,
    resolved_options,
)
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .sparse_momentum import SparseMomentum
from .static import Static

__all__ = [
    "DSR", "Dense", "GMP", "METHODS", "MethodOption", "RigL", "SET", "SNIP", "SparseMomentum",
    "Static", "create_sparsifier", "method_options", "register_method", "resolved_options",
]  # fmt: skip

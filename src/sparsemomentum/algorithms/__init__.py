"""Training methods: small classes that choose parts of the shared loop in ``core``."""

from .dense import Dense
from .dsr import DSR
from .gmp import GMP
from .registry import METHODS, create_sparsifier, resolved_options
from .rigl import RigL
from .set import SET
from .snip import SNIP
from .sparse_momentum import SparseMomentum
from .static import Static

__all__ = [
    "DSR",
    "Dense",
    "GMP",
    "METHODS",
    "RigL",
    "SET",
    "SNIP",
    "SparseMomentum",
    "Static",
    "create_sparsifier",
    "resolved_options",
]

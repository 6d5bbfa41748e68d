"""Training methods: small classes that choose parts of the shared loop in ``core``."""
from .dense import Dense
from .registry import METHODS, create_sparsifier
from .sparse_momentum import SparseMomentum

__all__ = ["Dense", "METHODS", "SparseMomentum", "create_sparsifier"]

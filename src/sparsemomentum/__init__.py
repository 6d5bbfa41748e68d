"""sparsemomentum: train sparse networks from scratch with sparse momentum and its peers.

import sparsemomentum as sm
sparsifier = sm.SparseMomentum(model, optimizer, density=0.05, total_steps=steps,
                               steps_per_epoch=len(loader))
...  loss.backward(); sparsifier.step()          # in place of optimizer.step()
sparsifier.update_masks()                          # at the end of every epoch
"""

from . import backends  # noqa: F401  (registers backend="sparse")
from .algorithms import (
    DSR,
    GMP,
    METHODS,
    SET,
    SNIP,
    Dense,
    RigL,
    SparseMomentum,
    Static,
    create_sparsifier,
    register_method,
)
from .backends import SparseBackend
from .core.backend import Backend, MaskedBackend, register_backend
from .core.dynamic import DynamicSparsifier
from .core.initialisation import sparse_kaiming_
from .core.sparsifier import Sparsifier, UpdateReport
from .errors import UserError
from .export import load_exported
from .models import create_model, list_models, register_model

__version__ = "0.1.0"

__all__ = [
    "DSR", "GMP", "METHODS", "SET", "SNIP", "Backend", "Dense", "DynamicSparsifier",
    "MaskedBackend", "RigL", "SparseBackend", "SparseMomentum", "Sparsifier", "Static",
    "UpdateReport", "UserError", "create_model", "create_sparsifier", "list_models",
    "load_exported", "register_backend", "register_method", "register_model", "sparse_kaiming_",
]  # fmt: skip

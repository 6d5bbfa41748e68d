"""The sparse backend: masked layers on sparse kernels, SGD on the active values only.

``backend="sparse"`` (registered here) switches every masked plain ``nn.Linear`` and
``nn.Conv2d`` onto the kernels of ``sparse_linear.py`` / ``sparse_conv.py`` where they beat
dense ones (``layers.py`` decides, again at every mask update), and steps their weights with
the O(non-zeros) SGD of ``values_sgd.py``. Weight gradients are computed at the non-zeros
only, except in the steps the sparsifier marks with ``set_dense_gradient(True)``: the
momentum window before a momentum-growth update, the last step before a gradient-growth one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..core.backend import Backend, MaskedBackend, Masks, register_backend
from . import values_sgd
from .layers import DEFAULT_MIN_WEIGHTS, SparseLayersHandle, sparsify_layers


class SparseBackend(MaskedBackend):
    """Sparse kernels where they win; the masked backend's multiply for the other layers.

    ``max_density``: layers above it stay dense (None: the measured break-even of each layer
    kind, ``layers.DEFAULT_MAX_DENSITY``); ``min_weights``: Linear layers smaller than this
    stay dense (fixed per-call costs).
    """

    name = "sparse"
    uses_gradient_window = True

    def __init__(self, max_density: float | None = None, min_weights: int = DEFAULT_MIN_WEIGHTS):
        self.max_density = max_density
        self.min_weights = min_weights
        self.kernels: SparseLayersHandle | None = None
        self.values_sgd: values_sgd.ValuesOnlySGD | None = None
        self.dense_gradient = True

    def attach(self, model: nn.Module, optimizer, weights, masks: Masks) -> None:
        super().attach(model, optimizer, weights, masks)
        self.kernels = sparsify_layers(
            model, masks, max_density=self.max_density, min_weights=self.min_weights
        )
        if values_sgd.supports(optimizer):
            self.values_sgd = values_sgd.ValuesOnlySGD(optimizer, self.kernels, weights)

    def step(self, masks: Masks, scaler: torch.amp.GradScaler | None = None) -> bool:
        if self.values_sgd is None or scaler is not None:
            self.sync_optimizer_state()
            return super().step(masks, scaler)
        # Sparse layers step their non-zeros only (and, in the momentum window, the missing
        # weights' momenta); their missing weights never move.
        self.values_sgd.step(dense_gradient=self.dense_gradient)
        self.apply_masks(masks, skip=self.kernels.sparse)
        return True

    def stepped_elsewhere(self, masks: Masks) -> None:
        Backend.stepped_elsewhere(self, masks)  # refused: the values-only step is this backend's

    def masks_changed(self, masks: Masks) -> None:
        # The decay the missing momenta owe was run up under the old layouts: settle it
        # before they go (update_masks has done so already; masks set by hand have not).
        self.sync_optimizer_state()
        super().masks_changed(masks)
        if self.kernels is not None:
            self.kernels.rebuild(masks)

    def set_dense_gradient(self, needed: bool) -> None:
        self.dense_gradient = needed
        self.kernels.set_dense_weight_gradient(needed)

    def sync_optimizer_state(self) -> None:
        if self.values_sgd is not None:
            self.values_sgd.flush()

    def summary(self) -> str:
        dense = "; ".join(f"{name} ({why})" for name, why in self.kernels.dense.items())
        return (
            f"sparse kernels: {', '.join(self.kernels.sparse) or 'none'}; dense: {dense or 'none'}"
        )

    def state_dict(self) -> dict[str, Any]:
        pending = dict(self.values_sgd.pending_decay) if self.values_sgd is not None else {}
        return {"pending_momentum_decay": pending}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.values_sgd is not None:
            self.values_sgd.pending_decay.update(state["pending_momentum_decay"])


register_backend("sparse", SparseBackend)

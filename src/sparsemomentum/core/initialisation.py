"""Initial weights for the connections a sparse layer keeps.

A layer initialised for its dense fan-in and then masked to density ``d`` passes on about
``d`` of the signal's variance. In a deep ReLU network at 5 % the forward signal and the
gradients shrink about twentyfold per layer: an MLP with four or eight hidden layers of 300
units stays at loss ln 10 for 20 epochs under every method on Fashion-MNIST
(docs/results/analysis.md). Kaiming's rule applied to the fan-in each layer keeps (density x
dense fan-in) keeps the variance per layer, and those networks train from the first step.
The paper's networks are shallow and train with the model's own initialisation, so this is
opt-in (``--init sparse-kaiming``) and the recipes stay the paper's.
"""

from __future__ import annotations

import math

import torch

from .sparsifier import Sparsifier


def sparse_kaiming_(sparsifier: Sparsifier, generator: torch.Generator | None = None) -> None:
    """Redraw every sparse weight from N(0, 2 / kept fan-in) and zero the masked ones.

    The kept fan-in is the layer's density times the fan-in of one output unit (the
    elements of ``weight[0]``: ``in_features`` for Linear, ``in_channels x kernel`` for a
    convolution). The gain is ReLU's; call it before the first step, while the optimizer
    holds no state."""
    with torch.no_grad():
        for name, weight in sparsifier.weights.items():
            mask = sparsifier.masks[name]
            kept_fan_in = weight[0].numel() * mask.count_nonzero().item() / mask.numel()
            weight.normal_(0.0, math.sqrt(2.0 / max(kept_fan_in, 1.0)), generator=generator)
            weight.mul_(mask)
    sparsifier.masks_changed()

"""Top-k choices on masks: the only two element-level operations an update needs.

Both are single vectorised ``topk`` calls over the flattened tensor; positions that are
not candidates get an infinite score so they can never be chosen, which makes the result
exact: ``k`` positions change, no more and no fewer.
"""
from __future__ import annotations

import torch


def drop_smallest(mask: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """A copy of ``mask`` with the ``count`` active positions of smallest score switched off."""
    if count <= 0:
        return mask.clone()
    candidates = torch.where(mask, scores, torch.full_like(scores, float("inf"))).flatten()
    chosen = torch.topk(candidates, count, largest=False, sorted=False).indices
    new_mask = mask.clone().flatten()
    new_mask[chosen] = False
    return new_mask.view_as(mask)


def grow_largest(mask: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """A copy of ``mask`` with the ``count`` missing positions of largest score switched on."""
    if count <= 0:
        return mask.clone()
    candidates = torch.where(mask, torch.full_like(scores, float("-inf")), scores).flatten()
    chosen = torch.topk(candidates, count, largest=True, sorted=False).indices
    new_mask = mask.clone().flatten()
    new_mask[chosen] = True
    return new_mask.view_as(mask)


def random_mask(shape: torch.Size, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """A boolean mask with exactly ``count`` uniformly random positions switched on."""
    numel = int(torch.Size(shape).numel())
    positions = torch.randperm(numel, generator=generator)[:count]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[positions] = True
    return mask.view(shape).to(device)

"""Top-k choices on masks: the only two element-level operations an update needs.

Both are exact: ``k`` positions change, no more and no fewer (ties at the k-th score are
broken by ``topk``). Both avoid a ``topk`` over the whole layer, which on a 4096x4096
layer took about 0.2 s per call on this CPU, most of a mask update:

* dropping ranks only the active positions (a few per cent of the layer);
* growing ranks a candidate set: the positions scoring above a threshold taken from a
  strided sample, low enough that at least ``k`` positions pass it; the k largest of all
  are then among them (when fewer pass, the whole layer is ranked instead).
"""

from __future__ import annotations

import torch

# Growth ranks the whole layer when it has fewer positions than this: a sample would not pay.
_SAMPLED_THRESHOLD_MIN = 1 << 16
_SAMPLE_SIZE = 1 << 14


def drop_smallest(mask: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """A copy of ``mask`` with the ``count`` active positions of smallest score switched off."""
    new_mask = mask.clone().flatten()
    if count <= 0:
        return new_mask.view_as(mask)
    active = new_mask.nonzero().squeeze(1)
    ranked = torch.topk(
        scores.flatten()[active], min(count, active.numel()), largest=False, sorted=False
    ).indices
    new_mask[active[ranked]] = False
    return new_mask.view_as(mask)


def grow_largest(mask: torch.Tensor, scores: torch.Tensor, count: int) -> torch.Tensor:
    """A copy of ``mask`` with the ``count`` missing positions of largest score switched on."""
    new_mask = mask.clone().flatten()
    if count <= 0:
        return new_mask.view_as(mask)
    flat_scores = scores.flatten()
    candidates = _candidates_above_sampled_threshold(new_mask, flat_scores, count)
    if candidates is None:
        candidates = (~new_mask).nonzero().squeeze(1)
    ranked = torch.topk(
        flat_scores[candidates], min(count, candidates.numel()), largest=True, sorted=False
    ).indices
    new_mask[candidates[ranked]] = True
    return new_mask.view_as(mask)


def _candidates_above_sampled_threshold(
    flat_mask: torch.Tensor, flat_scores: torch.Tensor, count: int
) -> torch.Tensor | None:
    """Missing positions scoring above a threshold that at least ``count`` of them pass, or None.

    The threshold is the score that a strided sample of the missing positions puts at about
    2x ``count`` positions from the top; whatever it is, the result is exact when at least ``count``
    missing positions score above it, since the k-th largest missing score then does too.
    """
    numel = flat_scores.numel()
    missing = numel - int(torch.count_nonzero(flat_mask))
    if numel < _SAMPLED_THRESHOLD_MIN or 4 * count > missing:
        return None
    stride = numel // _SAMPLE_SIZE
    sample = flat_scores[::stride][~flat_mask[::stride]]
    rank = int(2 * count * sample.numel() / missing) + 8
    if rank >= sample.numel():
        return None
    threshold = torch.topk(sample, rank + 1, largest=True, sorted=True).values[-1]
    candidates = ((flat_scores > threshold) & ~flat_mask).nonzero().squeeze(1)
    return candidates if candidates.numel() >= count else None


def random_mask(
    shape: torch.Size, count: int, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A boolean mask with exactly ``count`` uniformly random positions switched on."""
    numel = int(torch.Size(shape).numel())
    positions = torch.randperm(numel, generator=generator)[:count]
    mask = torch.zeros(numel, dtype=torch.bool)
    mask[positions] = True
    return mask.view(shape).to(device)

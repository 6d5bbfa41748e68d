"""Normalisation and augmentation of whole batches of images (N, C, H, W).

Augmentation draws every random number from the ``torch.Generator`` it is given, so a run
is reproduced exactly by its seed, and it transforms the whole batch with one gather
instead of a Python loop over samples, so it costs next to nothing beside the model.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .splits import BatchTransform


def normalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 images (..., C, H, W) to float32 ``(x / 255 - mean) / std`` per channel.

    Works in place on the float copy, so a whole data set needs one float buffer, not three.
    """
    shape = (len(mean), 1, 1)
    mean_tensor = torch.tensor(mean, dtype=torch.float32, device=images.device).view(shape)
    std_tensor = torch.tensor(std, dtype=torch.float32, device=images.device).view(shape)
    return images.float().div_(255.0).sub_(mean_tensor).div_(std_tensor)


def pad_crop_flip(padding: int = 4, mode: str = "reflect") -> BatchTransform:
    """Shift each image by up to ``padding`` pixels and mirror it with probability 1/2.

    The standard CIFAR augmentation: pad by ``padding`` on every side (``mode`` as in
    ``torch.nn.functional.pad``: "reflect", or "constant" for zeros), take a random crop
    of the original size, flip it horizontally. Offsets and flips are drawn per sample.
    On normalised inputs "reflect" is exactly the reference code's pad-before-normalise
    (reflection commutes with the per-channel affine map); "constant" pads with the mean colour.
    """

    def augment(inputs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        count, channels, height, width = inputs.shape
        device = inputs.device
        offsets = _randint(2 * padding + 1, (2, count), generator).to(device)
        flips = _randint(2, (count,), generator).to(device).bool()
        padded = F.pad(inputs, (padding, padding, padding, padding), mode=mode)
        rows = offsets[0, :, None] + torch.arange(height, device=device)  # (N, H)
        columns = torch.arange(width, device=device)
        # Mirroring the crop reads its columns right to left: one index table does both.
        columns = (
            torch.where(flips[:, None], columns.flip(0), columns) + offsets[1, :, None]
        )  # (N, W)
        # One gather over each flattened padded plane (several times faster than 4-d fancy
        # indexing).
        pixels = (rows[:, :, None] * padded.shape[-1] + columns[:, None, :]).view(
            count, 1, height * width
        )
        crops = padded.flatten(2).gather(2, pixels.expand(count, channels, height * width))
        return crops.view(count, channels, height, width)

    return augment


def _randint(high: int, size: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """Integers in [0, high) from ``generator`` on its own device (the global RNG without one)."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randint(high, size, generator=generator, device=device)

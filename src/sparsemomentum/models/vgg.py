"""The CIFAR VGG16s of SNIP (Lee et al. 2019), configurations C and D, as in the sparse-momentum
reference code.

Both keep VGG16's thirteen convolutions with BatchNorm, shrink the classifier to two hidden
layers of 512 with BatchNorm in place of dropout, and size its input for 32x32 images.
In configuration C the last convolution of the three deepest stages is 1x1. Like the
reference, those 1x1 convolutions keep padding 1, so each grows its map by two pixels:
the final map is 2x2 (2048 features into the classifier) instead of D's 1x1 (512).
"""

from __future__ import annotations

import torch
from torch import nn

from ..inputs import COLOUR_32
from .registry import register_model

# Stages of (kernel size, out channels) convolutions, each stage followed by a 2x2 max-pool.
_D = ((3, 64), (3, 64)), ((3, 128), (3, 128)), ((3, 256),) * 3, ((3, 512),) * 3, ((3, 512),) * 3
_C = _D[:2] + tuple(stage[:2] + ((1, stage[2][1]),) for stage in _D[2:])


class VGG16Cifar(nn.Module):
    """VGG16 for 32x32 inputs; ``stages`` lists each stage's (kernel size, out channels)
    convolutions."""

    def __init__(
        self, stages: tuple[tuple[tuple[int, int], ...], ...], num_classes: int = 10
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels, size = 3, 32
        for stage in stages:
            for kernel, out_channels in stage:
                layers += [
                    nn.Conv2d(in_channels, out_channels, kernel, padding=1),
                    nn.BatchNorm2d(out_channels),
                    nn.ReLU(inplace=True),
                ]
                in_channels, size = out_channels, size + 3 - kernel  # padding 1 on every side
            layers.append(nn.MaxPool2d(2))
            size //= 2
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels * size * size, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Linear(512, 512),
            nn.ReLU(inplace=True),
            nn.BatchNorm1d(512),
            nn.Linear(512, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_model("vgg16-c", inputs=(COLOUR_32,))
def vgg16_c(num_classes: int = 10) -> nn.Module:
    return VGG16Cifar(_C, num_classes)


@register_model("vgg16-d", inputs=(COLOUR_32,))
def vgg16_d(num_classes: int = 10) -> nn.Module:
    return VGG16Cifar(_D, num_classes)

"""The CIFAR AlexNets of SNIP (Lee et al. 2019) that sparse momentum compares against.

They follow the sparse-momentum reference code: five convolutions whose strides (all 2)
shrink a 32x32 image to 1x1x256, BatchNorm after every layer but the last, and a
classifier whose hidden width is 1024 ("s", small) or 2048 ("b", big). Only the classifier
widens for "b"; the convolutions are the same in both.
"""

from __future__ import annotations

import torch
from torch import nn

from ..inputs import COLOUR_32
from .registry import register_model

# (out channels, kernel, padding) of the five convolutions; every one has stride 2.
_CONVS = ((96, 11, 2), (256, 5, 2), (384, 3, 1), (384, 3, 1), (256, 3, 1))


class AlexNetCifar(nn.Module):
    """AlexNet for 32x32 inputs; ``hidden`` is the width of the two hidden fully connected
    layers."""

    def __init__(self, hidden: int, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for out_channels, kernel, padding in _CONVS:
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=2, padding=padding),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


@register_model("alexnet-s", inputs=(COLOUR_32,))
def alexnet_s(num_classes: int = 10) -> nn.Module:
    return AlexNetCifar(1024, num_classes)


@register_model("alexnet-b", inputs=(COLOUR_32,))
def alexnet_b(num_classes: int = 10) -> nn.Module:
    return AlexNetCifar(2048, num_classes)

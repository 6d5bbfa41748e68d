"""Wide residual networks (Zagoruyko & Komodakis 2016), CIFAR version, as in the sparse-momentum
reference code.

WRN-d-k: a 3x3 stem of 16 channels, three stages of (d - 4) / 6 pre-activation basic
blocks with 16k, 32k and 64k channels (strides 1, 2, 2), then BatchNorm, ReLU, global
average pooling and one linear layer. Dropout sits between a block's two convolutions; it
draws its mask in parallel from a hash of (seed, index) (``backends.dropout``), the same
distribution as ``nn.Dropout`` but, on the CPU, a twentieth of its time.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..backends.dropout import Dropout
from ..errors import UserError
from ..inputs import COLOUR_32, COLOUR_224, GREY_28
from .registry import register_model


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-dropout-conv3x3 with an identity or 1x1-conv shortcut.

    When the shape changes, the shortcut convolution reads the pre-activated input,
    so both branches start from the same BN-ReLU output.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = (
            None
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(self.dropout(torch.relu(self.bn2(out))))
        return out + (x if self.shortcut is None else self.shortcut(activated))


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor`` for 32x32 inputs."""

    def __init__(
        self,
        depth: int,
        widen_factor: int,
        num_classes: int = 10,
        dropout: float = 0.3,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise UserError(
                "a wide ResNet's depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...); got "
                f"{depth}."
            )
        blocks = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        stages: list[nn.Module] = []
        in_channels = 16
        for width, stride in zip(widths, (1, 2, 2)):
            stage = []
            for index in range(blocks):
                stage.append(
                    WideBasicBlock(in_channels, width, stride if index == 0 else 1, dropout)
                )
                in_channels = width
            stages.append(nn.Sequential(*stage))
        self.stages = nn.Sequential(*stages)
        self.bn = nn.BatchNorm2d(in_channels)
        self.fc = nn.Linear(in_channels, num_classes)
        self._initialise()

    def _initialise(self) -> None:
        """The reference's init: He-normal over fan-out for convolutions, zero linear bias."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn(self.stages(self.conv1(x))))
        return self.fc(out.mean(dim=(2, 3)))


def wide_resnet(
    depth: int, widen_factor: int, num_classes: int = 10, dropout: float = 0.3, in_channels: int = 3
) -> WideResNet:
    """Any WRN-depth-widen_factor, registered or not."""
    return WideResNet(depth, widen_factor, num_classes, dropout, in_channels)


def _register(depth: int, widen_factor: int) -> None:
    @register_model(f"wrn-{depth}-{widen_factor}", inputs=(COLOUR_32, COLOUR_224))
    def build(num_classes: int = 10, dropout: float = 0.3) -> nn.Module:
        return WideResNet(depth, widen_factor, num_classes, dropout)


def _register_small(depth: int, widen_factor: int) -> None:
    """A small WRN for 28x28 grey images (MNIST, Fashion-MNIST): the analysis of depth and size."""

    @register_model(f"wrn-{depth}-{widen_factor}-mnist", inputs=(GREY_28,))
    def build(num_classes: int = 10, dropout: float = 0.0) -> nn.Module:
        return WideResNet(depth, widen_factor, num_classes, dropout, in_channels=1)


for _depth, _width in ((10, 1), (16, 1), (10, 2), (16, 2)):
    _register_small(_depth, _width)

# The paper's sizes, plus WRN-28-2: the CIFAR-10 network of dynamic sparse
# reparameterization (Mostafa & Wang 2019).
_register(16, 8)
_register(16, 10)
_register(22, 8)
_register(28, 2)

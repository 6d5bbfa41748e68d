"""The paper's MNIST models (LeCun et al.; the Caffe variant of LeNet-5 used by SNIP)."""

from __future__ import annotations

import torch
from torch import nn

from ..inputs import GREY_28
from .registry import register_model


class LeNet300100(nn.Module):
    """784-300-100-10 multilayer perceptron with ReLU."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.fc1(x.flatten(1)))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5Caffe(nn.Module):
    """conv 20@5x5 -> maxpool -> conv 50@5x5 -> maxpool -> fc 800-500 -> fc 500-10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc3 = nn.Linear(50 * 4 * 4, 500)
        self.fc4 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2)
        x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.relu(self.fc3(x.flatten(1)))
        return self.fc4(x)


class MLP(nn.Module):
    """784 inputs, ``depth`` hidden ReLU layers of ``width`` units, 10 outputs: the family that
    grows LeNet-300-100 in depth and in width for the analysis of docs/results/analysis.md."""

    def __init__(self, width: int, depth: int, num_classes: int = 10) -> None:
        super().__init__()
        sizes = [28 * 28] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:
            x = torch.relu(layer(x))
        return self.out(x)


def _register_mlp(width: int, depth: int) -> None:
    @register_model(f"mlp-{width}x{depth}", inputs=(GREY_28,))
    def build(num_classes: int = 10) -> nn.Module:
        return MLP(width, depth, num_classes)


# Depth 2 to 8 at width 300, width 100 to 1000 at depth 2.
for _width, _depth in ((300, 2), (300, 4), (300, 8), (100, 2), (1000, 2)):
    _register_mlp(_width, _depth)


@register_model("lenet300-100", inputs=(GREY_28,))
def lenet300_100(num_classes: int = 10) -> nn.Module:
    return LeNet300100(num_classes)


@register_model("lenet5-caffe", inputs=(GREY_28,))
def lenet5_caffe(num_classes: int = 10) -> nn.Module:
    return LeNet5Caffe(num_classes)

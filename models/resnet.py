"""ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks), He et al. 2015.

3x224x224 input.  Laid out as torchvision does it ("v1.5"): the bottleneck's stride
sits on its 3x3 conv, and projection shortcuts are a strided 1x1 conv + BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or projection) shortcut."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            conv_bn(cin, width, 3, stride),
            conv_bn(width, cout, 3, act=None, branch_end=True),
        )
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus shortcut."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = nn.Sequential(
            conv_bn(cin, width, 1),
            conv_bn(width, width, 3, stride),
            conv_bn(width, cout, 1, act=None, branch_end=True),
        )
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn(cin, cout, 1, stride, act=None)


def _resnet(block: type[BasicBlock | Bottleneck], depths: tuple[int, ...]) -> nn.Module:
    layers: list[nn.Module] = [
        conv_bn(3, 64, 7, 2),  # 224 -> 112
        nn.MaxPool2d(3, 2, padding=1),  # -> 56
    ]
    cin = 64
    for stage, depth in enumerate(depths):
        width = 64 * 2**stage
        for i in range(depth):
            stride = 2 if stage > 0 and i == 0 else 1
            layers.append(block(cin, width, stride))
            cin = width * block.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 1000)]
    return nn.Sequential(*layers)


def resnet18() -> nn.Module:
    """ResNet-18: 11.7M parameters."""
    return _resnet(BasicBlock, (2, 2, 2, 2))


def resnet34() -> nn.Module:
    """ResNet-34: 21.8M parameters."""
    return _resnet(BasicBlock, (3, 4, 6, 3))


def resnet50() -> nn.Module:
    """ResNet-50: 25.6M parameters."""
    return _resnet(Bottleneck, (3, 4, 6, 3))


def resnet101() -> nn.Module:
    """ResNet-101: 44.5M parameters."""
    return _resnet(Bottleneck, (3, 4, 23, 3))

"""ResNet-18/34 (basic blocks) and ResNet-50/101 (bottlenecks), He et al. 2015.

3x224x224 input.  Laid out as torchvision does it ("v1.5"): the bottleneck's stride
sits on its 3x3 conv, and projection shortcuts are a strided 1x1 conv + BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn


class _ResidualBlock(nn.Module):
    """relu(body(x) + shortcut(x)); subclasses give the body and how much it widens (``expansion``)."""

    expansion = 1

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.body = self._body(cin, width, cout, stride)
        self.shortcut = _shortcut(cin, cout, stride)
        self.relu = nn.ReLU(inplace=True)

    @staticmethod
    def _body(cin: int, width: int, cout: int, stride: int) -> nn.Sequential:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class BasicBlock(_ResidualBlock):
    """Two 3x3 convs with an identity (or projection) shortcut."""

    expansion = 1

    @staticmethod
    def _body(cin: int, width: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            conv_bn(cin, width, 3, stride),
            conv_bn(width, cout, 3, act=None, branch_end=True),
        )


class Bottleneck(_ResidualBlock):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, plus shortcut."""

    expansion = 4

    @staticmethod
    def _body(cin: int, width: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            conv_bn(cin, width, 1),
            conv_bn(width, width, 3, stride),
            conv_bn(width, cout, 1, act=None, branch_end=True),
        )


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return conv_bn(cin, cout, 1, stride, act=None)


def _resnet(block: type[_ResidualBlock], depths: tuple[int, ...]) -> nn.Module:
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

"""EfficientNet-B0 (Tan & Le 2019), 3x224x224 input.

MBConv blocks: 1x1 expand -> kxk depthwise -> squeeze-and-excitation -> linear 1x1
projection, with SiLU (exported as Sigmoid * x) and a residual add when shapes allow.
Symmetric k//2 padding as in torchvision (not TensorFlow's "same"); stochastic depth
and dropout are training-only and vanish in eval mode.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn

# (expansion, kernel, first stride, output channels, repeats) for B0
_B0 = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


class SqueezeExcite(nn.Module):
    """x * sigmoid(W2 silu(W1 mean_hw(x))): GlobalAveragePool, two 1x1 convs, Mul."""

    def __init__(self, channels: int, squeezed: int):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            nn.SiLU(inplace=True),
            nn.Conv2d(squeezed, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class MBConv(nn.Module):
    """Mobile inverted bottleneck with SE (squeeze ratio 0.25 of the block input)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=nn.SiLU))
        self.residual = stride == 1 and cin == cout
        layers += [
            conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=nn.SiLU),
            SqueezeExcite(hidden, max(1, cin // 4)),
            conv_bn(hidden, cout, 1, act=None, branch_end=self.residual),
        ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0: 5.3M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    cin = 32
    for expand, kernel, stride, cout, repeats in _B0:
        for i in range(repeats):
            layers.append(MBConv(cin, cout, expand, kernel, stride if i == 0 else 1))
            cin = cout
    layers += [
        conv_bn(cin, 1280, 1, act=nn.SiLU),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(1280, num_classes),
    ]
    return nn.Sequential(*layers)

"""DenseNet-121 (Huang et al. 2017), the BC variant: growth rate k=32, bottleneck 4k,
compression 0.5, dense blocks of (6, 12, 24, 16) layers, 3x224x224 input.

Every layer is pre-activation (BN-ReLU-Conv) and concatenates its k new maps to all
earlier ones; transitions are BN-ReLU-1x1 conv-2x2/2 average pool.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn_relu_conv(cin: int, cout: int, kernel: int) -> list[nn.Module]:
    return [
        nn.BatchNorm2d(cin),
        nn.ReLU(inplace=True),
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
    ]


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 (4k) then BN-ReLU-3x3 (k); output = concat(input, new maps)."""

    def __init__(self, cin: int, growth: int, bn_size: int = 4):
        super().__init__()
        self.body = nn.Sequential(
            *_bn_relu_conv(cin, bn_size * growth, 1),
            *_bn_relu_conv(bn_size * growth, growth, 3),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], dim=1)


def densenet121(num_classes: int = 1000) -> nn.Module:
    """DenseNet-121: 8.0M parameters, output (N, 1000)."""
    growth, blocks = 32, (6, 12, 24, 16)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),  # 224 -> 112
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1),  # -> 56
    ]
    c = 64
    for i, n in enumerate(blocks):
        for _ in range(n):
            layers.append(DenseLayer(c, growth))
            c += growth
        if i < len(blocks) - 1:  # transition: halve channels and resolution
            layers += _bn_relu_conv(c, c // 2, 1)
            layers.append(nn.AvgPool2d(2, 2))
            c //= 2
    layers += [
        nn.BatchNorm2d(c),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(c, num_classes),
    ]
    return nn.Sequential(*layers)

"""GoogLeNet / Inception v1 (Szegedy et al. 2014) as in the paper's Table 1.

3x224x224 input; ReLU after every conv, no BatchNorm; LRN after the stem's first pool
and after conv2 (as in the Caffe definition); ceil-mode 3x3/2 max pools give the
paper's 112 -> 56 -> 28 -> 14 -> 7 maps; a 7x7 average pool, dropout and a linear
layer finish.  The two auxiliary classifiers are training-only and left out.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import LRN


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2), nn.ReLU(inplace=True))


class Inception(nn.Module):
    """Four parallel branches (1x1 | 1x1-3x3 | 1x1-5x5 | pool-1x1) concatenated."""

    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pp: int):
        super().__init__()
        self.b1 = _conv(cin, c1, 1)
        self.b2 = nn.Sequential(_conv(cin, c3r, 1), _conv(c3r, c3, 3))
        self.b3 = nn.Sequential(_conv(cin, c5r, 1), _conv(c5r, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, padding=1), _conv(cin, pp, 1))
        self.out_channels = c1 + c3 + c5 + pp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


# name: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), from Table 1
_TABLE = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet(num_classes: int = 1000) -> nn.Module:
    """GoogLeNet without auxiliary heads: 7.0M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [
        _conv(3, 64, 7, 2),  # 224 -> 112
        nn.MaxPool2d(3, 2, ceil_mode=True),  # -> 56
        LRN(),
        _conv(64, 64, 1),
        _conv(64, 192, 3),
        LRN(),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # -> 28
    ]
    cin = 192
    for key, spec in _TABLE.items():
        if key in ("4a", "5a"):
            layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))  # -> 14, -> 7
        block = Inception(cin, *spec)
        layers.append(block)
        cin = block.out_channels
    layers += [
        nn.AvgPool2d(7, 1),
        nn.Flatten(),
        nn.Dropout(0.4),
        nn.Linear(cin, num_classes),
    ]
    return nn.Sequential(*layers)

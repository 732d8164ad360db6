"""SqueezeNet 1.1 (Iandola et al. 2016; the 1.1 revision from the authors' repo).

3x224x224 input.  Fire modules squeeze with a 1x1 conv, then expand with parallel
1x1 and 3x3 convs whose outputs are concatenated.  No fully connected layer: a 1x1
conv to 1000 classes, ReLU, and global average pooling.  Ceil-mode max pools.
"""

from __future__ import annotations

import torch
from torch import nn


class Fire(nn.Module):
    """squeeze 1x1 -> ReLU -> [expand 1x1 | expand 3x3] -> ReLU -> concat."""

    def __init__(self, cin: int, squeeze: int, e1: int, e3: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU(inplace=True))
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, e1, 1), nn.ReLU(inplace=True))
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, e3, 3, padding=1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], dim=1)


def squeezenet1_1(num_classes: int = 1000) -> nn.Module:
    """SqueezeNet 1.1: 1.24M parameters, output (N, 1000)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, stride=2),  # 224 -> 111
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # -> 55
        Fire(64, 16, 64, 64),
        Fire(128, 16, 64, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # -> 27
        Fire(128, 32, 128, 128),
        Fire(256, 32, 128, 128),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # -> 13
        Fire(256, 48, 192, 192),
        Fire(384, 48, 192, 192),
        Fire(384, 64, 256, 256),
        Fire(512, 64, 256, 256),
        nn.Dropout(0.5),
        nn.Conv2d(512, num_classes, 1),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )

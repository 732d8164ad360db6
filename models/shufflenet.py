"""ShuffleNet v1 (Zhang et al. 2017), 1.0x with g=3 groups, 3x224x224 input.

Units are 1x1 group conv -> channel shuffle -> 3x3 depthwise -> 1x1 group conv.
Stride-1 units add the input back; stride-2 units concatenate a 3x3/2 average-pooled
copy of the input (count_include_pad, as torch's default) instead.  Stage widths
240/480/960, repeats 4/8/4; the first unit's first 1x1 conv is not grouped (24 input
channels are too few), as in the paper.  The channel shuffle exports as
Reshape -> Transpose -> Reshape with constant shapes.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import channel_shuffle, conv_bn


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit; ``cout`` is the unit's total output channels."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, first_grouped: bool):
        super().__init__()
        self.stride = stride
        mid = cout // 4
        branch_out = cout - cin if stride == 2 else cout
        g1 = groups if first_grouped else 1
        self.shuffle_groups = g1
        self.reduce = conv_bn(cin, mid, 1, groups=g1)
        self.depthwise = conv_bn(mid, mid, 3, stride, groups=mid, act=None)
        self.expand = conv_bn(mid, branch_out, 1, groups=groups, act=None, branch_end=stride == 1)
        self.pool = nn.AvgPool2d(3, 2, padding=1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.reduce(x)
        if self.shuffle_groups > 1:
            y = channel_shuffle(y, self.shuffle_groups)
        y = self.expand(self.depthwise(y))
        if self.pool is not None:
            return self.relu(torch.cat([self.pool(x), y], dim=1))
        return self.relu(x + y)


def shufflenet(num_classes: int = 1000, groups: int = 3) -> nn.Module:
    """ShuffleNet v1 1.0x g=3: 1.9M parameters, output (N, 1000)."""
    widths = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088), 8: (384, 768, 1536)}[
        groups
    ]
    layers: list[nn.Module] = [
        conv_bn(3, 24, 3, 2),  # 224 -> 112
        nn.MaxPool2d(3, 2, padding=1),  # -> 56
    ]
    cin = 24
    for stage, (width, repeats) in enumerate(zip(widths, (4, 8, 4))):
        for i in range(repeats):
            first = i == 0
            layers.append(ShuffleUnit(cin, width, 2 if first else 1, groups, not (stage == 0 and first)))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)

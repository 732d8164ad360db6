"""RegNetY-400MF (Radosavovic et al. 2020), 224x224, as torchvision's regnet_y_400mf.

Stages of depth 1/3/6/6 and width 48/104/208/440; each block is a bottleneck (ratio 1)
whose 3x3 conv is grouped with 8 channels per group, followed by squeeze-and-excitation
to a quarter of the block's input width (ReLU, sigmoid), a linear 1x1, and the shortcut
(a strided 1x1 projection where the shape changes) added before a ReLU.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import SqueezeExcite, conv_bn

_DEPTHS, _WIDTHS, _GROUP_WIDTH = (1, 3, 6, 6), (48, 104, 208, 440), 8


class YBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            conv_bn(cin, cout, 1),
            conv_bn(cout, cout, 3, stride, groups=cout // _GROUP_WIDTH),
            SqueezeExcite(cout, round(0.25 * cin), nn.ReLU),
            conv_bn(cout, cout, 1, act=None, branch_end=True),
        )
        self.proj = conv_bn(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu((x if self.proj is None else self.proj(x)) + self.body(x))


def regnet_y_400mf(num_classes: int = 1000) -> nn.Module:
    """RegNetY-400MF: 4.3M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    cin = 32
    for depth, width in zip(_DEPTHS, _WIDTHS):
        for i in range(depth):
            layers.append(YBlock(cin, width, 2 if i == 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)

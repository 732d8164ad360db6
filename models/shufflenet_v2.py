"""ShuffleNet v2 (Ma et al. 2018) 1.0x, 224x224, as torchvision defines it.

A stride-1 unit splits its input's channels in halves (ONNX Split), leaves one alone and
runs the other through 1x1 -> 3x3 depthwise -> 1x1; a stride-2 unit runs both a
depthwise-then-1x1 branch and that three-conv branch on the whole input. The halves are
concatenated and shuffled (Reshape -> Transpose -> Reshape). Stage widths 116/232/464,
repeats 4/8/4, a final 1x1 to 1024.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import channel_shuffle, conv_bn, static_shape


class ShuffleV2Unit(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride == 2:
            self.branch1 = nn.Sequential(conv_bn(cin, cin, 3, 2, groups=cin, act=None), conv_bn(cin, half, 1))
        b_in = cin if stride == 2 else half
        self.branch2 = nn.Sequential(
            conv_bn(b_in, half, 1),
            conv_bn(half, half, 3, stride, groups=half, act=None),
            conv_bn(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            half = static_shape(x)[1] // 2  # static sizes: chunk() would export shape arithmetic
            a, b = x.split([half, half], dim=1)
            y = torch.cat([a, self.branch2(b)], dim=1)
        else:
            y = torch.cat([self.branch1(x), self.branch2(x)], dim=1)
        return channel_shuffle(y, 2)


def shufflenet_v2_x1_0(num_classes: int = 1000) -> nn.Module:
    """ShuffleNet v2 1.0x: 2.3M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, padding=1)]
    cin = 24
    for width, repeats in zip((116, 232, 464), (4, 8, 4)):
        for i in range(repeats):
            layers.append(ShuffleV2Unit(cin, width, 2 if i == 0 else 1))
            cin = width
    layers += [conv_bn(cin, 1024, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1024, num_classes)]
    return nn.Sequential(*layers)

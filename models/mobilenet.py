"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018), width 1.0, 224x224.

v1: a 3x3/2 conv then 13 depthwise-separable blocks (3x3 depthwise + BN + ReLU,
1x1 pointwise + BN + ReLU), plain ReLU as in the paper.
v2: inverted residuals (1x1 expand x6, 3x3 depthwise, linear 1x1 project) with ReLU6,
which exports as Clip(0, 6); residual add when stride 1 and widths match.
"""

from __future__ import annotations

from torch import nn

from .layers import conv_bn, inverted_residual_net

# (output channels, stride) of v1's depthwise-separable blocks
_V1_BLOCKS = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]

# (expansion t, output channels c, repeats n, first stride s) from the v2 paper, Table 2
_V2_BLOCKS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def mobilenet_v1(num_classes: int = 1000) -> nn.Module:
    """MobileNet v1 1.0-224: 4.2M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    cin = 32
    for cout, stride in _V1_BLOCKS:
        layers.append(conv_bn(cin, cin, 3, stride, groups=cin))
        layers.append(conv_bn(cin, cout, 1))
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, num_classes)]
    return nn.Sequential(*layers)


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    """MobileNet v2 1.0-224: 3.5M parameters, output (N, 1000)."""
    stages = [(t, 3, s, c, n) for t, c, n, s in _V2_BLOCKS]
    return inverted_residual_net(stages, nn.ReLU6, squeeze=False, num_classes=num_classes)

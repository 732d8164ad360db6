"""MobileNet v3 (Howard et al. 2019) small and large, width 1.0, 224x224, as torchvision defines them.

Blocks are inverted residuals whose activation is ReLU early and hard-swish later, with
squeeze-and-excitation in some (its gate: ReLU then hard-sigmoid, to a quarter of the
expanded width rounded to a multiple of 8). Hard-swish and hard-sigmoid export as
ONNX HardSwish / HardSigmoid(alpha=1/6). The block list is shared with the LR-ASPP head
(models/lraspp.py), which runs the large net's last stage dilated.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import SqueezeExcite, conv_bn

RE, HS = nn.ReLU, nn.Hardswish
# (kernel, expanded channels, output channels, squeeze-and-excite, activation, stride)
LARGE = [
    (3, 16, 16, False, RE, 1),
    (3, 64, 24, False, RE, 2),
    (3, 72, 24, False, RE, 1),
    (5, 72, 40, True, RE, 2),
    (5, 120, 40, True, RE, 1),
    (5, 120, 40, True, RE, 1),
    (3, 240, 80, False, HS, 2),
    (3, 200, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 184, 80, False, HS, 1),
    (3, 480, 112, True, HS, 1),
    (3, 672, 112, True, HS, 1),
    (5, 672, 160, True, HS, 2),
    (5, 960, 160, True, HS, 1),
    (5, 960, 160, True, HS, 1),
]
SMALL = [
    (3, 16, 16, True, RE, 2),
    (3, 72, 24, False, RE, 2),
    (3, 88, 24, False, RE, 1),
    (5, 96, 40, True, HS, 2),
    (5, 240, 40, True, HS, 1),
    (5, 240, 40, True, HS, 1),
    (5, 120, 48, True, HS, 1),
    (5, 144, 48, True, HS, 1),
    (5, 288, 96, True, HS, 2),
    (5, 576, 96, True, HS, 1),
    (5, 576, 96, True, HS, 1),
]


def divisible8(v: float) -> int:
    """torchvision's _make_divisible(v, 8): nearest multiple of 8, never 10% below v."""
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


class V3Block(nn.Module):
    """1x1 expand (unless already that wide) -> kxk depthwise (dilated when ``dilation`` > 1,
    stride then 1) -> [SE] -> linear 1x1 projection, plus the input when shapes allow."""

    def __init__(self, cin, kernel, hidden, cout, se, act, stride, dilation=1):
        super().__init__()
        stride = 1 if dilation > 1 else stride
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv_bn(cin, hidden, 1, act=act))
        pad = (kernel - 1) // 2 * dilation
        layers.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act, padding=pad))
        if dilation > 1:
            layers[-1][0].dilation = (dilation, dilation)
        if se:
            layers.append(SqueezeExcite(hidden, divisible8(hidden // 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(conv_bn(hidden, cout, 1, act=None, branch_end=self.residual))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def v3_features(config, dilate_last: int = 0) -> tuple[nn.Sequential, int]:
    """The stem (3x3/2 to 16, hard-swish) and the blocks; the last ``dilate_last`` blocks run
    with dilation 2 and stride 1 (LR-ASPP's output stride 16). Returns the layers and the width."""
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2, act=HS)]
    cin = 16
    for i, (k, hidden, cout, se, act, stride) in enumerate(config):
        dilation = 2 if i >= len(config) - dilate_last else 1
        layers.append(V3Block(cin, k, hidden, cout, se, act, stride, dilation))
        cin = cout
    return nn.Sequential(*layers), cin


def _mobilenet_v3(config, last: int, num_classes: int) -> nn.Module:
    features, cin = v3_features(config)
    return nn.Sequential(
        features,
        conv_bn(cin, 6 * cin, 1, act=HS),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(6 * cin, last),
        nn.Hardswish(),
        nn.Dropout(0.2),
        nn.Linear(last, num_classes),
    )


def mobilenet_v3_large(num_classes: int = 1000) -> nn.Module:
    """MobileNet v3 large 1.0-224: 5.5M parameters, output (N, 1000)."""
    return _mobilenet_v3(LARGE, 1280, num_classes)


def mobilenet_v3_small(num_classes: int = 1000) -> nn.Module:
    """MobileNet v3 small 1.0-224: 2.5M parameters, output (N, 1000)."""
    return _mobilenet_v3(SMALL, 1024, num_classes)

"""LR-ASPP (Howard et al. 2019) on MobileNet v3 large, as torchvision's lraspp_mobilenet_v3_large.

The backbone's last stage runs dilated (depthwise convs with dilation 2, output stride 16).
The head has two branches on the 960-channel features: a 1x1 conv-BN-ReLU to 128 channels,
scaled by a gate (global average pool, 1x1 conv, sigmoid); the product is resized
bilinearly to the stride-8 features (40 channels), both are classified by 1x1 convs and
added, and the sum is resized back to the input size. The resizes are given as scale
factors (2 and 8 at 224x224) computed from the static shapes, so they export as Resize with
constant scales (a size would export as Shape/Slice/Concat arithmetic for the batch).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import conv_bn, static_shape
from .mobilenet_v3 import LARGE, v3_features

_LOW_BLOCKS = 6  # the stem and the first 6 blocks end at stride 8 with 40 channels


class LRASPP(nn.Module):
    def __init__(self, num_classes: int = 21, inter: int = 128):
        super().__init__()
        features, high = v3_features(LARGE, dilate_last=3)
        self.low = features[: _LOW_BLOCKS + 1]
        self.high = nn.Sequential(*features[_LOW_BLOCKS + 1 :], conv_bn(high, 6 * high, 1, act=nn.Hardswish))
        low_channels = LARGE[_LOW_BLOCKS - 1][2]
        self.cbr = conv_bn(6 * high, inter, 1)
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(6 * high, inter, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.low(x)
        high = self.high(low)
        y = self.cbr(high) * self.scale(high)
        y = F.interpolate(y, scale_factor=_factor(low, high), mode="bilinear", align_corners=False)
        y = self.low_classifier(low) + self.high_classifier(y)
        return F.interpolate(y, scale_factor=_factor(x, y), mode="bilinear", align_corners=False)


def _factor(big: torch.Tensor, small: torch.Tensor) -> float:
    """The (integer) factor from ``small``'s height to ``big``'s, as a Python float."""
    return float(static_shape(big)[2] // static_shape(small)[2])


def lraspp_mobilenet_v3_large(num_classes: int = 21) -> nn.Module:
    """LR-ASPP MobileNet v3 large: 3.2M parameters, output (N, 21, H, W) logits."""
    return LRASPP(num_classes)

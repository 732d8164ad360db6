"""MnasNet-A (Tan et al. 2019) depth multiplier 1.0, 224x224, as torchvision's mnasnet1_0.

A 3x3/2 stem, a depthwise-separable block to 16 channels, then inverted residuals with
ReLU and 3x3 or 5x5 depthwise kernels (no squeeze-and-excitation in this variant), a 1x1
to 1280, pool and a linear classifier.
"""

from __future__ import annotations

from torch import nn

from .layers import InvertedResidual, classifier_head, conv_bn

# (output channels, kernel, first stride, expansion, repeats)
_STACKS = [(24, 3, 2, 3, 3), (40, 5, 2, 3, 3), (80, 5, 2, 6, 3), (96, 3, 1, 6, 2), (192, 5, 2, 6, 4), (320, 3, 1, 6, 1)]


def mnasnet1_0(num_classes: int = 1000) -> nn.Module:
    """MnasNet 1.0: 4.4M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [
        conv_bn(3, 32, 3, 2),
        conv_bn(32, 32, 3, groups=32),
        conv_bn(32, 16, 1, act=None),
    ]
    cin = 16
    for cout, kernel, stride, expand, repeats in _STACKS:
        for i in range(repeats):
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, kernel, nn.ReLU))
            cin = cout
    return nn.Sequential(*layers, *classifier_head(cin, 1280, num_classes))

"""EfficientNet-B0 (Tan & Le 2019), 3x224x224 input.

MBConv blocks: 1x1 expand -> kxk depthwise -> squeeze-and-excitation -> linear 1x1
projection, with SiLU (exported as Sigmoid * x) and a residual add when shapes allow.
Symmetric k//2 padding as in torchvision (not TensorFlow's "same"); stochastic depth
and dropout are training-only and vanish in eval mode.
"""

from __future__ import annotations

from torch import nn

from .layers import inverted_residual_net

# (expansion, kernel, first stride, output channels, repeats) for B0
_B0 = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    """EfficientNet-B0: 5.3M parameters, output (N, 1000)."""
    return inverted_residual_net(_B0, nn.SiLU, squeeze=True, num_classes=num_classes)

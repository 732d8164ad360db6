"""AlexNet (Krizhevsky et al. 2012) and ZFNet (Zeiler & Fergus 2013), 3x224x224 input.

AlexNet keeps the paper's two-GPU split as grouped convolutions (groups=2 on conv2,
conv4 and conv5) and LRN (n=5, alpha=1e-4, beta=0.75, k=2) after the first two ReLUs.
conv1 uses padding 2 so that 224 gives the paper's 55x55 maps.

ZFNet: 7x7/2 first layer, no grouping, LRN after the first two pools, and ceil-mode
3x3/2 max pooling so the map sizes are the paper's 110 -> 55 -> 26 -> 13 -> 6.
"""

from __future__ import annotations

from torch import nn

from .layers import LRN


def _classifier(num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )


def alexnet(num_classes: int = 1000) -> nn.Module:
    """AlexNet with LRN and grouped convs: 61.0M parameters, output (N, 1000)."""
    features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4, padding=2),  # 224 -> 55
        nn.ReLU(inplace=True),
        LRN(),
        nn.MaxPool2d(3, 2),  # 55 -> 27
        nn.Conv2d(96, 256, 5, padding=2, groups=2),
        nn.ReLU(inplace=True),
        LRN(),
        nn.MaxPool2d(3, 2),  # 27 -> 13
        nn.Conv2d(256, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1, groups=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),  # 13 -> 6
    )
    return nn.Sequential(features, _classifier(num_classes))


def zfnet(num_classes: int = 1000) -> nn.Module:
    """ZFNet: 62.4M parameters, output (N, 1000)."""
    features = nn.Sequential(
        nn.Conv2d(3, 96, 7, stride=2, padding=1),  # 224 -> 110
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # 110 -> 55
        LRN(),
        nn.Conv2d(96, 256, 5, stride=2),  # 55 -> 26
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, ceil_mode=True),  # 26 -> 13
        LRN(),
        nn.Conv2d(256, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),  # 13 -> 6
    )
    return nn.Sequential(features, _classifier(num_classes))

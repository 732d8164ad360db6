"""ECA-ResNet-18 (Wang et al. 2020): ResNet-18 whose basic blocks end in efficient channel attention.

ECA gates each channel by sigmoid(conv1d_k(global average pool(x))): a 1-D convolution over
the channel axis with a kernel of k = the odd number nearest log2(C)/2 + 1/2 (3 for 64
channels, 5 from 128 on), no bias, then x * gate expanded to x's shape. The 1-D conv is
written as a 2-D conv with height 1 over the pooled vector seen as (N, 1, 1, C), which is the
same arithmetic and what an importer makes of a 1-D conv. 3x224x224 input.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import static_shape
from .resnet import BasicBlock, _resnet


def eca_kernel(channels: int, gamma: int = 2, b: int = 1) -> int:
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """x * sigmoid(conv_k over channels(mean_hw(x))), the gate broadcast with Expand."""

    def __init__(self, channels: int):
        super().__init__()
        k = eca_kernel(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(1, 1, (1, k), padding=(0, (k - 1) // 2), bias=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pool(x).reshape(-1, 1, 1, self.channels)
        y = torch.sigmoid(self.conv(y)).reshape(-1, self.channels, 1, 1)
        return x * y.expand(static_shape(x))  # static: a constant Expand shape, no Shape op


class ECABasicBlock(BasicBlock):
    """ResNet's basic block with ECA on the body's output, before the residual add."""

    @staticmethod
    def _body(cin: int, width: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(*BasicBlock._body(cin, width, cout, stride), ECA(cout))


def eca_resnet18() -> nn.Module:
    """ECA-ResNet-18: 11.7M parameters (ECA adds 3 or 5 weights per block)."""
    return _resnet(ECABasicBlock, (2, 2, 2, 2))

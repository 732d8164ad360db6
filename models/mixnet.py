"""A MixNet-S-style net (Tan & Le 2019), 224x224: mixed depthwise kernels in MBConv blocks.

A mixed depthwise conv splits its channels into equal groups (ONNX Split) and runs each
with its own kernel size (3, 5, 7, 9, 11), then concatenates them. Stages follow
MixNet-S's kernels, widths and squeeze-and-excitation ratios (relative to the block's
input width); the first stages use ReLU, the later ones SiLU. MixNet's grouped 1x1
expansions are plain 1x1 convs here.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import SqueezeExcite, classifier_head, conv_bn

# (expansion, kernels, first stride, output channels, repeats, SE ratio or 0, activation)
_STAGES = [
    (1, (3,), 1, 16, 1, 0, nn.ReLU),
    (6, (3,), 2, 24, 1, 0, nn.ReLU),
    (3, (3,), 1, 24, 1, 0, nn.ReLU),
    (6, (3, 5, 7), 2, 40, 1, 0.5, nn.SiLU),
    (6, (3, 5), 1, 40, 3, 0.5, nn.SiLU),
    (6, (3, 5, 7), 2, 80, 1, 0.25, nn.SiLU),
    (6, (3, 5), 1, 80, 2, 0.25, nn.SiLU),
    (6, (3, 5, 7), 1, 120, 1, 0.5, nn.SiLU),
    (3, (3, 5, 7, 9), 1, 120, 2, 0.5, nn.SiLU),
    (6, (3, 5, 7, 9, 11), 2, 200, 1, 0.5, nn.SiLU),
    (6, (3, 5, 7, 9), 1, 200, 2, 0.5, nn.SiLU),
]


class MixedDepthwise(nn.Module):
    """Depthwise conv + BN + activation with one kernel size per channel group."""

    def __init__(self, channels: int, kernels: tuple[int, ...], stride: int, act):
        super().__init__()
        n = len(kernels)
        self.splits = [channels // n + (1 if i < channels % n else 0) for i in range(n)]
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, k, stride, k // 2, groups=c, bias=False) for c, k in zip(self.splits, kernels)
        )
        self.bn = nn.BatchNorm2d(channels)
        self.act = act(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.convs) == 1:
            y = self.convs[0](x)
        else:
            y = torch.cat([conv(part) for conv, part in zip(self.convs, x.split(self.splits, dim=1))], dim=1)
        return self.act(self.bn(y))


class MixBlock(nn.Module):
    def __init__(self, cin, cout, stride, expand, kernels, se, act):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=act))
        layers.append(MixedDepthwise(hidden, kernels, stride, act))
        if se:
            layers.append(SqueezeExcite(hidden, max(1, int(cin * se))))
        layers.append(conv_bn(hidden, cout, 1, act=None, branch_end=self.residual))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def mixnet_s(num_classes: int = 1000) -> nn.Module:
    """MixNet-S-style: about 4M parameters, output (N, 1000)."""
    layers: list[nn.Module] = [conv_bn(3, 16, 3, 2)]
    cin = 16
    for expand, kernels, stride, cout, repeats, se, act in _STAGES:
        for i in range(repeats):
            layers.append(MixBlock(cin, cout, stride if i == 0 else 1, expand, kernels, se, act))
            cin = cout
    return nn.Sequential(*layers, *classifier_head(cin, 1536, num_classes))

"""Xception (Chollet 2017) at its native 3x299x299 input, with a shortened middle flow.

REDUCED DEPTH: the middle flow repeats its residual block 4 times instead of the
paper's 8 (about 3/4 of the compute; 16.4M instead of 22.9M parameters); the
entry and exit flows are as in the paper.  Separable convs are a 3x3 depthwise conv
followed directly by a 1x1 pointwise conv (no nonlinearity in between, as the paper
recommends), then BatchNorm.  Unpadded stem convs and "same"-padded 3x3/2 max pools
give the odd sizes 299 -> 149 -> 147 -> 74 -> 37 -> 19 -> 10.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import BranchEndBatchNorm, conv_bn

MIDDLE_FLOW_REPEATS = 4  # the paper uses 8


def _sep_bn(cin: int, cout: int, relu_first: bool, branch_end: bool = False) -> list[nn.Module]:
    # ReLU is not in-place: a block's input is still needed by its shortcut.
    return [
        *([nn.ReLU()] if relu_first else []),
        nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
        nn.Conv2d(cin, cout, 1, bias=False),
        (BranchEndBatchNorm if branch_end else nn.BatchNorm2d)(cout),
    ]


class XceptionBlock(nn.Module):
    """Separable convs with a shortcut; a strided block ends in a 3x3/2 max pool and
    uses a 1x1/2 conv + BN shortcut, an unstrided one adds its input back."""

    def __init__(self, widths: list[int], downsample: bool, relu_first: bool = True):
        super().__init__()
        layers: list[nn.Module] = []
        pairs = list(zip(widths, widths[1:]))
        for i, (cin, cout) in enumerate(pairs):
            last = i == len(pairs) - 1
            layers += _sep_bn(cin, cout, relu_first or i > 0, branch_end=last and not downsample)
        if downsample:
            layers.append(nn.MaxPool2d(3, 2, padding=1))
            self.shortcut: nn.Module = conv_bn(widths[0], widths[-1], 1, 2, act=None)
        else:
            self.shortcut = nn.Identity()
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def xception(num_classes: int = 1000, middle_repeats: int = MIDDLE_FLOW_REPEATS) -> nn.Module:
    """Xception with ``middle_repeats`` middle-flow blocks; output (N, 1000).

    16.4M parameters with the zoo's 4 blocks; 22.86M (Keras' trainable count) with 8.
    """
    layers: list[nn.Module] = [
        conv_bn(3, 32, 3, 2, padding=0),  # 299 -> 149
        conv_bn(32, 64, 3, padding=0),  # -> 147
        XceptionBlock([64, 128, 128], True, relu_first=False),  # -> 74
        XceptionBlock([128, 256, 256], True),  # -> 37
        XceptionBlock([256, 728, 728], True),  # -> 19
    ]
    layers += [XceptionBlock([728] * 4, False) for _ in range(middle_repeats)]
    layers += [
        XceptionBlock([728, 728, 1024], True),  # -> 10
        *_sep_bn(1024, 1536, relu_first=False),
        nn.ReLU(inplace=True),
        *_sep_bn(1536, 2048, relu_first=False),
        nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2048, num_classes),
    ]
    return nn.Sequential(*layers)

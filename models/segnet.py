"""A small SegNet/U-Net-style segmentation net: 3x128x128 in, 21x128x128 logits out.

Not the paper's SegNet (that one upsamples with max-unpooling indices, which ONNX
runtimes support poorly); instead:
  encoder   three stages of two 3x3 conv-BN-ReLU, 2x2 max pool between (128 -> 16)
  context   3x3 convs with dilation 2 and 4 at 16x16 (receptive field without pooling)
  decoder   three learned 2x upsamplings, each concatenated with the encoder's skip
            connection and refined by two 3x3 conv-BN-ReLU
  head      1x1 conv to 21 classes (PASCAL VOC's count)
The three ConvTranspose layers deliberately differ (k2 s2 p0 without bias + BN;
k3 s2 p1 output_padding 1 with bias; k4 s2 p1 with bias) to cover the attribute space.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import conv_bn


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


def _dilated(cin: int, cout: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SegNet(nn.Module):
    """Encoder-decoder with dilated context and skip concatenations."""

    def __init__(self, num_classes: int = 21):
        super().__init__()
        self.enc1, self.enc2, self.enc3 = _double_conv(3, 32), _double_conv(32, 64), _double_conv(64, 128)
        self.pool = nn.MaxPool2d(2, 2)
        self.context = nn.Sequential(_dilated(128, 256, 2), _dilated(256, 256, 4))
        self.up3 = nn.Sequential(
            nn.ConvTranspose2d(256, 128, 2, stride=2, bias=False),
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
        )
        self.up2 = nn.Sequential(
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(inplace=True),
        )
        self.up1 = nn.Sequential(nn.ConvTranspose2d(64, 32, 4, stride=2, padding=1), nn.ReLU(inplace=True))
        self.dec3, self.dec2, self.dec1 = _double_conv(256, 128), _double_conv(128, 64), _double_conv(64, 32)
        self.head = nn.Conv2d(32, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s1 = self.enc1(x)  # 32 @ 128
        s2 = self.enc2(self.pool(s1))  # 64 @ 64
        s3 = self.enc3(self.pool(s2))  # 128 @ 32
        y = self.context(self.pool(s3))  # 256 @ 16
        y = self.dec3(torch.cat([self.up3(y), s3], dim=1))  # 128 @ 32
        y = self.dec2(torch.cat([self.up2(y), s2], dim=1))  # 64 @ 64
        y = self.dec1(torch.cat([self.up1(y), s1], dim=1))  # 32 @ 128
        return self.head(y)


def segnet(num_classes: int = 21) -> nn.Module:
    """The zoo's segmentation net; output (N, 21, 128, 128)."""
    return SegNet(num_classes)

"""ESPCN super-resolution (Shi et al. 2016): convolutions in low resolution, then a
sub-pixel convolution (PixelShuffle, which exports as DepthToSpace in CRD mode).

  5x5 conv 1->64, tanh; 3x3 conv 64->32, tanh; 3x3 conv 32->r^2; PixelShuffle(r)

On the luminance channel, upscale r = 3: 1x64x64 in, 1x192x192 out in the zoo.
"""

from __future__ import annotations

from torch import nn


def espcn(upscale: int = 3, channels: int = 1) -> nn.Module:
    """The zoo's ESPCN; output (N, channels, r*H, r*W)."""
    return nn.Sequential(
        nn.Conv2d(channels, 64, 5, padding=2),
        nn.Tanh(),
        nn.Conv2d(64, 32, 3, padding=1),
        nn.Tanh(),
        nn.Conv2d(32, channels * upscale * upscale, 3, padding=1),
        nn.PixelShuffle(upscale),
    )

"""ConvNeXt-T (Liu et al. 2022), laid out as torchvision's ``convnext_tiny``, 3x224x224 input.

A 4x4/4 patchify stem, four stages of (3, 3, 9, 3) blocks at 96..768 channels with a
LayerNorm + 2x2/2 conv between stages, and a pooled LayerNorm + Linear head. A block is a
7x7 depthwise conv, then channels-last (a permute) LayerNorm, Linear to 4x, GELU, Linear
back, a per-channel layer scale, and the residual add. LayerNorms over channels of an NCHW
map permute to channels-last and back (torchvision's LayerNorm2d). Exported at opset 17 the
LayerNorms are LayerNormalization nodes; before 17 they are the ReduceMean/Sub/Pow/Sqrt/Div
decomposition, and GELU is always the Erf formula (until opset 20).

torchvision initialises the layer scale to 1e-6, which makes every block nearly the
identity; the zoo draws it from U(0.1, 0.5) and the LayerNorms' affine parameters like a
BatchNorm's, so every layer shows in the output.
"""

from __future__ import annotations

import torch
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map: permute to NHWC, normalise, permute back."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    """x + scale * pw2(gelu(pw1(layernorm(dwconv7x7(x))))), the middle part channels-last."""

    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pw2 = nn.Linear(4 * dim, dim)
        self.layer_scale = nn.Parameter(torch.empty(dim, 1, 1).uniform_(0.1, 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pw2(self.act(self.pw1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


def _convnext(depths: tuple[int, ...], dims: tuple[int, ...], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6)]
    for stage, (depth, dim) in enumerate(zip(depths, dims)):
        if stage > 0:
            layers += [LayerNorm2d(dims[stage - 1], eps=1e-6), nn.Conv2d(dims[stage - 1], dim, 2, 2)]
        layers += [CNBlock(dim) for _ in range(depth)]
    layers += [nn.AdaptiveAvgPool2d(1), LayerNorm2d(dims[-1], eps=1e-6), nn.Flatten(), nn.Linear(dims[-1], num_classes)]
    model = nn.Sequential(*layers)
    for m in model.modules():
        if isinstance(m, nn.LayerNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.normal_(m.bias, 0.0, 0.1)
    return model


def convnext_tiny(num_classes: int = 1000) -> nn.Module:
    """ConvNeXt-T: 28.6M parameters, output (N, 1000)."""
    return _convnext((3, 3, 9, 3), (96, 192, 384, 768), num_classes)

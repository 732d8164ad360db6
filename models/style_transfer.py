"""Fast neural style transfer (Johnson, Alahi and Fei-Fei 2016), as in PyTorch's
fast_neural_style example: an image-to-image net, 3xHxW in and out.

  down      reflection pad + 9x9 conv 3->32, then two 3x3 stride-2 convs (32->64->128),
            each followed by InstanceNorm (affine) and ReLU
  residual  five blocks of two 3x3 conv-InstanceNorm (ReLU between) plus the identity
  up        twice: 2x nearest upsampling, reflection pad + 3x3 conv (128->64->32),
            InstanceNorm, ReLU
  out       reflection pad + 9x9 conv 32->3 (no activation)

The zoo runs it on 3x64x64 (the architecture is fully convolutional; the paper used 256x256).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _ReflectionPadFunction(torch.autograd.Function):
    """Reflection padding of H and W that exports as one ONNX ``Pad`` node.

    ``nn.ReflectionPad2d`` traces to ~13 nodes per pad (the pads computed by
    ConstantOfShape/Concat/Slice/Transpose chains: the zoo's export keeps constant folding
    off); the symbolic here emits the Pad with constant pads."""

    @staticmethod
    def forward(ctx, x, pad: int):  # noqa: ANN001
        return F.pad(x, (pad,) * 4, mode="reflect")

    @staticmethod
    def symbolic(g, x, pad: int):  # noqa: ANN001
        pads = g.op("Constant", value_t=torch.tensor([0, 0, pad, pad, 0, 0, pad, pad], dtype=torch.int64))
        return g.op("Pad", x, pads, mode_s="reflect")


class _ReflectionPad(nn.Module):
    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ReflectionPadFunction.apply(x, self.pad)


class _ConvLayer(nn.Sequential):
    """Reflection padding that keeps the size (before striding), then the conv."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1):
        super().__init__(_ReflectionPad(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


def _instance_norm(channels: int) -> nn.InstanceNorm2d:
    """Affine InstanceNorm with non-trivial scale and shift (the defaults 1 and 0 would not
    show a converter that swapped or dropped them)."""
    norm = nn.InstanceNorm2d(channels, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_(0.0, 0.1)
    return norm


def _conv_norm_relu(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_ConvLayer(cin, cout, kernel, stride), _instance_norm(cout), nn.ReLU())


class _Residual(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            _conv_norm_relu(channels, channels, 3), _ConvLayer(channels, channels, 3), _instance_norm(channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Upsample(nn.Module):
    """2x nearest upsampling (one Resize node), then conv-InstanceNorm-ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = _conv_norm_relu(cin, cout, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class StyleTransfer(nn.Module):
    def __init__(self, residual_blocks: int = 5):
        super().__init__()
        self.down = nn.Sequential(
            _conv_norm_relu(3, 32, 9), _conv_norm_relu(32, 64, 3, 2), _conv_norm_relu(64, 128, 3, 2)
        )
        self.residual = nn.Sequential(*(_Residual(128) for _ in range(residual_blocks)))
        self.up = nn.Sequential(_Upsample(128, 64), _Upsample(64, 32))
        self.out = _ConvLayer(32, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.up(self.residual(self.down(x))))


def style_transfer() -> nn.Module:
    """The zoo's fast style-transfer net; output (N, 3, H, W) for input (N, 3, H, W), H and W multiples of 4."""
    return StyleTransfer()

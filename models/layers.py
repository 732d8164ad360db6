"""Building blocks shared by several zoo nets, written so they export to clean ONNX.

Export constraints shape the code here: the zoo is exported with
``training=TrainingMode.PRESERVE`` (to keep BatchNormalization nodes), which also turns
off the exporter's constant folding. Anything computed from ``x.shape`` would therefore
survive as Shape/Gather/Concat chains, so shapes are turned into Python ints first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _LRNFunction(torch.autograd.Function):
    """Local response normalisation that exports as one ONNX ``LRN`` node.

    ``nn.LocalResponseNorm`` traces to ~60 nodes (including ``If``); the symbolic here
    emits the single node. Torch and ONNX agree on the formula
    ``y = x / (bias + alpha / size * sum_window x^2) ** beta``.
    """

    @staticmethod
    def forward(ctx, x, size: int, alpha: float, beta: float, k: float):  # noqa: ANN001
        return F.local_response_norm(x, size, alpha=alpha, beta=beta, k=k)

    @staticmethod
    def symbolic(g, x, size: int, alpha: float, beta: float, k: float):  # noqa: ANN001
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    """Cross-channel LRN; defaults are AlexNet's (n=5, alpha=1e-4, beta=0.75, k=2)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def static_shape(x: torch.Tensor) -> tuple[int, ...]:
    """``x.shape`` as Python ints, so the trace records constants, not Shape ops."""
    return tuple(int(d) for d in x.shape)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle; exports as Reshape -> Transpose -> Reshape."""
    _, c, h, w = static_shape(x)
    x = x.reshape(-1, groups, c // groups, h, w).transpose(1, 2)
    return x.reshape(-1, c, h, w)


class BranchEndBatchNorm(nn.BatchNorm2d):
    """A BatchNorm that closes a residual branch (exports as plain BatchNormalization).

    Only a marker for the zoo's initialiser, which gives these a small gamma: with
    gamma ~ 1 everywhere a random ResNet-101 amplifies relative input perturbations
    ~100x, so float32 rounding alone moves its output by ~5e-4.  Trained residual nets
    have small branch-end gammas too (cf. torchvision's ``zero_init_residual``).
    """


def conv_bn(
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
    padding: int | None = None,
    branch_end: bool = False,
) -> nn.Sequential:
    """Conv (no bias) + BatchNorm (+ activation): the post-2015 workhorse.

    ``branch_end`` marks the BN as the last layer of a residual branch.
    """
    pad = kernel // 2 if padding is None else padding
    bn_cls = BranchEndBatchNorm if branch_end else nn.BatchNorm2d
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False),
        bn_cls(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True) if act in (nn.ReLU, nn.ReLU6, nn.SiLU) else act())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """x * gate(W2 act(W1 mean_hw(x))): GlobalAveragePool, two 1x1 convs, Mul. EfficientNet's
    act and gate are SiLU and sigmoid (the defaults), MobileNet v3's ReLU and hard-sigmoid."""

    def __init__(
        self, channels: int, squeezed: int, act: type[nn.Module] = nn.SiLU, gate: type[nn.Module] = nn.Sigmoid
    ):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, squeezed, 1),
            act(inplace=True),
            nn.Conv2d(squeezed, channels, 1),
            gate(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)


class InvertedResidual(nn.Module):
    """MobileNet v2's block, and EfficientNet's MBConv when given ``squeezed``: 1x1 expand (unless
    ``expand`` is 1) -> kxk depthwise -> [squeeze-and-excitation to ``squeezed`` channels] -> linear 1x1
    projection, plus the input when stride 1 and widths match."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        expand: int,
        kernel: int = 3,
        act: type[nn.Module] = nn.ReLU6,
        squeezed: int | None = None,
    ):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_bn(cin, hidden, 1, act=act))
        self.residual = stride == 1 and cin == cout
        layers.append(conv_bn(hidden, hidden, kernel, stride, groups=hidden, act=act))
        if squeezed is not None:
            layers.append(SqueezeExcite(hidden, squeezed))
        layers.append(conv_bn(hidden, cout, 1, act=None, branch_end=self.residual))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def inverted_residual_net(
    stages: list[tuple[int, int, int, int, int]], act: type[nn.Module], squeeze: bool, num_classes: int
) -> nn.Sequential:
    """MobileNet v2 / EfficientNet: a 3x3/2 stem to 32 channels, the ``stages`` of inverted residuals
    (expansion, kernel, first stride, output channels, repeats), then 1x1 to 1280, pool, dropout, linear.
    ``squeeze`` adds squeeze-and-excitation to a quarter of each block's input channels."""
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=act)]
    cin = 32
    for expand, kernel, stride, cout, repeats in stages:
        for i in range(repeats):
            squeezed = max(1, cin // 4) if squeeze else None
            layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand, kernel, act, squeezed))
            cin = cout
    return nn.Sequential(*layers, *classifier_head(cin, 1280, num_classes, act))


def classifier_head(cin: int, width: int, num_classes: int, act: type[nn.Module] = nn.ReLU) -> list[nn.Module]:
    """The mobile nets' head: 1x1 conv to ``width`` (+ BN, activation), global pool, dropout, linear."""
    return [
        conv_bn(cin, width, 1, act=act),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(width, num_classes),
    ]

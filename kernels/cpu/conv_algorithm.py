"""Which CPU algorithm computes a convolution: the one place the choice is made.

:func:`choose` picks from the layer's shape alone and says why; :func:`check` validates an
algorithm asked for by name (a node's ``algorithm`` attribute). passes/select_algorithm.py
writes the result on every conv node; the kernels read it.

``Conv`` (NCHW, kernels/cpu/conv.py dispatches):

- ``winograd``: 3x3, stride 1, dilation 1, ungrouped, enough channels, tiles or small
  weights: F(4x4, 3x3) in winograd.py (a quarter of the multiplications).
- ``pointwise``: 1x1, stride 1, no padding: the input already is the GEMM operand.
- ``fc``: a kernel covering the whole unpadded input (one output pixel): a Gemm.
- ``im2col``: strided 1x1, and strided convs with many channels and outputs.
- ``direct``: every other layer (conv_direct.py): taps read the zero-padded input in place.
- ``depthwise``: group == C: per output channel, since a GEMM with K = kh*kw is all overhead.
- ``pointwise_numpy`` / ``im2col_numpy``: the same GEMMs through ``np.matmul``, never chosen:
  a second, independent reference for the tests.

``BlockedConv`` (channel-blocked output, kernels/cpu/conv_blocked.py): ``depthwise``,
``winograd`` (blocked input, where the NCHW rule picks it), ``stem`` (conv_stem.py: a float32
3-channel 3x3 conv of an NCHW image into one block of channels, STEM_MAX_OUTPUTS, weights held
in registers), ``direct`` (the register tile) or ``grouped`` (the register tile on
block-diagonal weights, for groups that tile the channel blocks:
conv_blocked_plan.grouped_span).
"""

from __future__ import annotations

import numpy as np

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu.conv_blocked_plan import grouped_span
from cnnrt.kernels.cpu.conv_common import block_size
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES

ALGORITHMS = {
    "Conv": ("winograd", "pointwise", "depthwise", "im2col", "direct", "fc", "pointwise_numpy", "im2col_numpy"),
    "BlockedConv": ("depthwise", "winograd", "direct", "grouped", "stem"),
}

# Winograd wins over the direct algorithm once the transforms, paid per channel, are spread
# over enough input and output channels; below these counts the GEMMs get a short reduction
# and the direct algorithm is faster.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_OUTPUTS = 32
# Tiles hanging far over the output (SqueezeNet's 13x13: 66% of the tile outputs used) waste
# the work of the unused outputs: below this share the direct algorithm is faster.
WINOGRAD_MIN_TILE_USE = 0.75  # outputs / (tiles * 16)
# Inside a model the transformed weights (4x the direct ones) come from memory: with few tiles
# (7x7 outputs: 4) that stream dominates, unless the transformed weights fit in L2.
WINOGRAD_MIN_TILES = 16  # over the batch
WINOGRAD_L2_BYTES = 2 << 20
# With few tiles the 36 GEMMs have few rows, and only wide layers pay for the transforms. At
# batch 1, 14x14 and 7x7 (16 and 4 tiles), 2 threads, the direct algorithm took 0.37-0.46x
# Winograd's time on DenseNet-121's 128 -> 32 convs, 0.67-0.84x on GoogLeNet's 96..160 ->
# 208..320, 0.9-1.0x on ResNet's 256 -> 256, and 1.32x on VGG-16's 512 -> 512; from 32 tiles
# on (batch 8, 7x7; batch 2, 14x14) Winograd was ahead on all but DenseNet's (0.88x).
WINOGRAD_FEW_TILES = 32  # over the batch
WINOGRAD_WIDE_LAYER = 1 << 17  # input x output channels
# Strided convs with many channels and a large output: the gathered im2col columns beat
# reading s*s phase planes; on small outputs (14x14 and below) the direct algorithm wins.
IM2COL_MIN_CHANNELS = 64
IM2COL_MIN_OUTPUTS = 400
# The stem kernel keeps one channel block's 27 weight vectors in registers and runs the blocks
# one after the other: 0.84x the register tile's time for 16 outputs (MobileNetV3), but
# 1.02-1.05x for 32 (MobileNetV2, batch 1 and 8). Reading each input value once for two blocks
# (7 pixels x 2 blocks of accumulators, the 2 weight vectors loaded per tap) took 0.96-1.04x
# the one-block-at-a-time time: the FMAs bound the stem, not its input loads. With AVX2's 16
# registers the stem runs two blocks per call and loads the weights per pixel group: alone,
# 0.55-0.7x the register tile's time on the 16- and 32-output mobile stems (0.12 vs 0.21 ms
# MobileNetV3-Small, 0.17 vs 0.28 MobileNetV2, 2 threads) and 0.9x on VGG's 64-output one.
STEM_MAX_OUTPUTS = 16 if VECTOR_BYTES == 64 else 64


def stem_shape(spec: ConvSpec) -> bool:
    """Whether conv_stem.py computes ``spec`` (its input NCHW): ungrouped float32, 3 input
    channels (C*kh = 9 input rows) of 3 taps per row."""
    return spec.group == 1 and np.dtype(spec.dtype) == np.float32 and spec.c * spec.kh == 9 and spec.kw == 3


def _winograd_declined(spec: ConvSpec) -> str | None:
    """Why Winograd does not pay for a 3x3 stride-1 layer (None: it does)."""
    if spec.c < WINOGRAD_MIN_CHANNELS or spec.m < WINOGRAD_MIN_OUTPUTS:
        return f"3x3 stride 1 with fewer than {WINOGRAD_MIN_CHANNELS} input or {WINOGRAD_MIN_OUTPUTS} output channels"
    tiles = -(-spec.oh // 4) * -(-spec.ow // 4)
    u_bytes = 36 * spec.c * spec.m * np.dtype(spec.dtype).itemsize
    if spec.n * tiles < WINOGRAD_MIN_TILES and u_bytes > WINOGRAD_L2_BYTES:
        return "3x3 stride 1 with few tiles and transformed weights larger than L2"
    if spec.n * tiles < WINOGRAD_FEW_TILES and spec.c * spec.m < WINOGRAD_WIDE_LAYER:
        return f"3x3 stride 1 with fewer than {WINOGRAD_FEW_TILES} tiles and narrow channels"
    if spec.oh * spec.ow / (16 * tiles) < WINOGRAD_MIN_TILE_USE:
        return "3x3 stride 1 whose tiles hang far over the output"
    return None


def choose(spec: ConvSpec, op: str = "Conv", blocked_input: bool = False) -> tuple[str, str]:
    """(algorithm, reason) for a layer from its shape alone; ``op`` "BlockedConv" picks among
    the blocked kernels (``blocked_input``: the input is blocked too)."""
    if op == "BlockedConv":
        if spec.group > 1 and spec.group == spec.c:
            return "depthwise", "one input channel per group"
        if spec.group > 1:
            return "grouped", "groups tiling the channel blocks: block-diagonal weights on the register tile"
        if blocked_input and choose(spec)[0] == "winograd":
            return "winograd", "3x3 stride 1 with enough channels and tiles, blocked input"
        if not blocked_input and stem_shape(spec) and spec.m <= STEM_MAX_OUTPUTS:
            return "stem", "3-channel 3x3 from NCHW: 27-value reduction, weights in registers"
        return "direct", "the blocked register tile computes any ungrouped conv"
    if spec.group == spec.c and spec.group > 1:
        return "depthwise", "one input channel per group"
    declined = None
    if spec.winograd_shape:
        declined = _winograd_declined(spec)
        if declined is None:
            return "winograd", "3x3 stride 1 with enough channels and tiles"
    if spec.pointwise:
        return "pointwise", "1x1, stride 1, no padding: the input is the GEMM operand"
    if spec.covers_input:
        return "fc", "the kernel covers the whole input: one output pixel, a Gemm"
    if spec.kh * spec.kw == 1:
        return "im2col", "strided 1x1: im2col gathers only the pixels it reads"
    if max(spec.sh, spec.sw) > 1 and spec.c >= IM2COL_MIN_CHANNELS and spec.oh * spec.ow >= IM2COL_MIN_OUTPUTS:
        return "im2col", "strided with many channels and a large output"
    return "direct", declined or "taps read the padded input in place"


def computes(spec: ConvSpec, algorithm: str, op: str = "Conv", blocked_input: bool = False) -> bool:
    """Whether ``algorithm`` can compute ``spec``."""
    if algorithm not in ALGORITHMS.get(op, ()):
        return False
    if algorithm == "depthwise":
        return spec.group == spec.c and (op == "Conv" or spec.group > 1)
    if algorithm == "grouped":
        lanes = block_size(np.dtype(spec.dtype))
        return blocked_input and spec.group != spec.c and grouped_span(spec.cg, spec.mg, spec.group, lanes) is not None
    if algorithm == "stem":
        return op == "BlockedConv" and not blocked_input and stem_shape(spec)
    if op == "BlockedConv":
        return spec.group == 1 and (algorithm == "direct" or (blocked_input and spec.winograd_shape))
    if algorithm in ("pointwise", "pointwise_numpy"):
        return spec.pointwise
    if algorithm == "fc":
        return spec.covers_input
    if algorithm == "winograd":
        return spec.winograd_shape
    return True


def check(spec: ConvSpec, algorithm: str, node: str = "", op: str = "Conv", blocked_input: bool = False) -> None:
    """Raise UnsupportedOpError naming ``node`` when ``algorithm`` cannot compute ``spec``."""
    if computes(spec, algorithm, op, blocked_input):
        return
    where = f"node {node!r} ({op}): " if node else ""
    known = ALGORITHMS.get(op, ())
    if algorithm not in known:
        raise UnsupportedOpError(f"{where}unknown conv algorithm {algorithm!r}; the CPU has {list(known)}")
    raise UnsupportedOpError(f"{where}conv algorithm {algorithm!r} cannot compute {spec}")

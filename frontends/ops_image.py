"""Converters for the ops of image-to-image nets (style transfer, super-resolution):
InstanceNormalization and GroupNormalization, which both become the IR GroupNormalization
(instance norm is one group per channel), and DepthToSpace / SpaceToDepth.
"""

from __future__ import annotations

import numpy as np

from .context import ConvertContext
from .convert_helpers import float_input
from .registry import onnx_op

_MODES = ("DCR", "CRD")


def _per_channel(ctx: ConvertContext, i: int, what: str, groups: int, channels: int) -> str:
    """Input ``i`` (one value per group, shape (groups,)) as one per channel, shape (channels,):
    a constant when it is known, else an IR Gather repeating each group's value."""
    if ctx.shape(i) != (groups,):
        raise ctx.fail(f"{what} {ctx.inputs[i]!r} must have shape [{groups}] (one per group), got {list(ctx.shape(i))}")
    repeat = np.repeat(np.arange(groups, dtype=np.int64), channels // groups)
    known = ctx.known(i)
    if known is not None:
        return ctx.add_constant(f"{what}_per_channel", np.ascontiguousarray(known[repeat]))
    out = ctx.fresh(f"{what}_per_channel")
    index = ctx.add_constant("channel_group", repeat)
    ctx.emit("Gather", [ctx.inputs[i], index], [(out, (channels,), ctx.value(i).dtype)], dict(axis=0), f"/{what}")
    return out


def _emit_group_norm(ctx: ConvertContext, groups: int, scale: str, bias: str) -> None:
    shape = ctx.shape(0)
    ctx.emit(
        "GroupNormalization",
        [ctx.inputs[0], scale, bias],
        [ctx.out(0, shape, ctx.value(0).dtype)],
        dict(num_groups=groups, epsilon=float(ctx.attr("epsilon", 1e-5))),
    )


def _channels(ctx: ConvertContext) -> int:
    float_input(ctx)
    shape = ctx.shape(0)
    if len(shape) < 3:
        raise ctx.fail(f"input must have rank >= 3 (N, C, spatial...), got {list(shape)}")
    return shape[1]


def _check_per_channel(ctx: ConvertContext, c: int, names=("scale", "bias")) -> None:
    for i, what in zip((1, 2), names):
        if ctx.shape(i) != (c,):
            raise ctx.fail(f"{what} {ctx.inputs[i]!r} must have shape [{c}], got {list(ctx.shape(i))}")


@onnx_op("InstanceNormalization", since=1)
def instance_norm(ctx: ConvertContext) -> None:
    c = _channels(ctx)
    _check_per_channel(ctx, c, ("scale", "B"))
    _emit_group_norm(ctx, c, ctx.inputs[1], ctx.inputs[2])


def _groups(ctx: ConvertContext, c: int) -> int:
    groups = ctx.attr("num_groups")
    if groups is None:
        raise ctx.fail("attribute 'num_groups' is required")
    groups = int(groups)
    if groups < 1 or c % groups:
        raise ctx.fail(f"num_groups={groups} must divide the {c} channels")
    return groups


@onnx_op("GroupNormalization", since=18)
def group_norm_18(ctx: ConvertContext) -> None:
    """Opset 18: scale and bias hold one value per group."""
    c = _channels(ctx)
    groups = _groups(ctx, c)
    _emit_group_norm(ctx, groups, _per_channel(ctx, 1, "scale", groups, c), _per_channel(ctx, 2, "bias", groups, c))


@onnx_op("GroupNormalization", since=21)
def group_norm(ctx: ConvertContext) -> None:
    """Opset 21: scale and bias hold one value per channel; stash_type (the precision of the
    statistics) needs nothing, as the kernels accumulate in at least float32."""
    c = _channels(ctx)
    groups = _groups(ctx, c)
    _check_per_channel(ctx, c)
    _emit_group_norm(ctx, groups, ctx.inputs[1], ctx.inputs[2])


def _block_args(ctx: ConvertContext) -> tuple[tuple[int, int, int, int], int, str]:
    shape = ctx.shape(0)
    if len(shape) != 4:
        raise ctx.fail(f"input must have rank 4 (N, C, H, W), got {list(shape)}")
    b = ctx.attr("blocksize")
    if b is None or int(b) < 1:
        raise ctx.fail(f"attribute 'blocksize' is required and must be positive, got {b}")
    mode = ctx.attr("mode", "DCR")
    if mode not in _MODES:
        raise ctx.fail(f"mode {mode!r} must be one of {', '.join(_MODES)}")
    return shape, int(b), mode  # type: ignore[return-value]


@onnx_op("DepthToSpace", since=1)
def depth_to_space(ctx: ConvertContext) -> None:
    (n, c, h, w), b, mode = _block_args(ctx)
    if c % (b * b):
        raise ctx.fail(f"the {c} channels are not a multiple of blocksize^2 = {b * b}")
    out = (n, c // (b * b), h * b, w * b)
    ctx.emit("DepthToSpace", [ctx.inputs[0]], [ctx.out(0, out, ctx.value(0).dtype)], dict(blocksize=b, mode=mode))


@onnx_op("SpaceToDepth", since=1)
def space_to_depth(ctx: ConvertContext) -> None:
    (n, c, h, w), b, mode = _block_args(ctx)
    if h % b or w % b:
        raise ctx.fail(f"height {h} and width {w} must be multiples of blocksize {b}")
    out = (n, c * b * b, h // b, w // b)
    ctx.emit("SpaceToDepth", [ctx.inputs[0]], [ctx.out(0, out, ctx.value(0).dtype)], dict(blocksize=b, mode=mode))

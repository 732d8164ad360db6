"""Converters for Resize and Upsample: both become one IR ``Resize`` with a concrete output
shape and per-axis scales, so scales/sizes must be known at import time.

Upsample-7/9 and Resize-10 are Resize with fixed coordinate and rounding modes; Resize-11+
adds coordinate_transformation_mode, nearest_mode, sizes, cubic mode (with cubic_coeff_a and
exclude_outside), and (opset 18) axes and keep_aspect_ratio_policy.
"""

from __future__ import annotations

import numpy as np

from .context import ConvertContext
from .convert_helpers import FLOAT_DTYPES, attr_or_input, known_floats, known_ints, normalize_axes
from .registry import onnx_op

_COORD_MODES = ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel", "half_pixel_symmetric")
_NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _emit_resize(
    ctx: ConvertContext, mode: str, coord: str, nearest: str, scales, sizes, axes=None, policy="stretch", cubic=None
) -> None:
    """Resolve scales/sizes (per ``axes``) to an output shape and per-axis scales."""
    v = ctx.value(0)
    if v.dtype not in FLOAT_DTYPES:
        raise ctx.unsupported(f"Resize of {v.dtype} tensors is not supported (floating point only)")
    rank = len(v.shape)
    axes = list(range(rank)) if axes is None else normalize_axes(ctx, axes, rank)
    if (scales is None) == (sizes is None):
        raise ctx.fail("exactly one of scales and sizes must be given")
    out, sc = list(v.shape), [1.0] * rank
    if scales is not None:
        if not np.isfinite(scales).all():
            raise ctx.fail(f"scales {list(scales)} must be finite numbers (NaN or Inf given)")
        if len(scales) != len(axes) or min(scales) <= 0:
            raise ctx.fail(f"scales {list(scales)} must be {len(axes)} positive numbers")
        for a, s in zip(axes, scales):
            # float32 product, as onnxruntime computes it from the float32 scale
            out[a], sc[a] = int(np.floor(np.float32(s) * np.float32(v.shape[a]))), float(np.float32(s))
    else:
        if len(sizes) != len(axes) or min(sizes) <= 0:
            raise ctx.fail(f"sizes {list(sizes)} must be {len(axes)} positive numbers")
        # float32 ratios, as onnxruntime computes the scale from sizes
        ratios = [float(np.float32(sz) / np.float32(v.shape[a])) for a, sz in zip(axes, sizes)]
        if policy == "stretch":
            for a, sz, r in zip(axes, sizes, ratios):
                out[a], sc[a] = int(sz), r
        elif policy in ("not_larger", "not_smaller"):
            r = min(ratios) if policy == "not_larger" else max(ratios)
            for a in axes:
                out[a], sc[a] = int(r * v.shape[a] + 0.5), r
        else:
            raise ctx.fail(f"unknown keep_aspect_ratio_policy {policy!r}")
    if min(out) < 1:
        raise ctx.fail(f"the output shape {out} would be empty")
    attrs = dict(mode=mode, coord_mode=coord, nearest_mode=nearest, scales=tuple(sc), **(cubic or {}))
    ctx.emit("Resize", [ctx.inputs[0]], [ctx.out(0, out, v.dtype)], attrs)


def _resize_mode(ctx: ConvertContext, mode: str, modes=("nearest", "linear")) -> str:
    mode = {"bilinear": "linear"}.get(mode, mode)
    if mode not in modes:
        raise ctx.fail(f"unknown mode {mode!r} (expected {', '.join(modes)})")
    return mode


@onnx_op("Resize", since=10)
def resize(ctx: ConvertContext) -> None:
    if ctx.opset < 11:
        mode = _resize_mode(ctx, ctx.attr("mode", "nearest"))
        # Resize-10 is Upsample with downsampling: asymmetric coordinates, and nearest
        # rounding as onnxruntime does it ("simple": ceil when shrinking an axis, else floor).
        return _emit_resize(ctx, mode, "asymmetric", "simple", known_floats(ctx, 1, "scales"), None)
    mode = _resize_mode(ctx, ctx.attr("mode", "nearest"), ("nearest", "linear", "cubic"))
    coord = ctx.attr("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        raise ctx.unsupported("coordinate_transformation_mode 'tf_crop_and_resize' is not supported")
    if coord not in _COORD_MODES or (coord == "half_pixel_symmetric" and ctx.opset < 19):
        raise ctx.fail(f"unknown coordinate_transformation_mode {coord!r}")
    nearest = ctx.attr("nearest_mode", "round_prefer_floor")
    if nearest not in _NEAREST_MODES:
        raise ctx.fail(f"unknown nearest_mode {nearest!r}")
    if int(ctx.attr("antialias", 0)):
        raise ctx.unsupported("antialias=1 is not supported")
    exclude = bool(int(ctx.attr("exclude_outside", 0)))
    if exclude and mode == "nearest":
        # For linear it changes nothing (out-of-range neighbours get the edge value either way).
        raise ctx.unsupported("exclude_outside=1 with nearest mode is not supported")
    cubic = (
        dict(cubic_coeff_a=float(ctx.attr("cubic_coeff_a", -0.75)), exclude_outside=exclude)
        if mode == "cubic"
        else None
    )
    scales = known_floats(ctx, 2, "scales") if ctx.has_input(2) else None
    sizes = known_ints(ctx, 3, "sizes") if ctx.has_input(3) else None
    if sizes is not None and not sizes:
        sizes = None
    axes = ctx.attr("axes") if ctx.opset >= 18 else None
    policy = ctx.attr("keep_aspect_ratio_policy", "stretch") if ctx.opset >= 18 else "stretch"
    _emit_resize(ctx, mode, coord, nearest, scales, sizes, axes, policy, cubic)


@onnx_op("Upsample", since=7)
def upsample(ctx: ConvertContext) -> None:
    scales = attr_or_input(ctx, "scales", 9, 1, known_floats)
    mode = _resize_mode(ctx, ctx.attr("mode", "nearest"))
    if scales is None:
        raise ctx.fail("scales are required")
    if min(scales) < 1:
        raise ctx.fail(f"Upsample scales {list(scales)} must be >= 1")
    _emit_resize(ctx, mode, "asymmetric", "floor", scales, None)

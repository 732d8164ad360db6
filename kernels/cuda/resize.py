"""Resize on CUDA: nearest (any axes), linear and cubic (the last two axes), with ONNX coordinate modes.

Coordinates are computed in float32 like onnxruntime's CPU kernel, so the nearest-pixel
choice at exact half-way points agrees with it. Linear mode clamps the source coordinate
into [0, len - 1] before interpolating (onnxruntime's behaviour outside tf_crop_and_resize).
Cubic mode takes the taps floor(x) - 1 .. floor(x) + 2 of the unclamped coordinate with
indices clamped to the edge; with exclude_outside the taps outside the input get weight 0
and the others are renormalised (per axis, as the interpolation is separable).
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.core.ops import op_attrs
from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import F0, F1, HALF, c_strides, dmax, dmin, launcher_1d, require_float, shape_of, size_of
from .device import upload_flat

COORD_MODES = {
    "half_pixel": 0,
    "pytorch_half_pixel": 1,
    "align_corners": 2,
    "asymmetric": 3,
    "tf_half_pixel_for_nn": 4,
    "half_pixel_symmetric": 5,
}
NEAREST_MODES = {"round_prefer_floor": 0, "round_prefer_ceil": 1, "floor": 2, "ceil": 3}


@cuda.jit(device=True, inline=True)
def _source_coord(o, scale, len_in, len_out, mode):
    x = np.float32(o)
    if mode == 0:
        return (x + HALF) / scale - HALF
    if mode == 1:
        return (x + HALF) / scale - HALF if len_out > 1 else F0
    if mode == 2:
        return F0 if len_out == 1 else x * np.float32(len_in - 1) / np.float32(len_out - 1)
    if mode == 3:
        return x / scale
    if mode == 4:
        return (x + HALF) / scale
    adj = np.float32(len_out) / (scale * np.float32(len_in))
    center = np.float32(len_in) / np.float32(2)
    return center * (F1 - adj) + (x + HALF) / scale - HALF


@cuda.jit(device=True, inline=True)
def _nearest_index(v, mode, length):
    if mode == 0:
        j = int(math.ceil(v - HALF))
    elif mode == 1:
        j = int(math.floor(v + HALF))
    elif mode == 2:
        j = int(math.floor(v))
    else:
        j = int(math.ceil(v))
    return dmin(dmax(j, 0), length - 1)


@cuda.jit
def _resize_nearest(X, Y, total, rank, ishape, oshape, istr, scales, coord, nearest):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        rem = i
        ix = 0
        for d in range(rank - 1, -1, -1):
            lo = oshape[d]
            o = rem % lo
            rem = rem // lo
            li = ishape[d]
            j = _nearest_index(_source_coord(o, scales[d], li, lo, coord), nearest, li)
            ix += j * istr[d]
        Y[i] = X[ix]


@cuda.jit
def _resize_bilinear(X, Y, total, H, W, OH, OW, sh, sw, coord):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        ow = i % OW
        oh = (i // OW) % OH
        base = (i // (OW * OH)) * H * W
        y = dmin(dmax(_source_coord(oh, sh, H, OH, coord), F0), np.float32(H - 1))
        x = dmin(dmax(_source_coord(ow, sw, W, OW, coord), F0), np.float32(W - 1))
        y0 = int(math.floor(y))
        x0 = int(math.floor(x))
        y1 = dmin(y0 + 1, H - 1)
        x1 = dmin(x0 + 1, W - 1)
        wy = y - np.float32(y0)
        wx = x - np.float32(x0)
        top = (F1 - wx) * X[base + y0 * W + x0] + wx * X[base + y0 * W + x1]
        bottom = (F1 - wx) * X[base + y1 * W + x0] + wx * X[base + y1 * W + x1]
        Y[i] = (F1 - wy) * top + wy * bottom


@cuda.jit(device=True, inline=True)
def _cubic_weight(t, a):
    """Keys' cubic kernel with coefficient ``a`` at distance ``t`` >= 0."""
    if t <= F1:
        return ((a + np.float32(2)) * t - (a + np.float32(3))) * t * t + F1
    if t < np.float32(2):
        return ((a * t - np.float32(5) * a) * t + np.float32(8) * a) * t - np.float32(4) * a
    return F0


@cuda.jit(device=True, inline=True)
def _cubic_taps(x, length, a, exclude, w, idx):
    """The four taps of coordinate ``x`` along an axis of ``length``: weights into ``w``,
    clamped indices into ``idx``."""
    x0 = int(math.floor(x))
    total = F0
    for t in range(4):
        j = x0 - 1 + t
        wt = _cubic_weight(abs(x - np.float32(j)), a)
        if exclude and (j < 0 or j > length - 1):
            wt = F0
        w[t] = wt
        total += wt
        idx[t] = dmin(dmax(j, 0), length - 1)
    if exclude:
        for t in range(4):
            w[t] = w[t] / total


@cuda.jit
def _resize_bicubic(X, Y, total, H, W, OH, OW, sh, sw, coord, a, exclude):
    wy = cuda.local.array(4, np.float32)
    wx = cuda.local.array(4, np.float32)
    iy = cuda.local.array(4, np.int64)
    ix = cuda.local.array(4, np.int64)
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        ow = i % OW
        oh = (i // OW) % OH
        base = (i // (OW * OH)) * H * W
        _cubic_taps(_source_coord(oh, sh, H, OH, coord), H, a, exclude, wy, iy)
        _cubic_taps(_source_coord(ow, sw, W, OW, coord), W, a, exclude, wx, ix)
        acc = F0
        for u in range(4):
            row = F0
            for v in range(4):
                row += wx[v] * X[base + iy[u] * W + ix[v]]
            acc += wy[u] * row
        Y[i] = acc


@register("Resize", backend="cuda")
def build_resize(node, graph):
    require_float(node, graph)
    ishape = shape_of(graph, node.inputs[0])
    oshape = shape_of(graph, node.outputs[0])
    mode = node.attrs.get("mode", "nearest")
    coord_name = node.attrs.get("coord_mode", "half_pixel")
    if coord_name not in COORD_MODES:
        raise UnsupportedOpError(
            f"node {node.name!r} (Resize): coordinate_transformation_mode {coord_name!r} is not supported on CUDA"
        )
    coord = COORD_MODES[coord_name]
    scales = [float(s) for s in node.attrs["scales"]]
    if len(scales) != len(ishape):
        raise UnsupportedOpError(f"node {node.name!r} (Resize): {len(scales)} scales for a rank-{len(ishape)} input")
    total = size_of(graph, node.outputs[0])
    if mode == "nearest":
        nearest_name = node.attrs.get("nearest_mode", "round_prefer_floor")
        if nearest_name not in NEAREST_MODES:
            raise UnsupportedOpError(f"node {node.name!r} (Resize): nearest_mode {nearest_name!r} is not supported")
        nearest = NEAREST_MODES[nearest_name]
        tables = [upload_flat(np.asarray(t, np.int64)) for t in (ishape, oshape, c_strides(ishape))]
        d_scales = upload_flat(np.asarray(scales, np.float32))
        rank = len(ishape)
        launch = launcher_1d(_resize_nearest, total)
        return lambda ins, outs: launch(ins[0], outs[0], total, rank, *tables, d_scales, coord, nearest)
    if mode not in ("linear", "cubic"):
        raise UnsupportedOpError(f"node {node.name!r} (Resize): mode {mode!r} is not supported on CUDA")
    if len(ishape) < 2 or ishape[:-2] != oshape[:-2]:
        raise UnsupportedOpError(
            f"node {node.name!r} (Resize): {mode} mode resizes only the last two axes, {list(ishape)} -> {list(oshape)}"
        )
    h, w = ishape[-2:]
    oh, ow = oshape[-2:]
    sh, sw = np.float32(scales[-2]), np.float32(scales[-1])
    if mode == "cubic":
        a = op_attrs(node)
        cubic = (np.float32(a["cubic_coeff_a"]), bool(a["exclude_outside"]))
        launch = launcher_1d(_resize_bicubic, total)
        return lambda ins, outs: launch(ins[0], outs[0], total, h, w, oh, ow, sh, sw, coord, *cubic)
    launch = launcher_1d(_resize_bilinear, total)
    return lambda ins, outs: launch(ins[0], outs[0], total, h, w, oh, ow, sh, sw, coord)

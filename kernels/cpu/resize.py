"""Resize (nearest / linear / cubic) for every coordinate transformation mode in cnnrt.core.ops.

Interpolation is separable, so each axis gets a table at build time: the source index
(nearest), the two source indices and weights (linear) or the four (cubic) of every output position, computed
from the coordinate mode with the ONNX formulas (in float32, as onnxruntime evaluates them). The common case, only the
last two axes resized (NCHW images), runs as one fused 2-D Numba kernel; anything else runs
one 1-D pass per resized axis through scratch buffers.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.core.ops import op_attrs
from cnnrt.kernels._jit import pjit
from cnnrt.kernels.cpu.blas import split_index
from cnnrt.kernels.registry import register


def source_coords(n_in: int, n_out: int, scale: float, coord: str) -> np.ndarray:
    """Input coordinate of each output position along one axis (ONNX Resize formulas).

    Evaluated in float32 as onnxruntime does: where a coordinate lands exactly on a rounding
    boundary (nearest floor/ceil, x.5 ties) float64 can fall on the other side.
    """
    f = np.float32
    y = np.arange(n_out, dtype=f)
    s, half, one = f(scale), f(0.5), f(1)
    length = s * f(n_in)  # the real-valued output length the ONNX formulas use
    if coord == "asymmetric":
        x = y / s
    elif coord == "half_pixel":
        x = (y + half) / s - half
    elif coord == "pytorch_half_pixel":
        x = np.full(n_out, -half) if length == one else (y + half) / s - half
    elif coord == "align_corners":
        x = np.zeros(n_out, f) if length == one else y * f(n_in - 1) / (length - one)
    elif coord == "half_pixel_symmetric":
        offset = f(n_in) / f(2) * (one - f(n_out) / length)
        x = offset + (y + half) / s - half
    else:
        raise ValueError(f"unknown coordinate transformation mode {coord!r}")
    return x.astype(np.float64)


def nearest_table(n_in: int, n_out: int, scale: float, coord: str, nearest: str) -> np.ndarray:
    x = source_coords(n_in, n_out, scale, coord)
    lo = np.floor(x)
    frac = x - lo
    if nearest == "simple":  # onnxruntime's opset-10 rule
        nearest = "ceil" if scale < 1 else "floor"
    if nearest == "round_prefer_floor":
        idx = np.where(frac <= 0.5, lo, lo + 1)
    elif nearest == "round_prefer_ceil":
        idx = np.where(frac < 0.5, lo, lo + 1)
    elif nearest == "floor":
        idx = lo
    elif nearest == "ceil":
        idx = np.ceil(x)
    else:
        raise ValueError(f"unknown nearest mode {nearest!r}")
    return np.clip(idx, 0, n_in - 1).astype(np.int64)


def linear_table(n_in: int, n_out: int, scale: float, coord: str):
    """(i0, i1, w0, w1): out[k] = w0[k] * x[i0[k]] + w1[k] * x[i1[k]], indices clamped (edge)."""
    x = source_coords(n_in, n_out, scale, coord)
    lo = np.floor(x)
    w1 = x - lo
    i0 = np.clip(lo, 0, n_in - 1).astype(np.int64)
    i1 = np.clip(lo + 1, 0, n_in - 1).astype(np.int64)
    return i0, i1, 1.0 - w1, w1


def cubic_weight(t: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient ``a`` at distance ``t`` (ONNX's cubic_coeff_a)."""
    t = np.abs(t)
    inner = ((a + 2) * t - (a + 3)) * t * t + 1
    outer = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, inner, np.where(t < 2, outer, 0.0))


def cubic_table(n_in: int, n_out: int, scale: float, coord: str, a: float, exclude_outside: bool):
    """(idx, w), each (n_out, 4): out[k] = sum_t w[k, t] * x[idx[k, t]] over the taps
    floor(x) - 1 .. floor(x) + 2, indices clamped (edge); with ``exclude_outside`` the taps
    outside the input get weight 0 and the rest are renormalised to sum to 1."""
    x = source_coords(n_in, n_out, scale, coord)
    taps = np.floor(x)[:, None] + np.arange(-1, 3)[None, :]
    w = cubic_weight(x[:, None] - taps, a)
    if exclude_outside:
        w = np.where((taps >= 0) & (taps <= n_in - 1), w, 0.0)
        w = w / w.sum(axis=1, keepdims=True)
    return np.clip(taps, 0, n_in - 1).astype(np.int64), w


def unchanged_axis(n_in: int, n_out: int, scale: float) -> bool:
    return n_in == n_out and math.isclose(scale, 1.0)


@pjit
def resize2d_nearest(x, out, iy, ix):
    p_, oh, ow = out.shape
    for t in prange(p_ * oh):
        p, i = split_index(t, oh)
        r = iy[i]
        for j in range(ow):
            out[p, i, j] = x[p, r, ix[j]]


@pjit
def resize2d_linear(x, out, y0, y1, wy0, wy1, x0, x1, wx0, wx1):
    p_, oh, ow = out.shape
    for t in prange(p_ * oh):
        p, i = split_index(t, oh)
        r0, r1, a0, a1 = y0[i], y1[i], wy0[i], wy1[i]
        for j in range(ow):
            c0, c1 = x0[j], x1[j]
            top = wx0[j] * x[p, r0, c0] + wx1[j] * x[p, r0, c1]
            bottom = wx0[j] * x[p, r1, c0] + wx1[j] * x[p, r1, c1]
            out[p, i, j] = a0 * top + a1 * bottom


@pjit
def resize_last_linear(x, out, x0, x1, wx0, wx1):
    """Along the last axis of (rows, n) -> (rows, m): the horizontal half of a separable 2-D
    linear resize, run on the input rows only (each is then reused by the vertical blend)."""
    rows, ow = out.shape
    for r in prange(rows):
        for j in range(ow):
            out[r, j] = wx0[j] * x[r, x0[j]] + wx1[j] * x[r, x1[j]]


@pjit
def resize2d_cubic(x, out, iy, wy, ix, wx):
    """4 x 4 taps per output: the row interpolation of four source rows, then the column one."""
    p_, oh, ow = out.shape
    for t in prange(p_ * oh):
        p, i = split_index(t, oh)
        for j in range(ow):
            acc = 0.0
            for u in range(4):
                row = 0.0
                r = iy[i, u]
                for v in range(4):
                    row += wx[j, v] * x[p, r, ix[j, v]]
                acc += wy[i, u] * row
            out[p, i, j] = acc


@pjit
def resize_axis_cubic(x, out, idx, w):
    """Along axis 1 of (outer, n, inner): each output row is four weighted source rows, added
    row by row (contiguous, vectorised inner loops)."""
    outer, m, inner = out.shape
    for t in prange(outer * m):
        o, k = split_index(t, m)
        dst = out[o, k]
        dst[:] = 0
        for u in range(4):
            src = x[o, idx[k, u]]
            wu = w[k, u]
            for j in range(inner):
                dst[j] += wu * src[j]


@pjit
def resize_axis_nearest(x, out, idx):
    """Along axis 1 of (outer, n, inner) -> (outer, m, inner)."""
    outer, m, inner = out.shape
    for t in prange(outer * m):
        o, k = split_index(t, m)
        src = idx[k]
        for j in range(inner):
            out[o, k, j] = x[o, src, j]


@pjit
def resize_axis_linear(x, out, i0, i1, w0, w1):
    outer, m, inner = out.shape
    for t in prange(outer * m):
        o, k = split_index(t, m)
        a, b, wa, wb = i0[k], i1[k], w0[k], w1[k]
        for j in range(inner):
            out[o, k, j] = wa * x[o, a, j] + wb * x[o, b, j]


def axis_tables(n_in, n_out, scale, attrs):
    if attrs["mode"] == "nearest":
        return (nearest_table(n_in, n_out, scale, attrs["coord_mode"], attrs["nearest_mode"]),)
    if attrs["mode"] == "cubic":
        return cubic_table(n_in, n_out, scale, attrs["coord_mode"], attrs["cubic_coeff_a"], attrs["exclude_outside"])
    return linear_table(n_in, n_out, scale, attrs["coord_mode"])


def _upsample2d_linear(ty, tx, xs3, os3, dtype):
    """A 2-D linear resize that does not shrink the rows, as two passes: each input row
    interpolated along the width once (the gathers), then each output row a blend of two of
    those rows (contiguous, vectorised). The fused 2-D kernel gathers four inputs for every
    output instead; both compute a0 * (row r0) + a1 * (row r1) with the same row sums."""
    lead, ih, _ = xs3
    ow = os3[2]
    rows = np.empty((lead, ih, ow), dtype=dtype)

    def run(ins, outs):
        resize_last_linear(ins[0].reshape(lead * ih, xs3[2]), rows.reshape(lead * ih, ow), *tx)
        resize_axis_linear(rows, outs[0].reshape(os3), *ty)

    return run


_KERNELS_2D = {"nearest": resize2d_nearest, "linear": resize2d_linear, "cubic": resize2d_cubic}
_KERNELS_AXIS = {"nearest": resize_axis_nearest, "linear": resize_axis_linear, "cubic": resize_axis_cubic}


@register("Resize")
def build_resize(node, graph):
    attrs = op_attrs(node)
    xv, ov = graph.values[node.inputs[0]], graph.values[node.outputs[0]]
    if np.dtype(xv.dtype) not in (np.float32, np.float64):
        raise TypeError(f"Resize kernel supports float32 and float64, got {xv.dtype}")
    ishape, oshape, scales = xv.shape, ov.shape, attrs["scales"]
    rank = len(ishape)
    resized = [a for a in range(rank) if not unchanged_axis(ishape[a], oshape[a], scales[a])]
    if any(ishape[a] != oshape[a] for a in range(rank) if a not in resized):
        raise ValueError(f"output shape {list(oshape)} does not follow from scales {list(scales)}")
    if not resized:
        return lambda ins, outs: np.copyto(outs[0], ins[0])
    if rank >= 2 and min(resized) >= rank - 2:
        lead = math.prod(ishape[:-2])
        xs3, os3 = (lead,) + tuple(ishape[-2:]), (lead,) + tuple(oshape[-2:])
        ty = axis_tables(ishape[-2], oshape[-2], scales[-2], attrs)
        tx = axis_tables(ishape[-1], oshape[-1], scales[-1], attrs)
        if attrs["mode"] == "linear" and oshape[-2] >= ishape[-2]:
            return _upsample2d_linear(ty, tx, xs3, os3, xv.dtype)
        kernel = _KERNELS_2D[attrs["mode"]]

        def run2d(ins, outs):
            kernel(ins[0].reshape(xs3), outs[0].reshape(os3), *ty, *tx)

        return run2d
    # General case: one pass per resized axis, ascending (as the ONNX reference does).
    passes, shape = [], list(ishape)
    for a in resized:
        s_in = (math.prod(shape[:a]), shape[a], math.prod(shape[a + 1 :]))
        shape[a] = oshape[a]
        s_out = (s_in[0], oshape[a], s_in[2])
        passes.append((s_in, s_out, axis_tables(ishape[a], oshape[a], scales[a], attrs)))
    scratch = [np.empty(math.prod(p[1]), dtype=xv.dtype) for p in passes[:-1]]
    kernel = _KERNELS_AXIS[attrs["mode"]]

    def run(ins, outs):
        src = ins[0]
        for i, (s_in, s_out, tab) in enumerate(passes):
            dst = outs[0] if i == len(passes) - 1 else scratch[i]
            kernel(src.reshape(s_in), dst.reshape(s_out), *tab)
            src = dst

    return run

"""MaxPool and AveragePool on CUDA: one thread per output in grid-stride loops.

MaxPool may also write Indices (int64, flat over the whole input, row-major or, with
``storage_order=1``, column-major within each H x W plane, as onnxruntime does).
AveragePool divides by the taps inside the input, or with ``count_include_pad`` by the
taps inside the padded input (a ceil_mode window hanging past the padding does not count
its overhang). The frontend folded auto_pad and ceil_mode into pads and the output shape.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cnnrt.kernels.registry import register

from .common import F0, NEG_INF, launcher_1d, plane_index, require_float, shape_of, valid_taps
from .device import placeholder


@cuda.jit
def _max_pool(X, Y, Idx, total, H, W, OH, OW, KH, KW, sh, sw, pt, pl, dh, dw, want_idx, col_major):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        nc, oh, ow = plane_index(i, OH, OW)
        best, bh, bw = NEG_INF, -1, -1
        kh0, kh1 = valid_taps(oh, sh, pt, dh, KH, H)
        kw0, kw1 = valid_taps(ow, sw, pl, dw, KW, W)
        for kh in range(kh0, kh1):  # row-major window order: the first maximum wins
            ih = oh * sh - pt + kh * dh
            for kw in range(kw0, kw1):
                iw = ow * sw - pl + kw * dw
                v = X[(nc * H + ih) * W + iw]
                if v > best or bh < 0:
                    best, bh, bw = v, ih, iw
        Y[i] = best
        if want_idx:
            Idx[i] = nc * H * W + (bw * H + bh if col_major else bh * W + bw)


@cuda.jit
def _avg_pool(X, Y, total, H, W, OH, OW, KH, KW, sh, sw, pt, pl, pb, pr, dh, dw, include_pad):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        nc, oh, ow = plane_index(i, OH, OW)
        acc = F0
        count = 0
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            h_in = 0 <= ih < H
            h_pad = -pt <= ih < H + pb
            for kw in range(KW):
                iw = ow * sw - pl + kw * dw
                if h_in and 0 <= iw < W:
                    acc += X[(nc * H + ih) * W + iw]
                    count += 1
                elif include_pad and h_pad and -pl <= iw < W + pr:
                    count += 1
        Y[i] = acc / np.float32(count) if count > 0 else acc


def _window(node, graph):
    n, c, h, w = shape_of(graph, node.inputs[0])
    _, _, oh, ow = shape_of(graph, node.outputs[0])
    kh, kw = node.attrs["kernel"]
    sh, sw = node.attrs.get("strides", (1, 1))
    dh, dw = node.attrs.get("dilations", (1, 1))
    pads = tuple(node.attrs.get("pads", (0, 0, 0, 0)))
    return n * c * oh * ow, (h, w, oh, ow, kh, kw, sh, sw), pads, (dh, dw)


@register("MaxPool", backend="cuda")
def build_max_pool(node, graph):
    require_float(node, graph)
    total, geo, (pt, pl, _, _), dil = _window(node, graph)
    want_idx = len(node.outputs) > 1 and bool(node.outputs[1])
    col_major = 1 if int(node.attrs.get("storage_order", 0)) else 0
    dummy = placeholder("int64")
    launch = launcher_1d(_max_pool, total)

    def run(ins, outs):
        launch(
            ins[0], outs[0], outs[1] if want_idx else dummy, total, *geo, pt, pl, *dil, 1 if want_idx else 0, col_major
        )

    return run


@register("AveragePool", backend="cuda")
def build_average_pool(node, graph):
    require_float(node, graph)
    total, geo, pads, dil = _window(node, graph)
    include = 1 if node.attrs.get("count_include_pad", False) else 0
    launch = launcher_1d(_avg_pool, total)
    return lambda ins, outs: launch(ins[0], outs[0], total, *geo, *pads, *dil, include)

"""Pooling (NCHW): MaxPool (+ Indices), AveragePool, GlobalAveragePool, GlobalMaxPool.

Every kernel runs over the N*C planes in parallel. The output size comes from the output
Value (the frontend resolved auto_pad and ceil_mode), so a window may hang past the padded
input when ceil_mode was set; the loops clip every window to the real input.

- MaxPool ignores padding (it is -inf) and NaN inputs (comparisons with NaN are false).
  Without Indices, each output plane is a running max over shifted 2-D input views, tap by
  tap (vectorisable); with Indices a per-pixel loop records the first maximum in row-major
  window order, as onnxruntime does, flattened over the whole input:
  ``(n*C + c)*H*W + h*W + w`` (storage_order 0) or ``(n*C + c)*H*W + w*H + h`` (1).
- AveragePool divides by a per-pixel count fixed at build time: the window's taps inside the
  real input (count_include_pad=0) or inside the padded input ``[-pad_begin, size + pad_end)``
  (count_include_pad=1), the part of a ceil_mode window hanging past that excluded.
"""

from __future__ import annotations

import numpy as np
from cnnrt.kernels import register
from cnnrt.kernels._jit import pjit
from cnnrt.kernels.cpu.conv import _valid_range, readonly
from numba import prange


@pjit
def _max_pool(x, out, kh, kw, sh, sw, pt, pl, dh, dw, lowest):
    """x (P, H, W) -> out (P, OH, OW): per output row, a running max over the kh input rows and
    kw taps, the outputs whose tap lands inside the input only. Indices are unsigned (Numba
    then emits no negative-index wraparound and the strided loads vectorise); one row view
    per (output row, kernel row) instead of two slices per tap and row: 5-8x faster."""
    p_count, h, w = x.shape
    oh_count, ow_count = out.shape[1], out.shape[2]
    for p in prange(p_count):
        xp = x[p]
        op = out[p]
        for o in range(oh_count):
            orow = op[o]
            for q in range(ow_count):
                orow[q] = lowest  # -inf, or the integer dtype's minimum
            for i in range(kh):
                ih = o * sh + i * dh - pt
                if ih < 0 or ih >= h:
                    continue
                xr = xp[ih]
                if kw == 3 and dw == 1:
                    # the 3 taps in one loop: LLVM loads them as one interleaved group
                    # (stride sw) instead of gathering each tap separately
                    c0, c1 = _valid_range(-pl, sw, w - 2, ow_count)  # all 3 taps inside
                    for q in range(c0, c1):
                        b = np.uint64(q * sw - pl)
                        v0 = xr[b]
                        v1 = xr[b + np.uint64(1)]
                        v2 = xr[b + np.uint64(2)]
                        m = orow[np.uint64(q)]
                        m = v0 if v0 > m else m
                        m = v1 if v1 > m else m
                        orow[np.uint64(q)] = v2 if v2 > m else m
                    for j in range(3):  # the edge outputs, where some tap falls outside
                        off = j - pl
                        e0, e1 = _valid_range(off, sw, w, ow_count)
                        for q in range(e0, min(e1, c0)):
                            v = xr[np.uint64(q * sw + off)]
                            m = orow[np.uint64(q)]
                            orow[np.uint64(q)] = v if v > m else m
                        for q in range(max(e0, c1), e1):
                            v = xr[np.uint64(q * sw + off)]
                            m = orow[np.uint64(q)]
                            orow[np.uint64(q)] = v if v > m else m
                    continue
                for j in range(kw):
                    off = j * dw - pl
                    c0, c1 = _valid_range(off, sw, w, ow_count)
                    for q in range(c0, c1):
                        v = xr[np.uint64(q * sw + off)]
                        m = orow[np.uint64(q)]
                        orow[np.uint64(q)] = v if v > m else m  # a select: vectorises


@pjit
def _max_pool_indices(x, out, idx, kh, kw, sh, sw, pt, pl, dh, dw, storage_order):
    """Like _max_pool, also writing the flat input index of each maximum (first one wins)."""
    p_count, h, w = x.shape
    oh_count, ow_count = out.shape[1], out.shape[2]
    for p in prange(p_count):
        for oh in range(oh_count):
            for ow in range(ow_count):
                best = -np.inf
                bh = -1
                bw = -1
                for i in range(kh):
                    ih = oh * sh + i * dh - pt
                    if ih < 0 or ih >= h:
                        continue
                    for j in range(kw):
                        iw = ow * sw + j * dw - pl
                        if iw < 0 or iw >= w:
                            continue
                        v = x[p, ih, iw]
                        if v > best or bh < 0:
                            best = v
                            bh = ih
                            bw = iw
                out[p, oh, ow] = best
                if storage_order == 0:
                    idx[p, oh, ow] = p * h * w + bh * w + bw
                else:
                    idx[p, oh, ow] = p * h * w + bw * h + bh


@pjit
def _avg_pool(x, out, count, kh, kw, sh, sw, pt, pl, dh, dw):
    """x (P, H, W) -> out (P, OH, OW): window sums tap by tap over 2-D views (as _max_pool),
    then divided by count (OH, OW)."""
    p_count, h, w = x.shape
    oh_count, ow_count = out.shape[1], out.shape[2]
    for p in prange(p_count):
        oc = out[p]
        oc[:, :] = 0
        for i in range(kh):
            r0, r1 = _valid_range(i * dh - pt, sh, h, oh_count)
            if r1 <= r0:
                continue
            ih0 = r0 * sh + i * dh - pt
            for j in range(kw):
                c0, c1 = _valid_range(j * dw - pl, sw, w, ow_count)
                if c1 <= c0:
                    continue
                iw0, iw1 = c0 * sw + j * dw - pl, (c1 - 1) * sw + j * dw - pl + 1
                for a in range(r1 - r0):
                    orow = oc[r0 + a, c0:c1]  # rows from the planes: contiguous for unit stride
                    if sw == 1:
                        xrow = x[p, ih0 + a * sh, iw0:iw1]
                        for b in range(c1 - c0):
                            orow[b] += xrow[b]
                    else:
                        xrow2 = x[p, ih0 + a * sh, iw0:iw1:sw]
                        for b in range(c1 - c0):
                            orow[b] += xrow2[b]
        for a in range(oh_count):
            orow = oc[a]
            crow = count[a]
            for b in range(ow_count):
                orow[b] = orow[b] / crow[b]


@pjit
def _global_pool(x, out, is_max):
    """x (P, S) -> out (P,): mean (accumulated in float64) or max of each row."""
    p_count, s_count = x.shape
    for p in prange(p_count):
        if is_max:
            best = -np.inf
            for s in range(s_count):
                if x[p, s] > best:
                    best = x[p, s]
            out[p] = best
        else:
            acc = 0.0
            for s in range(s_count):
                acc += x[p, s]
            out[p] = acc / s_count


def _taps_inside(out_count: int, k: int, s: int, d: int, pad: int, lo: int, hi: int) -> np.ndarray:
    """Per output position: how many of its k taps (start o*s - pad, step d) lie in [lo, hi)."""
    start = np.arange(out_count)[:, None] * s - pad + np.arange(k)[None, :] * d
    return ((start >= lo) & (start < hi)).sum(axis=1)


def _window(node):
    a = node.attrs
    kh, kw = a["kernel"]
    sh, sw = a.get("strides", (1, 1))
    pt, pl, pb, pr = a.get("pads", (0, 0, 0, 0))
    dh, dw = a.get("dilations", (1, 1))
    return kh, kw, sh, sw, pt, pl, pb, pr, dh, dw


def _planes(graph, node):
    xv, yv = graph.values[node.inputs[0]], graph.values[node.outputs[0]]
    if len(xv.shape) != 4 or yv.shape[:2] != xv.shape[:2]:
        raise ValueError(f"{node.op} needs NCHW input and output, got {list(xv.shape)} -> {list(yv.shape)}")
    n, c, h, w = xv.shape
    return n * c, h, w, yv.shape[2], yv.shape[3], np.dtype(xv.dtype)


@register("MaxPool")
def build_max_pool(node, graph):
    kh, kw, sh, sw, pt, pl, _, _, dh, dw = _window(node)
    p, h, w, oh, ow, dtype = _planes(graph, node)
    lowest = dtype.type(-np.inf) if dtype.kind == "f" else np.iinfo(dtype).min
    order = int(node.attrs.get("storage_order", 0))
    with_idx = len(node.outputs) > 1 and bool(node.outputs[1])

    def run(ins, outs):
        x = ins[0].reshape(p, h, w)
        y = outs[0].reshape(p, oh, ow)
        if with_idx:
            _max_pool_indices(x, y, outs[1].reshape(p, oh, ow), kh, kw, sh, sw, pt, pl, dh, dw, order)
        else:
            _max_pool(x, y, kh, kw, sh, sw, pt, pl, dh, dw, lowest)

    return run


@register("AveragePool")
def build_average_pool(node, graph):
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw = _window(node)
    p, h, w, oh, ow, dt = _planes(graph, node)
    if node.attrs.get("count_include_pad", False):
        ch = _taps_inside(oh, kh, sh, dh, pt, -pt, h + pb)
        cw = _taps_inside(ow, kw, sw, dw, pl, -pl, w + pr)
    else:
        ch = _taps_inside(oh, kh, sh, dh, pt, 0, h)
        cw = _taps_inside(ow, kw, sw, dw, pl, 0, w)
    # a window with no tap in range sums to 0; dividing by 1 keeps it 0 instead of NaN
    count = readonly(np.maximum(ch[:, None] * cw[None, :], 1).astype(dt))

    def run(ins, outs):
        _avg_pool(ins[0].reshape(p, h, w), outs[0].reshape(p, oh, ow), count, kh, kw, sh, sw, pt, pl, dh, dw)

    return run


@register("GlobalAveragePool", "GlobalMaxPool")
def build_global_pool(node, graph):
    shape = graph.values[node.inputs[0]].shape
    if len(shape) < 3:
        raise ValueError(f"{node.op} needs rank >= 3, got {list(shape)}")
    p = shape[0] * shape[1]
    is_max = node.op == "GlobalMaxPool"

    def run(ins, outs):
        _global_pool(ins[0].reshape(p, -1), outs[0].reshape(p), is_max)

    return run

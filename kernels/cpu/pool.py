"""Pooling (NCHW): MaxPool (+ Indices) and AveragePool (the global pools are reduce.py's).

Every kernel runs over the N*C planes in parallel. The output size comes from the output
Value (the frontend resolved auto_pad and ceil_mode), so a window may hang past the padded
input when ceil_mode was set; the loops clip every window to the real input.

- MaxPool ignores padding (it is -inf) and NaN inputs (comparisons with NaN are false): the
  max of a window's non-NaN taps, -inf when there are none. Without Indices it is separable
  (_pool_planes: a max over the kh input rows, then over kw columns, kh + kw passes instead of
  kh * kw; a 3-tall window's rows in one pass of three loads, a 3-wide stride-2 one's columns
  split into even and odd lanes by vector shuffles: vector_ir.max3_stride2_run, 64 outputs a
  step on 8-bit codes, 0.4-0.7x the strided scalar loop on the ResNet and SqueezeNet stem
  pools); with Indices a per-pixel loop records the first maximum in row-major
  window order, as onnxruntime does, flattened over the whole input:
  ``(n*C + c)*H*W + h*W + w`` (storage_order 0) or ``(n*C + c)*H*W + w*H + h`` (1).
- AveragePool is the same separable kernel with sums, divided by a per-pixel count fixed at
  build time: the window's taps inside the real input (count_include_pad=0) or inside the
  padded input ``[-pad_begin, size + pad_end)`` (count_include_pad=1), the part of a ceil_mode
  window hanging past that excluded.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.aligned import per_thread
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.conv_common import valid_range as _valid_range
from cnnrt.kernels.cpu.native_call import NativeStep
from cnnrt.kernels.cpu.reduce import _global_pool, _global_pool_serial
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.vector_ir import max3_stride2_run
from cnnrt.kernels.registry import register, run_of

# Every helper below takes flat arrays and element offsets, never slices: a slice (or an array
# passed to a non-inlined function) costs a reference-count update, and once per short row
# that was most of the time on small planes such as GoogLeNet's 7x7.


@njit(inline="always")
def _tap(d, do, s, so, n, is_max):
    """d[do : do+n] = max(d, s[so : so+n]) (a NaN-skipping select) or d + s. The branch is
    outside the loops: one per element kept LLVM from vectorising them."""
    do, so = np.uint64(do), np.uint64(so)  # unsigned: no wraparound test, the loops vectorise
    if is_max:
        for q in range(n):
            uq = np.uint64(q)
            v = s[so + uq]
            m = d[do + uq]
            d[do + uq] = v if v > m else m
    else:
        for q in range(n):
            uq = np.uint64(q)
            d[do + uq] += s[so + uq]


@njit(inline="always")
def _max3(d, do, s, so, step, n, init):
    """d[do + q] = max(init, s[so + q], s[so + q + step], s[so + q + 2*step]), NaN skipped."""
    do, so, us = np.uint64(do), np.uint64(so), np.uint64(step)
    for q in range(n):
        b = so + np.uint64(q)
        v0, v1, v2 = s[b], s[b + us], s[b + us + us]
        acc = v0 if v0 > init else init
        acc = v1 if v1 > acc else acc
        d[do + np.uint64(q)] = v2 if v2 > acc else acc


@njit(inline="always")
def _fill(d, do, n, value):
    do = np.uint64(do)
    for q in range(n):
        d[do + np.uint64(q)] = value


@njit(inline="always")
def _vertical_rows(x, xo, vb, vo, o0, o1, h, w, kh, sh, pt, dh, is_max, init):
    """vb[vo + o*w : ... + w] = reduce of input rows o*sh - pt + i*dh inside [0, h) of the plane
    at x[xo], for o in [o0, o1): whole input rows, contiguous."""
    for o in range(o0, o1):
        top = o * sh - pt
        if is_max and kh == 3 and top >= 0 and top + 2 * dh < h:  # one pass, three loads
            _max3(vb, vo + o * w, x, xo + top * w, dh * w, w, init)
            continue
        _fill(vb, vo + o * w, w, init)
        for i in range(kh):
            ih = o * sh - pt + i * dh
            if 0 <= ih < h:
                _tap(vb, vo + o * w, x, xo + ih * w, w, is_max)


@njit(inline="always")
def _fix_columns(vb, vo, out, oo, rows, w, ow, kw, sw, pl, dw, c0, c1, is_max, init):
    """out[oo + r*ow + q] for the columns q outside [c0, c1) (a tap falls outside the row), the
    taps' range worked out per column: no test per tap."""
    if is_max and kw == 3 and sw == 1 and dw == 1 and pl == 1 and c0 == 1 and c1 == w - 1 and ow == w:
        # GoogLeNet's 3x3/s1/p1: the two edge columns directly (the loop below: ~17 cycles each,
        # most of the time on 7x7 planes)
        for r in range(rows):
            vr = vo + r * w
            v0, v1 = vb[vr], vb[vr + 1]
            m = v0 if v0 > init else init
            out[oo + r * ow] = v1 if v1 > m else m
            v0, v1 = vb[vr + w - 2], vb[vr + w - 1]
            m = v0 if v0 > init else init
            out[oo + r * ow + w - 1] = v1 if v1 > m else m
        return
    for r in range(rows):
        vr = vo + r * w
        for f in range(c0 + ow - c1):
            q = f if f < c0 else c1 + f - c0
            base = q * sw - pl
            j0 = 0 if base >= 0 else (dw - 1 - base) // dw
            j1 = min(kw, (w - 1 - base) // dw + 1) if base <= w - 1 else 0
            acc = init
            for j in range(j0, j1):
                v = vb[vr + base + j * dw]
                if is_max:
                    acc = v if v > acc else acc
                else:
                    acc += v
            out[oo + r * ow + q] = acc


@njit
def _pool_planes(x, xo, out, oo, vb, npl, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, is_max, init, count):
    """npl consecutive planes from flat offsets x[xo] (H*W each) -> out[oo] (OH*OW each).

    Separable: vb[o, :] = reduce of the kh input rows of output row o (whole rows: contiguous),
    then out[o, q] = reduce of the kw taps of vb[o]: kh + kw passes instead of kh * kw. When
    sh = 1 and OH = H the rows of all npl planes whose taps lie inside their plane are one flat
    pass per tap (the edge rows, and the junk a tap read across planes, are redone per plane),
    and when sw = 1 and OW = W so are the columns: GoogLeNet's 3x3/s1/p1 pools on 7x7 and
    14x14 planes were mostly per-row overhead. Averages are divided by count (OH, OW) last."""
    hw = h * w
    c0 = _valid_range(-pl, sw, w, ow)[0]  # columns [c0, c1) have every tap inside the row
    c1 = max(c0, _valid_range((kw - 1) * dw - pl, sw, w, ow)[1])
    # -- vertical, into vb (npl * OH rows of w)
    if sh == 1 and oh == h:
        a = min(max(0, pt), oh)  # rows [a, b) have every tap inside the plane
        b = max(a, min(oh, h + pt - (kh - 1) * dh))
        n = (npl - 1) * hw + (b - a) * w  # row a of the first plane to row b of the last
        if b > a and is_max and kh == 3:  # one pass, three loads (four passes: 1.6x slower)
            _max3(vb, a * w, x, xo + (a - pt) * w, dh * w, n, init)
        elif b > a:
            _fill(vb, a * w, n, init)
            for i in range(kh):
                _tap(vb, a * w, x, xo + (a - pt + i * dh) * w, n, is_max)
        for p in range(npl):
            _vertical_rows(x, xo + p * hw, vb, p * hw, 0, a, h, w, kh, sh, pt, dh, is_max, init)
            _vertical_rows(x, xo + p * hw, vb, p * hw, b, oh, h, w, kh, sh, pt, dh, is_max, init)
    else:
        for p in range(npl):
            _vertical_rows(x, xo + p * hw, vb, p * oh * w, 0, oh, h, w, kh, sh, pt, dh, is_max, init)
    # -- horizontal, vb -> out
    rows = npl * oh
    if sw == 1 and ow == w:
        n = rows * w
        lo = min(pl, n)  # flat outputs whose taps all lie in vb (junk across row ends: fixed below)
        hi = max(lo, n - max(0, (kw - 1) * dw - pl))
        if is_max and kw == 3:
            _max3(out, oo + lo, vb, lo - pl, dw, hi - lo, init)
        else:
            _fill(out, oo + lo, hi - lo, init)
            for j in range(kw):
                _tap(out, oo + lo, vb, lo - pl + j * dw, hi - lo, is_max)
    else:
        m = c1 - c0
        base0 = max(0, c0 * sw - pl)
        usw, udw = np.uint64(sw), np.uint64(dw)
        for r in range(rows):
            s0 = np.uint64(r * w + base0)
            d0 = np.uint64(oo + r * ow + c0)
            # the interior in one loop, taps unrolled for the common 3-wide max and 2-wide
            # average (a pass per tap made stride-2 rows ~2x slower)
            if is_max and kw == 3 and sw == 2 and dw == 1:
                max3_stride2_run(vb, np.int64(s0), out, np.int64(d0), m, init)
            elif is_max and kw == 3:
                for q in range(m):
                    bq = s0 + np.uint64(q) * usw
                    v0, v1, v2 = vb[bq], vb[bq + udw], vb[bq + udw + udw]
                    acc = v0 if v0 > init else init
                    acc = v1 if v1 > acc else acc
                    out[d0 + np.uint64(q)] = v2 if v2 > acc else acc
            elif not is_max and kw == 2:
                for q in range(m):
                    bq = s0 + np.uint64(q) * usw
                    out[d0 + np.uint64(q)] = init + vb[bq] + vb[bq + udw]
            else:
                _fill(out, d0, m, init)
                for j in range(kw):
                    sj = s0 + np.uint64(j * dw)
                    for q in range(m):
                        uq = np.uint64(q)
                        v = vb[sj + uq * usw]
                        if is_max:
                            acc = out[d0 + uq]
                            out[d0 + uq] = v if v > acc else acc
                        else:
                            out[d0 + uq] += v
    _fix_columns(vb, 0, out, oo, rows, w, ow, kw, sw, pl, dw, c0, c1, is_max, init)
    if not is_max:
        ohw = oh * ow
        cflat = count.reshape(ohw)
        for p in range(npl):  # a plane at a time: a loop over OW alone never ran vectorised
            d = np.uint64(oo + p * ohw)
            for e in range(ohw):
                out[d + np.uint64(e)] /= cflat[e]


@njit
def _pool_worker(
    t, _nthreads, form, x, out, h, w, kh, kw, sh, sw, pt, pl, dh, dw, is_max, init, count, vbuf, counter, chunk
):
    """Thread t's share (kernels.cpu.threaded) of x (P*H*W,) -> out (P*OH*OW,) flat, max
    (is_max) or average pooling, any stride, dilation and padding (taps outside the input are
    skipped; count holds the divisors): chunks of ``chunk`` planes claimed from ``counter`` (as
    the GEMM kernels do); vbuf[t] is thread t's vertical-pass scratch."""
    oh, ow = count.shape
    p_count = x.shape[0] // (h * w)
    n_tasks = (p_count + chunk - 1) // chunk
    vb = vbuf[t]
    task = blas.claim(counter)
    while task < n_tasks:
        p0 = task * chunk
        npl = min(p_count, p0 + chunk) - p0
        xo, oo = p0 * h * w, p0 * oh * ow
        _pool_planes(x, xo, out, oo, vb, npl, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, is_max, init, count)
        task = blas.claim(counter)


_pool, _pool_serial = threaded(_pool_worker)


@pjit
def _max_pool_indices(x, out, idx, kh, kw, sh, sw, pt, pl, dh, dw, storage_order):
    """Like _max_pool, also writing the flat input index of each maximum (first one wins)."""
    p_count, h, w = x.shape
    oh_count, ow_count = out.shape[1], out.shape[2]
    for p in prange(p_count):
        for oh in range(oh_count):
            for ow in range(ow_count):
                best, bh, bw = -np.inf, -1, -1
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
def _pool2x2(x, out, count, h, w, is_max, init):
    """2x2 windows at stride 2, every one inside its plane (LeNet's and VGG's pools): out
    (P*OH*OW,) from x (P*H*W,), in the generic path's order (two rows per column, then two
    columns), averages divided by count. A plane of LeNet's took ~20 row-sized loops there."""
    oh, ow = count.shape
    cflat = count.reshape(oh * ow)
    for p in prange(x.shape[0] // (h * w)):
        xb = p * h * w
        ob = p * oh * ow
        for r in range(oh):
            r0 = np.uint64(xb + 2 * r * w)
            r1 = r0 + np.uint64(w)
            o = np.uint64(ob + r * ow)
            for q in range(ow):
                c = np.uint64(2 * q)
                a0, a1, b0, b1 = x[r0 + c], x[r0 + c + np.uint64(1)], x[r1 + c], x[r1 + c + np.uint64(1)]
                if is_max:  # NaN skipped, as the generic path
                    u = a0 if a0 > init else init
                    u = b0 if b0 > u else u
                    v = a1 if a1 > init else init
                    v = b1 if b1 > v else v
                    out[o + np.uint64(q)] = v if v > u else u  # u >= init already
                else:
                    out[o + np.uint64(q)] = (init + (init + a0 + b0) + (init + a1 + b1)) / cflat[r * ow + q]


_pool2x2_serial = serial_twin(_pool2x2)


class _Pooler:
    """Per-thread scratch (rows padded apart: no false sharing), task counter and chunk size
    of _pool for one node, and the serial/parallel choice."""

    def __init__(self, p, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, is_max, init, count):
        t = numba.config.NUMBA_NUM_THREADS
        self.counter = np.zeros(1, np.int64)
        # ~8K input elements per task (in L1/L2 with its scratch), >= 8 tasks when there are
        # planes enough
        self.chunk = max(1, min(-(-8192 // (h * w)), p // 8))
        self.vbuf = per_thread(t, -(-self.chunk * oh * w // 16) * 16 + 16, count.dtype)
        self.args = (h, w, kh, kw, sh, sw, pt, pl, dh, dw, is_max, init, count)
        self.work = p * (oh * w * kh + oh * ow * kw)
        whole_2x2 = (oh, ow) == ((h - 2) // 2 + 1, (w - 2) // 2 + 1) and min(oh, ow) > 0
        self.fast = whole_2x2 and (kh, kw, sh, sw, pt, pl, dh, dw) == (2, 2, 2, 2, 0, 0, 1, 1)
        self.fast_args = (count, h, w, is_max, init)

    def step(self, x, y, nthreads: int) -> NativeStep:
        """The kernel call on ``x`` and ``y``."""
        nthreads = min(nthreads, self.vbuf.shape[0])
        if self.fast:
            kern = pick(_pool2x2, _pool2x2_serial, self.work, nthreads)
            return NativeStep(kern, (x.reshape(-1), y.reshape(-1), *self.fast_args))
        kern = pick(_pool, _pool_serial, self.work, nthreads)
        args = (nthreads, (), x.reshape(-1), y.reshape(-1), *self.args, self.vbuf, self.counter, self.chunk)
        return NativeStep(kern, args, ((self.counter, 0, 0),))

    def bind(self, ins, outs):
        """The step on these arrays as a call without arguments, offered to a native plan."""
        x, y = ins[0], outs[0]

        def call():
            self.step(x, y, num_threads()).run()

        call.native = lambda nthreads: (self.step(x, y, nthreads),)
        return call


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
    if len(node.outputs) > 1 and bool(node.outputs[1]):

        def run_indices(ins, outs):
            x, y = ins[0].reshape(p, h, w), outs[0].reshape(p, oh, ow)
            _max_pool_indices(x, y, outs[1].reshape(p, oh, ow), kh, kw, sh, sw, pt, pl, dh, dw, order)

        return run_indices
    ones = readonly(np.ones((oh, ow), dtype))  # divisors: unused by max, they give the output shape
    return run_of(_Pooler(p, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, True, lowest, ones).bind)


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
    if (oh, ow, kh, kw, pt, pl, pb, pr) == (1, 1, h, w, 0, 0, 0, 0) and dt.kind == "f":
        # one window over the whole plane (GoogLeNet's 7x7 head): a global average
        def run_global(ins, outs):
            pick(_global_pool, _global_pool_serial, p * h * w, num_threads())(
                ins[0].reshape(p, h * w), outs[0].reshape(p), False, 16
            )

        return run_global
    return run_of(_Pooler(p, h, w, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw, False, dt.type(0), count).bind)

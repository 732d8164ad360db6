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

import numba
import numpy as np
from cnnrt.kernels import register
from cnnrt.kernels._jit import njit, pick, pjit, serial_twin
from cnnrt.kernels.cpu import blas
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
                for j in range(kw):
                    off = j * dw - pl
                    c0, c1 = _valid_range(off, sw, w, ow_count)
                    for q in range(c0, c1):
                        v = xr[np.uint64(q * sw + off)]
                        m = orow[np.uint64(q)]
                        orow[np.uint64(q)] = v if v > m else m  # a select: vectorises


@pjit
def _pool_flat(x, out, kh, kw, sh, sw, pt, pl, is_max, pad_value, count, xbuf, abuf, counter, nthreads, chunk):
    """Max (is_max) or average pooling with dilation 1, taps as whole-plane vector passes.

    Each plane is copied, padded with ``pad_value`` (lowest for max, 0 for average), into sw
    column phases: phase k holds the
    padded columns k, k + sw, ... as rows of owv values. With R = sh*owv, output (oh, ow) gets
    the virtual flat index o = oh*R + ow, and tap (i, j) is element o + i*owv + j // sw of
    phase j % sw: one contiguous, vectorised pass over all outputs per tap (the junk between
    output rows is dropped at the end; averages are divided by ``count`` (OH, OW) there).
    Rows of 14-56 outputs made a row-wise kernel mostly overhead (GoogLeNet's pools: 3-10x).

    Threads claim chunks of planes (as the GEMM kernels do) and keep their padded plane
    (xbuf[t], its border filled once) and accumulator (abuf[t]) across planes."""
    p_count, h, w = x.shape
    oh_count, ow_count = out.shape[1], out.shape[2]
    owv = -(-((ow_count - 1) * sw + kw) // sw)
    wp = sw * owv
    hp = (oh_count - 1) * sh + kh
    plane = hp * owv
    r = sh * owv
    n_acc = (oh_count - 1) * r + ow_count
    c1 = max(0, min(w, wp - pl))  # input columns that land in the padded plane
    n_tasks = (p_count + chunk - 1) // chunk
    for t in prange(nthreads):
        xph = xbuf[t]
        acc = abuf[t]
        xph[:] = pad_value  # the border; every plane overwrites the same interior
        while True:
            task = blas.claim(counter)
            if task >= n_tasks:
                break
            for p in range(task * chunk, min(p_count, task * chunk + chunk)):
                _pool_plane(x, out, p, xph, acc, kh, kw, sh, sw, pt, pl, is_max, pad_value, count,
                            owv, plane, r, n_acc, c1)  # fmt: skip


@njit
def _pool_plane(x, out, p, xph, acc, kh, kw, sh, sw, pt, pl, is_max, pad_value, count, owv, plane, r, n_acc, c1):
    """One plane of _pool_flat."""
    h = x.shape[1]
    oh_count, ow_count = out.shape[1], out.shape[2]
    hp = (oh_count - 1) * sh + kh
    xp = x[p]
    op = out[p]
    for row in range(max(0, min(h, hp - pt))):
        base = (row + pt) * owv
        ur = np.uint64(row)
        if sw == 1:  # unsigned flat indices, no slices: a slice per short row cost more than the row
            for q in range(c1):
                xph[np.uint64(base + pl + q)] = xp[ur, np.uint64(q)]
        elif sw == 2:
            src = xp[row]
            # input columns in pairs (2u, 2u + 1), both phases in one loop: LLVM loads them
            # as one interleaved group. Padded column q + pl goes to phase (q + pl) % 2.
            half = c1 // 2
            ev = xph[(pl % 2) * plane + base + pl // 2 :]  # where input column 2u goes (at u)
            od = xph[(1 - pl % 2) * plane + base + (pl + 1) // 2 :]  # and 2u + 1
            for u in range(half):
                ev[u] = src[np.uint64(2 * u)]
                od[u] = src[np.uint64(2 * u + 1)]
            if c1 % 2:
                ev[half] = src[c1 - 1]
        else:
            for q in range(c1):
                pc = q + pl
                xph[np.uint64((pc % sw) * plane + base + pc // sw)] = xp[ur, np.uint64(q)]
    acc[:] = pad_value
    for i in range(kh):
        for j in range(kw):
            src = xph[(j % sw) * plane + i * owv + j // sw :]
            if is_max:
                for q in range(n_acc):
                    v = src[q]
                    m = acc[q]
                    acc[q] = v if v > m else m  # a select: NaN inputs are skipped, as in _max_pool
            else:
                for q in range(n_acc):
                    acc[q] += src[q]
    for o in range(oh_count):
        uo = np.uint64(o)
        if is_max:
            for q in range(ow_count):
                op[uo, np.uint64(q)] = acc[np.uint64(o * r + q)]
        else:
            for q in range(ow_count):
                op[uo, np.uint64(q)] = acc[np.uint64(o * r + q)] / count[uo, np.uint64(q)]


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


_pool_flat_serial = serial_twin(_pool_flat)
_global_pool_serial = serial_twin(_global_pool)


def _flat_buffers(p, oh, ow, kh, kw, sh, sw, dtype):
    """Per-thread scratch of _pool_flat, a task counter, and planes per task."""
    import numba

    owv = -(-((ow - 1) * sw + kw) // sw)
    plane = ((oh - 1) * sh + kh) * owv
    n_acc = (oh - 1) * sh * owv + ow
    t = numba.config.NUMBA_NUM_THREADS
    chunk = max(1, min(64, p // 16))  # >= 16 tasks when there are planes enough
    return np.zeros((t, sw * plane), dtype), np.zeros((t, n_acc), dtype), np.zeros(1, np.int64), chunk


def _run_flat(x, y, kh, kw, sh, sw, pt, pl, is_max, pad_value, count, bufs):
    import numba

    xbuf, abuf, counter, chunk = bufs
    counter[0] = 0
    nthreads = min(numba.get_num_threads(), xbuf.shape[0])
    work = x.shape[0] * abuf.shape[1] * kh * kw
    kern = pick(_pool_flat, _pool_flat_serial, work, nthreads)
    kern(x, y, kh, kw, sh, sw, pt, pl, is_max, pad_value, count, xbuf, abuf, counter, nthreads, chunk)


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
    flat = (dh, dw) == (1, 1)
    no_count = readonly(np.ones((1, 1), dtype))
    bufs = _flat_buffers(p, oh, ow, kh, kw, sh, sw, dtype)

    def run(ins, outs):
        x = ins[0].reshape(p, h, w)
        y = outs[0].reshape(p, oh, ow)
        if with_idx:
            _max_pool_indices(x, y, outs[1].reshape(p, oh, ow), kh, kw, sh, sw, pt, pl, dh, dw, order)
        elif flat:
            _run_flat(x, y, kh, kw, sh, sw, pt, pl, True, lowest, no_count, bufs)
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
    if (oh, ow, kh, kw, pt, pl, pb, pr) == (1, 1, h, w, 0, 0, 0, 0) and dt.kind == "f":
        # one window over the whole plane (GoogLeNet's 7x7 head): a global average
        def run_global(ins, outs):
            pick(_global_pool, _global_pool_serial, p * h * w, numba.get_num_threads())(
                ins[0].reshape(p, h * w), outs[0].reshape(p), False
            )

        return run_global

    zero = dt.type(0)
    flat = (dh, dw) == (1, 1)
    bufs = _flat_buffers(p, oh, ow, kh, kw, sh, sw, dt)

    def run(ins, outs):
        x, y = ins[0].reshape(p, h, w), outs[0].reshape(p, oh, ow)
        if flat:
            _run_flat(x, y, kh, kw, sh, sw, pt, pl, False, zero, count, bufs)
        else:
            _avg_pool(x, y, count, kh, kw, sh, sw, pt, pl, dh, dw)

    return run


@register("GlobalAveragePool", "GlobalMaxPool")
def build_global_pool(node, graph):
    shape = graph.values[node.inputs[0]].shape
    if len(shape) < 3:
        raise ValueError(f"{node.op} needs rank >= 3, got {list(shape)}")
    p = shape[0] * shape[1]
    is_max = node.op == "GlobalMaxPool"

    def run(ins, outs):
        x = ins[0].reshape(p, -1)
        pick(_global_pool, _global_pool_serial, x.size, numba.get_num_threads())(x, outs[0].reshape(p), is_max)

    return run

"""The transforms of Winograd F(4x4, 3x3) (winograd.py), as the task kernel runs them.

The input transform turns a task's padded input rows into V (36 x tiles x C), channel-last so
both passes run along contiguous vectors; the output stage applies A^T . A to the GEMMs'
result Mo (36 x tiles x M) and the scatter writes the 4x4 output tiles with the epilogue
(bias, residual, activation) into an NCHW or channel-blocked output.
"""

from __future__ import annotations

import numpy as np

from cnnrt.kernels._jit import njit
from cnnrt.kernels.cpu.activation import act_inplace, act_row

# typed constants: a Python int times float32 is float64 in Numba, which halved the vector width
_C2, _C4, _C5, _C8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)


@njit
def input_transform(x, n, ty0, ty1, tw, pt, pl, xt, tv, vs, nt, j0, lanes):
    """vs[((r*6 + s)*nt + j0 + j)*C + c] = (B^T d B)[r, s] for tile j of rows [ty0, ty1), channel c.

    Tiles are short rows (14 tiles for a 56-wide image), channels are many: the padded input
    rows are first copied channel-last into xt (prow x wp x C), so both passes of the
    transform run along contiguous vectors of channels, and V comes out as (36, tiles, C),
    the transposed B operand of the GEMMs. A blocked input (``lanes`` > 0, see
    _winograd_tasks) is channel-last within a block already: whole vectors copy."""
    b_in = max(1, lanes)
    c_count, h, w = x.shape[1] * b_in, x.shape[2], x.shape[3] // b_in
    prow = (ty1 - ty0) * 4 + 2
    wp = tw * 4 + 2
    ih0 = ty0 * 4 - pt
    lo = min(wp, max(0, pl))  # padded columns [lo, hi) lie inside the input
    hi = max(lo, min(wp, w + pl))
    rowlen = wp * c_count
    for r in range(prow):
        ih = ih0 + r
        base = r * rowlen
        if ih < 0 or ih >= h:
            for q in range(rowlen):
                xt[base + q] = 0
            continue
        for q in range(lo * c_count):
            xt[base + q] = 0
        for q in range(hi * c_count, rowlen):
            xt[base + q] = 0
        if lanes > 0:
            for cb in range(c_count // lanes):
                xrow = x[n, cb, ih]
                for col in range(lo, hi):
                    src = xrow[(col - pl) * lanes : (col - pl + 1) * lanes]
                    d = xt[base + col * c_count + cb * lanes : base + col * c_count + (cb + 1) * lanes]
                    for q in range(lanes):
                        d[q] = src[q]
            continue
        for c in range(c_count):
            xrow = x[n, c, ih, lo - pl : hi - pl]
            dst = xt[base + lo * c_count + c : base + hi * c_count : c_count]
            for q in range(hi - lo):
                dst[q] = xrow[q]
    for ty in range(ty1 - ty0):
        r0 = ty * 4 * rowlen
        _bt(xt, r0, rowlen, tv, 0, rowlen, rowlen)  # B^T over the 6 rows, whole padded rows at once
        for r in range(6):  # B over the 6 columns of each tile
            for tx in range(tw):
                src = r * rowlen + tx * 4 * c_count
                _bt(tv, src, c_count, vs, ((r * 6) * nt + j0 + ty * tw + tx) * c_count, nt * c_count, c_count)


@njit(inline="always")
def _bt(src, s0, sstep, dst, d0, dstep, n):
    """dst[d0 + i*dstep + q] = (B^T e)[i] for q < n, with e_j = src[s0 + j*sstep + q]: one
    pass of the input transform along vectors (of whole padded rows, or of channels).

    Views indexed by the bare loop variable: Numba then emits no negative-index wraparound
    and LLVM vectorises (indexing with o + c did not)."""
    e0, e1, e2, e3, e4, e5 = _six(src, s0, sstep, n)
    v0, v1, v2, v3, v4, v5 = _six(dst, d0, dstep, n)
    for q in range(n):
        v0[q] = _C4 * e0[q] - _C5 * e2[q] + e4[q]
        v1[q] = -_C4 * (e1[q] + e2[q]) + e3[q] + e4[q]
        v2[q] = _C4 * (e1[q] - e2[q]) - e3[q] + e4[q]
        v3[q] = _C2 * (e3[q] - e1[q]) - e2[q] + e4[q]
        v4[q] = _C2 * (e1[q] - e3[q]) - e2[q] + e4[q]
        v5[q] = _C4 * e1[q] - _C5 * e3[q] + e5[q]


@njit(inline="always")
def _six(a, start, step, n):
    """The 6 views a[start + i*step : start + i*step + n] a transform pass reads or writes."""
    return (
        a[start : start + n],
        a[start + step : start + step + n],
        a[start + 2 * step : start + 2 * step + n],
        a[start + 3 * step : start + 3 * step + n],
        a[start + 4 * step : start + 4 * step + n],
        a[start + 5 * step : start + 5 * step + n],
    )


@njit(inline="always")
def _at(m0, m1, m2, m3, m4, m5):
    """A^T applied to 6 values of a column (or row) of Mo: its 4 outputs."""
    a12 = m1 + m2
    d12 = m1 - m2
    a34 = m3 + m4
    d34 = m3 - m4
    return m0 + a12 + a34, d12 + _C2 * d34, a12 + _C4 * a34, d12 + _C8 * d34 + m5


@njit
def output_stage(ms, ys, ln):
    """ys[a*4 + b, q] = (A^T Mo A)[a, b] for every (tile, channel) q at once, along the
    contiguous (tile, channel) axis of Mo (36 x ln) into ys (16 x ln)."""
    for q in range(ln):
        c0 = _at(ms[q], ms[6 * ln + q], ms[12 * ln + q], ms[18 * ln + q], ms[24 * ln + q], ms[30 * ln + q])
        c1 = _at(ms[ln + q], ms[7 * ln + q], ms[13 * ln + q], ms[19 * ln + q], ms[25 * ln + q], ms[31 * ln + q])
        c2 = _at(ms[2 * ln + q], ms[8 * ln + q], ms[14 * ln + q], ms[20 * ln + q], ms[26 * ln + q], ms[32 * ln + q])
        c3 = _at(ms[3 * ln + q], ms[9 * ln + q], ms[15 * ln + q], ms[21 * ln + q], ms[27 * ln + q], ms[33 * ln + q])
        c4 = _at(ms[4 * ln + q], ms[10 * ln + q], ms[16 * ln + q], ms[22 * ln + q], ms[28 * ln + q], ms[34 * ln + q])
        c5 = _at(ms[5 * ln + q], ms[11 * ln + q], ms[17 * ln + q], ms[23 * ln + q], ms[29 * ln + q], ms[35 * ln + q])
        for a in range(4):
            y0, y1, y2, y3 = _at(c0[a], c1[a], c2[a], c3[a], c4[a], c5[a])
            ys[4 * a * ln + q] = y0
            ys[(4 * a + 1) * ln + q] = y1
            ys[(4 * a + 2) * ln + q] = y2
            ys[(4 * a + 3) * ln + q] = y3


@njit
def output_scatter(ys, ln, ld, mm, out, res, has_res, bias, seg, kind, alpha, beta):
    """out[n, m0 + m, 4ty + a, 4tx + b] = act(ys[a*4 + b, tile, m] + bias (+ res)) for the tiles of
    rows [ty0, ty1) (block tiles from j0 on; ``seg`` = (n, m0, ty0, ty1, tw, j0)), clipped to the
    output: per output row, the 4 column phases are interleaved into the row and the epilogue
    runs along it."""
    n, m0, ty0, ty1, tw, j0 = seg
    oh, ow = out.shape[2], out.shape[3]
    full = min(tw, ow // 4)
    for m in range(mm):
        b = bias[m0 + m]
        for ty in range(ty1 - ty0):
            for a in range(4):
                o = (ty0 + ty) * 4 + a
                if o >= oh:
                    break
                orow = out[n, m0 + m, o]
                y0 = (a * 4) * ln + (j0 + ty * tw) * ld + m  # ys is (tile, m): tile tx at y0 + tx*ld
                for tx in range(full):
                    orow[tx * 4] = ys[y0 + tx * ld]
                    orow[tx * 4 + 1] = ys[y0 + ln + tx * ld]
                    orow[tx * 4 + 2] = ys[y0 + 2 * ln + tx * ld]
                    orow[tx * 4 + 3] = ys[y0 + 3 * ln + tx * ld]
                for q in range(full * 4, ow):
                    orow[q] = ys[y0 + (q - full * 4) * ln + full * ld]
                if has_res:
                    act_row(orow, b, res[n, m0 + m, o], True, kind, alpha, beta)
                else:
                    act_row(orow, b, orow, False, kind, alpha, beta)


@njit
def output_scatter_blocked(ys, ln, ld, mm, out, res, has_res, bias, seg, kind, alpha, beta, lanes, channels):
    """output_scatter for a blocked output (the 4-D view of _winograd_tasks): per output row
    of each channel block, every pixel's lanes are one contiguous vector of ys (tile, m). The
    lanes past the real ``channels`` (padding lanes) are stored as 0: their zero weights give
    0 x Inf = NaN where an input is infinite (cnnrt.core.layout's invariant)."""
    n, m0, ty0, ty1, tw, j0 = seg
    oh, ow = out.shape[2], out.shape[3] // lanes
    for k in range(mm // lanes):
        ob = m0 // lanes + k
        bv = bias[m0 + k * lanes : m0 + (k + 1) * lanes]
        for ty in range(ty1 - ty0):
            for a in range(4):
                o = (ty0 + ty) * 4 + a
                if o >= oh:
                    break
                orow = out[n, ob, o]
                rrow = res[n, ob, o] if has_res else orow
                for q in range(ow):
                    src = (a * 4 + q % 4) * ln + (j0 + ty * tw + q // 4) * ld + k * lanes
                    y = ys[src : src + lanes]
                    d = orow[q * lanes : (q + 1) * lanes]
                    if has_res:
                        r = rrow[q * lanes : (q + 1) * lanes]
                        for v in range(lanes):
                            d[v] = y[v] + bv[v] + r[v]
                    else:
                        for v in range(lanes):
                            d[v] = y[v] + bv[v]
                if kind != 0:
                    act_inplace(orow, kind, alpha, beta)
                live = channels - ob * lanes
                if live < lanes:
                    for q in range(ow):
                        orow[q * lanes + live : (q + 1) * lanes] = 0

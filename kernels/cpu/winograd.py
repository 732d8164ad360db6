"""Winograd F(4x4, 3x3) convolution for 3x3, stride 1, dilation 1, ungrouped layers.

Each 4x4 block of outputs (a tile) comes from a 6x6 block of input:
``Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A`` (Lavin & Gray 2015), so a tile costs 36
multiplications per (input, output) channel pair instead of 144: a GEMM of a quarter of
im2col's FLOPs, in 36 independent (M x C) @ (C x tiles) products. The weights are transformed
once, when the session is built (in float64, then rounded).

Work is split into tasks (image, block of tile rows, block of output channels) claimed from a
shared counter, as in conv_gemm.py. A task transforms its input tiles into per-thread scratch
(``V``: 36 x tiles x C), runs the 36 GEMMs into ``Mo`` (36 x tiles x M: the register tile of
microkernel.py, with rows of V read in place and U packed into column panels at build) and
applies the output transform fused with the epilogue (bias, residual, activation) while
``Mo`` is in cache. Padding is read as zeros; tiles hanging past the output are computed and
dropped.

F(4x4, 3x3) rather than F(2x2, 3x3) (2.25x fewer multiplications) or F(6x6, 3x3) (5.06x, but
transform entries up to ~100 and a markedly larger float32 error): see the accuracy test in
tests/kernels/test_winograd.py for the bound that its transform magnitudes give.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.aligned import aligned_copy, per_thread_shape, shared_scratch
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.activation import act_inplace, act_row
from cnnrt.kernels.cpu.microkernel import MR

# the transforms, for the reference implementation and the tests (the kernels inline them)
BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float64,
)
AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    np.float64,
)
TILE, ALPHA = 4, 6
# typed constants: a Python int times float32 is float64 in Numba, which halved the vector width
_C2, _C4, _C5, _C8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)

_V_BUDGET = 256 << 10  # bytes of transformed input per task
_MIN_TASKS = 8
_MIN_TILES = 16


def transform_weights(w: np.ndarray, dtype) -> np.ndarray:
    """(M, C, 3, 3) -> U (36, C, M) = G g G^T per (m, c), computed in float64, rounded once."""
    # two tensordots (BLAS) rather than one einsum: ResNet-50's 11 layers 0.33 s -> ~0.02 s
    t = np.tensordot(G, np.asarray(w, np.float64), axes=(1, 2))  # (a, m, c, j)
    u = np.tensordot(t, G, axes=(3, 1)).transpose(0, 3, 2, 1)  # (a, b, c, m)
    return np.ascontiguousarray(u.reshape(ALPHA * ALPHA, w.shape[1], w.shape[0]), dtype=dtype)


def pack_u(u: np.ndarray, nr: int) -> np.ndarray:
    """U (36, C, M) -> B panels (36, ceil(M/nr), C, nr) of the register tile (microkernel.py),
    output channels past M zero."""
    pos, c, m = u.shape
    panels = -(-m // nr)
    up = np.zeros((pos, c, panels * nr), u.dtype)
    up[:, :, :m] = u
    return aligned_copy(up.reshape(pos, c, panels, nr).transpose(0, 2, 1, 3))


def plan_blocks(n: int, c: int, m: int, th: int, tw: int, itemsize: int, nr: int) -> tuple[int, int]:
    """(tile rows per task, output channels per task); tile rows count over all images, so a
    task may span several small images.

    The 36 GEMMs of a task are (tiles x C) @ (C x mb): few tiles starve them (and stream the
    transformed weights once per task), so a task gets at least _MIN_TILES tiles, more up to
    the scratch budget; output channels are split before tile rows are cut below that (the
    input transform is then repeated per channel block, a small cost)."""
    g = n * th
    rows = max(1, min(g, _V_BUDGET // max(1, ALPHA * ALPHA * c * tw * itemsize)))
    rows = max(rows, min(g, -(-_MIN_TILES // tw)))
    tasks = -(-g // rows)
    mb = m
    if tasks < _MIN_TASKS and m >= 64:
        mb = blas.split(m, min(-(-_MIN_TASKS // tasks), max(1, m // 64)), nr)
        tasks *= -(-m // mb)
    while tasks < _MIN_TASKS and rows > 1 and (rows // 2) * tw >= _MIN_TILES:
        rows = -(-rows // 2)
        tasks = -(-g // rows) * -(-m // mb)
    return rows, mb


@pjit
def _winograd_tasks(
    x,
    up,
    bias,
    res,
    out,
    vbuf,
    mbuf,
    ybuf,
    pbuf,
    tbuf,
    counter,
    nthreads,
    pt,
    pl,
    rows,
    mb,
    has_res,
    kind,
    alpha,
    beta,
    lanes,
):
    """out = act(conv3x3(x, g) + bias (+ res)) with up = pack_u(transform_weights(g)); see module doc.

    Per-thread scratch: vbuf (36*nt*C + MR*C), mbuf (36*mbp*nt), ybuf (16*mbp*nt) with mbp = mb
    rounded up to whole tile columns, pbuf ((rows*4+2)*(TW*4+2)*C),
    tbuf (6*(TW*4+2)*C) with nt = rows*TW tiles.

    ``lanes`` > 0: x, out and res are channel-blocked (N, C/lanes, H, W, lanes), passed as
    4-D views (N, C/lanes, H, W*lanes)."""
    b_in = max(1, lanes)
    n_count, c_count = x.shape[0], x.shape[1] * b_in
    m_count, oh, ow = out.shape[1] * b_in, out.shape[2], out.shape[3] // b_in
    th = (oh + 3) // 4
    tw = (ow + 3) // 4
    g_count = n_count * th  # tile rows of all images: a block may span images (small ones)
    n_rb = (g_count + rows - 1) // rows
    n_mb = (m_count + mb - 1) // mb
    ntasks = n_rb * n_mb
    u_panels, nr = up.shape[1], up.shape[3]
    zero = bias[0] * 0
    for t in prange(nthreads):
        vs = vbuf[t]
        ms = mbuf[t]
        ys = ybuf[t]
        ph = pbuf[t]
        tv = tbuf[t]
        held = -1
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            blk = i // n_mb
            mi = i - blk * n_mb
            g0 = blk * rows
            g1 = min(g_count, g0 + rows)
            nt = (g1 - g0) * tw
            if blk != held:
                g = g0
                while g < g1:  # one segment per image
                    n = g // th
                    ty0 = g - n * th
                    ty1 = min(th, ty0 + g1 - g)
                    _input_transform(x, n, ty0, ty1, tw, pt, pl, ph, tv, vs, nt, (g - g0) * tw, lanes)
                    g += ty1 - ty0
                held = blk
            m0 = mi * mb
            m1 = min(m_count, m0 + mb)
            mm = m1 - m0
            n_q = (mm + nr - 1) // nr
            ldm = n_q * nr  # Mo rows padded to whole column panels
            for pos in range(36):  # Mo[pos] (tiles x mm) = V[pos] (tiles x C) @ U[pos][:, m0:m1]
                for p in range((nt + MR - 1) // MR):  # MR tiles: rows of V read in place
                    a_off = (pos * nt + p * MR) * c_count
                    c_off = (pos * nt + p * MR) * ldm
                    mr = min(MR, nt - p * MR)
                    for q in range(n_q):
                        b_off = ((pos * u_panels + m0 // nr + q) * c_count) * nr
                        mk.tile(
                            vs,
                            a_off,
                            c_count,
                            1,
                            up,
                            b_off,
                            nr,
                            c_count,
                            ms,
                            c_off + q * nr,
                            ldm,
                            mr,
                            0,
                            bias,
                            0,
                            bias,
                            0,
                            zero,
                            zero,
                        )
            _output_stage(ms, ys, ldm * nt)
            g = g0
            while g < g1:
                n = g // th
                ty0 = g - n * th
                ty1 = min(th, ty0 + g1 - g)
                if lanes > 0:
                    _output_scatter_blocked(
                        ys,
                        ldm * nt,
                        ldm,
                        mm,
                        out,
                        res,
                        has_res,
                        bias,
                        n,
                        m0,
                        ty0,
                        ty1,
                        tw,
                        (g - g0) * tw,
                        kind,
                        alpha,
                        beta,
                        lanes,
                    )
                else:
                    _output_scatter(
                        ys,
                        ldm * nt,
                        ldm,
                        mm,
                        out,
                        res,
                        has_res,
                        bias,
                        n,
                        m0,
                        ty0,
                        ty1,
                        tw,
                        (g - g0) * tw,
                        kind,
                        alpha,
                        beta,
                    )
                g += ty1 - ty0


_winograd_tasks_serial = serial_twin(_winograd_tasks)


@njit
def _input_transform(x, n, ty0, ty1, tw, pt, pl, xt, tv, vs, nt, j0, lanes):
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
        # B^T over the 6 rows, along whole padded rows (all columns and channels at once).
        # Views indexed by the bare loop variable: Numba then emits no negative-index
        # wraparound and LLVM vectorises (indexing with o + c did not).
        d0 = xt[r0 : r0 + rowlen]
        d1 = xt[r0 + rowlen : r0 + 2 * rowlen]
        d2 = xt[r0 + 2 * rowlen : r0 + 3 * rowlen]
        d3 = xt[r0 + 3 * rowlen : r0 + 4 * rowlen]
        d4 = xt[r0 + 4 * rowlen : r0 + 5 * rowlen]
        d5 = xt[r0 + 5 * rowlen : r0 + 6 * rowlen]
        t0 = tv[0:rowlen]
        t1 = tv[rowlen : 2 * rowlen]
        t2 = tv[2 * rowlen : 3 * rowlen]
        t3 = tv[3 * rowlen : 4 * rowlen]
        t4 = tv[4 * rowlen : 5 * rowlen]
        t5 = tv[5 * rowlen : 6 * rowlen]
        for q in range(rowlen):
            t0[q] = _C4 * d0[q] - _C5 * d2[q] + d4[q]
            t1[q] = -_C4 * (d1[q] + d2[q]) + d3[q] + d4[q]
            t2[q] = _C4 * (d1[q] - d2[q]) - d3[q] + d4[q]
            t3[q] = _C2 * (d3[q] - d1[q]) - d2[q] + d4[q]
            t4[q] = _C2 * (d1[q] - d3[q]) - d2[q] + d4[q]
            t5[q] = _C4 * d1[q] - _C5 * d3[q] + d5[q]
        step = nt * c_count
        for r in range(6):  # B over the 6 columns of each tile
            for tx in range(tw):
                src = r * rowlen + tx * 4 * c_count
                e0 = tv[src : src + c_count]
                e1 = tv[src + c_count : src + 2 * c_count]
                e2 = tv[src + 2 * c_count : src + 3 * c_count]
                e3 = tv[src + 3 * c_count : src + 4 * c_count]
                e4 = tv[src + 4 * c_count : src + 5 * c_count]
                e5 = tv[src + 5 * c_count : src + 6 * c_count]
                dst = ((r * 6) * nt + j0 + ty * tw + tx) * c_count
                v0 = vs[dst : dst + c_count]
                v1 = vs[dst + step : dst + step + c_count]
                v2 = vs[dst + 2 * step : dst + 2 * step + c_count]
                v3 = vs[dst + 3 * step : dst + 3 * step + c_count]
                v4 = vs[dst + 4 * step : dst + 4 * step + c_count]
                v5 = vs[dst + 5 * step : dst + 5 * step + c_count]
                for c in range(c_count):
                    v0[c] = _C4 * e0[c] - _C5 * e2[c] + e4[c]
                    v1[c] = -_C4 * (e1[c] + e2[c]) + e3[c] + e4[c]
                    v2[c] = _C4 * (e1[c] - e2[c]) - e3[c] + e4[c]
                    v3[c] = _C2 * (e3[c] - e1[c]) - e2[c] + e4[c]
                    v4[c] = _C2 * (e1[c] - e3[c]) - e2[c] + e4[c]
                    v5[c] = _C4 * e1[c] - _C5 * e3[c] + e5[c]


@njit
def _output_stage(ms, ys, ln):
    """ys[a*4 + b, q] = (A^T Mo A)[a, b] for every (tile, channel) q at once, along the
    contiguous (tile, channel) axis of Mo (36 x ln) into ys (16 x ln)."""
    for q in range(ln):
        m00 = ms[0 * ln + q]
        m10 = ms[6 * ln + q]
        m20 = ms[12 * ln + q]
        m30 = ms[18 * ln + q]
        m40 = ms[24 * ln + q]
        m50 = ms[30 * ln + q]
        a12 = m10 + m20
        d12 = m10 - m20
        a34 = m30 + m40
        d34 = m30 - m40
        t00 = m00 + a12 + a34
        t10 = d12 + _C2 * d34
        t20 = a12 + _C4 * a34
        t30 = d12 + _C8 * d34 + m50
        m01 = ms[1 * ln + q]
        m11 = ms[7 * ln + q]
        m21 = ms[13 * ln + q]
        m31 = ms[19 * ln + q]
        m41 = ms[25 * ln + q]
        m51 = ms[31 * ln + q]
        a12 = m11 + m21
        d12 = m11 - m21
        a34 = m31 + m41
        d34 = m31 - m41
        t01 = m01 + a12 + a34
        t11 = d12 + _C2 * d34
        t21 = a12 + _C4 * a34
        t31 = d12 + _C8 * d34 + m51
        m02 = ms[2 * ln + q]
        m12 = ms[8 * ln + q]
        m22 = ms[14 * ln + q]
        m32 = ms[20 * ln + q]
        m42 = ms[26 * ln + q]
        m52 = ms[32 * ln + q]
        a12 = m12 + m22
        d12 = m12 - m22
        a34 = m32 + m42
        d34 = m32 - m42
        t02 = m02 + a12 + a34
        t12 = d12 + _C2 * d34
        t22 = a12 + _C4 * a34
        t32 = d12 + _C8 * d34 + m52
        m03 = ms[3 * ln + q]
        m13 = ms[9 * ln + q]
        m23 = ms[15 * ln + q]
        m33 = ms[21 * ln + q]
        m43 = ms[27 * ln + q]
        m53 = ms[33 * ln + q]
        a12 = m13 + m23
        d12 = m13 - m23
        a34 = m33 + m43
        d34 = m33 - m43
        t03 = m03 + a12 + a34
        t13 = d12 + _C2 * d34
        t23 = a12 + _C4 * a34
        t33 = d12 + _C8 * d34 + m53
        m04 = ms[4 * ln + q]
        m14 = ms[10 * ln + q]
        m24 = ms[16 * ln + q]
        m34 = ms[22 * ln + q]
        m44 = ms[28 * ln + q]
        m54 = ms[34 * ln + q]
        a12 = m14 + m24
        d12 = m14 - m24
        a34 = m34 + m44
        d34 = m34 - m44
        t04 = m04 + a12 + a34
        t14 = d12 + _C2 * d34
        t24 = a12 + _C4 * a34
        t34 = d12 + _C8 * d34 + m54
        m05 = ms[5 * ln + q]
        m15 = ms[11 * ln + q]
        m25 = ms[17 * ln + q]
        m35 = ms[23 * ln + q]
        m45 = ms[29 * ln + q]
        m55 = ms[35 * ln + q]
        a12 = m15 + m25
        d12 = m15 - m25
        a34 = m35 + m45
        d34 = m35 - m45
        t05 = m05 + a12 + a34
        t15 = d12 + _C2 * d34
        t25 = a12 + _C4 * a34
        t35 = d12 + _C8 * d34 + m55
        a12 = t01 + t02
        d12 = t01 - t02
        a34 = t03 + t04
        d34 = t03 - t04
        ys[0 * ln + q] = t00 + a12 + a34
        ys[1 * ln + q] = d12 + _C2 * d34
        ys[2 * ln + q] = a12 + _C4 * a34
        ys[3 * ln + q] = d12 + _C8 * d34 + t05
        a12 = t11 + t12
        d12 = t11 - t12
        a34 = t13 + t14
        d34 = t13 - t14
        ys[4 * ln + q] = t10 + a12 + a34
        ys[5 * ln + q] = d12 + _C2 * d34
        ys[6 * ln + q] = a12 + _C4 * a34
        ys[7 * ln + q] = d12 + _C8 * d34 + t15
        a12 = t21 + t22
        d12 = t21 - t22
        a34 = t23 + t24
        d34 = t23 - t24
        ys[8 * ln + q] = t20 + a12 + a34
        ys[9 * ln + q] = d12 + _C2 * d34
        ys[10 * ln + q] = a12 + _C4 * a34
        ys[11 * ln + q] = d12 + _C8 * d34 + t25
        a12 = t31 + t32
        d12 = t31 - t32
        a34 = t33 + t34
        d34 = t33 - t34
        ys[12 * ln + q] = t30 + a12 + a34
        ys[13 * ln + q] = d12 + _C2 * d34
        ys[14 * ln + q] = a12 + _C4 * a34
        ys[15 * ln + q] = d12 + _C8 * d34 + t35


@njit
def _output_scatter(ys, ln, ld, mm, out, res, has_res, bias, n, m0, ty0, ty1, tw, j0, kind, alpha, beta):
    """out[n, m0 + m, 4ty + a, 4tx + b] = act(ys[a*4 + b, tile, m] + bias (+ res)) for the tiles of
    rows [ty0, ty1) (block tiles from j0 on), clipped to the output: per output row, the 4 column
    phases are interleaved into the row and the epilogue runs along it."""
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
def _output_scatter_blocked(ys, ln, ld, mm, out, res, has_res, bias, n, m0, ty0, ty1, tw, j0, kind, alpha, beta, lanes):
    """_output_scatter for a blocked output (the 4-D view of _winograd_tasks): per output row
    of each channel block, every pixel's lanes are one contiguous vector of ys (tile, m)."""
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


def applicable(spec) -> bool:
    return (spec.kh, spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, spec.group) == (3, 3, 1, 1, 1, 1, 1)


def build_winograd(spec, w_const, b_const, lanes: int = 0, owner=None):
    """run(ins, outs) for a 3x3 stride-1 ungrouped conv via F(4x4, 3x3) tasks; ``lanes`` > 0:
    input, output and residual in the channel-blocked layout (conv_blocked.py). ``owner``:
    the graph whose Winograd layers share scratch."""
    import numba

    from cnnrt.kernels.cpu.conv import readonly

    dt = np.dtype(spec.dtype)
    th, tw = -(-spec.oh // 4), -(-spec.ow // 4)
    nr = mk.nr(dt)
    rows, mb = plan_blocks(spec.n, spec.c, spec.m, th, tw, dt.itemsize, nr)
    u_const = None if w_const is None else readonly(pack_u(transform_weights(w_const, dt), nr))
    zeros = readonly(np.zeros(spec.m, dt))
    dummy_res = np.zeros((1, 1, 1, max(1, lanes)), dt)
    b_in = max(1, lanes)

    def view(a):  # blocked (N, C/B, H, W, B) as the 4-D (N, C/B, H, W*B) the kernel takes
        return a if lanes == 0 else a.reshape(a.shape[0], a.shape[1], a.shape[2], a.shape[3] * b_in)

    max_threads = numba.config.NUMBA_NUM_THREADS
    nt_max = rows * tw
    mbp = -(-mb // nr) * nr
    # scratch shared by the graph's Winograd layers (owner: aligned.shared_scratch); every
    # element a task reads it wrote first
    sizes = {
        "v": (36 * nt_max + MR) * spec.c,
        "m": 36 * mbp * nt_max,
        "y": 16 * mbp * nt_max,
        "p": (min(rows, th) * 4 + 2) * (tw * 4 + 2) * spec.c,
        "t": 6 * (tw * 4 + 2) * spec.c,
    }
    shapes = {k: per_thread_shape(max_threads, v, dt) for k, v in sizes.items()}
    scratch = {k: shared_scratch(owner, f"winograd.{k}", shapes[k], dt) for k in sizes}
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    s = spec
    ntasks = -(-(spec.n * th) // rows) * -(-spec.m // mb)
    work = 36 * spec.n * th * tw * spec.c * spec.m if ntasks > 1 else 0  # multiply-adds of the GEMMs

    def run(ins, outs):
        u = u_const if u_const is not None else readonly(pack_u(transform_weights(ins[1], dt), nr))
        b = b_const if b_const is not None else (readonly(ins[2]) if len(ins) > 2 and ins[2] is not None else zeros)
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        counter[0] = 0
        nthreads = min(num_threads(), max_threads)
        kern = pick(_winograd_tasks, _winograd_tasks_serial, work, nthreads)
        bufs = [scratch[k].view(shapes[k], dt) for k in "vmypt"]
        kern(
            view(ins[0]),
            u,
            b,
            dummy_res if r is None else view(r),
            view(outs[0]),
            *bufs,
            counter,
            nthreads,
            s.pt,
            s.pl,
            rows,
            mb,
            r is not None,
            s.act,
            alpha,
            beta,
            lanes,
        )

    run.blocks = (rows, mb)
    return run

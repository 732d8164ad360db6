"""The depthwise kernel for 3x3, pads 1, stride 1 (or stride 2 on even planes): every
MobileNetV2 layer. See depthwise.py for the layout of its padded plane and what made it fast;
depthwise.build_flat decides when it applies (flat3x3_applies) and calls it.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.kernels._jit import pjit, serial_twin
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.vector_ir import fma


@pjit
def depthwise_3x3(
    x,
    w,
    bias,
    res,
    out,
    mult,
    stride,
    h,
    wd,
    has_res,
    lo,
    hi,
    kind,
    alpha,
    beta,
    toff,
    seg,
    keep_l,
    keep_r,
    xbuf,
    counter,
    nthreads,
    chunk,
    band,
):
    """3x3, pads 1, stride 1 (output plane = input plane) or 2 (even H, W: half of it), as flat
    loops over the output plane: x (N*C, H*W), out and res (N*M, OH*OW); see build_flat.

    Stride 1: the plane is copied once (one contiguous loop) between a zero row above and below
    (``seg[0]`` = W + 1 is where it starts); output p = oh*W + ow reads p + i*W + j. Stride 2:
    the plane is split into 4 (row, column) parity planes of OH x OW, each after OW + 1 zeros
    (starts ``seg``: even/even, even/odd, odd/even, odd/odd); input row 2*oh + i - 1 and column
    2*ow + j - 1 are then at p (+ -OW for i = 0) (+ -1 for j = 0) of one of them. Either way
    tap t reads xbuf[toff[t] + p]: linear in p, so one flat loop over the plane computes it
    straight into ``out``: no accumulator to copy out, no junk columns between rows (the
    padded layout of _depthwise_flat spent 2-5x the arithmetic in copies on 7x7-14x14 planes).
    Large planes go in bands of ``band`` output rows: copy the input rows a band needs, then
    compute it while they are in L1.

    Column taps that would wrap into the neighbouring row are dropped by a select on keep_l /
    keep_r (a multiplication by 0 would turn an Inf or NaN there into NaN). The activation is
    a clamp to [lo, hi] (identity, Relu and Clip; NaN passes), others run over the plane after.

    Per plane there are no array views: each view costs an atomic reference count increment
    and decrement, which with ~13 views was 3x the arithmetic of a 7x7 plane. Views are made
    once per thread and indexed with uint64 offsets (a signed index that LLVM cannot prove
    non-negative goes through Numba's wraparound select, and the loads became gathers).
    """
    p_count, m_count = out.shape[0], bias.shape[0]
    oh, ow = h // stride, wd // stride
    n_tasks = (p_count + chunk - 1) // chunk
    for t in prange(nthreads):
        xs = xbuf[t]
        xs[:] = 0  # the zero borders; every plane overwrites the same interior
        s00, s01, s02 = xs[toff[0] :], xs[toff[1] :], xs[toff[2] :]
        s10, s11, s12 = xs[toff[3] :], xs[toff[4] :], xs[toff[5] :]
        s20, s21, s22 = xs[toff[6] :], xs[toff[7] :], xs[toff[8] :]
        d0, d1, d2, d3 = xs[seg[0] :], xs[seg[1 % seg.size] :], xs[seg[2 % seg.size] :], xs[seg[3 % seg.size] :]
        while True:
            task = blas.claim(counter)
            if task >= n_tasks:
                break
            m = task * chunk % m_count - 1  # output channel, counted on (a division per plane shows)
            for p in range(task * chunk, min(p_count, task * chunk + chunk)):
                m = m + 1 if m + 1 < m_count else 0
                pin = (p - m) // mult + m // mult if mult > 1 else p
                b = bias[m]
                w0, w1, w2 = w[m, 0], w[m, 1], w[m, 2]
                w3, w4, w5 = w[m, 3], w[m, 4], w[m, 5]
                w6, w7, w8 = w[m, 6], w[m, 7], w[m, 8]
                done = 0  # input rows copied so far
                for o0 in range(0, oh, band):
                    o1 = min(oh, o0 + band)
                    r1 = min(h, o1 + 1) if stride == 1 else 2 * o1
                    if stride == 1:
                        for q in range(done * wd, r1 * wd):
                            u = np.uint64(q)
                            d0[u] = x[pin, u]
                    elif ow >= 12:  # one input row at a time: 2x faster than 4 streams at 112x112
                        for r in range(done, r1):
                            ev = d0 if r % 2 == 0 else d2
                            od = d1 if r % 2 == 0 else d3
                            base = (r // 2) * ow
                            src = r * wd
                            for k in range(ow):
                                ev[np.uint64(base + k)] = x[pin, np.uint64(src + 2 * k)]
                                od[np.uint64(base + k)] = x[pin, np.uint64(src + 2 * k + 1)]
                    else:  # row pairs: fewer, longer loops for 7-wide rows (96 -> 124 ns at 14x14)
                        for r in range(done // 2, r1 // 2):
                            base = r * ow
                            s0 = 2 * r * wd
                            s1 = s0 + wd
                            for k in range(ow):
                                u = np.uint64(base + k)
                                d0[u] = x[pin, np.uint64(s0 + 2 * k)]
                                d1[u] = x[pin, np.uint64(s0 + 2 * k + 1)]
                                d2[u] = x[pin, np.uint64(s1 + 2 * k)]
                                d3[u] = x[pin, np.uint64(s1 + 2 * k + 1)]
                    done = r1
                    for q in range(o0 * ow, o1 * ow):
                        u = np.uint64(q)
                        v = fma(w1, s01[u], b)
                        v = fma(w4, s11[u], v)
                        v = fma(w7, s21[u], v)
                        left = fma(w6, s20[u], fma(w3, s10[u], w0 * s00[u]))
                        right = fma(w8, s22[u], fma(w5, s12[u], w2 * s02[u]))
                        v = v + left if keep_l[u] else v
                        v = v + right if keep_r[u] else v
                        if has_res:
                            v = v + res[p, u]
                        v = lo if v < lo else v
                        out[p, u] = hi if v > hi else v
                if kind != 0 and kind != 1 and kind != 3:
                    act_inplace(out[p], kind, alpha, beta)


depthwise_3x3_serial = serial_twin(depthwise_3x3)

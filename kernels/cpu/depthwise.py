"""Depthwise convolution (group == C, dilation 1) with taps as whole-plane vector passes.

The layout trick of pool.py's _pool_flat: each input plane is copied, zero padded, into sw
column phases (phase k holds padded columns k, k + sw, ...) of owv values per row; output
(oh, ow) gets the virtual flat index o = oh*R + ow with R = sh*owv, and tap (i, j) adds
w[i, j] times element o + i*owv + j // sw of phase j % sw to it. Each tap is one contiguous
loop over the whole plane, which LLVM vectorises, where row-wise loops over rows of 7-28
outputs (MobileNet's late layers) were mostly overhead. The junk between output rows is
dropped when the plane is copied out (with the activation, when there is no residual).

Threads claim chunks of planes from a counter (as the GEMM kernels do) and keep their padded
plane (border zeroed once) and accumulator across planes.
"""

from __future__ import annotations

import numpy as np
from cnnrt.kernels._jit import pick, pjit, serial_twin
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from numba import prange


def geometry(oh: int, ow: int, kh: int, kw: int, sh: int, sw: int) -> tuple[int, int, int, int]:
    """(owv, plane, r, n_acc): phase row length, phase size, virtual row pitch, accumulator size."""
    owv = -(-((ow - 1) * sw + kw) // sw)
    plane = ((oh - 1) * sh + kh) * owv
    r = sh * owv
    return owv, plane, r, (oh - 1) * r + ow


@pjit
def _depthwise_flat(x, w, bias, out, mult, kh, kw, sh, sw, pt, pl, kind, alpha, beta, xbuf, abuf, counter,
                    nthreads, chunk):  # fmt: skip
    """out[n, m] = act(bias[m] + sum_ij w[m, i*kw + j] x[n, m // mult] (window)); see module doc.
    kind = 0 leaves the activation to a later pass (with the residual)."""
    n_count, m_count, oh_count, ow_count = out.shape
    h, wd = x.shape[2], x.shape[3]
    owv = -(-((ow_count - 1) * sw + kw) // sw)
    hp = (oh_count - 1) * sh + kh
    plane = hp * owv
    r = sh * owv
    n_acc = (oh_count - 1) * r + ow_count
    c1 = max(0, min(wd, sw * owv - pl))  # input columns that land in the padded plane
    rows = max(0, min(h, hp - pt))
    p_count = n_count * m_count
    n_tasks = (p_count + chunk - 1) // chunk
    for t in prange(nthreads):
        xph = xbuf[t]
        acc = abuf[t]
        xph[:] = 0  # the border; every plane overwrites the same interior
        while True:
            task = blas.claim(counter)
            if task >= n_tasks:
                break
            for p in range(task * chunk, min(p_count, task * chunk + chunk)):
                n = p // m_count
                m = p - n * m_count
                xp = x[n, m // mult]
                for row in range(rows):
                    base = (row + pt) * owv
                    ur = np.uint64(row)
                    if sw == 1:
                        for q in range(c1):
                            xph[np.uint64(base + pl + q)] = xp[ur, np.uint64(q)]
                    elif sw == 2:  # column pairs: both phases in one loop (an interleaved load)
                        half = c1 // 2
                        ev = xph[(pl % 2) * plane + base + pl // 2 :]
                        od = xph[(1 - pl % 2) * plane + base + (pl + 1) // 2 :]
                        for u in range(half):
                            ev[u] = xp[ur, np.uint64(2 * u)]
                            od[u] = xp[ur, np.uint64(2 * u + 1)]
                        if c1 % 2:
                            ev[half] = xp[ur, np.uint64(c1 - 1)]
                    else:
                        for q in range(c1):
                            pc = q + pl
                            xph[np.uint64((pc % sw) * plane + base + pc // sw)] = xp[ur, np.uint64(q)]
                b = bias[m]
                if kh == 3 and kw == 3:  # all 9 taps in one pass: acc is written once
                    s00 = xph[0 * owv :]
                    s01 = xph[(1 % sw) * plane + 0 * owv + 1 // sw :]
                    s02 = xph[(2 % sw) * plane + 0 * owv + 2 // sw :]
                    s10 = xph[1 * owv :]
                    s11 = xph[(1 % sw) * plane + 1 * owv + 1 // sw :]
                    s12 = xph[(2 % sw) * plane + 1 * owv + 2 // sw :]
                    s20 = xph[2 * owv :]
                    s21 = xph[(1 % sw) * plane + 2 * owv + 1 // sw :]
                    s22 = xph[(2 % sw) * plane + 2 * owv + 2 // sw :]
                    w0, w1, w2 = w[m, 0], w[m, 1], w[m, 2]
                    w3, w4, w5 = w[m, 3], w[m, 4], w[m, 5]
                    w6, w7, w8 = w[m, 6], w[m, 7], w[m, 8]
                    for q in range(n_acc):
                        acc[q] = (b + w0 * s00[q] + w1 * s01[q] + w2 * s02[q] + w3 * s10[q] + w4 * s11[q]
                                  + w5 * s12[q] + w6 * s20[q] + w7 * s21[q] + w8 * s22[q])  # fmt: skip
                else:
                    for q in range(n_acc):
                        acc[q] = b
                    for i in range(kh):
                        for j in range(kw):
                            wv = w[m, i * kw + j]
                            src = xph[(j % sw) * plane + i * owv + j // sw :]
                            for q in range(n_acc):
                                acc[q] += wv * src[q]
                op = out[n, m]
                for o in range(oh_count):
                    orow = op[o]
                    for q in range(ow_count):
                        orow[q] = acc[np.uint64(o * r + q)]
                    act_inplace(orow, kind, alpha, beta)


_depthwise_flat_serial = serial_twin(_depthwise_flat)


def build_flat(spec, w2, b_const, zeros, epi):
    """run(ins, outs) for a dilation-1 depthwise spec (w2: (M, kh*kw) constant or None)."""
    import numba
    from cnnrt.kernels.cpu.conv import _opt, readonly

    s = spec
    dt = np.dtype(s.dtype)
    kk = s.kh * s.kw
    owv, plane, _, n_acc = geometry(s.oh, s.ow, s.kh, s.kw, s.sh, s.sw)
    t = numba.config.NUMBA_NUM_THREADS
    xbuf, abuf = np.zeros((t, s.sw * plane), dt), np.zeros((t, n_acc), dt)
    counter = np.zeros(1, np.int64)
    chunk = max(1, min(64, s.n * s.m // 16))
    mult = s.m // s.c
    # with a residual, the activation comes after it (the epilogue pass); else fused here
    kind = 0 if s.has_res else s.act
    alpha, beta = dt.type(s.alpha), dt.type(s.beta)
    work = s.n * s.m * n_acc * kk

    def run(ins, outs):
        w = w2 if w2 is not None else readonly(ins[1].reshape(s.m, kk))
        b = b_const if b_const is not None else _opt(ins, 2)
        b = zeros if b is None else readonly(b)
        out = outs[0]
        counter[0] = 0
        nthreads = min(numba.get_num_threads(), t)
        kern = pick(_depthwise_flat, _depthwise_flat_serial, work, nthreads)
        kern(ins[0], w, b, out, mult, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, kind, alpha, beta, xbuf, abuf,
                        counter, nthreads, chunk)  # fmt: skip
        if epi is not None and s.has_res:
            epi(out, None, _opt(ins, 3))

    return run

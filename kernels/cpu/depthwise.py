"""Depthwise convolution (group == C, dilation 1): two direct kernels, fused epilogue.

Both compute act(bias + taps (+ residual)) per output plane, straight from a per-thread padded
copy of the input plane, with the residual and the activation applied in the same loop:

- ``depthwise_3x3`` (depthwise_3x3.py): 3x3, pads 1, stride 1, or stride 2 on even planes (every MobileNetV2
  layer). The padded copy is laid out so that tap (i, j) of output p (flat, oh*OW + ow) is at
  a fixed offset from p: one flat loop over the whole output plane, written straight into
  the output. Column taps that wrap into the neighbouring row are dropped by a select.
- ``_depthwise_flat``: everything else. The plane is split into sh*sw phases (padded rows
  a, a + sh, ... and columns b, b + sw, ...) of owv values per row; output (oh, ow) gets the
  virtual index oh*owv + ow, and tap (i, j) reads element (i // sh)*owv + j // sw further on
  in phase (i % sh, j % sw): one flat loop per tap, then the 1-2 junk columns per row are
  dropped when the accumulator is copied out. (Row phases matter for stride 2: with column
  phases only, every other accumulator row was junk, twice the work.)

Whole-plane loops vectorise where row loops over MobileNet's 7-28 wide rows were mostly
overhead. What else made the difference, measured: an explicit fused multiply-add (an LLVM
intrinsic, vector_ir.fma: one rounding, NaN/Inf as IEEE says; fastmath stays off, so LLVM never contracts
mul + add itself); no array views per plane or per row (each costs an atomic reference-count
increment and decrement: with ~13 per plane they took 3x a 7x7 plane's arithmetic); indices
LLVM can see are non-negative (else Numba's wraparound select turns loads into gathers);
no integer divisions per plane or row.

On MobileNetV2's layer shapes these kernels run at or ahead of onnxruntime's NCHW depthwise
conv; the 7x7 layers are the closest, since a fixed Python and Numba dispatch cost is a
large share of so small a call and the stride-2 split of 7-wide rows runs scalar (inside
the whole model onnxruntime runs them in its blocked NCHWc layout, faster again there).

Threads claim chunks of planes from a counter (as the GEMM kernels do) and keep their padded
plane (borders zeroed once per call) and accumulator across planes.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.aligned import per_thread
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import opt_input, readonly
from cnnrt.kernels.cpu.depthwise_3x3 import depthwise_3x3, depthwise_3x3_serial
from cnnrt.kernels.cpu.vector_ir import fma


def geometry(oh: int, ow: int, kh: int, kw: int, sh: int, sw: int) -> tuple[int, int, int]:
    """(owv, sub, n_acc): phase row length, size of one of the sh*sw phases, accumulator size."""
    owv = -(-((ow - 1) * sw + kw) // sw)
    hq = oh + (kh - 1) // sh
    return owv, hq * owv, (oh - 1) * owv + ow


@pjit
def _depthwise_flat(
    x,
    w,
    bias,
    res,
    out,
    mult,
    kh,
    kw,
    sh,
    sw,
    pt,
    pl,
    has_res,
    lo,
    hi,
    kind,
    alpha,
    beta,
    xbuf,
    abuf,
    counter,
    nthreads,
    chunk,
):
    """out[n, m] = act(bias[m] + sum_ij w[m, i*kw + j] x[n, m // mult] (window) (+ res[n, m]));
    see the module doc."""
    n_count, m_count, oh_count, ow_count = out.shape
    h, wd = x.shape[2], x.shape[3]
    owv = -(-((ow_count - 1) * sw + kw) // sw)
    hq = oh_count + (kh - 1) // sh
    sub = hq * owv
    n_acc = (oh_count - 1) * owv + ow_count
    c1 = max(0, min(wd, sw * owv - pl))  # input columns that land in the padded plane
    rows = max(0, min(h, sh * hq - pt))  # and rows
    kk = kh * kw
    p_count = n_count * m_count
    n_tasks = (p_count + chunk - 1) // chunk
    # tap offsets and the row phases, once: integer divisions per plane or per row cost as
    # much as a 7x7 plane's arithmetic
    toff = np.empty(kh * kw, np.int64)
    for i in range(kh):
        for j in range(kw):
            toff[i * kw + j] = ((i % sh) * sw + j % sw) * sub + (i // sh) * owv + j // sw
    rbase = np.empty(rows, np.int64)
    for row in range(rows):
        pr = row + pt
        rbase[row] = (pr % sh) * sw * sub + (pr // sh) * owv
    ev0 = (pl % 2) * sub + pl // 2
    od0 = (1 - pl % 2) * sub + (pl + 1) // 2
    for t in prange(nthreads):
        xph = xbuf[t]
        acc = abuf[t]
        xph[:] = 0  # the border; every plane overwrites the same interior
        # views once per thread, uint64 offsets per plane: see depthwise_3x3
        s00, s01, s02 = xph[toff[0] :], xph[toff[1 % kk] :], xph[toff[2 % kk] :]
        s10, s11, s12 = xph[toff[3 % kk] :], xph[toff[4 % kk] :], xph[toff[5 % kk] :]
        s20, s21, s22 = xph[toff[6 % kk] :], xph[toff[7 % kk] :], xph[toff[8 % kk] :]
        while True:
            task = blas.claim(counter)
            if task >= n_tasks:
                break
            for p in range(task * chunk, min(p_count, task * chunk + chunk)):
                n = p // m_count
                m = p - n * m_count
                ci = m // mult
                for row in range(rows):
                    base = rbase[row]
                    ur = np.uint64(row)
                    if sw == 1:
                        for q in range(c1):
                            xph[np.uint64(base + pl + q)] = x[n, ci, ur, np.uint64(q)]
                    elif sw == 2:  # column pairs: both phases in one loop (an interleaved load)
                        half = c1 // 2
                        for u in range(half):
                            xph[np.uint64(base + ev0 + u)] = x[n, ci, ur, np.uint64(2 * u)]
                            xph[np.uint64(base + od0 + u)] = x[n, ci, ur, np.uint64(2 * u + 1)]
                        if c1 % 2:
                            xph[np.uint64(base + ev0 + half)] = x[n, ci, ur, np.uint64(c1 - 1)]
                    else:
                        for q in range(c1):
                            pc = q + pl
                            xph[np.uint64(base + (pc % sw) * sub + pc // sw)] = x[n, ci, ur, np.uint64(q)]
                b = bias[m]
                if kh == 3 and kw == 3:  # all 9 taps in one pass: acc is written once
                    w0, w1, w2 = w[m, 0], w[m, 1], w[m, 2]
                    w3, w4, w5 = w[m, 3], w[m, 4], w[m, 5]
                    w6, w7, w8 = w[m, 6], w[m, 7], w[m, 8]
                    for q in range(n_acc):
                        v = fma(w0, s00[q], b)
                        v = fma(w1, s01[q], v)
                        v = fma(w2, s02[q], v)
                        v = fma(w3, s10[q], v)
                        v = fma(w4, s11[q], v)
                        v = fma(w5, s12[q], v)
                        v = fma(w6, s20[q], v)
                        v = fma(w7, s21[q], v)
                        acc[q] = fma(w8, s22[q], v)
                else:
                    for q in range(n_acc):
                        acc[q] = b
                    for k in range(kk):
                        wv = w[m, k]
                        off = toff[k]
                        for q in range(n_acc):
                            acc[q] = fma(wv, xph[np.uint64(off + q)], acc[q])
                # copy out without the junk columns, with residual and clamp (the plane is in L1)
                for o in range(oh_count):
                    uo = np.uint64(o)
                    for q in range(ow_count):
                        uq = np.uint64(q)
                        v = acc[np.uint64(o * owv + q)]
                        if has_res:
                            v = v + res[n, m, uo, uq]
                        v = lo if v < lo else v
                        out[n, m, uo, uq] = hi if v > hi else v
                if kind != 0 and kind != 1 and kind != 3:
                    for o in range(oh_count):
                        act_inplace(out[n, m, o], kind, alpha, beta)


_depthwise_flat_serial = serial_twin(_depthwise_flat)


# output values per band of depthwise_3x3: its rows of input and output stay in L1
BAND_OUTPUTS = 2048


def flat3x3_applies(s) -> bool:
    """True when depthwise_3x3 computes the ConvSpec ``s`` (else _depthwise_flat does): 3x3,
    top/left pads 1, and stride 1 with the output plane as big as the input, or stride 2 on
    even H, W with half of it (every MobileNetV2 / EfficientNet-style 3x3 depthwise layer)."""
    if (s.kh, s.kw, s.pt, s.pl, s.dh, s.dw) != (3, 3, 1, 1, 1, 1) or s.sh != s.sw:
        return False
    if s.sh == 1:
        return (s.oh, s.ow) == (s.h, s.w)
    return s.sh == 2 and s.h % 2 == 0 and s.w % 2 == 0 and (s.oh, s.ow) == (s.h // 2, s.w // 2)


def build_flat(spec, w2, b_const, zeros):
    """run(ins, outs) for a dilation-1 depthwise spec (w2: (M, kh*kw) constant or None).

    Bias, residual and activation are all applied by the kernel."""
    s = spec
    dt = np.dtype(s.dtype)
    kk = s.kh * s.kw
    mult = s.m // s.c
    alpha, beta = dt.type(s.alpha), dt.type(s.beta)
    # Identity, Relu and Clip are a clamp to [lo, hi] in the kernels' loops (NaN passes)
    inf = dt.type(np.inf)
    lo, hi = {1: (dt.type(0), inf), 3: (alpha, beta)}.get(s.act, (-inf, inf))
    no_res = np.zeros((1, 1, 1, 1), dt)  # writable, like the arena arrays residuals come in
    t = numba.config.NUMBA_NUM_THREADS
    counter = np.zeros(1, np.int64)
    chunk = max(1, min(64, s.n * s.m // 16))
    stride = s.sh
    flat = flat3x3_applies(s)
    if flat:  # depthwise_3x3: tap offsets into its plane buffer and the column masks
        ohw, ow = s.oh * s.ow, s.ow
        if stride == 1:
            seg = np.array([s.w + 1], np.int64)
            toff = np.array([seg[0] + (i - 1) * s.w + j - 1 for i in range(3) for j in range(3)], np.int64)
            size = ohw + 2 * s.w + 2
        else:
            step = ohw + ow + 1  # OW + 1 zeros, then one parity plane
            seg = np.array([ow + 1 + k * step for k in range(4)], np.int64)
            ee, eo, oe, oo = seg
            toff = np.array([oo - ow - 1, oe - ow, oo - ow, eo - 1, ee, eo, oo - 1, oe, oo], np.int64)
            size = 4 * step
        xbuf = per_thread(t, size, dt)
        col = np.arange(ohw) % ow
        keep_l, keep_r = readonly(col != 0), readonly((col != ow - 1) | (stride == 2))
        work = s.n * s.m * ohw * kk
        band = max(1, BAND_OUTPUTS // ow)
    else:
        owv, sub, n_acc = geometry(s.oh, s.ow, s.kh, s.kw, s.sh, s.sw)
        xbuf, abuf = per_thread(t, s.sh * s.sw * sub, dt), per_thread(t, n_acc, dt)
        work = s.n * s.m * n_acc * kk

    def run(ins, outs):
        w = w2 if w2 is not None else readonly(ins[1].reshape(s.m, kk))
        b = b_const if b_const is not None else opt_input(ins, 2)
        b = zeros if b is None else readonly(b)
        res = opt_input(ins, 3) if s.has_res else None
        if res is None:
            res = no_res
        elif not (res.flags.c_contiguous and res.flags.writeable):
            res = np.array(res, dt)  # one compiled signature: C-contiguous and writable
        x, out = ins[0], outs[0]
        counter[0] = 0
        nthreads = min(num_threads(), t)
        if flat:
            kern = pick(depthwise_3x3, depthwise_3x3_serial, work, nthreads)
            kern(
                x.reshape(s.n * s.c, s.h * s.w),
                w,
                b,
                res.reshape(res.shape[0] * res.shape[1], -1),
                out.reshape(s.n * s.m, ohw),
                mult,
                stride,
                s.h,
                s.w,
                s.has_res,
                lo,
                hi,
                s.act,
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
            )
            return
        kern = pick(_depthwise_flat, _depthwise_flat_serial, work, nthreads)
        kern(
            x,
            w,
            b,
            res,
            out,
            mult,
            s.kh,
            s.kw,
            s.sh,
            s.sw,
            s.pt,
            s.pl,
            s.has_res,
            lo,
            hi,
            s.act,
            alpha,
            beta,
            xbuf,
            abuf,
            counter,
            nthreads,
            chunk,
        )

    return run

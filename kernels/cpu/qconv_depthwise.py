"""The depthwise int8 conv (one channel per group): int32 sums per (image, channel) plane, requantized.

A depthwise conv does KH*KW multiply-adds per output, too few to pay for packing its input
for a dot-product tile, so each (image, channel) plane is one task. The task copies its
plane into a float32 border-padded plane filled with the input's zero point, split by the
stride into phase planes (padded rows ``a mod SH``, columns ``b mod SW``; one plane at stride
1), each ``Wq`` columns wide. Output pixel ``(oh, ow)`` of tap ``(i, j)`` then reads phase
``(i*DH mod SH, j*DW mod SW)`` at ``(oh + i*DH // SH) * Wq + ow + j*DW // SW``: every tap is one
multiply-add over a contiguous stretch of ``OH * Wq`` values, so LLVM vectorises across whole
planes however narrow the image is (7x7 planes are one 63-long stretch, not seven of 7); three
taps of a kernel row share one pass over the sums, which keeps loads and stores of them few. The
``Wq - OW`` columns past each output row are computed and dropped; the plane carries a slack
tail so the last stretch stays in bounds.

Sums are float32, exact because a tap sum stays far below 2**24 (|product| < 2**16, a few
dozen taps; :func:`eligible` bounds them); each output gets its int32 bias and is requantized
as MLAS does. Zero points come out as in qconv_vnni: the weight's is subtracted at build, the
input's folded with the bias into ``bias - xz * sum(w - wz)`` per channel (the border holds
xz, so padded taps add exactly that).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.kernels._jit import pjit
from cnnrt.kernels.cpu.vector_ir import deinterleave2_run

VEC = 16  # float32 lanes of an AVX-512 vector
MAX_TAPS = 255  # taps * 2**16 < 2**24: float32 sums of u8/s8 products stay exact


def eligible(x_dtype: str, c: int, m: int, group: int, taps: int, out_dtype: str) -> bool:
    """One input and one output channel per group, u8/s8 in and out, at most ``MAX_TAPS`` taps."""
    return group == c == m and taps <= MAX_TAPS and x_dtype in ("uint8", "int8") and out_dtype in ("uint8", "int8")


@pjit
def _depthwise(x, w, biasc, mult, out, sh, sw, dh, dw, pt, pl, pb, pr, xz, flo, fhi, zp, rnd):
    n_len, c_len, h_len, w_len = x.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    kh_len, kw_len = w.shape[1], w.shape[2]
    hp, wp = h_len + pt + pb, w_len + pl + pr
    hq, wq = -(-hp // sh), -(-wp // sw)
    phase = hq * wq
    slack = (kw_len - 1) * dw // sw + 1
    span = oh_len * wq
    spanv = -(-span // VEC) * VEC  # whole vectors: no scalar remainder loop on a short plane
    fz = np.float32(xz)
    for t in prange(n_len * c_len):
        n = t // c_len
        c = t - n * c_len
        plane = np.empty(sh * sw * phase + slack + spanv - span, np.float32)
        if sw == 1:  # the plane filled with the zero point, each input row converted into it
            plane[:] = fz
            for r in range(h_len):
                rp = r + pt
                src = x[n, c, r]
                dst = plane[(rp % sh) * phase + (rp // sh) * wq + pl :]
                for col in range(w_len):
                    dst[col] = np.float32(src[col])
        else:  # each input row padded, then split into its column phases whole (padding included)
            plane[sh * sw * phase :] = fz
            row = np.empty(wq * sw, np.float32)
            row[:] = fz
            for rp in range(hq * sh):  # the padded rows no input row fills
                if rp < pt or rp >= pt + h_len:
                    for b in range(sw):
                        base = (rp % sh) * sw * phase + b * phase + (rp // sh) * wq
                        plane[base : base + wq] = fz
            mid = row[pl : pl + w_len]
            for r in range(h_len):
                rp = r + pt
                src = x[n, c, r]
                base = (rp % sh) * sw * phase + (rp // sh) * wq
                for col in range(w_len):
                    mid[col] = np.float32(src[col])
                if sw == 2:
                    deinterleave2_run(row, 0, plane, base, plane, base + phase, wq)
                else:
                    for b in range(sw):
                        dst = plane[base + b * phase : base + b * phase + wq]
                        for k in range(wq):
                            dst[k] = row[k * sw + b]
        acc = np.zeros(spanv, np.float32)
        for i in range(kh_len):
            a, ro = (i * dh) % sh, (i * dh) // sh
            j = 0
            while j < kw_len:
                o0 = (a * sw + (j * dw) % sw) * phase + ro * wq + (j * dw) // sw
                if j + 3 <= kw_len:  # three taps of the row in one pass over acc
                    o1 = (a * sw + ((j + 1) * dw) % sw) * phase + ro * wq + ((j + 1) * dw) // sw
                    o2 = (a * sw + ((j + 2) * dw) % sw) * phase + ro * wq + ((j + 2) * dw) // sw
                    w0, w1, w2 = w[c, i, j], w[c, i, j + 1], w[c, i, j + 2]
                    s0, s1, s2 = plane[o0 : o0 + spanv], plane[o1 : o1 + spanv], plane[o2 : o2 + spanv]
                    for q in range(spanv):
                        acc[q] += s0[q] * w0 + s1[q] * w1 + s2[q] * w2
                    j += 3
                else:
                    w0 = w[c, i, j]
                    s0 = plane[o0 : o0 + spanv]
                    for q in range(spanv):
                        acc[q] += s0[q] * w0
                    j += 1
        s = mult[c]
        bc = biasc[c]
        q8 = np.empty(spanv, np.int32)  # requantized over whole vectors, then each row's stretch stored
        for q in range(spanv):
            f = np.float32(np.int32(acc[q]) + bc) * s
            f = min(max(f, flo), fhi)
            f = (f + rnd) - rnd
            q8[q] = np.int32(f) + zp
        for oh in range(oh_len):
            y = out[n, c, oh]
            stretch = q8[oh * wq : oh * wq + ow_len]
            for ow in range(ow_len):
                y[ow] = stretch[ow]


def build(p: dict, x_dtype: str, requant: tuple):
    """The run function of one depthwise QConv plan (qconv.conv_plan); ``requant`` is
    qconv_vnni.requant_params(p)."""
    w = p["w"]
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    wi = (w.astype(np.int32) - p["w_zp"].reshape(m, 1, 1, 1)).reshape(m, kh, kw)
    wf = wi.astype(np.float32)
    biasc = (p["bias"].astype(np.int64) - p["x_zp"] * wi.reshape(m, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    mult, flo, fhi, zp, rnd = requant
    xz = int(p["x_zp"])

    def run(ins, outs):
        x = np.ascontiguousarray(ins[0])
        _depthwise(x, wf, biasc, mult, outs[0], sh, sw, dh, dw, pt, pl, pb, pr, xz, flo, fhi, zp, rnd)

    return run

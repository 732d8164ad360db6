"""The depthwise int8 conv (one channel per group): int32 sums per (image, channel) plane, requantized.

A depthwise conv does KH*KW multiply-adds per output, too few to pay for packing its input
for a dot-product tile, so each (image, channel) plane is one task. The task copies its
plane into a border-padded plane of its codes (widened to float32 as the taps load them) filled
with the input's zero point, split by the
stride into phase planes (padded rows ``a mod SH``, columns ``b mod SW``; one plane at stride
1), each ``Wq`` columns wide. Output pixel ``(oh, ow)`` of tap ``(i, j)`` then reads phase
``(i*DH mod SH, j*DW mod SW)`` at ``(oh + i*DH // SH) * Wq + ow + j*DW // SW``: each output row
is 16 pixels at a time the taps' loads and multiply-adds, requantized and narrowed to bytes in
registers (microkernel_int8.depthwise_row_rq); the plane carries a vector of slack so a row's
last step stays in bounds.

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
from cnnrt.kernels.cpu.microkernel_int8 import depthwise_row_rq
from cnnrt.kernels.cpu.vector_ir import deinterleave2_run

VEC = 16  # pixels per step of depthwise_row_rq
MAX_TAPS = 255  # taps * 2**16 < 2**24: float32 sums of u8/s8 products stay exact


def eligible(x_dtype: str, c: int, m: int, group: int, taps: int, out_dtype: str) -> bool:
    """One input and one output channel per group, u8/s8 in and out, at most ``MAX_TAPS`` taps."""
    return group == c == m and taps <= MAX_TAPS and x_dtype in ("uint8", "int8") and out_dtype in ("uint8", "int8")


@pjit
def _depthwise(x, w, biasc, mult, out, sh, sw, dh, dw, pt, pl, pb, pr, xz, flo, fhi, zp):
    n_len, c_len, h_len, w_len = x.shape
    oh_len, ow_len = out.shape[2], out.shape[3]
    kh_len, kw_len = w.shape[1], w.shape[2]
    hp, wp = h_len + pt + pb, w_len + pl + pr
    hq, wq = -(-hp // sh), -(-wp // sw)
    phase = hq * wq
    slack = (kw_len - 1) * dw // sw + 1
    ntaps = kh_len * kw_len
    taps = np.empty(ntaps, np.int64)  # where each tap of an output row starts in the phase planes
    for i in range(kh_len):
        for j in range(kw_len):
            a, b = (i * dh) % sh, (j * dw) % sw
            taps[i * kw_len + j] = (a * sw + b) * phase + ((i * dh) // sh) * wq + (j * dw) // sw
    wts = w.reshape(-1)
    for t in prange(n_len * c_len):
        n = t // c_len
        c = t - n * c_len
        plane = np.empty(sh * sw * phase + slack + VEC, x.dtype)  # a row's last step reads a vector on
        if sw == 1:  # the plane filled with the zero point, each input row copied into it
            plane[:] = xz
            for r in range(h_len):
                rp = r + pt
                src = x[n, c, r]
                dst = plane[(rp % sh) * phase + (rp // sh) * wq + pl :]
                for col in range(w_len):
                    dst[col] = src[col]
        else:  # each input row padded, then split into its column phases whole (padding included)
            plane[sh * sw * phase :] = xz
            row = np.empty(wq * sw, x.dtype)
            row[:] = xz
            for rp in range(hq * sh):  # the padded rows no input row fills
                if rp < pt or rp >= pt + h_len:
                    for b in range(sw):
                        base = (rp % sh) * sw * phase + b * phase + (rp // sh) * wq
                        plane[base : base + wq] = xz
            mid = row[pl : pl + w_len]
            for r in range(h_len):
                rp = r + pt
                src = x[n, c, r]
                base = (rp % sh) * sw * phase + (rp // sh) * wq
                for col in range(w_len):
                    mid[col] = src[col]
                if sw == 2:
                    deinterleave2_run(row, 0, plane, base, plane, base + phase, wq)
                else:
                    for b in range(sw):
                        dst = plane[base + b * phase : base + b * phase + wq]
                        for k in range(wq):
                            dst[k] = row[k * sw + b]
        y = out[n, c].reshape(-1)
        for oh in range(oh_len):  # each output row: the taps' sums, requantized, stored as bytes
            depthwise_row_rq(plane, oh * wq, taps, wts, c * ntaps, ow_len, biasc, mult, c, y, oh * ow_len, flo, fhi, zp)


def build(p: dict, x_dtype: str, requant: tuple):
    """The run function of one depthwise QConv plan (qconv.conv_plan); ``requant`` is
    qconv_vnni.requant_params(p)."""
    w = p["w"]
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    wi = (w.astype(np.int32) - p["w_zp"].reshape(m, 1, 1, 1)).reshape(m, kh, kw)
    wf = wi.astype(np.float32)
    biasc = (p["bias"].astype(np.int64) - p["x_zp"] * wi.reshape(m, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    mult, flo, fhi, zp, _ = requant
    xz = int(p["x_zp"])

    def run(ins, outs):
        x = np.ascontiguousarray(ins[0])
        y = outs[0]
        dst = y if y.flags.c_contiguous else np.empty(y.shape, y.dtype)  # a concat's slice: through a copy
        _depthwise(x, wf, biasc, mult, dst, sh, sw, dh, dw, pt, pl, pb, pr, xz, flo, fhi, zp)
        if dst is not y:
            y[...] = dst

    return run

"""The depthwise int8 conv (one channel per group): int32 sums over each output row, requantized.

A depthwise conv does KH*KW multiply-adds per output, too few to pay for packing its input
for a dot-product tile, so each (image, channel) plane is one task: per output row the taps
add ``x * (w - wz)`` into a float32 row LLVM vectorises, exact because a tap sum stays far
below 2**24 (|product| < 2**16, a few dozen taps; :func:`eligible` bounds them), then the
row gets the int32 bias and is requantized as MLAS does. Zero points come out as in qconv_vnni: the weight's is subtracted
at build, the input's folded with the bias into ``bias - xz * sum(w - wz)`` per channel (the
border is filled with xz, so padded taps add exactly that).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.kernels._jit import pjit
from cnnrt.kernels.aligned import shared_scratch

MAX_TAPS = 255  # taps * 2**16 < 2**24: float32 sums of u8/s8 products stay exact


def eligible(x_dtype: str, c: int, m: int, group: int, taps: int, out_dtype: str) -> bool:
    """One input and one output channel per group, u8/s8 in and out, at most ``MAX_TAPS`` taps."""
    return group == c == m and taps <= MAX_TAPS and x_dtype in ("uint8", "int8") and out_dtype in ("uint8", "int8")


@pjit
def _depthwise(xp, w, biasc, mult, out, sh, sw, dh, dw, flo, fhi, zp, rnd):
    n_len, c_len, oh_len, ow_len = out.shape
    kh_len, kw_len = w.shape[1], w.shape[2]
    for t in prange(n_len * c_len):
        n = t // c_len
        c = t - n * c_len
        acc = np.empty(ow_len, np.float32)
        ev = np.empty(xp.shape[3] // 2 + 1, np.float32)
        od = np.empty(xp.shape[3] // 2 + 1, np.float32)
        s = mult[c]
        bc = biasc[c]
        for oh in range(oh_len):
            acc[:] = 0
            for i in range(kh_len):
                row = xp[n, c, oh * sh + i * dh]
                for j in range(kw_len):
                    wv = w[c, i, j]
                    off = j * dw
                    if sw == 1:
                        seg = row[off : off + ow_len]
                        for ow in range(ow_len):
                            acc[ow] += np.float32(seg[ow]) * wv
                    elif sw == 2:
                        # the row's even and odd columns, each contiguous: the tap's loop vectorises
                        if j == 0:
                            half = (row.shape[0] + 1) // 2
                            for k in range(row.shape[0] // 2):
                                ev[k] = np.float32(row[2 * k])
                                od[k] = np.float32(row[2 * k + 1])
                            if row.shape[0] % 2:
                                ev[half - 1] = np.float32(row[row.shape[0] - 1])
                        src = ev if off % 2 == 0 else od
                        seg = src[off // 2 : off // 2 + ow_len]
                        for ow in range(ow_len):
                            acc[ow] += seg[ow] * wv
                    else:
                        for ow in range(ow_len):
                            acc[ow] += np.float32(row[off + ow * sw]) * wv
            y = out[n, c, oh]
            for ow in range(ow_len):
                f = np.float32(np.int32(acc[ow]) + bc) * s
                f = min(max(f, flo), fhi)
                f = (f + rnd) - rnd
                y[ow] = np.int32(f) + zp


def build(p: dict, x_dtype: str, requant: tuple, x_shape: tuple, owner):
    """The run function of one depthwise QConv plan (qconv.conv_plan) for an input of
    ``x_shape``; ``requant`` is qconv_vnni.requant_params(p); the padded input lives in
    scratch shared by ``owner``'s kernels (kernels/aligned.shared_scratch)."""
    w = p["w"]
    m, _, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    wi = (w.astype(np.int32) - p["w_zp"].reshape(m, 1, 1, 1)).reshape(m, kh, kw)
    wf = wi.astype(np.float32)
    biasc = (p["bias"].astype(np.int64) - p["x_zp"] * wi.reshape(m, -1).astype(np.int64).sum(axis=1)).astype(np.int32)
    mult, flo, fhi, zp, rnd = requant
    pad_value = np.array(p["x_zp"]).astype(x_dtype)[()]

    n, c, h, wd = x_shape
    xshape = (n, c, h + pt + pb, wd + pl + pr)
    xp_scratch = shared_scratch(owner, "qconv.padded", xshape, np.uint8) if pt or pl or pb or pr else None

    def run(ins, outs):
        x = ins[0]
        if xp_scratch is not None:
            xp = xp_scratch.view(xshape, x.dtype)
            xp.fill(pad_value)
            xp[:, :, pt : pt + h, pl : pl + wd] = x
        else:
            xp = np.ascontiguousarray(x)
        _depthwise(xp, wf, biasc, mult, outs[0], sh, sw, dh, dw, flo, fhi, zp, rnd)

    return run

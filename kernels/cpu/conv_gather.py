"""The B operand of the conv GEMM tasks (conv_gemm.py): a block of im2col columns gathered
from the input, or of input columns read as they are (1x1 stride 1, unpadded)."""

from __future__ import annotations

import numpy as np

from cnnrt.kernels._jit import njit
from cnnrt.kernels.cpu.conv_common import valid_range


@njit
def im2col_block(x, n, c0, cg, col, ld, coff, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, p1):
    """col[(c, i, j), q] = x[n, c0 + c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] for output pixels
    q = p - p0, p in [p0, p1) (0 outside the input), stored at col[r*ld + coff + q].

    Indices are cast to unsigned: Numba then emits no negative-index wraparound, which kept
    LLVM from vectorising (8x slower copies) and which slices avoided only at a cost per row."""
    h, w = x.shape[2], x.shape[3]
    np_ = p1 - p0
    kk = kh * kw
    oh0 = p0 // ow
    oh1 = (p1 - 1) // ow + 1
    if ow <= 4:  # tiny rows: element by element, with running (oh, ow) counters
        for r in range(cg * kk):
            c = r // kk
            i = (r - c * kk) // kw
            j = r - c * kk - i * kw
            if r == c * kk:
                xc = x[n, c0 + c]
            base = r * ld + coff
            oh = p0 // ow
            owi = p0 - oh * ow
            for q in range(np_):
                ih = oh * sh + i * dh - pt
                iw = owi * sw + j * dw - pl
                v = xc[np.uint64(ih), np.uint64(iw)] if 0 <= ih < h and 0 <= iw < w else 0
                col[np.uint64(base + q)] = v
                owi += 1
                if owi == ow:
                    owi = 0
                    oh += 1
        return
    for r in range(cg * kk):
        c = r // kk
        i = (r - c * kk) // kw
        j = r - c * kk - i * kw
        off = j * dw - pl
        lo, hi = valid_range(off, sw, w, ow)
        if r == c * kk:  # one plane view per channel (a view per row cost ~20 ns: LeNet's 5x5)
            xc = x[n, c0 + c]
        base = r * ld + coff
        for oh in range(oh0, oh1):
            a = max(0, oh * ow - p0)  # first column of this output row in the block
            b = min(np_, (oh + 1) * ow - p0)
            s = p0 + a - oh * ow  # its ow
            e = s + (b - a)
            dst = base + a - s  # col index of output column ow: dst + ow
            ih = oh * sh + i * dh - pt
            if ih < 0 or ih >= h:
                for q in range(base + a, base + b):
                    col[np.uint64(q)] = 0
                continue
            vlo = min(max(lo, s), e)  # the valid ow range [lo, hi) intersected with [s, e)
            vhi = max(min(hi, e), vlo)
            uih = np.uint64(ih)
            for q in range(s, vlo):
                col[np.uint64(dst + q)] = 0
            for q in range(vlo, vhi):
                col[np.uint64(dst + q)] = xc[uih, np.uint64(q * sw + off)]
            for q in range(vhi, e):
                col[np.uint64(dst + q)] = 0


@njit
def gather_block(x, xf, c0, cg, k, col, ld, q0, q1, p_count, direct, kh, kw, sh, sw, pt, pl, dh, dw, ow):
    """col[r*ld + q - q0] = B[r, q] for the columns q in [q0, q1) (output pixels of all images,
    (n, p) flattened), image by image: the im2col rows (c, i, j), or for 1x1 (``direct``) the
    input channels themselves (only needed when the block spans images)."""
    c_count = x.shape[1]
    hw = x.shape[2] * x.shape[3]
    q = q0
    while q < q1:
        n = q // p_count
        pa = q - n * p_count
        pe = min(p_count, pa + q1 - q)
        if direct:
            for r in range(k):
                src = np.uint64((n * c_count + c0 + r) * hw + pa)
                dst = np.uint64(r * ld + q - q0)
                for j in range(pe - pa):
                    col[dst + j] = xf[src + j]
        else:
            im2col_block(x, n, c0, cg, col, ld, q - q0, kh, kw, sh, sw, pt, pl, dh, dw, ow, pa, pe)
        q += pe - pa

"""The int8 convolution on the VNNI tile without an im2col: each tap is an offset.

The input (N, C, H, W) is copied once into words of four consecutive channels, (N, C/4, L)
uint32, border-padded with the input's zero point, each group's padded plane split by the
strides into SH*SW phase planes of (HQ, WQ) words (padded row ``a*SH + r``, column ``b*SW + k``
at phase ``(r, k)``, position ``(a, b)``; one phase at stride 1). Output pixel ``(oh, ow)`` of
tap ``(i, j)`` then reads word ``(oh + i*DH // SH) * WQ + ow + j*DW // SW`` of the tap's
phase of every channel group, so the tile (microkernel_int8: pixels in the lanes) runs over
the output as ``OH`` rows of ``WQ`` pixels, a tap at a time, on the same copy: the tap's
offset moves the tile's start, and the tap's weights are their own packed block (taps
outermost), every tap's sums held in registers (microkernel_int8.tile_u8s8_taps_rq). The
``WQ - OW`` pixels past each output row are computed and dropped: the tile requantizes and
stores by segments, one per output row its 32 pixels meet, each a lane-masked store of that
row's valid stretch. The copy's length keeps the last tile's reads inside it. Against
qconv_vnni's im2col this writes the input once instead of KH*KW times (a stride-2 3x3 conv at
0.4-0.6x of the im2col's time); it needs at least two channel groups per tap to keep the
tile's k loop long (the stem, C = 3, stays on qconv_vnni).
The copy packs 16 words a step (microkernel_int8.pack_words_run, every SW-th column at SW <= 2).

The input's zero point and the requantization are qconv_vnni's (bias - xz * sum(w) per
channel, MLAS's rounding in the tile).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.kernels._jit import njit, pjit
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.cpu.microkernel_int8 import MR, WORDS, pack_words_run, tile_u8s8_taps_rq, weight_words
from cnnrt.kernels.cpu.qconv_vnni import PX, TASK_CHUNKS, pack_words, requant_params
from cnnrt.kernels.prepacked import prepacked
from cnnrt.kernels.registry import run_of

MIN_GROUPS = 2  # channel groups of four per tap below which the im2col path (longer k loop) wins


def eligible(c: int, kernel: tuple) -> bool:
    """More than one tap and enough channels (the rest of the tile's conditions:
    qconv_vnni.eligible). A 1x1 conv's im2col is this same copy, and its single stretch per
    tile keeps the epilogue shorter than the padded rows' stretches here."""
    return kernel[0] * kernel[1] > 1 and -(-c // 4) >= MIN_GROUPS


def pack_weights(w: np.ndarray) -> np.ndarray:
    """s8 weights (M, C, KH, KW) as (KH*KW, M/MR, C/4, MR) groups of four consecutive channels
    (microkernel_int8.weight_words), M and C zero-padded, flattened."""
    m, c, kh, kw = w.shape
    mb, c4 = -(-m // MR), -(-c // 4)
    full = np.zeros((kh * kw, mb * MR, c4 * 4), np.int8)
    full[:, :m, :c] = w.transpose(2, 3, 0, 1).reshape(kh * kw, m, c)
    words = full.reshape(kh * kw, mb, MR, c4, 4).transpose(0, 1, 3, 2, 4)
    return weight_words(words).reshape(-1)


@pjit
def _interleave(x, xw, pt, pl, sh, sw, hq, wq, xz, flip, form):
    """xw (N, C/4, L) uint32 from x (N, C, H, W) uint8, each channel group's border-padded
    plane split into SH*SW phase planes of (HQ, WQ) words: see the module doc. ``form``: a
    tuple of SW zeros where SW <= 2 (microkernel_int8.pack_words_run's vector steps), else
    (0,) and the rows are packed a word at a time."""
    n_len, c_len, h_len, w_len = x.shape
    c4 = xw.shape[1]
    pad_word = np.uint32(xz) * np.uint32(0x01010101) ^ flip
    xf, df = x.reshape(-1), xw.reshape(-1)
    hw = h_len * w_len
    for t in prange(n_len * c4):
        n = t // c4
        g = t - n * c4
        dst = xw[n, g]
        dst[:] = pad_word
        d0 = (n * c4 + g) * xw.shape[2]
        # channels past C read channel C-1's bytes: their weights are zero
        cs = (min(4 * g, c_len - 1), min(4 * g + 1, c_len - 1), min(4 * g + 2, c_len - 1), min(4 * g + 3, c_len - 1))
        for r in range(h_len):
            rp = r + pt
            for b in range(sw):  # padded columns k*sw + b: input columns from (b - pl) mod sw
                first = (b - pl) % sw
                if first >= w_len:
                    continue
                count = (w_len - first + sw - 1) // sw
                base = ((rp % sh * sw + b) * hq + rp // sh) * wq + (first + pl) // sw
                o = (n * c_len * h_len + r) * w_len + first
                if sw <= 2:
                    o0, o1, o2, o3 = o + cs[0] * hw, o + cs[1] * hw, o + cs[2] * hw, o + cs[3] * hw
                    pack_words_run(xf, o0, o1, o2, o3, df, d0 + base, count, flip, form)
                else:
                    s0, s1 = x[n, cs[0], r, first::sw], x[n, cs[1], r, first::sw]
                    s2, s3 = x[n, cs[2], r, first::sw], x[n, cs[3], r, first::sw]
                    pack_words(dst[base : base + count], s0, s1, s2, s3, flip)


@njit(inline="always")
def row_segments(segs, q0, q1, wq, ow):
    """The stretches of padded output rows (``wq`` pixels, the first ``ow`` real) that a tile of
    pixels [q0, q1) meets, as microkernel_int8.segment_stores takes them: segs[3i : 3i+3] =
    first lane, end lane, offset from the tile's pixel to the output's; returns their count."""
    nseg = 0
    for oh in range(q0 // wq, (q1 - 1) // wq + 1):
        first, end = max(q0, oh * wq) - q0, min(q1, oh * wq + ow) - q0
        if end > first:
            segs[3 * nseg], segs[3 * nseg + 1], segs[3 * nseg + 2] = first, end, oh * (ow - wq) + q0
            nseg += 1
    return nseg


@pjit
def _tiles(xw, bpk, offs, biasc, mult, out, m_len, wq, ow_len, flo, fhi, zp):
    """out (N, M, OH*OW) from the interleaved input and the tap-major packed weights."""
    n_len, c4, lda = xw.shape
    p_len = out.shape[2]
    oh_len = p_len // ow_len
    span = oh_len * wq
    mb_len, pb_len = -(-m_len // MR), -(-span // PX)
    x_flat = xw.reshape(-1)
    o_flat = out.reshape(-1)
    tap_words = mb_len * c4 * MR
    tasks = n_len * pb_len * mb_len
    chunks = min(tasks, TASK_CHUNKS)
    for ch in prange(chunks):
        segs = np.empty(3 * (PX + 1), np.int64)
        for t in range(ch * tasks // chunks, (ch + 1) * tasks // chunks):
            mb = t % mb_len
            q = t // mb_len
            pb = q % pb_len
            n = q // pb_len
            a0 = n * c4 * lda + pb * PX
            b0 = mb * c4 * MR
            q0 = pb * PX
            q1 = min(span, q0 + PX)
            nseg = row_segments(segs, q0, q1, wq, ow_len)
            m0 = mb * MR
            rows, c0 = min(MR, m_len - m0), (n * m_len + m0) * p_len
            tile_u8s8_taps_rq(
                x_flat,
                a0,
                lda,
                offs,
                bpk,
                b0,
                tap_words,
                c4,
                biasc,
                mult,
                m0,
                rows,
                o_flat,
                c0,
                p_len,
                segs,
                nseg,
                flo,
                fhi,
                zp,
            )


def build(p: dict, x_dtype: str, x_shape: tuple, owner):
    """The run function of one stride-1 QConv plan (qconv.conv_plan) for an input of
    ``x_shape``; the interleaved input lives in scratch shared by ``owner``'s kernels."""
    w = p["w"]
    m, c, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    h, wd = x_shape[2], x_shape[3]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    hq, wq = -(-(h + pt + pb) // sh), -(-(wd + pl + pr) // sw)  # each phase plane
    c4 = -(-c // 4)
    offs = np.array(
        [
            ((i * dh % sh * sw + j * dw % sw) * hq + i * dh // sh) * wq + j * dw // sw
            for i in range(kh)
            for j in range(kw)
        ],
        np.int64,
    )
    lda = max(sh * sw * hq * wq, -(-(oh * wq) // PX) * PX + int(offs.max()))  # the last tile's reads
    form = (0,) * sw if sw <= 2 else (0,)
    bpk = prepacked(w, ("vnni-taps", MR, WORDS), pack_weights)
    shift = 128 if x_dtype == "int8" else 0
    wsum = w.reshape(m, -1).astype(np.int64).sum(axis=1)
    biasc = (p["bias"].astype(np.int64) - (p["x_zp"] + shift) * wsum).astype(np.int32)
    mult, flo, fhi, zp, _ = requant_params(p)
    flip = np.uint32(0x80808080 if shift else 0)
    xz_raw = int(np.array(p["x_zp"]).astype(x_dtype).view(np.uint8)[()])  # the border's stored byte
    scratch = shared_scratch(owner, "qconv.packed", (n, c4, lda), np.uint32)

    def bind(ins, outs):
        """The step with its views and arguments worked out once (kernels.registry.bound)."""
        x, y = ins[0].view(np.uint8), outs[0]
        direct = y.flags.c_contiguous  # else a concat's slice: the tiles write whole (N, M, P) rows
        rows = y.reshape(n, m, oh * ow) if direct else np.empty((n, m, oh * ow), y.dtype)
        dense = x if x.flags.c_contiguous else None

        def call():
            xw = scratch.view((n, c4, lda), np.uint32)
            _interleave(
                dense if dense is not None else np.ascontiguousarray(x), xw, pt, pl, sh, sw, hq, wq, xz_raw, flip, form
            )
            _tiles(xw, bpk, offs, biasc, mult, rows, m, wq, ow, flo, fhi, zp)
            if not direct:
                y[...] = rows.reshape(y.shape)

        return call

    return run_of(bind)

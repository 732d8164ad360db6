"""The int8 convolution on AMX tiles (microkernel_amx.amx_int8_strip): u8 activations x s8
weights, ``tdpbsud``, int32 sums requantized as the VNNI tile does.

The activations are the VNNI kernels' words of four reduction bytes of one pixel, which is
an AMX B tile's layout as it is (16 reduction rows of 16 pixels x 4 bytes, rows one packed
row apart): stride-1 convs with several taps read qconv_vnni_taps' copy (four channels per
word, each tap an offset into the padded plane; the output computed on the padded rows and
the columns past OW dropped), the others qconv_vnni's im2col. The weights are A tiles, 16
output channels x 64 reduction bytes, per tap (:func:`pack_amx_int8`). So C = W x X has
channels as rows and pixels as columns: each C row is a stretch of an NCHW output row,
requantized and stored as bytes from the tile's scratch by segments (microkernel_int8's
requantization: bias, per-channel multiplier, clamp, round half to even, zero point). A task
is 32 channels x 32 pixels of one image over the whole reduction; the reduction is padded
to whole tiles of 16 words (their weights are zero, the words any valid bytes).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import num_threads, pjit
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.cpu import blas, qconv_vnni_taps
from cnnrt.kernels.cpu import microkernel_amx as amx
from cnnrt.kernels.cpu.qconv_vnni import PX, im2col_packer, requant_params
from cnnrt.kernels.cpu.qconv_vnni_taps import _interleave, row_segments
from cnnrt.kernels.prepacked import prepacked

KQ_TILE = amx.ROWS  # reduction words of four bytes per tile
CH = 2 * amx.ROWS  # output channels of one task (two A tiles)
_ONE_TAP = np.zeros(1, np.int64)


# reduction bytes (C*KH*KW) from which a conv runs on AMX rather than the VNNI tile: with short
# ones the tile's scratch round trip outweighs its products (one conv alone, 2 threads: K = 16,
# 27, 32, 96 ran 2.2, 1.7, 2.0 and 1.2x faster on VNNI; K = 256, 576, 4608 1.3, 1.8, 1.7x on AMX)
MIN_REDUCTION = 128


def amx_int8_reason(k_len: int = MIN_REDUCTION) -> str:
    """Why a conv with a reduction of ``k_len`` bytes does not run on the int8 AMX tiles
    here ("" when it does)."""
    if k_len < MIN_REDUCTION:
        return f"a reduction of {k_len} < {MIN_REDUCTION} bytes: the VNNI tile is faster"
    return amx.amx_unsupported_reason("amx-int8")


def pack_amx_int8(w: np.ndarray) -> np.ndarray:
    """s8 weights (T, M, K) (per tap, channels x reduction bytes) as A tiles:
    (M/16, T, K/64, 16, 64) bytes, M (to whole tasks of 32) and K zero-padded, flattened."""
    t, m, k = w.shape
    mb, kb = -(-m // CH) * 2, -(-k // (4 * KQ_TILE))
    full = np.zeros((t, mb * amx.ROWS, kb * 64), np.int8)
    full[:, :m, :k] = w
    tiles = full.reshape(t, mb, amx.ROWS, kb, 64).transpose(1, 0, 3, 2, 4)
    return np.ascontiguousarray(tiles).reshape(-1)


@pjit
def _amx_tiles(xw, wpk, taps, kqb, bias, mult, out, m_len, span, wp, ow, flo, fhi, zp, cfg, counter, nthreads):
    """out (N, M, OH*OW) from the words ``xw`` (N, rows, lda) over ``span`` pixels (``wp``
    to a padded output row, ``ow`` of them real), tasks claimed from ``counter``."""
    n_len, kq, lda = xw.shape
    p_len = out.shape[2]
    ntaps = taps.size
    mb_len, pb_len = -(-m_len // CH), -(-span // PX)
    a_flat = xw.reshape(-1)
    o_flat = out.reshape(-1)
    w_block = ntaps * kqb * 1024
    tasks = n_len * pb_len * mb_len
    for _t in prange(nthreads):
        amx.amx_begin(cfg)
        scratch = np.empty(4 * amx.ROWS * amx.OUT_LANES, np.int32)
        segs = np.empty(3 * (PX + 1), np.int64)
        while True:
            t = blas.claim(counter)
            if t >= tasks:
                break
            mb = t % mb_len
            q = t // mb_len
            pb = q % pb_len
            n = q // pb_len
            m0, q0 = mb * CH, pb * PX
            q1 = min(span, q0 + PX)
            amx.amx_int8_strip(
                a_flat, n * kq * lda + q0, lda, taps, ntaps, kqb, wpk, 2 * mb * w_block, w_block, scratch
            )
            nseg = row_segments(segs, q0, q1, wp, ow)
            for i in range(2):
                rows = min(amx.ROWS, m_len - m0 - i * amx.ROWS)
                if rows <= 0:
                    break
                c0 = (n * m_len + m0 + i * amx.ROWS) * p_len
                amx.amx_int8_store(
                    scratch,
                    i * 2 * 256,
                    bias,
                    mult,
                    m0 + i * amx.ROWS,
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
        amx.amx_end()


def build(p: dict, x_dtype: str, x_shape: tuple, owner):
    """The run function of one QConv plan (qconv.conv_plan) on AMX tiles, for an input of
    ``x_shape`` (qconv_vnni.eligible's convs); its copies live in scratch shared by
    ``owner``'s kernels."""
    w = p["w"]
    m, c, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    h, wd = x_shape[2], x_shape[3]
    (dh, dw), (pt, pl, pb, pr) = p["dilations"], p["pads"]
    # the taps copy here is qconv_vnni_taps' stride-1 layout (no phase planes)
    taps_path = tuple(p["strides"]) == (1, 1) and qconv_vnni_taps.eligible(c, (kh, kw))
    shift = 128 if x_dtype == "int8" else 0
    wsum = w.reshape(m, -1).astype(np.int64).sum(axis=1)
    bias = np.zeros(-(-m // CH) * CH, np.int32)
    bias[:m] = p["bias"].astype(np.int64) - (p["x_zp"] + shift) * wsum
    mult, flo, fhi, zp, _ = requant_params(p)
    flip = np.uint32(0x80808080 if shift else 0)
    cfg = amx.tile_config()
    counter = np.zeros(1, np.int64)
    max_threads = numba.config.NUMBA_NUM_THREADS
    npix = oh * ow

    if taps_path:  # words of four channels, each tap an offset into the padded plane
        hp, wp = h + pt + pb, wd + pl + pr
        c4 = -(-c // 4)
        kq = -(-c4 // KQ_TILE) * KQ_TILE
        lda = hp * wp + PX + (kw - 1) * dw
        taps = np.array([i * dh * wp + j * dw for i in range(kh) for j in range(kw)], np.int64)
        wpk = prepacked(w, ("amx-int8-taps",), lambda w: pack_amx_int8(w.transpose(2, 3, 0, 1).reshape(kh * kw, m, c)))
        xz_raw = int(np.array(p["x_zp"]).astype(x_dtype).view(np.uint8)[()])
        words = shared_scratch(owner, "qconv.packed", (n, kq, lda), np.uint32)
        span, grid = oh * wp, wp

        def prepare(x):
            xw = words.view((n, kq, lda), np.uint32)
            # every word group up to the tiles' kq, those past C/4 from channel C-1 (zero weights)
            _interleave(np.ascontiguousarray(x), xw, pt, pl, 1, 1, hp, wp, xz_raw, flip, (0,))
            return xw

    else:  # im2col words, one tap
        k_len = c * kh * kw
        kq = -(-k_len // (4 * KQ_TILE)) * KQ_TILE
        taps = _ONE_TAP
        wpk = prepacked(w, ("amx-int8",), lambda w: pack_amx_int8(w.reshape(1, m, k_len)))
        prepare = im2col_packer(p, x_dtype, x_shape, owner, kq)
        span, grid = npix, npix

    kqb = kq // KQ_TILE

    def run(ins, outs):
        xw = prepare(ins[0].view(np.uint8))
        y = outs[0]
        rows = y.reshape(n, m, npix) if y.flags.c_contiguous else np.empty((n, m, npix), y.dtype)
        counter[0] = 0
        nthreads = min(num_threads(), max_threads)
        _amx_tiles(
            xw,
            wpk,
            taps,
            kqb,
            bias,
            mult,
            rows,
            m,
            span,
            grid,
            ow if taps_path else npix,
            flo,
            fhi,
            zp,
            cfg,
            counter,
            nthreads,
        )
        if not y.flags.c_contiguous:  # a view into a bigger buffer (a concat's slice)
            y[...] = rows.reshape(y.shape)

    return run

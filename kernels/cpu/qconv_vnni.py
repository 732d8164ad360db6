"""The int8 convolution on the int8 register tile (microkernel_int8: vpdpbusd with VNNI, its
exact vpmaddwd form on AVX2): u8 activations x s8 weights.

The input (N, C, H, W) is packed per image as (K/4, P, 4) bytes, K = C*KH*KW in the weights'
(c, kh, kw) order and P = OH*OW output pixels: each 32-bit word holds the four inputs one
output pixel meets at four consecutive reduction steps (an im2col whose rows come in fours,
read from a border-padded copy filled with the input's zero point), 16 words a step
(microkernel_int8.pack_words_run: each step's four source rows read every SW-th byte at stride
2, the 3-channel stems' 0.4-0.75x the time of a copy split into column phases first). Past
stride 2 the copy is split by columns into the stride's phases, so each output row of every
tap is a contiguous stretch of one phase row. Strided and 7x7 convs
(those qconv_vnni_taps does not take: the 3-channel stems) are the same packing with other
offsets. Steps past K read any valid byte: their weights are zero.

Unpadded 1x1 convs (:func:`_pointwise_worker`) pack no whole im2col: each task packs the words
of its own tile of 32 output pixels (every SW-th column of the input's rows at stride 2) into
a scratch that stays in L1 and runs its weight tiles over it, one kernel call per step. Against
a packing pass before the tiles this saved 20-65% of a 1x1 conv's time on MobileNetV2's
shapes (a whole small conv, 16 channels at 7x7: 9.4 -> 3.0 us).

``vpdpbusd`` multiplies the activation bytes as unsigned; an int8 input is turned into uint8
by flipping each byte's top bit (x + 128), its zero point moved by the same 128. The zero
point is then taken out of the sums once per output channel: ``sum((x - xz) * w) = sum(x * w)
- xz * sum(w)``, folded with the bias into one int32 per channel at build time.

Each tile requantizes its sums as MLAS does (cnnrt.core.quantization.requantize: float32
product, clamp, round half to even, zero point) while they are in registers and stores bytes
(microkernel_int8.tile_u8s8_rq): the int32 sums never go to memory.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.core import quantization as qnt
from cnnrt.kernels._jit import njit, num_threads, pick, pjit
from cnnrt.kernels.aligned import per_thread, shared_scratch
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.microkernel_int8 import (
    EXACT_TILE,
    LANES,
    MR,
    NV,
    VNNI,
    WORDS,
    pack_words_run,
    tile_u8s8_rq,
    weight_words,
)
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.prepacked import prepacked
from cnnrt.kernels.registry import run_of

PX = NV * LANES  # output pixels of one tile
TASK_CHUNKS = 256  # parallel tasks of tiles: many per thread for balance, each allocating any scratch once
_ROUND = np.float32(12582912.0)  # 1.5 * 2**23: (f + _ROUND) - _ROUND rounds |f| < 2**22 half to even


def host_has_vnni() -> bool:
    return VNNI


def tile_runs() -> bool:
    """Whether the register tile runs on this CPU: on vpdpbusd with VNNI, on its exact vpmaddwd
    form with AVX2 (microkernel_int8._dot_words)."""
    return EXACT_TILE


def pack_weights(w: np.ndarray) -> np.ndarray:
    """s8 weights (M, C, KH, KW) as the tile's operand: (M/MR, K/4, MR) groups of four
    consecutive reduction steps (microkernel_int8.weight_words), M and K zero-padded, flattened."""
    m = w.shape[0]
    w2 = w.reshape(m, -1)
    mb, kq = -(-m // MR), -(-w2.shape[1] // 4)
    full = np.zeros((mb * MR, kq * 4), np.int8)
    full[:m, : w2.shape[1]] = w2
    return weight_words(full.reshape(mb, MR, kq, 4).transpose(0, 2, 1, 3)).reshape(-1)


def eligible(x_dtype: str, w: np.ndarray, w_zp: np.ndarray, group: int, out_dtype: str) -> bool:
    """Whether the tile runs this QConv: s8 weights with zero points 0, one group, u8/s8 in
    and out, on a CPU where it runs (:func:`tile_runs`)."""
    return (
        group == 1
        and w.dtype == np.int8
        and not np.any(w_zp)
        and x_dtype in ("uint8", "int8")
        and out_dtype in ("uint8", "int8")
        and tile_runs()
    )


@pjit
def _phases(x, xq, pt, pl, pad_value):
    """xq (N, C, Hp, SW, Wq): the input x (N, C, H, W) border-padded with ``pad_value`` and
    split by columns into the stride's phases (padded column ``k*SW + b`` at ``[.., b, k]``),
    so every tap of a strided conv reads a contiguous stretch of one phase row."""
    n_len, c_len, h_len, w_len = x.shape
    sw, wq = xq.shape[3], xq.shape[4]
    for t in prange(n_len * c_len):
        n = t // c_len
        c = t - n * c_len
        xq[n, c] = pad_value
        for r in range(h_len):
            src = x[n, c, r]
            for b in range(sw):
                # phase column k holds padded column k*sw + b, input column k*sw + b - pl
                k0 = max(0, -(-(pl - b) // sw))
                k1 = min(wq, (pl + w_len - 1 - b) // sw + 1)
                dst = xq[n, c, r + pt, b]
                for k in range(k0, k1):
                    dst[k] = src[k * sw + b - pl]


@njit(inline="always")
def pack_words(d, s0, s1, s2, s3, flip):
    """d[k] = bytes s0[k], s1[k], s2[k], s3[k] as one little-endian word (four reduction steps
    of one pixel, as vpdpbusd reads them), xor ``flip`` (an int8 input's top bits flipped to
    make it uint8)."""
    for k in range(d.size):
        d[k] = (
            np.uint32(s0[k])
            | (np.uint32(s1[k]) << np.uint32(8))
            | (np.uint32(s2[k]) << np.uint32(16))
            | (np.uint32(s3[k]) << np.uint32(24))
        ) ^ flip


@njit(inline="always")
def _source(k, k_len, khw, kw_len, dh, dw, phases, n, c_len, hp, row, wq):
    """Where reduction step ``k`` of image n's im2col reads output pixel (0, 0) in the flat
    padded input (a step past K reads step K-1's bytes: its weights are zero)."""
    k = min(k, k_len - 1)
    c = k // khw
    r = k - c * khw
    i = r // kw_len
    col = (r - i * kw_len) * dw
    return ((n * c_len + c) * hp + i * dh) * row + (col % phases) * wq + col // phases


@pjit
def _pack(xq, apk, k_len, kh_len, kw_len, sh, sw, dh, dw, oh_len, ow_len, flip, form):
    """apk (N, K/4, Ppad) uint32 from the padded input xq (N, C, Hp, S, Wq) uint8: see the module
    doc. S = SW: split into the stride's column phases (:func:`_phases`), each output row of a
    tap a contiguous stretch of one phase row; S = 1: read every SW-th byte of the padded row
    (``form`` a tuple of SW zeros, SW <= 2: microkernel_int8.pack_words_run)."""
    n_len, kq, ppad = apk.shape
    c_len, hp, phases, wq = xq.shape[1], xq.shape[2], xq.shape[3], xq.shape[4]
    khw = kh_len * kw_len
    whole = khw == 1 and sh == 1 and hp == oh_len and phases == 1 and wq == ow_len
    xf, af = xq.reshape(-1), apk.reshape(-1)
    row = phases * wq  # one padded row, all its phases
    for t in prange(n_len * kq):
        n = t // kq
        g = t - n * kq
        s0 = _source(4 * g, k_len, khw, kw_len, dh, dw, phases, n, c_len, hp, row, wq)
        s1 = _source(4 * g + 1, k_len, khw, kw_len, dh, dw, phases, n, c_len, hp, row, wq)
        s2 = _source(4 * g + 2, k_len, khw, kw_len, dh, dw, phases, n, c_len, hp, row, wq)
        s3 = _source(4 * g + 3, k_len, khw, kw_len, dh, dw, phases, n, c_len, hp, row, wq)
        d0 = (n * kq + g) * ppad
        if whole:  # each channel's plane is one run of the output's pixels
            pack_words_run(xf, s0, s1, s2, s3, af, d0, oh_len * ow_len, flip, form)
            continue
        for oh in range(oh_len):
            step = oh * sh * row
            pack_words_run(xf, s0 + step, s1 + step, s2 + step, s3 + step, af, d0 + oh * ow_len, ow_len, flip, form)


@pjit
def _tiles(apk, bpk, biasc, mult, out, m_len, flo, fhi, zp):
    """out (N, M, P) from the packed operands, requantized in the tile (see the module doc)."""
    n_len, kq, ppad = apk.shape
    p_len = out.shape[2]
    mb_len, pb_len = -(-m_len // MR), ppad // PX
    a_flat = apk.reshape(-1)
    o_flat = out.reshape(-1)
    tasks = n_len * pb_len * mb_len
    chunks = min(tasks, TASK_CHUNKS)
    for ch in prange(chunks):
        for t in range(ch * tasks // chunks, (ch + 1) * tasks // chunks):
            mb = t % mb_len
            q = t // mb_len
            pb = q % pb_len
            n = q // pb_len
            m0, p0 = mb * MR, pb * PX
            rows, jn = min(MR, m_len - m0), min(PX, p_len - p0)
            a0, c0 = (n * kq) * ppad + p0, (n * m_len + m0) * p_len + p0
            b0 = mb * kq * MR
            tile_u8s8_rq(a_flat, a0, ppad, bpk, b0, kq, biasc, mult, m0, rows, o_flat, c0, p_len, jn, flo, fhi, zp)


@njit
def _pointwise_worker(t, _nthreads, form, x, bpk, biasc, mult, out, geo, counter, flo, fhi, zp, flip, scratch):
    """One thread's share (kernels.cpu.threaded) of an unpadded 1x1 QConv, x (N, C, H, W) bytes
    -> out (N, M, P), flat. A task is (image, tile of PX pixels, run of weight tiles), claimed
    from ``counter``: it packs its pixels' words (the module doc) into a scratch of this thread,
    which stays in L1, a run of pixels at a time (each output row's, or the whole plane's at
    stride 1; microkernel_int8.pack_words_run, every SW-th column), and runs its weight tiles
    over them. ``geo`` = (N, C, P, M, kq, runs of weight tiles per pixel tile, H, W, OW, SH, SW,
    pixel tiles per task); ``form`` a tuple of SW zeros. A conv with few pixel tiles splits its
    weights into runs, each packing the pixels again, so every thread has tasks; one with many
    takes several consecutive pixel tiles a task, so a thread's output rows run on whole cache
    lines (a tile's 32 bytes share a line with the next tile's: tasks of one tile claimed in
    turn by both threads made 64->16 channels at 55x55 slower on two threads than on one)."""
    n_len, c_len, p_len, m_len, kq, runs = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    h_len, w_len, ow_len, sh, sw, span = geo[6], geo[7], geo[8], geo[9], geo[10], geo[11]
    hw = h_len * w_len
    run_len = p_len if sh == 1 and sw == 1 else ow_len  # output pixels one input stretch holds
    mb_len, pb_len = -(-m_len // MR), -(-p_len // PX)
    groups = -(-pb_len // span)
    a = scratch[t]  # this thread's tile of words; lanes past its pixels hold stale words, not stored
    n_tasks = n_len * groups * runs
    while True:
        task = blas.claim(counter)
        if task >= n_tasks:
            break
        q, r = blas.split_index(task, runs)
        n, grp = blas.split_index(q, groups)
        for pb in range(grp * span, min(pb_len, grp * span + span)):
            p0 = pb * PX
            jn = min(PX, p_len - p0)
            k = p0
            while k < p0 + jn:
                oh, ow = blas.split_index(k, run_len)
                count = min(run_len - ow, p0 + jn - k)
                src = n * c_len * hw + oh * sh * w_len + ow * sw
                for g in range(kq):  # channels past C read channel C-1: their weights are zero
                    o0, o1 = src + min(4 * g, c_len - 1) * hw, src + min(4 * g + 1, c_len - 1) * hw
                    o2, o3 = src + min(4 * g + 2, c_len - 1) * hw, src + min(4 * g + 3, c_len - 1) * hw
                    pack_words_run(x, o0, o1, o2, o3, a, g * PX + k - p0, count, flip, form)
                k += count
            for mb in range(r * mb_len // runs, (r + 1) * mb_len // runs):
                m0 = mb * MR
                c0 = (n * m_len + m0) * p_len + p0
                rows = min(MR, m_len - m0)
                tile_u8s8_rq(a, 0, PX, bpk, mb * kq * MR, kq, biasc, mult, m0, rows, out, c0, p_len, jn, flo, fhi, zp)


_pointwise, _pointwise_serial = threaded(_pointwise_worker)
TASKS_PER_THREAD = 4  # pointwise tasks per thread at least, where the weights allow
TILES_PER_TASK = 4  # consecutive pixel tiles of a pointwise task at most


def requant_params(p: dict) -> tuple:
    """(per-channel float32 multipliers, float32 clamp bounds less the zero point, zero point,
    the rounding constant) of a QConv plan's requantization (cnnrt.core.quantization.requantize)."""
    zp = int(p["y_zp"])
    qlo, qhi = qnt.QRANGE[p["out_dtype"]]
    lo = qlo if p["lo"] is None else max(qlo, p["lo"])
    hi = qhi if p["hi"] is None else min(qhi, p["hi"])
    mult = np.ascontiguousarray(p["multiplier"], np.float32)
    return mult, np.float32(lo - zp), np.float32(hi - zp), zp, _ROUND


def im2col_packer(p: dict, x_dtype: str, x_shape: tuple, owner, kq: int):
    """``pack(x) -> (N, kq, Ppad) uint32``: the im2col words of a QConv plan's input (the module
    doc), ``kq`` >= K/4 rows (rows past K/4 hold any valid words: their weights are zero), Ppad
    the output pixels in whole tiles. A strided 1x1 conv reads one pixel in SH*SW: its input is
    subsampled, then packed at stride 1; other strided convs are split into column phases first,
    padded ones border-padded with the input's zero point. The copies live in scratch shared
    by ``owner``'s kernels (kernels/aligned.shared_scratch: steps run one at a time)."""
    w = p["w"]
    _, c, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    h, wd = x_shape[2], x_shape[3]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    k_len = c * kh * kw
    flip = np.uint32(0x80808080 if x_dtype == "int8" else 0)
    ppad = -(-(oh * ow) // PX) * PX
    padded = pt or pl or pb or pr
    pad_value = np.array(p["x_zp"]).astype(x_dtype).view(np.uint8)[()]
    pointwise = kh == kw == 1 and not padded and (sh > 1 or sw > 1)
    split = sw > 2  # column phases copied apart; at SW <= 2 the packing reads every SW-th byte
    hp, wq = h + pt + pb, -(-(wd + pl + pr) // sw) if split else wd + pl + pr
    qshape = (n, c, oh, 1, ow) if pointwise else (n, c, hp, sw if split else 1, wq)
    form = (0,) if pointwise or split else (0,) * sw
    xq_scratch = shared_scratch(owner, "qconv.padded", qshape, np.uint8) if padded or sw > 1 or pointwise else None
    apk_scratch = shared_scratch(owner, "qconv.packed", (n, kq, ppad), np.uint32)

    def pack(x):
        apk = apk_scratch.view((n, kq, ppad), np.uint32)
        if pointwise:
            xq = xq_scratch.view(qshape, np.uint8)
            np.copyto(xq[:, :, :, 0], x[:, :, : oh * sh : sh, : ow * sw : sw])
            _pack(xq, apk, k_len, 1, 1, 1, 1, 1, 1, oh, ow, flip, form)
            return apk
        if split:
            xq = xq_scratch.view(qshape, np.uint8)
            _phases(np.ascontiguousarray(x), xq, pt, pl, pad_value)
        elif padded:
            xq = xq_scratch.view(qshape, np.uint8)
            xq.fill(pad_value)
            xq[:, :, pt : pt + h, 0, pl : pl + wd] = x
        else:
            xq = np.ascontiguousarray(x).reshape(qshape)
        _pack(xq, apk, k_len, kh, kw, sh, sw, dh, dw, oh, ow, flip, form)
        return apk

    return pack


def build(p: dict, x_dtype: str, x_shape: tuple, owner):
    """The run function of one QConv plan (qconv.conv_plan) on the tile, for an input of
    ``x_shape``; its im2col (:func:`im2col_packer`) lives in scratch shared by ``owner``'s kernels."""
    w = p["w"]
    m, c, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    kq = -(-(c * kh * kw) // 4)
    bpk = prepacked(w, ("vnni", MR, WORDS), pack_weights)
    shift = 128 if x_dtype == "int8" else 0
    wsum = w.reshape(m, -1).astype(np.int64).sum(axis=1)
    biasc = np.zeros(-(-m // MR) * MR, np.int32)  # whole tiles of rows: the tile starts every row's sums from it
    biasc[:m] = p["bias"].astype(np.int64) - (p["x_zp"] + shift) * wsum
    mult, flo, fhi, zp, _ = requant_params(p)
    npix = oh * ow
    if kh == kw == 1 and not any(p["pads"]):
        return _pointwise_run(p, x_dtype, x_shape, owner, (bpk, biasc, mult, flo, fhi, zp), kq)
    pack = im2col_packer(p, x_dtype, x_shape, owner, kq)

    def run(ins, outs):
        apk = pack(ins[0].view(np.uint8))
        y = outs[0]
        if y.flags.c_contiguous:
            _tiles(apk, bpk, biasc, mult, y.reshape(n, m, npix), m, flo, fhi, zp)
        else:  # a view into a bigger buffer (a concat's slice): the tiles write whole (N, M, P) rows
            rows = np.empty((n, m, npix), y.dtype)
            _tiles(apk, bpk, biasc, mult, rows, m, flo, fhi, zp)
            y[...] = rows.reshape(y.shape)

    return run


def _pointwise_run(p: dict, x_dtype: str, x_shape: tuple, owner, operands: tuple, kq: int):
    """The run function of an unpadded 1x1 QConv (:func:`_pointwise_worker`), with ``bind``
    (kernels.registry.bound): its views and arguments worked out once, one kernel call per run.
    A stride past 2 along the row reads one pixel in SH*SW from a subsampled copy of its input,
    in scratch shared by ``owner``'s kernels."""
    bpk, biasc, mult, flo, fhi, zp = operands
    m, c = p["w"].shape[:2]
    n, _, oh, ow = p["out_shape"]
    sh, sw = p["strides"]
    npix = oh * ow
    pb_len = n * -(-npix // PX)
    threads = numba.config.NUMBA_NUM_THREADS
    runs = max(1, min(-(-m // MR), -(-TASKS_PER_THREAD * threads // pb_len)))
    span = max(1, min(TILES_PER_TASK, pb_len // (TASKS_PER_THREAD * threads)))
    subsample = sw > 2  # pack_words_run keeps every first or second column
    plane = (oh, ow, ow, 1, 1) if subsample else (x_shape[2], x_shape[3], ow, sh, sw)
    geo = readonly(np.array((n, c, npix, m, kq, runs, *plane, span), np.int64))
    form = (0,) * plane[4]
    flip = np.uint32(0x80808080 if x_dtype == "int8" else 0)
    sub = shared_scratch(owner, "qconv.padded", (n, c, oh, ow), np.uint8) if subsample else None
    counter = np.zeros(1, np.int64)
    scratch = per_thread(threads, kq * PX, np.uint32)
    work = n * m * c * npix // 4  # MACs at a quarter: four per vpdpbusd lane

    def bind(ins, outs):
        x, y = ins[0].view(np.uint8), outs[0]
        direct = y.flags.c_contiguous  # else a concat's slice: the tiles write whole rows, copied
        dst = y.reshape(-1) if direct else np.empty(y.size, y.dtype)
        flat = x.reshape(-1) if x.flags.c_contiguous and not subsample else None
        args = (bpk, biasc, mult, dst, geo, counter, flo, fhi, zp, flip, scratch)

        def call():
            if subsample:
                xq = sub.view((n, c, oh, ow), np.uint8)
                np.copyto(xq, x[:, :, : oh * sh : sh, : ow * sw : sw])
                xs = xq.reshape(-1)
            else:
                xs = flat if flat is not None else np.ascontiguousarray(x).reshape(-1)
            nthreads = min(num_threads(), threads)
            counter[0] = 0
            pick(_pointwise, _pointwise_serial, work, nthreads)(nthreads, form, xs, *args)
            if not direct:
                y[...] = dst.reshape(y.shape)

        return call

    return run_of(bind)

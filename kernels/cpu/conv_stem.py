"""The stem conv: 3 input channels x 3x3 read from NCHW into a channel-blocked output.

A mobile net's first conv (3 channels, 3x3, stride 2, 16-32 outputs at 112x112) reduces over
only 27 values, so the register tile of conv_blocked.py pays per 16-pixel tile for its tap
and pixel tables, a 3-step reduction loop per tap and one weight load per 16 FMAs, and its
stored-tile activation once per tile. This kernel specialises on the reduction instead: one
output row of :data:`BLOCKS` channel blocks per call (:func:`stem_row`) and per group of
:data:`PIXELS` output pixels one accumulator per block, fed by 27 broadcasts at constant
offsets from the 9 input rows (a table of the rows' starts per output row). With AVX-512 the
one block's 27 weight vectors are loaded into registers once per row; with AVX2 two blocks
share each broadcast and the weights are loaded per group. The group's accumulators go
through the register tile's epilogue (microkernel.epilogue: bias, residual, Relu/Clip); the other float32 activations
(vector_act.py) run once over the finished row while it is in L1, which keeps their code out
of the pixel loop, where it would push the weights out of the registers.

Each output row's 9 input rows are copied into a zero-bordered row buffer of the thread
(rows above or below the image all zeros), once for all of the row's channel blocks: every
tap is a valid read, the buffer stays in L1, and the image is read straight from NCHW, with
no padded copy of the whole input (the same kernel reading such a copy took 1.13-1.18x as
long). A last group past the row's end re-reads its last pixel and stores
only the row's pixels. Rows (image, output row, group of blocks) are the tasks, split evenly
across threads.

A bf16 output (passes/precision.py: a stem whose readers all read bf16, MobileNetV3's
depthwise conv) is computed as float32 into a row of the thread's, activation included, and
stored rounded (microkernel_bf16.bf16_run): the stem writes half the bytes, and its readers
read half.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels._jit import njit
from cnnrt.kernels.activation import CLIP, RELU
from cnnrt.kernels.aligned import aligned_copy
from cnnrt.kernels.cpu import conv_algorithm
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import block_size, conv_run, live_lanes, readonly, tile_flags
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES, Vectors, c64, lanes_of
from cnnrt.kernels.cpu.microkernel_bf16 import bf16_run
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.vector_act import activations, by_kind
from cnnrt.kernels.prepacked import prepacked

# AVX-512: one channel block per call, its 27 weight vectors held in 32 registers, groups of
# 4 pixels (2 and 8 measured the same). AVX2's 16 registers do not hold them: two blocks per
# call, 6 pixels x 2 vectors of accumulators, and each tap's two weight vectors loaded per
# group (FMAs 12 per 8 loads, so the FMAs still bound it).
PIXELS, BLOCKS = (4, 1) if VECTOR_BYTES == 64 else (6, 2)


def _stem_row(rows_n: int, kw: int, pixels: int, nblocks: int):
    """stem_row for ``rows_n`` input rows (C*kh) of ``kw`` taps each, groups of ``pixels``
    output pixels, ``nblocks`` channel blocks per call."""
    taps = rows_n * kw

    @intrinsic
    def stem_row(typingctx, x, x_off, rows, sw, dw, ow, w, w_off, c, c_off, c_vs, flags, bias, bias_off, res, lo, hi):
        dt = x.dtype
        if not all(isinstance(a, types.Array) and a.dtype == dt for a in (x, w, c, bias, res)):
            return None
        if not isinstance(rows, types.Array) or rows.dtype != types.int64:
            return None
        i64 = types.int64
        sig = types.void(x, i64, rows, i64, i64, i64, w, i64, c, i64, i64, i64, bias, i64, res, dt, dt)
        lanes = lanes_of(dt)

        def codegen(context, builder, sig, args):
            x_v, x_off_v, rows_v, sw_v, dw_v, ow_v, w_v, w_off_v, c_v, c_off_v, c_vs_v, flags_v = args[:12]
            bias_v, bias_off_v, res_v, lo_v, hi_v = args[12:]
            vec = Vectors(builder, dt, align=4)

            def ptr(i, arr, off):
                data = context.make_array(sig.args[i])(context, builder, arr).data
                return builder.gep(data, [off])

            px = ptr(0, x_v, x_off_v)
            prows = context.make_array(sig.args[2])(context, builder, rows_v).data
            starts = [builder.gep(px, [builder.load(builder.gep(prows, [c64(r)]))]) for r in range(rows_n)]
            pw = ptr(6, w_v, w_off_v)

            def weight(t, v):
                return vec.load(pw, c64((v * taps + t) * lanes))

            held = [[weight(t, v) for v in range(nblocks)] for t in range(taps)] if nblocks == 1 else None
            pc0 = ptr(8, c_v, c_off_v)
            pbias = ptr(12, bias_v, bias_off_v)
            pres0 = ptr(14, res_v, c_off_v)
            last = builder.sub(ow_v, c64(1))
            groups = builder.sdiv(builder.add(ow_v, c64(pixels - 1)), c64(pixels))
            accs = [[cgutils.alloca_once_value(builder, vec.zero) for _ in range(nblocks)] for _ in range(pixels)]
            # activations over stored values run once over the whole row (in L1) after its
            # pixels, so the pixel loop stays FMAs with the weights in registers
            act = builder.and_(builder.lshr(flags_v, c64(mk.ACT_SHIFT)), c64(mk.ACT_MASK))
            on_accs = builder.or_(
                builder.icmp_unsigned("==", act, c64(RELU)), builder.icmp_unsigned("==", act, c64(CLIP))
            )
            act_bits = builder.shl(c64(mk.ACT_MASK), c64(mk.ACT_SHIFT))
            tile_flags_v = builder.select(on_accs, flags_v, builder.and_(flags_v, builder.not_(act_bits)))
            with cgutils.for_range(builder, groups) as loop:
                q0 = builder.mul(loop.index, c64(pixels))
                cols = []
                for i in range(pixels):  # pixels past the row re-read its last one
                    q = builder.add(q0, c64(i))
                    q = builder.select(builder.icmp_signed("<", q, ow_v), q, last)
                    cols.append(builder.mul(q, sw_v))
                acc = [[vec.zero] * nblocks for _ in range(pixels)]
                for r in range(rows_n):
                    for j in range(kw):
                        t = r * kw + j
                        ws = held[t] if held else [weight(t, v) for v in range(nblocks)]
                        for i in range(pixels):
                            off = builder.add(cols[i], builder.mul(c64(j), dw_v))
                            xv = vec.splat(builder.load(builder.gep(starts[r], [off])))
                            acc[i] = [vec.fma(xv, wv, a) for wv, a in zip(ws, acc[i])]
                for i in range(pixels):
                    for v in range(nblocks):
                        builder.store(acc[i][v], accs[i][v])
                off = builder.mul(q0, c64(lanes))
                mr = builder.sub(ow_v, q0)
                mr = builder.select(builder.icmp_signed("<", mr, c64(pixels)), mr, c64(pixels))
                mk.epilogue(
                    builder,
                    vec,
                    dt,
                    True,
                    accs,
                    builder.gep(pc0, [off]),
                    pbias,
                    builder.gep(pres0, [off]),
                    c64(lanes),
                    c_vs_v,
                    mr,
                    tile_flags_v,
                    lo_v,
                    hi_v,
                )

            def over_row(fn):
                for v in range(nblocks):
                    with cgutils.for_range(builder, ow_v) as q:
                        at = builder.add(builder.mul(c64(v), c_vs_v), builder.mul(q.index, c64(lanes)))
                        cp = builder.gep(pc0, [at])
                        vec.store(fn(vec.load(cp)), cp)

            lo_s, hi_s = vec.splat(lo_v), vec.splat(hi_v)
            by_kind(builder, act, activations(builder, vec, lo_s, hi_s, mk.STORED_KINDS), over_row)
            return context.get_dummy_value()

        return sig, codegen

    stem_row.__doc__ = f"""One output row of {nblocks} channel block(s), {rows_n} input rows x {kw} taps:
    output pixel q (< ``ow``) of block v at ``c[c_off + v*c_vs + q*lanes:]`` = sum over input
    row r and tap j of ``x[x_off + rows[r] + q*sw + j*dw]`` times the weight vector
    ``w[w_off + (v*{taps} + r*{kw} + j)*lanes:]``, then microkernel.epilogue by ``flags``
    (residual read at the same offsets of ``res``)."""
    return stem_row


# the one reduction shape compiled (conv_algorithm.stem_shape): 3 channels x 3x3, C*kh = 9
# input rows of 3 taps; a module-level kernel, so Numba's disk cache keys it by name
STEM_ROWS, STEM_KW = 9, 3
stem_row_3x3 = _stem_row(STEM_ROWS, STEM_KW, PIXELS, BLOCKS)
stem_row_3x3_one = _stem_row(STEM_ROWS, STEM_KW, PIXELS, 1)  # a last odd block when BLOCKS = 2


@njit
def _stem_rows_worker(
    t,
    nthreads,
    _form,
    x,
    pt,
    pl,
    wp_row,
    sh,
    dh,
    sw,
    dw,
    oh,
    ow,
    wpk,
    of,
    of16,
    row_f32,
    row_bits,
    m_blocks,
    per_n_out,
    flags,
    live,
    bias,
    rf,
    kind,
    lo,
    hi,
):
    """Thread t's share (kernels.cpu.threaded) of every (image, output row, group of BLOCKS
    channel blocks) row by stem_row_3x3 (a last group of one block by stem_row_3x3_one), split
    evenly over ``nthreads``; each output row's
    9 input rows copied into a zero-bordered row buffer of the thread (once for all of the
    row's channel blocks). The last block's rows store 0 in its lanes past the ``live`` real
    ones (0: all real; microkernel.LANES_SHIFT). The rows go into ``of`` (float32), or, when
    ``of16`` (bf16 bits) holds the output, into the thread's ``row_f32`` (``row_bits``: its
    float32 bits) and from there rounded into ``of16``."""
    last = flags | live << mk.LANES_SHIFT
    lanes = wpk.shape[2]
    n_img, c, h, w = x.shape
    kh = STEM_ROWS // c
    groups = (m_blocks + BLOCKS - 1) // BLOCKS
    ntasks = n_img * oh * groups
    plane_out = oh * ow * lanes
    rounded = of16.size > 1  # the output is bf16 (a float32 one leaves a 1-element stand-in here)
    rows = np.empty(STEM_ROWS, np.int64)
    buf = np.zeros(STEM_ROWS * wp_row, x.dtype)
    for r in range(STEM_ROWS):
        rows[r] = r * wp_row
    held = -1
    for i in range(t * ntasks // nthreads, (t + 1) * ntasks // nthreads):
        blk = i % groups * BLOCKS
        rest = i // groups
        y = rest % oh
        n = rest // oh
        if rest != held:
            held = rest
            for r in range(STEM_ROWS):
                ch = r // kh
                ih = y * sh + (r - ch * kh) * dh - pt
                dst = buf[r * wp_row + pl : r * wp_row + pl + w]
                if 0 <= ih < h:
                    src = x[n, ch, ih]
                    for k in range(w):
                        dst[k] = src[k]
                else:
                    dst[:] = 0
        c_off = n * per_n_out + blk * plane_out + y * ow * lanes
        nb = min(BLOCKS, m_blocks - blk)
        fl = last if blk + nb == m_blocks else flags
        w_off = blk * wpk.shape[1] * lanes
        # where the float32 rows go: the output, or the thread's row for a bf16 output
        dst, d_off, d_vs = (row_f32[t], 0, ow * lanes) if rounded else (of, c_off, plane_out)
        if nb == BLOCKS:
            stem_row_3x3(buf, 0, rows, sw, dw, ow, wpk, w_off, dst, d_off, d_vs, fl, bias, blk * lanes, rf, lo, hi)
        else:
            stem_row_3x3_one(buf, 0, rows, sw, dw, ow, wpk, w_off, dst, d_off, d_vs, fl, bias, blk * lanes, rf, lo, hi)
        for v in range(nb):
            start = d_off + v * d_vs
            if kind != 0:
                act_inplace(dst[start : start + ow * lanes], kind, lo, hi)
            if rounded:
                bf16_run(row_bits[t], start, of16, c_off + v * plane_out, ow * lanes)


_stem_rows, _stem_rows_serial = threaded(_stem_rows_worker)


def pack_weights(w: np.ndarray, lanes: int) -> np.ndarray:
    """(M, C, kh, kw) -> (blocks, C*kh*kw, lanes): per channel block, one vector per tap, the
    channels past M zero."""
    m, c, kh, kw = w.shape
    blocks = -(-m // lanes)
    wpad = np.zeros((blocks * lanes, c * kh * kw), w.dtype)
    wpad[:m] = w.reshape(m, -1)
    return aligned_copy(np.ascontiguousarray(wpad.reshape(blocks, lanes, -1).transpose(0, 2, 1)))


def build_stem_conv(spec, w_const, b_const, channels: int | None = None, bf16_out: bool = False):
    """run(ins, outs) for an ungrouped conv of an NCHW input of 3 channels x 3x3, writing
    the blocked output (N, ceil(M/B), OH, OW, B); channels past M computed from zero weights
    and bias, and the lanes past the real ``channels`` (default M) stored as 0 (as
    conv_blocked.build_blocked_conv). ``bf16_out``: the output is a bf16 activation (ir.BF16),
    rounded from the float32 rows; no residual then (it would be read at the rows' offsets)."""
    s = spec
    dt = np.dtype(s.dtype)
    lanes = block_size(dt)
    if not conv_algorithm.stem_shape(s):
        raise ValueError(f"stem conv needs group 1, float32, 3 channels x 3x3 on NCHW: {s}")
    wp = max(s.w + s.pl + s.pr, (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1)  # a buffer row: every tap
    m_blocks = -(-s.m // lanes)
    m_pad = m_blocks * lanes
    live = live_lanes(s.m, channels, lanes)

    def pack(w):
        return pack_weights(np.asarray(w, dt), lanes)

    wpk_const = None if w_const is None else readonly(prepacked(w_const, ("stem", dt.str, lanes), pack))
    bias_pad = np.zeros(m_pad, dt)
    if b_const is not None:
        bias_pad[: s.m] = b_const
    bias_const = readonly(bias_pad.copy())
    dummy_res = np.zeros(1, dt)
    tflags = tile_flags(s)
    kind = 0 if mk.tile_act(s.act, dt) else s.act
    work = s.n * s.m * s.oh * s.ow * s.c * s.kh * s.kw
    alpha, beta = dt.type(s.alpha), dt.type(s.beta)
    max_threads = numba.config.NUMBA_NUM_THREADS
    if bf16_out and (dt != np.float32 or live):
        raise ValueError(f"a bf16 stem output needs float32 and whole blocks of real channels: {s}, {live} real lanes")
    # a bf16 output: each thread's float32 rows (BLOCKS blocks of a row) before their rounding store
    row_f32 = np.zeros((max_threads, BLOCKS * s.ow * lanes) if bf16_out else (1, 1), dt)
    row_bits = row_f32.view(np.uint32)
    no_f32, no_bf16 = np.zeros(1, dt), np.zeros(1, np.uint16)

    def args_for(ins, outs, wpk, b, nthreads):
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        if r is not None and bf16_out:
            raise ValueError("a bf16 stem output takes no residual")
        res = dummy_res if r is None else r.reshape(-1)
        geometry = (s.pt, s.pl, wp, s.sh, s.dh, s.sw, s.dw, s.oh, s.ow)
        tail = (m_blocks, m_pad * s.oh * s.ow, tflags, live, b, res, kind, alpha, beta)
        out = outs[0].reshape(-1)
        of, of16 = (no_f32, out.view(np.uint16)) if bf16_out else (out, no_bf16)
        return (nthreads, (), ins[0], *geometry, wpk, of, of16, row_f32, row_bits, *tail)

    def fed_bias(b):
        bias_pad[: s.m] = b
        return readonly(bias_pad)

    kernels = (_stem_rows, _stem_rows_serial)
    weights = (wpk_const, lambda w: readonly(pack(w)))
    run = conv_run(
        kernels,
        work,
        args_for,
        max_threads,
        weights,
        (bias_const if b_const is not None else None, bias_const, fed_bias),
    )
    return run

"""The int8 register tile: ``vpdpbusd`` (AVX-512 VNNI) dot products, int32 sums.

One ``vpdpbusd`` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products into one of 16 int32 lanes, without saturation (the sums are exact). An AVX2 CPU
does the same exactly with ``vpmaddwd`` on the bytes widened to int16 (:func:`_dot_words`):
four instructions per 256 bits where VNNI takes one, on a 4 x 1 tile that fits AVX2's
registers, with whole-vector loads and stores where AVX-512's masked byte ones would be split
into a branch per byte (README, int8: no faster than the float32 model on such a CPU). The
tile puts
output *pixels* in the lanes and output *channels* in the rows: the activations are packed
(K/4, P, 4) (:mod:`kernels.cpu.qconv_vnni`: four consecutive reduction steps of one pixel in
one 32-bit lane, so 16 pixels are one 64-byte load) and the weights (M/MR, K/4, MR, 4), so a
channel's four weights are one 32-bit broadcast. Pixels in lanes make each accumulator row an
NCHW output row, which the tile requantizes and stores without a transpose.

A tile is MR channels x NV vectors of 16 pixels; per group of four reduction steps it loads
NV activation vectors, broadcasts MR weight words and issues MR x NV ``vpdpbusd``.

``tile_u8s8_rq`` (im2col, qconv_vnni) runs one k loop from the bias; ``tile_u8s8_taps_rq``
(qconv_vnni_taps) runs a k loop per tap of a conv on the same sums, which stay in registers
from the first tap to the store (a scratch round trip per tap measured 1.0-1.1x the time). Each
requantizes the sums while they are in registers and stores bytes: per channel
``float32(sum + bias) * multiplier``, clamped, rounded half to even, plus the zero point (MLAS's
order and rounding, cnnrt.core.quantization.requantize), each vector narrowed to 16 bytes
(``vpmovdb``) and stored under a lane mask, so a tile at the output's edge, or one spanning
several padded output rows, writes only its valid pixels. A separate epilogue would store,
reload and convert the int32 sums, which costs more than the multiplications in a layer with a
short reduction (a 1x1 conv over 16 channels).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu.llvm_ir import I32, I64, VECTOR_BYTES, c64, declare, host_has, masked_load

_DPBUSD = "llvm.x86.avx512.vpdpbusd.512"
_PMADDWD = "llvm.x86.avx2.pmadd.wd"
LANES = 16  # int32 lanes of one vpdpbusd (512 bits)


# Without VNNI (an AVX2 CPU) each vpdpbusd is done exactly with vpmaddwd (:func:`_dot_words`)
VNNI = host_has("avx512vnni")
# channels x pixel vectors of the tile. Eight rows: CNN channel counts are multiples of 8, where
# a 12-row tile computed 72 rows for 64 (64->64 3x3 at 56x56: 0.9x the time with 8, the other
# ResNet and MobileNetV2 shapes 0.92-1.0x); its 16 accumulators keep two vpdpbusd a cycle in
# flight as 24 did (the same rate in L1), and 8 x 3 measured slower on small planes. AVX2's 16
# registers hold 4 x 1 (8 accumulator halves, the activation's even and odd bytes, the weights').
MR, NV = (8, 2) if VNNI else (4, 1)
EXACT_TILE = VNNI or host_has("avx2")  # the tile runs here, natively or on vpmaddwd
WORDS = 1 if VNNI else 2  # int32 words of one channel's four weights (:func:`weight_words`)


def weight_words(full: np.ndarray) -> np.ndarray:
    """Weights (..., 4) int8, four reduction steps of one channel, as the tile reads them: one
    int32 word of the four bytes with VNNI; else two words of int16 pairs, the even steps'
    weights (0, 2) and the odd ones' (1, 3), widened with their sign at packing, not per use."""
    if VNNI:
        return np.ascontiguousarray(full).view(np.int32)
    return np.ascontiguousarray(full.astype(np.int16)[..., [0, 2, 1, 3]]).view(np.int32)


def _codegen(mr: int, nv: int, taps: bool):
    """The tile's IR: ``tile_u8s8_rq`` (one k loop, the sums from the bias, edge stores) or,
    with ``taps``, ``tile_u8s8_taps_rq`` (a k loop per tap on the same sums, segment stores)."""

    def codegen(context, builder, sig, args):
        if taps:
            a_v, a_off, lda, offs_v, b_v, b_off, tap_words, kq, bias_v, mult_v, m0, rows = args[:12]
            c_v, c_off, ldc, seg_v, nseg, flo, fhi, zp = args[12:]
        else:
            a_v, a_off, lda, b_v, b_off, kq, bias_v, mult_v, m0, rows, c_v, c_off, ldc, jn, flo, fhi, zp = args

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vty = ir.VectorType(I32, LANES)
        dp = _dot_words(builder, vty)
        splat_mask = ir.Constant(vty, [0] * LANES)
        pa0, pb0 = ptr(0, a_v, a_off), ptr(4 if taps else 3, b_v, builder.mul(b_off, c64(WORDS)))
        pbias, pmult = (ptr(8, bias_v, m0), ptr(9, mult_v, m0)) if taps else (ptr(6, bias_v, m0), ptr(7, mult_v, m0))

        def start(r):
            if taps:  # the bias joins the sums at the requantization
                return ir.Constant(vty, [0] * LANES)
            return _splat(builder, builder.load(builder.gep(pbias, [c64(r)])), vty)  # bias padded to MR rows

        accs = [[cgutils.alloca_once_value(builder, start(r)) for _ in range(nv)] for r in range(mr)]

        def k_loop(pa0, pb0):
            with cgutils.for_range(builder, kq) as loop:
                k = loop.index
                pa = builder.gep(pa0, [builder.mul(k, lda)])
                pb = builder.gep(pb0, [builder.mul(k, c64(mr * WORDS))])
                avec = []
                for v in range(nv):
                    ld = builder.load(builder.bitcast(builder.gep(pa, [c64(v * LANES)]), vty.as_pointer()))
                    ld.align = 4
                    avec.append(ld)
                for r in range(mr):
                    wv = []
                    for j in range(WORDS):
                        w = builder.load(builder.gep(pb, [c64(r * WORDS + j)]))
                        w.align = 4
                        ins = builder.insert_element(ir.Constant(vty, ir.Undefined), w, ir.Constant(I32, 0))
                        wv.append(builder.shuffle_vector(ins, ir.Constant(vty, ir.Undefined), splat_mask))
                    for v in range(nv):
                        builder.store(dp(builder.load(accs[r][v]), avec[v], wv), accs[r][v])

        if taps:  # every tap's k loop on the same sums, from the tap's offset and weights
            offs = context.make_array(sig.args[3])(context, builder, offs_v)
            with cgutils.for_range(builder, offs.nitems) as tap:
                off = builder.load(builder.gep(offs.data, [tap.index]))
                tap_b = builder.mul(builder.mul(tap.index, tap_words), c64(WORDS))
                k_loop(builder.gep(pa0, [off]), builder.gep(pb0, [tap_b]))
            stores = segment_stores(builder, ptr(12, c_v, c_off), ldc, ptr(15, seg_v, c64(0)), nseg)
        else:
            k_loop(pa0, pb0)
            stores = edge_stores(builder, ptr(10, c_v, c_off), ldc, jn, nv)
        sums = [[builder.load(a) for a in row] for row in accs]
        requantize_rows(builder, vty, sums, pbias if taps else None, pmult, rows, flo, fhi, zp, stores)
        return context.get_dummy_value()

    return codegen


def _dot_words(builder, vty):
    """``dot(acc, a, ws)``: acc plus, per int32 lane, the four products of a's unsigned bytes
    and a channel's four signed weights (``ws``, its :func:`weight_words` splat), exact: one
    vpdpbusd with VNNI; else a's even and odd bytes widened to int16 in place (masked,
    shifted) and multiplied by the widened weights and summed in pairs by vpmaddwd, whose int32
    sums of two products of 9-bit by 8-bit values cannot overflow (vpmaddubsw, onnxruntime's
    u8s8 product on AVX2, saturates at int16)."""
    if VNNI:
        fn = declare(builder, _DPBUSD, vty, [vty, vty, vty])
        return lambda acc, a, ws: builder.call(fn, [acc, a, ws[0]])
    h16 = ir.VectorType(ir.IntType(16), 16)
    h32 = ir.VectorType(I32, 8)
    pmadd = declare(builder, _PMADDWD, h32, [h16, h16])
    wide = ir.VectorType(ir.IntType(16), 2 * vty.count)
    eight = ir.Constant(wide, [8] * wide.count)
    low_byte = ir.Constant(wide, [0xFF] * wide.count)
    halves = [ir.Constant(ir.VectorType(I32, 16), list(range(k, k + 16))) for k in (0, 16)]
    joined = ir.Constant(ir.VectorType(I32, vty.count), list(range(vty.count)))

    def madd(x, y):  # vpmaddwd on each 256-bit half
        parts = [
            builder.call(pmadd, [builder.shuffle_vector(x, x, h), builder.shuffle_vector(y, y, h)]) for h in halves
        ]
        return builder.shuffle_vector(parts[0], parts[1], joined)

    def dot(acc, a, ws):
        a16 = builder.bitcast(a, wide)
        a_even, a_odd = builder.and_(a16, low_byte), builder.lshr(a16, eight)
        w_even, w_odd = builder.bitcast(ws[0], wide), builder.bitcast(ws[1], wide)
        return builder.add(acc, builder.add(madd(a_even, w_even), madd(a_odd, w_odd)))

    return dot


_BYTES = ir.VectorType(ir.IntType(8), LANES)
_MASK = ir.VectorType(ir.IntType(1), LANES)
_LANE_IDS = ir.Constant(ir.VectorType(I64, LANES), list(range(LANES)))
_SPLAT0 = ir.Constant(ir.VectorType(I32, LANES), [0] * LANES)


def _splat(builder, x, ty):
    v = builder.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(I32, 0))
    mask = _SPLAT0 if ty.count == LANES else ir.Constant(ir.VectorType(I32, ty.count), [0] * ty.count)
    return builder.shuffle_vector(v, ir.Constant(ty, ir.Undefined), mask)


# AVX2 has no masked byte loads or stores: LLVM splits them into a branch per byte, so where
# every lane is valid the AVX2 code loads or stores the vector whole
_BYTE_MASKS = VECTOR_BYTES == 64


def _masked_store(builder, q, p, mask, whole):
    """q's bytes at p where ``mask`` is set; ``whole``, an i1 true when every lane is, stores
    the vector plainly on AVX2."""
    fn = declare(builder, f"llvm.masked.store.v{LANES}i8.p0", ir.VoidType(), [_BYTES, _BYTES.as_pointer(), I32, _MASK])
    ptr = builder.bitcast(p, _BYTES.as_pointer())
    if _BYTE_MASKS:
        builder.call(fn, [q, ptr, ir.Constant(I32, 1), mask])
        return
    with builder.if_else(whole, likely=True) as (plain, masked):
        with plain:
            builder.store(q, ptr).align = 1
        with masked:
            builder.call(fn, [q, ptr, ir.Constant(I32, 1), mask])


def edge_stores(builder, pc, ldc, jn, nv):
    """Row r's bytes to pc[r*ldc + j] for lanes j < ``jn``: a tile at the edge of the output
    writes only its valid pixels."""
    i64v = ir.VectorType(I64, LANES)
    ends = [_splat(builder, builder.sub(jn, c64(v * LANES)), i64v) for v in range(nv)]
    masks = [builder.icmp_signed("<", _LANE_IDS, end) for end in ends]
    wholes = [builder.icmp_signed(">=", jn, c64((v + 1) * LANES)) for v in range(nv)]

    def stores(r, qs):
        prow = builder.gep(pc, [builder.mul(c64(r), ldc)])
        for v, q in enumerate(qs):
            _masked_store(builder, q, builder.gep(prow, [c64(v * LANES)]), masks[v], wholes[v])

    return stores


def segment_stores(builder, pc, ldc, pseg, nseg):
    """Row r's bytes by segments: segment i (``pseg[3i : 3i+3]`` = first lane, end lane, offset)
    puts lane j of [first, end) at pc[r*ldc + offset + j] (a tile over several output rows)."""
    i64v = ir.VectorType(I64, LANES)

    def stores(r, qs):
        prow = builder.gep(pc, [builder.mul(c64(r), ldc)])
        with cgutils.for_range(builder, nseg) as loop:
            sp = builder.gep(pseg, [builder.mul(loop.index, c64(3))])
            first, end, off = (builder.load(builder.gep(sp, [c64(i)])) for i in range(3))
            pseg_row = builder.gep(prow, [off])
            for v, q in enumerate(qs):
                lanes = builder.add(_LANE_IDS, ir.Constant(i64v, [v * LANES] * LANES))
                lo_ok = builder.icmp_signed(">=", lanes, _splat(builder, first, i64v))
                hi_ok = builder.icmp_signed("<", lanes, _splat(builder, end, i64v))
                whole = builder.and_(
                    builder.icmp_signed("<=", first, c64(v * LANES)),
                    builder.icmp_signed(">=", end, c64((v + 1) * LANES)),
                )
                _masked_store(builder, q, builder.gep(pseg_row, [c64(v * LANES)]), builder.and_(lo_ok, hi_ok), whole)

    return stores


def _flat(*arrays) -> bool:
    """Whether every type is a 1-D C-contiguous array (the intrinsics' operands)."""
    return all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1 for a in arrays)


def _requant_operands(bias, mult, c) -> bool:
    """int32 bias, float32 multipliers and 8-bit codes out: what :func:`requantize_rows` takes."""
    return bias.dtype == types.int32 and mult.dtype == types.float32 and c.dtype in (types.uint8, types.int8)


def requantize_rows(builder, vty, sums, pbias, pmult, rows, flo, fhi, zp, stores, one_channel=False):
    """Rows r < ``rows`` of ``sums`` requantized to bytes (the module doc), handed to
    ``stores(r, vectors)``; row r is channel r of ``pbias``/``pmult``, or with ``one_channel``
    every row is channel 0 (rows of one depthwise plane); ``pbias`` None: the sums hold the
    bias already."""
    fty = ir.VectorType(ir.FloatType(), LANES)
    lo, hi, zpv = _splat(builder, flo, fty), _splat(builder, fhi, fty), _splat(builder, builder.trunc(zp, I32), vty)
    # rounded in the current rounding mode (MXCSR's default: to nearest, half to even): one
    # vcvtps2dq with AVX-512; llvm.nearbyint (vroundps) then an exact conversion elsewhere
    if VECTOR_BYTES == 64:
        cvt_fn = declare(builder, "llvm.x86.avx512.mask.cvtps2dq.512", vty, [fty, vty, ir.IntType(16), I32])
        cvt_args = [ir.Constant(vty, ir.Undefined), ir.Constant(ir.IntType(16), 0xFFFF), ir.Constant(I32, 4)]

        def cvt(f):
            return builder.call(cvt_fn, [f, *cvt_args])

    else:
        rint = declare(builder, f"llvm.nearbyint.v{LANES}f32", fty, [fty])

        def cvt(f):
            return builder.fptosi(builder.call(rint, [f]), vty)

    for r, row in enumerate(sums):
        with builder.if_then(builder.icmp_signed("<", c64(r), rows)):
            ch = c64(0 if one_channel else r)
            bias = None if pbias is None else _splat(builder, builder.load(builder.gep(pbias, [ch])), vty)
            mult = _splat(builder, builder.load(builder.gep(pmult, [ch])), fty)
            qs = []
            for acc in row:
                f = builder.fmul(builder.sitofp(acc if bias is None else builder.add(acc, bias), fty), mult)
                f = builder.select(builder.fcmp_ordered("<", f, lo), lo, f)
                f = builder.select(builder.fcmp_ordered(">", f, hi), hi, f)
                qs.append(builder.trunc(builder.add(cvt(f), zpv), _BYTES))
            stores(r, qs)


def _tile_rq(mr: int, nv: int):
    """``tile_rq(a, a_off, lda, b, b_off, kq, bias, mult, m0, rows, c, c_off, ldc, jn, flo, fhi, zp)``:
    c[c_off + r*ldc + j] for rows r < ``rows`` (of ``mr``) and pixels j < ``jn`` (of nv*16): the
    sum over kq groups g of the four-byte dot products of a[a_off + g*lda + j] (uint32 words of
    four u8) and b[b_off + g*mr + r] (int32 words of four s8), requantized (see the module doc)
    with channel ``m0 + r``'s int32 ``bias`` and float32 ``mult``, clamped to [flo, fhi] (bounds
    less the zero point) and stored as bytes (c uint8 or int8). The sums start from the bias, so
    ``bias`` holds all ``mr`` rows from ``m0`` (zeros past the last channel)."""

    @intrinsic
    def tile_rq(typingctx, a, a_off, lda, b, b_off, kq, bias, mult, m0, rows, c, c_off, ldc, jn, flo, fhi, zp):
        if not (_flat(a, b, bias, mult, c) and _requant_operands(bias, mult, c)):
            return None
        if a.dtype != types.uint32 or b.dtype != types.int32:
            return None
        i64, f32 = types.int64, types.float32
        sig = types.void(a, i64, i64, b, i64, i64, bias, mult, i64, i64, c, i64, i64, i64, f32, f32, i64)
        return sig, _codegen(mr, nv, taps=False)

    return tile_rq


def _tile_taps_rq(mr: int, nv: int):
    """``tile_taps_rq(a, a_off, lda, offs, b, b_off, tap_words, kq, bias, mult, m0, rows, c, c_off,
    ldc, seg, nseg, flo, fhi, zp)``: ``tile_rq``'s sums over every tap t of ``offs`` (int64), held
    in registers from the first tap to the store: tap t's activations from a[a_off + offs[t] +
    g*lda + j], its weights from b[b_off + t*tap_words + g*mr + r]; the sums start from zero and
    the bias (rows < ``rows`` read) joins them at the requantization. Stored by segments:
    segment i, seg[3i : 3i+3] = (first lane, end lane, offset), puts lane j of [first, end) of
    row r at c[c_off + r*ldc + offset + j]."""

    @intrinsic
    def tile_taps_rq(
        typingctx,
        a,
        a_off,
        lda,
        offs,
        b,
        b_off,
        tap_words,
        kq,
        bias,
        mult,
        m0,
        rows,
        c,
        c_off,
        ldc,
        seg,
        nseg,
        flo,
        fhi,
        zp,
    ):
        if not (_flat(a, offs, b, bias, mult, c, seg) and _requant_operands(bias, mult, c)):
            return None
        if a.dtype != types.uint32 or b.dtype != types.int32:
            return None
        if offs.dtype != types.int64 or seg.dtype != types.int64:
            return None
        i64, f32 = types.int64, types.float32
        sig = types.void(
            a, i64, i64, offs, b, i64, i64, i64, bias, mult, i64, i64, c, i64, i64, seg, i64, f32, f32, i64
        )
        return sig, _codegen(mr, nv, taps=True)

    return tile_taps_rq


tile_u8s8_rq = _tile_rq(MR, NV)
tile_u8s8_taps_rq = _tile_taps_rq(MR, NV)


@intrinsic
def pack_words_run(typingctx, x, o0, o1, o2, o3, d, do, count, flip, form):
    """d[do + k] = x[o0 + k*S] | x[o1 + k*S] << 8 | x[o2 + k*S] << 16 | x[o3 + k*S] << 24, xor
    ``flip``, for k < ``count``: four channels' bytes of one pixel as the tile's activation word
    (qconv_vnni_taps), every S-th column of the rows (a stride's column phase); ``form`` a
    tuple of S zeros (S 1 or 2). 16 words a step: per row a 16*S-byte load, every S-th byte
    kept, widened and shifted into place; the last step's loads and store under lane masks."""
    if not (isinstance(form, types.UniTuple) and form.count in (1, 2)):
        return None
    step = form.count
    if not _flat(x, d):
        return None
    if x.dtype != types.uint8 or d.dtype != types.uint32 or flip != types.uint32:
        return None
    i64 = types.int64
    sig = types.void(x, i64, i64, i64, i64, d, i64, i64, flip, form)

    def codegen(context, builder, sig, args):
        x_v, o0, o1, o2, o3, d_v, do, count, flip_v, _ = args
        px = context.make_array(sig.args[0])(context, builder, x_v).data
        pd = builder.gep(context.make_array(sig.args[5])(context, builder, d_v).data, [do])
        span = LANES * step
        bty = ir.VectorType(ir.IntType(8), span)
        vty = ir.VectorType(I32, LANES)
        bits = ir.IntType(span)
        flips = _splat(builder, flip_v, vty)
        rows = [builder.gep(px, [o]) for o in (o0, o1, o2, o3)]
        steps = builder.sdiv(builder.add(count, c64(LANES - 1)), c64(LANES))
        with cgutils.for_range(builder, steps) as loop:
            k0 = builder.mul(loop.index, c64(LANES))
            left = builder.sub(count, k0)  # words this step, all 16 but in the last
            whole = builder.icmp_signed(">=", left, c64(LANES))
            lanes = builder.select(whole, c64(LANES), left)
            nbytes = builder.add(builder.mul(builder.sub(lanes, c64(1)), c64(step)), c64(1))  # to the last word's
            load_mask = builder.bitcast(
                builder.trunc(builder.sub(builder.shl(c64(1), nbytes), c64(1)), bits),
                ir.VectorType(ir.IntType(1), span),
            )
            ptrs = [builder.bitcast(builder.gep(row, [builder.mul(k0, c64(step))]), bty.as_pointer()) for row in rows]
            if _BYTE_MASKS:
                loaded = [masked_load(builder, p, load_mask, 1) for p in ptrs]
            else:  # plain loads where all span bytes lie in the run (one more than the words need at stride 2)
                plain_ok = builder.icmp_signed(">=", left, c64(LANES + step - 1))
                with builder.if_else(plain_ok, likely=True) as (plain, masked):
                    with plain:
                        plain_vs = [builder.load(p, align=1) for p in ptrs]
                        plain_end = builder.block
                    with masked:
                        masked_vs = [masked_load(builder, p, load_mask, 1) for p in ptrs]
                        masked_end = builder.block
                loaded = []
                for a, b in zip(plain_vs, masked_vs):
                    phi = builder.phi(bty)
                    phi.add_incoming(a, plain_end)
                    phi.add_incoming(b, masked_end)
                    loaded.append(phi)
            word = flips
            for r, v in enumerate(loaded):
                if step > 1:
                    v = builder.shuffle_vector(v, ir.Constant(bty, ir.Undefined), _every(step, 0))
                wide = builder.zext(v, vty)
                if r:
                    wide = builder.shl(wide, ir.Constant(vty, [8 * r] * LANES))
                word = builder.xor(word, wide)  # the bytes' bits do not overlap: xor is or
            store_mask = builder.icmp_signed("<", _LANE_IDS, _splat(builder, lanes, ir.VectorType(I64, LANES)))
            pst = builder.bitcast(builder.gep(pd, [k0]), vty.as_pointer())
            fn = declare(
                builder,
                f"llvm.masked.store.v{LANES}i32.p0",
                ir.VoidType(),
                [vty, vty.as_pointer(), I32, store_mask.type],
            )
            builder.call(fn, [word, pst, ir.Constant(I32, 4), store_mask])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def stage_rows(typingctx, x, xo, h, wd, ih0, rows, s, so, lq, rs, pl, fill, form):
    """Input rows [ih0, ih0 + ``rows``) of one plane of a depthwise int8 conv (qconv_depthwise,
    the plane at x[xo:], ``h`` rows of ``wd``) as float32 column phases: for staged row q, k <
    ``lq`` (a multiple of 16) and b < SW, s[so + (q*SW + b)*rs + k] = x[xo + ih*wd + k*SW + b -
    pl], ih = ih0 + q, where that row and column lie in the plane, else ``fill`` (the input's
    zero point, as a zero-point border would hold). ``form`` as :func:`depthwise_form` gives it.
    Each step loads 16*SW bytes under a mask of the columns in the row, splits them into the SW
    phases and widens each exactly."""
    if not isinstance(form, types.UniTuple):
        return None
    sw = _depthwise_config(form)[1]
    if not _flat(x, s):
        return None
    if x.dtype not in (types.uint8, types.int8) or s.dtype != types.float32:
        return None
    i64 = types.int64
    sig = types.void(x, i64, i64, i64, i64, i64, s, i64, i64, i64, i64, i64, form)
    signed = x.dtype == types.int8

    def codegen(context, builder, sig, args):
        x_v, xo, h, wd, ih0, rows, s_v, so, lq, rs, pl, fill_v, _ = args
        px = builder.gep(context.make_array(sig.args[0])(context, builder, x_v).data, [xo])
        ps = builder.gep(context.make_array(sig.args[6])(context, builder, s_v).data, [so])
        span = LANES * sw
        bty = ir.VectorType(ir.IntType(8), span)
        vty = ir.VectorType(I32, LANES)
        fty = ir.VectorType(ir.FloatType(), LANES)
        fill = _splat(builder, builder.trunc(fill_v, ir.IntType(8)), bty)
        no_lanes = ir.Constant(ir.VectorType(ir.IntType(1), span), [0] * span)

        def clamp(v):  # to [0, span]
            v = builder.select(builder.icmp_signed("<", v, c64(0)), c64(0), v)
            return builder.select(builder.icmp_signed(">", v, c64(span)), c64(span), v)

        def low_bits(n):  # n <= span <= 32 low bits set
            return builder.sub(builder.shl(c64(1), n), c64(1))

        steps = builder.udiv(lq, c64(LANES))
        with cgutils.for_range(builder, rows) as row:  # rows outermost: each written in turn
            ih = builder.add(ih0, row.index)
            inside = builder.and_(builder.icmp_signed(">=", ih, c64(0)), builder.icmp_signed("<", ih, h))
            with cgutils.for_range(builder, steps) as loop:
                k0 = builder.mul(loop.index, c64(LANES))
                c0 = builder.sub(builder.mul(k0, c64(sw)), pl)
                lo, hi = clamp(builder.neg(c0)), clamp(builder.sub(wd, c0))
                bits = builder.and_(low_bits(hi), builder.not_(low_bits(lo)))  # columns [lo, hi) lie in the row
                cols = builder.bitcast(builder.trunc(bits, ir.IntType(span)), no_lanes.type)
                mask = builder.select(inside, cols, no_lanes)
                p = builder.gep(px, [builder.add(builder.mul(ih, wd), c0)])
                v = masked_load(builder, builder.bitcast(p, bty.as_pointer()), mask, 1, fill)
                pq = builder.gep(ps, [builder.add(builder.mul(builder.mul(row.index, c64(sw)), rs), k0)])
                for b in range(sw):
                    vb = v if sw == 1 else builder.shuffle_vector(v, ir.Constant(bty, ir.Undefined), _every(sw, b))
                    wide = builder.sext(vb, vty) if signed else builder.zext(vb, vty)
                    pb = builder.bitcast(builder.gep(pq, [builder.mul(c64(b), rs)]), fty.as_pointer())
                    builder.store(builder.sitofp(wide, fty), pb).align = 4
        return context.get_dummy_value()

    return sig, codegen


def _every(step: int, first: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, LANES), [first + k * step for k in range(LANES)])


DW_ROWS = 8  # output rows of one depthwise call: as many independent sums in flight
DW_ROW_STRIDE = 256  # floats between the staged phase rows of a specialised form
# (kernel size, stride) of the square, undilated depthwise convs emitted with constant taps and
# strides (MobileNet, EfficientNet, MixNet); any other runs a form with them at run time
DW_SPECIAL = tuple((k, s) for k in (3, 5, 7, 9, 11) for s in (1, 2))


def depthwise_form(kh: int, kw: int, sh: int, sw: int, dh: int, dw: int, lq: int) -> tuple:
    """The code form of a depthwise conv for :func:`depthwise_rows_rq` and :func:`stage_rows`: a
    tuple of zeros whose length says it (1 or 2: the generic form of that row stride; 3 + i:
    ``DW_SPECIAL[i]``, which also needs the staged phase rows ``lq`` to fit DW_ROW_STRIDE)."""
    key = (kh, sh)
    if kh == kw and sh == sw and dh == dw == 1 and key in DW_SPECIAL and lq <= DW_ROW_STRIDE:
        return (0,) * (3 + DW_SPECIAL.index(key))
    return (0,) * sw


def _depthwise_config(form):
    """(kernel size or None, stride along the row, stride between rows or None) of a form."""
    if form.count <= 2:
        return None, form.count, None
    k, st = DW_SPECIAL[form.count - 3]
    return k, st, st


@intrinsic
def depthwise_rows_rq(typingctx, s, so, geo, wts, wo, nrows, ow0, count, bias, mult, ch, c, co, flo, fhi, zp, form):
    """Rows r < ``nrows`` (<= DW_ROWS), pixels [ow0, ow0 + ``count``) (``count`` <= 16) of a
    band of one plane of a depthwise int8 conv (qconv_depthwise), from its codes staged as
    float32: pixel (r, ow)'s sum over taps (i, j) of wts[wo + i*kw + j] * s[so + (r*SH +
    i*DH)*SW*RS + b*RS + ow + (j*DW)//SW], b = (j*DW) % SW (each staged row split into SW
    column phases, RS floats apart), requantized as the tile's rows are
    (:func:`requantize_rows`, channel ``ch``'s int32 bias and multiplier) and stored as bytes
    at c[co + r*OW + j]. ``geo`` = (kh, kw, SH, DH, DW, RS, OW); ``form`` as
    :func:`depthwise_form` gives it: a specialised form has its taps, strides and RS
    (DW_ROW_STRIDE) as constants, every address an offset from one pointer (at run time they
    cost 3x: the taps' loops and the rows' pointers). The sums are exact (integers below 2**24:
    qconv_depthwise bounds the taps) and stay in registers between the taps and the store."""
    if not isinstance(form, types.UniTuple):
        return None
    if not (_flat(s, wts, bias, mult, c) and _requant_operands(bias, mult, c)):
        return None
    if s.dtype != types.float32 or wts.dtype != types.float32:
        return None
    if not (isinstance(geo, types.UniTuple) and geo.count == 7 and geo.dtype == types.int64):
        return None
    i64, f32 = types.int64, types.float32
    sig = types.void(s, i64, geo, wts, i64, i64, i64, i64, bias, mult, i64, c, i64, f32, f32, i64, form)
    k_const, sw, sh_const = _depthwise_config(form)

    def codegen(context, builder, sig, args):
        s_v, so, geo_v, w_v, wo, nrows, ow0, count, bias_v, mult_v, ch, c_v, co, flo, fhi, zp, _ = args
        kh, kw, sh, dh, dw, rs, ldc = (builder.extract_value(geo_v, i) for i in range(7))

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vty = ir.VectorType(I32, LANES)
        fty = ir.VectorType(ir.FloatType(), LANES)
        fma = declare(builder, "llvm.fma.v16f32", fty, [fty, fty, fty])
        ps, pw = ptr(0, s_v, builder.add(so, ow0)), ptr(3, w_v, wo)
        accs = [ir.Constant(fty, [0.0] * LANES)] * DW_ROWS

        def tap(accs, w_index, offset, row_step):
            """every row's sum plus the tap at ``offset`` floats (rows ``row_step`` apart)"""
            wt = _splat(builder, builder.load(builder.gep(pw, [w_index])), fty)
            out = []
            for r, acc in enumerate(accs):
                p = builder.gep(ps, [builder.add(offset, builder.mul(c64(r), row_step))])
                v = builder.load(builder.bitcast(p, fty.as_pointer()))
                v.align = 4
                out.append(builder.call(fma, [v, wt, acc]))
            return out

        if k_const is not None:  # taps, strides and the row stride as constants
            for i in range(k_const):
                for j in range(k_const):
                    off = (i * sw + j % sw) * DW_ROW_STRIDE + j // sw
                    accs = tap(accs, c64(i * k_const + j), c64(off), c64(sh_const * sw * DW_ROW_STRIDE))
        else:
            slots = [cgutils.alloca_once_value(builder, a) for a in accs]
            row_step = builder.mul(builder.mul(sh, rs), c64(sw))
            with cgutils.for_range(builder, kh) as li:
                i = li.index
                with cgutils.for_range(builder, kw) as lj:
                    j = lj.index
                    col = builder.mul(j, dw)
                    phase, k0 = builder.urem(col, c64(sw)), builder.udiv(col, c64(sw))
                    off = builder.add(builder.mul(builder.add(builder.mul(builder.mul(i, dh), c64(sw)), phase), rs), k0)
                    new = tap([builder.load(a) for a in slots], builder.add(builder.mul(i, kw), j), off, row_step)
                    for a, v in zip(slots, new):
                        builder.store(v, a)
            accs = [builder.load(a) for a in slots]
        sums = [[builder.fptosi(a, vty)] for a in accs]
        stores = edge_stores(builder, ptr(11, c_v, co), ldc, count, 1)
        requantize_rows(
            builder, vty, sums, ptr(8, bias_v, ch), ptr(9, mult_v, ch), nrows, flo, fhi, zp, stores, one_channel=True
        )
        return context.get_dummy_value()

    return sig, codegen

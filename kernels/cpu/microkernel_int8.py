"""The int8 register tile: ``vpdpbusd`` (AVX-512 VNNI) dot products, int32 sums.

One ``vpdpbusd`` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products into one of 16 int32 lanes, without saturation (the sums are exact). The tile puts
output *pixels* in the lanes and output *channels* in the rows: the activations are packed
(K/4, P, 4) (:mod:`kernels.cpu.qconv_vnni`: four consecutive reduction steps of one pixel in
one 32-bit lane, so 16 pixels are one 64-byte load) and the weights (M/MR, K/4, MR, 4), so a
channel's four weights are one 32-bit broadcast. Pixels in lanes make each accumulator row an
NCHW output row, which the requantizing epilogue writes without a transpose.

A tile is MR channels x NV vectors of 16 pixels; per group of four reduction steps it loads
NV activation vectors, broadcasts MR weight words and issues MR x NV ``vpdpbusd``.

Two endings. ``tile_u8s8``/``tile_u8s8_acc`` store the int32 sums to a small scratch
(MR, NV*16) for a caller that still has to sum more (taps) or to pick stretches out of the
tile. ``tile_u8s8_rq`` requantizes the sums while they are in registers and stores bytes: per
channel ``float32(sum + bias) * multiplier``, clamped, rounded half to even, plus the zero point
(MLAS's order and rounding, cnnrt.core.quantization.requantize), each vector narrowed to 16
bytes (``vpmovdb``). Without it, a layer with a short reduction (a 1x1 conv over 16 channels)
spends more time storing, reloading and converting its int32 sums than multiplying.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu.llvm_ir import I32, I64, c64, declare

_DPBUSD = "llvm.x86.avx512.vpdpbusd.512"
LANES = 16  # int32 lanes of one vpdpbusd (512 bits)
MR, NV = 12, 2  # channels x pixel vectors of the tile: 24 accumulators of the 32 zmm registers


def _codegen(mr: int, nv: int, accumulate: bool, requantize: bool = False):
    def codegen(context, builder, sig, args):
        if requantize:
            a_v, a_off, lda, b_v, b_off, kq, bias_v, mult_v, m0, rows, c_v, c_off, ldc, jn, flo, fhi, zp = args
        else:
            a_v, a_off, lda, b_v, b_off, kq, c_v, c_off = args

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vty = ir.VectorType(I32, LANES)
        dp = declare(builder, _DPBUSD, vty, [vty, vty, vty])
        pa0, pb0 = ptr(0, a_v, a_off), ptr(3, b_v, b_off)
        pc = ptr(10, c_v, c_off) if requantize else ptr(6, c_v, c_off)
        zero = ir.Constant(vty, [0] * LANES)
        splat_mask = ir.Constant(vty, [0] * LANES)

        def start(r, v):
            if not accumulate:
                return zero
            p = builder.bitcast(builder.gep(pc, [c64(r * nv * LANES + v * LANES)]), vty.as_pointer())
            ld = builder.load(p)
            ld.align = 4
            return ld

        accs = [[cgutils.alloca_once_value(builder, start(r, v)) for v in range(nv)] for r in range(mr)]
        with cgutils.for_range(builder, kq) as loop:
            k = loop.index
            pa = builder.gep(pa0, [builder.mul(k, lda)])
            pb = builder.gep(pb0, [builder.mul(k, c64(mr))])
            avec = []
            for v in range(nv):
                ld = builder.load(builder.bitcast(builder.gep(pa, [c64(v * LANES)]), vty.as_pointer()))
                ld.align = 4
                avec.append(ld)
            for r in range(mr):
                w = builder.load(builder.gep(pb, [c64(r)]))
                w.align = 4
                ins = builder.insert_element(ir.Constant(vty, ir.Undefined), w, ir.Constant(I32, 0))
                wv = builder.shuffle_vector(ins, ir.Constant(vty, ir.Undefined), splat_mask)
                for v in range(nv):
                    builder.store(builder.call(dp, [builder.load(accs[r][v]), avec[v], wv]), accs[r][v])
        if requantize:
            sums = [[builder.load(a) for a in row] for row in accs]
            pbias, pmult = ptr(6, bias_v, m0), ptr(7, mult_v, m0)
            _requantize_store(builder, vty, sums, pc, pbias, pmult, rows, ldc, jn, flo, fhi, zp)
            return context.get_dummy_value()
        for r in range(mr):
            for v in range(nv):
                p = builder.bitcast(builder.gep(pc, [c64(r * nv * LANES + v * LANES)]), vty.as_pointer())
                builder.store(builder.load(accs[r][v]), p).align = 4
        return context.get_dummy_value()

    return codegen


def _requantize_store(builder, vty, sums, pc, pbias, pmult, rows, ldc, jn, flo, fhi, zp):
    """Row r < ``rows`` of ``sums`` requantized to bytes at pc[r*ldc + j], j < ``jn`` (lane-masked
    stores: a tile at the edge of the output writes only its valid rows and pixels)."""
    f32 = ir.FloatType()
    fty, bty = ir.VectorType(f32, LANES), ir.VectorType(ir.IntType(8), LANES)
    mty = ir.VectorType(ir.IntType(1), LANES)
    store = declare(builder, f"llvm.masked.store.v{LANES}i8.p0", ir.VoidType(), [bty, bty.as_pointer(), I32, mty])

    splat_mask = ir.Constant(ir.VectorType(I32, LANES), [0] * LANES)

    def splat(x, ty):
        v = builder.insert_element(ir.Constant(ty, ir.Undefined), x, ir.Constant(I32, 0))
        return builder.shuffle_vector(v, ir.Constant(ty, ir.Undefined), splat_mask)

    lo, hi, zpv = splat(flo, fty), splat(fhi, fty), splat(builder.trunc(zp, I32), vty)
    rnd = ir.Constant(fty, [12582912.0] * LANES)  # 1.5 * 2**23: (f + rnd) - rnd rounds |f| < 2**22 half to even
    lane_ids = ir.Constant(ir.VectorType(I64, LANES), list(range(LANES)))
    i64v = ir.VectorType(I64, LANES)
    nv = len(sums[0])
    masks = [builder.icmp_signed("<", lane_ids, splat(builder.sub(jn, c64(v * LANES)), i64v)) for v in range(nv)]
    for r, row in enumerate(sums):
        with builder.if_then(builder.icmp_signed("<", c64(r), rows)):
            bias = splat(builder.load(builder.gep(pbias, [c64(r)])), vty)
            mult = splat(builder.load(builder.gep(pmult, [c64(r)])), fty)
            prow = builder.gep(pc, [builder.mul(c64(r), ldc)])
            for v, acc in enumerate(row):
                f = builder.fmul(builder.sitofp(builder.add(acc, bias), fty), mult)
                f = builder.select(builder.fcmp_ordered("<", f, lo), lo, f)
                f = builder.select(builder.fcmp_ordered(">", f, hi), hi, f)
                f = builder.fsub(builder.fadd(f, rnd), rnd)
                q = builder.trunc(builder.add(builder.fptosi(f, vty), zpv), bty)
                p = builder.bitcast(builder.gep(prow, [c64(v * LANES)]), bty.as_pointer())
                builder.call(store, [q, p, ir.Constant(I32, 1), masks[v]])


def _tile(mr: int, nv: int, accumulate: bool = False):
    """``tile(a, a_off, lda, b, b_off, kq, c, c_off)``: c[c_off + r*nv*16 + j] (r < mr, j < nv*16)
    = sum over kq groups g of the four-byte dot products of a[a_off + g*lda + j] (uint32 words of
    four u8) and b[b_off + g*mr + r] (int32 words of four s8); with ``accumulate`` the sums are
    added to what c holds."""

    @intrinsic
    def tile(typingctx, a, a_off, lda, b, b_off, kq, c, c_off):
        arrays = (a, b, c)
        if not all(isinstance(x, types.Array) and x.layout == "C" and x.ndim == 1 for x in arrays):
            return None
        if a.dtype != types.uint32 or b.dtype != types.int32 or c.dtype != types.int32:
            return None
        i64 = types.int64
        return types.void(a, i64, i64, b, i64, i64, c, i64), _codegen(mr, nv, accumulate)

    return tile


def _tile_rq(mr: int, nv: int):
    """``tile_rq(a, a_off, lda, b, b_off, kq, bias, mult, m0, rows, c, c_off, ldc, jn, flo, fhi, zp)``:
    the sums of ``tile`` for rows r < ``rows`` and pixels j < ``jn``, requantized (see the module
    doc) with channel ``m0 + r``'s int32 ``bias`` and float32 ``mult``, clamped to [flo, fhi]
    (bounds less the zero point), stored as bytes at c[c_off + r*ldc + j] (c uint8 or int8)."""

    @intrinsic
    def tile_rq(typingctx, a, a_off, lda, b, b_off, kq, bias, mult, m0, rows, c, c_off, ldc, jn, flo, fhi, zp):
        arrays = (a, b, bias, mult, c)
        if not all(isinstance(x, types.Array) and x.layout == "C" and x.ndim == 1 for x in arrays):
            return None
        if a.dtype != types.uint32 or b.dtype != types.int32 or bias.dtype != types.int32:
            return None
        if mult.dtype != types.float32 or c.dtype not in (types.uint8, types.int8):
            return None
        i64, f32 = types.int64, types.float32
        sig = types.void(a, i64, i64, b, i64, i64, bias, mult, i64, i64, c, i64, i64, i64, f32, f32, i64)
        return sig, _codegen(mr, nv, False, requantize=True)

    return tile_rq


tile_u8s8 = _tile(MR, NV)
tile_u8s8_acc = _tile(MR, NV, accumulate=True)
tile_u8s8_rq = _tile_rq(MR, NV)

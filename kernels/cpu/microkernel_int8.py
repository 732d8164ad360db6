"""The int8 register tile: ``vpdpbusd`` (AVX-512 VNNI) dot products, int32 sums.

One ``vpdpbusd`` multiplies 64 unsigned bytes by 64 signed bytes and adds each group of four
products into one of 16 int32 lanes, without saturation (the sums are exact). The tile puts
output *pixels* in the lanes and output *channels* in the rows: the activations are packed
(K/4, P, 4) (:mod:`kernels.cpu.qconv_vnni`: four consecutive reduction steps of one pixel in
one 32-bit lane, so 16 pixels are one 64-byte load) and the weights (M/MR, K/4, MR, 4), so a
channel's four weights are one 32-bit broadcast. Pixels in lanes make each accumulator row an
NCHW output row, which the requantizing epilogue writes without a transpose.

A tile is MR channels x NV vectors of 16 pixels; per group of four reduction steps it loads
NV activation vectors, broadcasts MR weight words and issues MR x NV ``vpdpbusd``. The int32
sums go to a small scratch (MR, NV*16) that the caller requantizes while it is in L1.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu.llvm_ir import I32, c64, declare

_DPBUSD = "llvm.x86.avx512.vpdpbusd.512"
LANES = 16  # int32 lanes of one vpdpbusd (512 bits)
MR, NV = 12, 2  # channels x pixel vectors of the tile: 24 accumulators of the 32 zmm registers


def _codegen(mr: int, nv: int, accumulate: bool):
    def codegen(context, builder, sig, args):
        a_v, a_off, lda, b_v, b_off, kq, c_v, c_off = args

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vty = ir.VectorType(I32, LANES)
        dp = declare(builder, _DPBUSD, vty, [vty, vty, vty])
        pa0, pb0, pc = ptr(0, a_v, a_off), ptr(3, b_v, b_off), ptr(6, c_v, c_off)
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
        for r in range(mr):
            for v in range(nv):
                p = builder.bitcast(builder.gep(pc, [c64(r * nv * LANES + v * LANES)]), vty.as_pointer())
                builder.store(builder.load(accs[r][v]), p).align = 4
        return context.get_dummy_value()

    return codegen


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


tile_u8s8 = _tile(MR, NV)
tile_u8s8_acc = _tile(MR, NV, accumulate=True)

"""The bfloat16 register tile of the channel-blocked conv: ``vdpbf16ps`` dot products, float32 sums.

bfloat16 keeps float32's exponent and 8 bits of its mantissa, so converting is dropping the
low 16 bits with round-to-nearest-even (:func:`to_bf16`, as ``vcvtne2ps2bf16``). One
``vdpbf16ps`` multiplies 32 bf16 pairs and adds each pair's two products into one of 16
float32 lanes: with input channels c, c+1 adjacent in memory (the blocked layout stores
them so, and :func:`pack_bf16` lays the weights out the same way) a reduction step covers two
channels in one instruction, twice the float32 tile's work per instruction, and the
accumulators stay float32.

The tile has the float32 blocked tile's operands and offsets (microkernel._blocked_tile), so
conv_blocked.py's task loop runs both: A (the input) and B (the packed weights) are uint16
arrays of bf16 bits in the same element positions their float32 forms would take, ``k``
counts float32 steps (even: one instruction per two) and the reduction reads A pairs as one
32-bit broadcast. Bias is float32, the residual float32 or bf16 (a bf16 activation, widened
as loaded), and the epilogue is the float32 tile's
(flags alike); C is float32, or bf16 where the next conv reads it as bf16
(passes/precision.py). :data:`tile_blocked4` (2, 1) take either dtype: float32 operands
compile to the float32 tile.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.llvm_ir import I32, I64, Vectors, c64, declare, round_bf16

_DPBF16 = "llvm.x86.avx512bf16.dpbf16ps.512"
LANES = 16  # float32 accumulator lanes of one vdpbf16ps (512 bits)


def to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bf16 bits (uint16) by round-to-nearest-even; NaN stays a (quiet) NaN."""
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    return np.where(nan, ((u >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16), r)


def from_bf16(b: np.ndarray) -> np.ndarray:
    """bf16 bits -> float32 (exact)."""
    return (np.asarray(b, np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


@intrinsic
def bf16_run(typingctx, src, s, dst, d, count):
    """dst[d + q] = the bf16 bits of src[s + q] (float32 bits, uint32) for q < count, as
    :func:`to_bf16` rounds: the same integer steps on <16 x i32> (Numba widens uint32
    arithmetic to 64 bits, halving a vector loop's lanes), whole vectors then one masked."""
    arrays = (src, dst)
    if not all(isinstance(a, types.Array) and a.layout == "C" for a in arrays):
        return None
    if src.dtype != types.uint32 or dst.dtype != types.uint16:
        return None
    i64 = types.int64
    sig = types.void(src, i64, dst, i64, i64)

    def codegen(context, builder, sig, args):
        _, s_v, _, d_v, n_v = args
        psrc = context.make_array(sig.args[0])(context, builder, args[0]).data
        pdst = context.make_array(sig.args[2])(context, builder, args[2]).data
        vty, hty = ir.VectorType(I32, LANES), ir.VectorType(ir.IntType(16), LANES)
        mty = ir.VectorType(ir.IntType(1), LANES)
        mload = declare(builder, "llvm.masked.load.v16i32.p0", vty, [vty.as_pointer(), I32, mty, vty])
        mstore = declare(builder, "llvm.masked.store.v16i16.p0", ir.VoidType(), [hty, hty.as_pointer(), I32, mty])

        def body(off, mask):
            psv = builder.bitcast(builder.gep(psrc, [builder.add(s_v, off)]), vty.as_pointer())
            pdv = builder.bitcast(builder.gep(pdst, [builder.add(d_v, off)]), hty.as_pointer())
            if mask is None:
                u = builder.load(psv)
                u.align = 4
            else:
                u = builder.call(mload, [psv, ir.Constant(I32, 4), mask, ir.Constant(vty, ir.Undefined)])
            bits = round_bf16(builder, u)
            if mask is None:
                builder.store(bits, pdv).align = 2
            else:
                builder.call(mstore, [bits, pdv, ir.Constant(I32, 2), mask])

        full = builder.sdiv(n_v, c64(LANES))
        with cgutils.for_range(builder, full) as loop:
            body(builder.mul(loop.index, c64(LANES)), None)
        off = builder.mul(full, c64(LANES))
        rest = builder.sub(n_v, off)
        with builder.if_then(builder.icmp_signed(">", rest, c64(0))):
            lane_ids = ir.Constant(ir.VectorType(I64, LANES), list(range(LANES)))
            i64v = ir.VectorType(I64, LANES)
            rest_v = builder.insert_element(ir.Constant(i64v, ir.Undefined), rest, ir.Constant(I32, 0))
            rest_v = builder.shuffle_vector(rest_v, rest_v, ir.Constant(ir.VectorType(I32, LANES), [0] * LANES))
            body(off, builder.icmp_signed("<", lane_ids, rest_v))
        return context.get_dummy_value()

    return sig, codegen


def pack_bf16(wp: np.ndarray, kstep: int, nr: int) -> np.ndarray:
    """Weights packed for the float32 tile ((..., kstep, nr) innermost) as bf16 pairs: per
    step pair, column j holds steps 2p and 2p+1 side by side ((..., kstep/2, nr, 2)), the
    operand vdpbf16ps multiplies with a broadcast input pair."""
    pairs = wp.reshape(-1, kstep // 2, 2, nr).swapaxes(-1, -2)
    return to_bf16(np.ascontiguousarray(pairs)).reshape(wp.shape)


def _bf16_codegen(mr_max: int, nv: int):
    """The blocked tile's codegen (microkernel._tile_codegen, blocked) on bf16 A and B."""

    def codegen(context, builder, sig, args):
        (a_v, a_off_v, pix_v, pix_off_v, a_ks_v, taps_v, ntaps_v, b_v, b_off_v, b_ts_v, ldb_v, k_v) = args[:12]
        (c_v, c_off_v, ldc_v, c_vs_v, mr_v, flags_v, bias_v, bias_off_v, res_v, res_off_v, lo_v, hi_v) = args[12:24]
        tail_from_v, k_tail_v = args[24], args[25]

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vec = Vectors(builder, types.float32, align=4)
        ivty = ir.VectorType(I32, LANES)
        i32p = I32.as_pointer()
        dp = declare(builder, _DPBF16, vec.vty, [vec.vty, ivty, ivty])
        pa0, pix, pb0 = ptr(0, a_v, a_off_v), ptr(2, pix_v, pix_off_v), ptr(7, b_v, b_off_v)
        ptaps = ptr(5, taps_v, c64(0))
        pc, pbias, pres = ptr(12, c_v, c_off_v), ptr(18, bias_v, bias_off_v), ptr(20, res_v, res_off_v)
        arow = [builder.load(builder.gep(pix, [c64(i)])) for i in range(mr_max)]
        accs = [[cgutils.alloca_once_value(builder, vec.zero) for _ in range(nv)] for _ in range(mr_max)]
        a_pair, b_pair = builder.mul(a_ks_v, c64(2)), builder.mul(ldb_v, c64(2))

        def reduce(rows):
            with cgutils.for_range(builder, ntaps_v) as tap_loop:
                tp = tap_loop.index
                pa = builder.gep(pa0, [builder.load(builder.gep(ptaps, [tp]))])
                pb = builder.gep(pb0, [builder.mul(tp, b_ts_v)])
                # the taps from tail_from on (a short last input block) reduce over k_tail steps
                kk = builder.select(builder.icmp_signed(">=", tp, tail_from_v), k_tail_v, k_v)
                with cgutils.for_range(builder, builder.sdiv(builder.add(kk, c64(1)), c64(2))) as loop:
                    kp = loop.index
                    bbase = builder.mul(kp, b_pair)
                    bvec = []
                    for v in range(nv):
                        p = builder.gep(pb, [builder.add(bbase, c64(v * 2 * LANES))])
                        ld = builder.load(builder.bitcast(p, ivty.as_pointer()))
                        ld.align = 4
                        bvec.append(ld)
                    abase = builder.mul(kp, a_pair)
                    for i in range(mr_max):
                        ld = builder.load(builder.bitcast(builder.gep(pa, [builder.add(abase, rows[i])]), i32p))
                        ld.align = 4
                        av = vec.splat(ld, ivty)
                        for v in range(nv):
                            builder.store(builder.call(dp, [builder.load(accs[i][v]), av, bvec[v]]), accs[i][v])

        mk.reduce_by_rows(builder, arow, LANES, reduce)  # pixels side by side: constant displacements
        narrow = mk.bf16_store(builder, pc) if sig.args[12].dtype == types.uint16 else None  # a bf16 output
        mk.epilogue(
            builder, vec, types.float32, True, accs, pc, pbias, pres, ldc_v, c_vs_v, mr_v, flags_v, lo_v, hi_v, narrow
        )
        return context.get_dummy_value()

    return codegen


def _either_tile(mr_max: int, nv: int, f32_tile):
    """A blocked tile of ``mr_max`` pixels x ``nv`` blocks: bf16 (uint16 A and B; C float32,
    or uint16 for a bf16 output, rounded as :func:`to_bf16` after the clamp, with the flags
    microkernel.epilogue's ``narrow`` allows) or, for float32 operands, ``f32_tile``
    (microkernel.tile_blocked*, whose ``form`` selects a grouped conv's interleaved tile; the
    bf16 tile takes ()). Taps from ``tail_from`` on reduce over ``k_tail`` steps, rounded up to
    whole pairs (a short last input block: 24 channels in two blocks of 16 reduce 12 pairs, not
    16; its padding lanes are zeros times zero weights either way)."""

    @intrinsic
    def tile_blocked(
        typingctx,
        a,
        a_off,
        pix,
        pix_off,
        a_ks,
        taps,
        ntaps,
        b,
        b_off,
        b_ts,
        ldb,
        k,
        c,
        c_off,
        ldc,
        c_vs,
        mr,
        flags,
        bias,
        bias_off,
        res,
        res_off,
        lo,
        hi,
        tail_from,
        k_tail,
        form,
    ):
        args = (a, a_off, pix, pix_off, a_ks, taps, ntaps, b, b_off, b_ts, ldb, k)
        args += (c, c_off, ldc, c_vs, mr, flags, bias, bias_off, res, res_off, lo, hi, tail_from, k_tail, form)
        if not (isinstance(a, types.Array) and a.dtype == types.uint16):
            return f32_tile._defn(typingctx, *args)
        if not all(isinstance(x, types.Array) for x in (b, c, bias, res, pix, taps)) or b.dtype != types.uint16:
            return None
        if not isinstance(form, types.BaseTuple) or len(form) > 1:  # grouped convs run float32
            return None
        if c.dtype not in (types.float32, types.uint16) or bias.dtype != types.float32:
            return None
        if res.dtype not in (types.float32, types.uint16):  # float32, or a bf16 activation's bits
            return None
        i64, f32 = types.int64, types.float32
        head = (a, i64, pix, i64, i64, taps, i64, b, *(i64,) * 4, c, *(i64,) * 5)
        sig = types.void(*head, bias, i64, res, i64, f32, f32, i64, i64, form)
        return sig, _bf16_codegen(mr_max, nv)

    return tile_blocked


# (pixels, channel blocks) of the bf16 tiles, by blocks per panel (24 accumulators, 29 of
# the 32 zmm with the B vectors and a broadcast; 7 x 3 has 21). Each weight vector serves 6
# broadcasts; on AMD Zen 5 (one conv alone, 2 threads, ResNet-50's 1x1 and 3x3 layers) 6 x 4
# ran 0.85-0.95x of 4 x 4's time; 8 x 4 (32 accumulators) spills. The 7-pixel tile divides
# every CNN plane of 7 x 2^k pixels: conv_blocked_plan.panel_blocks takes it where the 6-pixel
# one would compute a tenth more rows (7x7), and where it fills panels better (13 blocks).
BF16_TILES = {4: (6, 4), 3: (7, 3), 2: (12, 2), 1: (24, 1)}
BF16_PANEL_CHOICES = (4, 3)
tile_blocked4 = _either_tile(*BF16_TILES[4], mk.tile_blocked4)
tile_blocked3 = _either_tile(*BF16_TILES[3], mk.tile_blocked3)
tile_blocked2 = _either_tile(*BF16_TILES[2], mk.tile_blocked2)
tile_blocked1 = _either_tile(*BF16_TILES[1], mk.tile_blocked1)

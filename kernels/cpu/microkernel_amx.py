"""The AMX tiles of the reduced-precision convs: ``tdpbf16ps`` (bf16, conv_amx.py) and
``tdpbsud`` (int8, qconv_amx.py) on 16 x 16 tiles of 32-bit sums.

An AMX unit (Intel Xeon from Sapphire Rapids on: ``amx-tile``, ``amx-bf16``, ``amx-int8``) has
eight tile registers of up to 16 rows x 64 bytes. ``tdpbf16ps C, A, B`` adds A (16 rows x 32
bf16) times B (16 rows of 16 bf16 pairs: the 32 x 16 matrix with each two reduction rows
interleaved) into C (16 x 16 float32): 8192 multiply-adds per instruction, where one AVX-512
``vdpbf16ps`` does 32. ``tdpbsud`` does the same with 64 signed x unsigned bytes per row and
int32 sums. Every tile here is 16 rows x 64 bytes (:func:`tile_config`).

bf16: pixels are A's rows and 32 input channels its columns (conv_amx.py lays the bf16 input
copy out so, 64 bytes per pixel: :func:`bf16_pixels`, and :func:`fold_pixels` for a stem), B
the packed weights of one output block, and C one output tile, 16 pixels x 16 channels: the
blocked layout's own shape. :func:`amx_strip` computes a strip of 32 pixels x NT output blocks
(tiles 0-3: C; 4-5: A; 6-7: B) over every tap and input block and stores C to a per-thread
scratch; :func:`amx_store` runs the float32 tile's epilogue (microkernel.epilogue: bias,
residual, activation, zeroed padding lanes) on chosen scratch rows into the output.

int8: the weights are A (16 channels x 64 reduction bytes), the activations B (the VNNI
kernels' words of four reduction bytes of one pixel), so C is 16 channels x 16 pixels, NCHW
rows: :func:`amx_int8_strip` and :func:`amx_int8_store` (microkernel_int8's requantization).

Tile registers need the configuration loaded in the thread (:func:`amx_begin`) and, on Linux,
the process's permission for the tile data state (:func:`amx_unsupported_reason` asks once).
"""

from __future__ import annotations

import ctypes
import functools

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu import microkernel_int8 as mk_int8
from cnnrt.kernels.cpu.llvm_ir import I32, I64, Vectors, c64, declare, round_bf16

ROWS = 16  # pixels per tile (A's and C's rows)
PIXEL_CHANNELS = 32  # bf16 input channels per A row: 64 bytes
OUT_LANES = 16  # float32 output channels per C tile: one output block
STRIP = 2 * ROWS  # pixels per strip: two A tiles share each B tile
B_TILE = ROWS * PIXEL_CHANNELS  # bf16 elements of one packed weight tile

_I8 = ir.IntType(8)
_VOID = ir.VoidType()
_SYS_ARCH_PRCTL = 158  # x86-64
_ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 0x1023, 18


@functools.cache
def amx_unsupported_reason(feature: str = "amx-bf16") -> str:
    """Why this process cannot run the AMX tiles of ``feature`` ("amx-bf16", "amx-int8"; ""
    when it can): the CPU needs it, and Linux hands out the tile data state (8 KB per
    thread) only on request."""
    from llvmlite import binding as ll

    try:
        features = ll.get_host_cpu_features()
    except RuntimeError:
        return "the host CPU's features cannot be read"
    if not (features.get("amx-tile", False) and features.get(feature, False)):
        return f"the CPU lacks {feature.upper()}"
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) != 0:
            return f"Linux refused the AMX tile state (errno {ctypes.get_errno()})"
    except (OSError, AttributeError) as e:
        return f"the AMX tile state cannot be requested: {e}"
    return ""


def tile_config() -> np.ndarray:
    """The 64-byte tile configuration (palette 1): all eight tiles 16 rows x 64 bytes."""
    cfg = np.zeros(64, np.uint8)
    cfg[0] = 1
    cfg[16:32].view(np.uint16)[:8] = 64
    cfg[48:56] = ROWS
    return cfg


def _declare(builder):
    i8p = _I8.as_pointer()
    return {
        "load": declare(builder, "llvm.x86.tileloadd64", _VOID, [_I8, i8p, I64]),
        "zero": declare(builder, "llvm.x86.tilezero", _VOID, [_I8]),
        "dp": declare(builder, "llvm.x86.tdpbf16ps", _VOID, [_I8, _I8, _I8]),
        "store": declare(builder, "llvm.x86.tilestored64", _VOID, [_I8, i8p, I64]),
    }


def _tile(t: int) -> ir.Constant:
    return ir.Constant(_I8, t)


def _byte_ptr(context, builder, arrty, arr, off):
    """&arr[off] as an i8*."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [off]), _I8.as_pointer())


@intrinsic
def amx_begin(typingctx, cfg):
    """Load the tile configuration (:func:`tile_config`) in this thread."""
    if not (isinstance(cfg, types.Array) and cfg.dtype == types.uint8):
        return None

    def codegen(context, builder, sig, args):
        fn = declare(builder, "llvm.x86.ldtilecfg", _VOID, [_I8.as_pointer()])
        builder.call(fn, [_byte_ptr(context, builder, sig.args[0], args[0], c64(0))])
        return context.get_dummy_value()

    return types.void(cfg), codegen


@intrinsic
def amx_end(typingctx):
    """Release the tile state of this thread (the OS then need not save it)."""

    def codegen(context, builder, sig, args):
        builder.call(declare(builder, "llvm.x86.tilerelease", _VOID, []), [])
        return context.get_dummy_value()

    return types.void(), codegen


def _strip(nt: int):
    @intrinsic
    def amx_strip(typingctx, a, a_off, taps, ntaps, kbn, kb_stride, b, b_off, b_block, scratch):
        """scratch[(h*NT + v)*256 + i*16 + j] = sum over taps t and input blocks kb of
        a[a_off + taps[t] + kb*kb_stride + (16h + i)*32 + c] * W_v[t, kb][c, j] (c < 32),
        W_v's packed tile at b[b_off + v*b_block + (t*kbn + kb)*512]: A's rows are pixels, 64
        bytes apart; two pixel tiles (h) x NT output blocks (v)."""
        if not all(isinstance(x, types.Array) for x in (a, taps, b, scratch)):
            return None
        if a.dtype != types.uint16 or b.dtype != types.uint16 or scratch.dtype != types.float32:
            return None
        i64 = types.int64
        sig = types.void(a, i64, taps, i64, i64, i64, b, i64, i64, scratch)

        def codegen(context, builder, sig, args):
            a_v, a_off_v, taps_v, ntaps_v, kbn_v, kbs_v, b_v, b_off_v, bblk_v, s_v = args
            fn = _declare(builder)
            ptaps = context.make_array(sig.args[2])(context, builder, taps_v).data
            row_bytes, half = c64(64), c64(ROWS * PIXEL_CHANNELS)
            c_tiles = [[h * nt + v for v in range(nt)] for h in range(2)]
            for row in c_tiles:
                for t in row:
                    builder.call(fn["zero"], [_tile(t)])
            with cgutils.for_range(builder, ntaps_v) as tap_loop:
                tp = tap_loop.index
                a_tap = builder.add(a_off_v, builder.load(builder.gep(ptaps, [tp])))
                b_tap = builder.add(b_off_v, builder.mul(builder.mul(tp, kbn_v), c64(B_TILE)))
                with cgutils.for_range(builder, kbn_v) as kb_loop:
                    kb = kb_loop.index
                    a_at = builder.add(a_tap, builder.mul(kb, kbs_v))
                    b_at = builder.add(b_tap, builder.mul(kb, c64(B_TILE)))
                    for h in range(2):
                        p = _byte_ptr(context, builder, sig.args[0], a_v, builder.add(a_at, builder.mul(c64(h), half)))
                        builder.call(fn["load"], [_tile(4 + h), p, row_bytes])
                    for v in range(nt):
                        off = builder.add(b_at, builder.mul(c64(v), bblk_v))
                        p = _byte_ptr(context, builder, sig.args[6], b_v, off)
                        builder.call(fn["load"], [_tile(6 + v), p, row_bytes])
                    for h in range(2):
                        for v in range(nt):
                            builder.call(fn["dp"], [_tile(c_tiles[h][v]), _tile(4 + h), _tile(6 + v)])
            for h in range(2):
                for v in range(nt):
                    off = c64(c_tiles[h][v] * ROWS * OUT_LANES)
                    p = _byte_ptr(context, builder, sig.args[9], s_v, off)
                    builder.call(fn["store"], [_tile(c_tiles[h][v]), p, row_bytes])
            return context.get_dummy_value()

        return sig, codegen

    return amx_strip


amx_strip2 = _strip(2)  # two output blocks per strip (C tiles 0-3)
amx_strip1 = _strip(1)  # one (an odd last block: C tiles 0 and 1)


def _store(nt: int):
    @intrinsic
    def amx_store(typingctx, scratch, s_off, rows, mr, c, c_off, c_vs, flags, bias, bias_off, res, res_off, lo, hi):
        """The epilogue of NT output blocks of ``mr`` scratch rows: row i of C is row
        ``rows[i]`` of the tiles at scratch[s_off + v*256], stored to c[c_off + i*16 + v*c_vs]
        (microkernel.epilogue with its flags: bias at bias[bias_off + v*16], residual at
        res[res_off + ...], the activation, lo/hi). ``rows`` has 16 entries (repeat the last)."""
        arrays = (scratch, rows, c, bias, res)
        if not all(isinstance(x, types.Array) for x in arrays) or rows.dtype != types.int64:
            return None
        if any(x.dtype != types.float32 for x in (scratch, c, bias, res)):
            return None
        i64, f32 = types.int64, types.float32
        sig = types.void(scratch, i64, rows, i64, c, i64, i64, i64, bias, i64, res, i64, f32, f32)

        def codegen(context, builder, sig, args):
            s_v, s_off_v, rows_v, mr_v, c_v, c_off_v, c_vs_v, flags_v = args[:8]
            bias_v, bias_off_v, res_v, res_off_v, lo_v, hi_v = args[8:]

            def ptr(i, arr, off):
                return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

            vec = Vectors(builder, types.float32, align=4)
            ps, prows = ptr(0, s_v, s_off_v), ptr(2, rows_v, c64(0))
            accs = []
            for i in range(ROWS):
                row = builder.mul(builder.load(builder.gep(prows, [c64(i)])), c64(OUT_LANES))
                accs.append(
                    [
                        cgutils.alloca_once_value(builder, vec.load(ps, builder.add(row, c64(v * ROWS * OUT_LANES))))
                        for v in range(nt)
                    ]
                )
            pc, pbias, pres = ptr(4, c_v, c_off_v), ptr(8, bias_v, bias_off_v), ptr(10, res_v, res_off_v)
            ldc = c64(OUT_LANES)
            mk.epilogue(
                builder, vec, types.float32, True, accs, pc, pbias, pres, ldc, c_vs_v, mr_v, flags_v, lo_v, hi_v
            )
            return context.get_dummy_value()

        return sig, codegen

    return amx_store


amx_store2 = _store(2)
amx_store1 = _store(1)


@intrinsic
def bf16_pixels(typingctx, src, s0, s1, step, dst, d, count):
    """``count`` pixels of the A copy: dst[d + 32k + c] = bf16(src[s0 + k*step + c]) and
    dst[d + 32k + 16 + c] = bf16(src[s1 + k*step + c]) for c < 16 (``s1`` < 0: zeros), ``src``
    the float32 bits, rounded as llvm_ir.round_bf16."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array)):
        return None
    if src.dtype != types.uint32 or dst.dtype != types.uint16:
        return None
    i64 = types.int64
    sig = types.void(src, i64, i64, i64, dst, i64, i64)

    def codegen(context, builder, sig, args):
        src_v, s0_v, s1_v, step_v, dst_v, d_v, n_v = args
        psrc = context.make_array(sig.args[0])(context, builder, src_v).data
        pdst = context.make_array(sig.args[4])(context, builder, dst_v).data
        uty = ir.VectorType(I32, OUT_LANES)
        hty = ir.VectorType(ir.IntType(16), OUT_LANES)
        has_hi = builder.icmp_signed(">=", s1_v, c64(0))

        def half(off, at):
            p = builder.bitcast(builder.gep(pdst, [off]), hty.as_pointer())
            u = builder.load(builder.bitcast(builder.gep(psrc, [at]), uty.as_pointer()))
            u.align = 4
            builder.store(round_bf16(builder, u), p).align = 2

        with cgutils.for_range(builder, n_v) as loop:
            k = loop.index
            at = builder.mul(k, step_v)
            d = builder.add(d_v, builder.mul(k, c64(PIXEL_CHANNELS)))
            half(d, builder.add(s0_v, at))
            d_hi = builder.add(d, c64(OUT_LANES))
            with builder.if_else(has_hi) as (then, otherwise):
                with then:
                    half(d_hi, builder.add(s1_v, at))
                with otherwise:
                    p = builder.bitcast(builder.gep(pdst, [d_hi]), hty.as_pointer())
                    builder.store(ir.Constant(hty, [0] * OUT_LANES), p).align = 2
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def fold_pixels(typingctx, rows, rl, c_count, kw, kb, sw, dst, d, count):
    """``count`` pixels of a folded stem's A copy (conv_amx.FoldedGeometry), from ``rows``:
    the C bf16 input rows of one padded row, ``rl`` elements apart, each starting PIXEL_CHANNELS
    elements in (the slack the loads below reach into). Lane l of pixel k in 32-channel block
    ``kb`` is channel slot s = kb*32 + l, which holds row s // kw at column k*sw + s % kw;
    lanes past C*kw are 0. Each row's run of kw is one unaligned 64-byte load, kept on its
    lanes by a select."""
    if not (isinstance(rows, types.Array) and isinstance(dst, types.Array)):
        return None
    if rows.dtype != types.uint16 or dst.dtype != types.uint16:
        return None
    i64 = types.int64
    sig = types.void(rows, i64, i64, i64, i64, i64, dst, i64, i64)

    def codegen(context, builder, sig, args):
        rows_v, rl_v, c_v, kw_v, kb_v, sw_v, dst_v, d_v, n_v = args
        prows = context.make_array(sig.args[0])(context, builder, rows_v).data
        pdst = context.make_array(sig.args[6])(context, builder, dst_v).data
        wide = 2 * OUT_LANES
        i16 = ir.IntType(16)
        hty = ir.VectorType(i16, wide)

        def splat(v):  # an i64 as <32 x i16> (slots and rows are small)
            vv = builder.insert_element(ir.Constant(hty, ir.Undefined), builder.trunc(v, i16), ir.Constant(I32, 0))
            return builder.shuffle_vector(vv, vv, ir.Constant(ir.VectorType(I32, wide), [0] * wide))

        slot = builder.add(ir.Constant(hty, list(range(wide))), splat(builder.mul(kb_v, c64(wide))))
        first = builder.sdiv(builder.mul(kb_v, c64(wide)), kw_v)  # the rows this block's lanes read
        last = builder.sdiv(builder.add(builder.mul(kb_v, c64(wide)), c64(wide - 1)), kw_v)
        last = builder.select(builder.icmp_signed("<", last, c_v), last, builder.sub(c_v, c64(1)))
        with cgutils.for_range(builder, n_v) as loop:
            k = loop.index
            col = builder.mul(k, sw_v)
            acc = cgutils.alloca_once_value(builder, ir.Constant(hty, [0] * wide))
            with cgutils.for_range_slice(builder, first, builder.add(last, c64(1)), c64(1)) as (c, _):
                lo = builder.mul(c, kw_v)
                keep = builder.and_(
                    builder.icmp_signed(">=", slot, splat(lo)),
                    builder.icmp_signed("<", slot, splat(builder.add(lo, kw_v))),
                )
                # lane l reads row c at column col + slot - c*kw
                at = builder.add(builder.mul(c, rl_v), builder.add(c64(PIXEL_CHANNELS), col))
                at = builder.sub(builder.add(at, builder.mul(kb_v, c64(wide))), lo)
                ld = builder.load(builder.bitcast(builder.gep(prows, [at]), hty.as_pointer()))
                ld.align = 2
                builder.store(builder.select(keep, ld, builder.load(acc)), acc)
            p = builder.gep(pdst, [builder.add(d_v, builder.mul(k, c64(PIXEL_CHANNELS)))])
            builder.store(builder.load(acc), builder.bitcast(p, hty.as_pointer())).align = 2
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def amx_int8_strip(typingctx, a, a_off, lda, taps, ntaps, kqb, w, w_off, w_block, scratch):
    """The int8 strip of qconv_amx: scratch[(i*2 + j)*256 + r*16 + p] = the int32 sum over
    taps t and k < 64*kqb of weight byte k % 64 of row r of A tile (t, k // 64) (s8: channel
    16i + r; tiles of 16 channels x 64 bytes at w[w_off + i*w_block + (t*kqb + kb)*1024])
    times activation byte k % 4 of word a[a_off + taps[t] + (k // 4)*lda + 16j + p] (u8:
    pixel 16j + p), by ``tdpbsud``: two channel tiles (i) x two pixel tiles (j)."""
    if not all(isinstance(x, types.Array) for x in (a, taps, w, scratch)):
        return None
    if a.dtype != types.uint32 or w.dtype != types.int8 or scratch.dtype != types.int32:
        return None
    i64 = types.int64
    sig = types.void(a, i64, i64, taps, i64, i64, w, i64, i64, scratch)

    def codegen(context, builder, sig, args):
        a_v, a_off_v, lda_v, taps_v, ntaps_v, kqb_v, w_v, w_off_v, wblk_v, s_v = args
        fn = _declare(builder)
        dp = declare(builder, "llvm.x86.tdpbsud", _VOID, [_I8, _I8, _I8])
        row_bytes = c64(64)
        a_stride = builder.mul(lda_v, c64(4))  # bytes between reduction rows of the activations
        ptaps = context.make_array(sig.args[3])(context, builder, taps_v).data
        for t in range(4):
            builder.call(fn["zero"], [_tile(t)])
        with cgutils.for_range(builder, ntaps_v) as tap_loop:
            tp = tap_loop.index
            a_tap = builder.add(a_off_v, builder.load(builder.gep(ptaps, [tp])))
            w_tap = builder.add(w_off_v, builder.mul(builder.mul(tp, kqb_v), c64(1024)))
            with cgutils.for_range(builder, kqb_v) as loop:
                kb = loop.index
                for i in range(2):
                    off = builder.add(w_tap, builder.add(builder.mul(c64(i), wblk_v), builder.mul(kb, c64(1024))))
                    p = _byte_ptr(context, builder, sig.args[6], w_v, off)
                    builder.call(fn["load"], [_tile(4 + i), p, row_bytes])
                a_kb = builder.add(a_tap, builder.mul(builder.mul(kb, c64(16)), lda_v))
                for j in range(2):
                    p = _byte_ptr(context, builder, sig.args[0], a_v, builder.add(a_kb, c64(16 * j)))
                    builder.call(fn["load"], [_tile(6 + j), p, a_stride])
                for i in range(2):
                    for j in range(2):
                        builder.call(dp, [_tile(2 * i + j), _tile(4 + i), _tile(6 + j)])
        for t in range(4):
            p = _byte_ptr(context, builder, sig.args[9], s_v, c64(t * ROWS * OUT_LANES))
            builder.call(fn["store"], [_tile(t), p, row_bytes])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def amx_int8_store(typingctx, scratch, s_off, bias, mult, m0, rows, c, c_off, ldc, segs, nseg, flo, fhi, zp):
    """Requantize rows r < ``rows`` (channels m0 + r) of a channel tile's two pixel tiles at
    scratch[s_off + j*256 + r*16] (microkernel_int8.requantize_rows: + bias, * mult, clamped to
    [flo, fhi], rounded, + zp) and store them as bytes by segments (microkernel_int8.segment_stores:
    segment i, segs[3i : 3i+3] = first pixel, end pixel, offset, puts pixel p of [first, end)
    of row r at c[c_off + r*ldc + offset + p])."""
    if not all(isinstance(x, types.Array) for x in (scratch, bias, mult, c, segs)):
        return None
    if scratch.dtype != types.int32 or bias.dtype != types.int32 or mult.dtype != types.float32:
        return None
    if c.dtype not in (types.uint8, types.int8) or segs.dtype != types.int64:
        return None
    i64, f32 = types.int64, types.float32
    sig = types.void(scratch, i64, bias, mult, i64, i64, c, i64, i64, segs, i64, f32, f32, i64)

    def codegen(context, builder, sig, args):
        s_v, s_off_v, bias_v, mult_v, m0_v, rows_v, c_v, c_off_v, ldc_v, segs_v, nseg_v, flo_v, fhi_v, zp_v = args

        def ptr(i, arr, off):
            return builder.gep(context.make_array(sig.args[i])(context, builder, arr).data, [off])

        vty = ir.VectorType(I32, OUT_LANES)
        ps = ptr(0, s_v, s_off_v)
        sums = []
        for r in range(ROWS):
            row = []
            for j in range(2):
                p = builder.bitcast(builder.gep(ps, [c64(j * ROWS * OUT_LANES + r * OUT_LANES)]), vty.as_pointer())
                ld = builder.load(p)
                ld.align = 4
                row.append(ld)
            sums.append(row)
        stores = mk_int8.segment_stores(builder, ptr(6, c_v, c_off_v), ldc_v, ptr(9, segs_v, c64(0)), nseg_v)
        pbias, pmult = ptr(2, bias_v, m0_v), ptr(3, mult_v, m0_v)
        mk_int8.requantize_rows(builder, vty, sums, pbias, pmult, rows_v, flo_v, fhi_v, zp_v, stores)
        return context.get_dummy_value()

    return sig, codegen

"""The register-tile kernel of cnnrt's own float32 GEMM: C[MR x NR] (+)= A_panel @ B_panel.

Written as LLVM IR with explicit vector types (a Numba intrinsic), because LLVM does not turn
a plain Numba loop nest into a register-blocked kernel: ``MR * NV`` vector accumulators
live in registers for the whole reduction, each step loads NV = 2 vectors of the B panel and
broadcasts MR scalars of the A panel into fused multiply-adds. With AVX-512 the float32 tile
is 8 x 32: 16 accumulators, 2 B vectors and a broadcast (the inner loop compiles to 16
vfmadd231ps, 8 vbroadcastss and 2 loads, nothing else); with
AVX2 it is 6 x 16 (12 of 16 registers). float64 tiles have half the columns. The same IR is
correct on any CPU; LLVM splits vectors wider than the hardware's.

Operands (float32, flat offsets in elements):

- A: MR rows of ``k`` steps, ``a[a_off + i*a_rs + kk*a_ks]``: weights packed once at session
  build by :func:`pack_a` (a_rs = 1, a_ks = MR: one contiguous stream, rows past M zero), or
  rows as they lie (Winograd's transformed input: a_rs = C, a_ks = 1; rows past the last
  are read but their results not stored).
- B panel: ``k`` steps of NR values, ``b[b_off + kk*ldb + j]`` (packed per task from the input
  or im2col; columns past N are zero).
- C: row-major with leading dimension ``ldc``; only the first ``mr`` rows are stored (a row
  panel hanging past M), all NR columns (callers pass a scratch tile for a ragged column edge).

``flags``: bit 0 accumulate into C (a later K block), bit 1 add ``bias[bias_off + i]`` per
row, bit 2 add the residual ``res[res_off + i*ldc + j]``, bits 3-6 the activation applied last
(its kind, cnnrt.core.ops.ACTIVATIONS; :func:`tile_act` says which the tile computes): Relu
(``x < 0 ? 0 : x``: NaN stays NaN as in onnxruntime) and Clip(lo, hi) (selects, so NaN stays
NaN) on the accumulators before the store; on float32, Sigmoid, SiLU, Elu, HardSigmoid,
HardSwish, LeakyRelu (alpha, beta = lo, hi) and Tanh (vector_act.py) over the stored tile,
read back from L1 right away (with the accumulators as registers, the activation's code would
be repeated for each of them). Other activations are applied by the caller afterwards.
:func:`_blocked_tile` makes the same tile for the channel-blocked layout (pixels as rows,
channels as columns). With AVX2 its taps of a whole block (8 steps: every tap of a blocked
input) run unrolled, the operand pointers advanced step by step: the loop inside each tap
cost 1x1 convs 5-13% on AMD Zen 3 (alone, 2 threads: 256 -> 64 at 56x56 0.67 -> 0.60 ms,
128 -> 128 at 28x28 and batch 8 1.26 -> 1.17, 96 -> 24 at 56x56 0.122 -> 0.113). With
AVX-512 the 16-step loop stays (not measured unrolled).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels._jit import njit
from cnnrt.kernels.activation import CLIP, RELU, TANH
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.llvm_ir import I32, VECTOR_BYTES, Vectors, c64, lanes_of, load_bf16, round_bf16
from cnnrt.kernels.cpu.vector_act import VECTOR_KINDS, activations, by_kind
from cnnrt.kernels.cpu.vector_ir import vector_run

ACCUMULATE, BIAS, RESIDUAL = 1, 2, 4
ACT_SHIFT, ACT_MASK = 3, 15  # the activation's kind: (flags >> ACT_SHIFT) & ACT_MASK
VECTORS_SHIFT, VECTORS_MASK = 7, 7  # tile_blocked only: vectors of a row to store (0: all)
# tile_blocked only: flags >> LANES_SHIFT = the real lanes of the last stored vector, whose
# lanes past them (a blocked output's padding lanes) are stored as 0 (0: every lane is real)
LANES_SHIFT = 10
STORED_KINDS = (*VECTOR_KINDS, TANH)  # float32: applied to the stored tile


def tile_act(kind: int, dtype) -> int:
    """``kind`` when the register tile applies that activation to ``dtype`` results, else 0
    (the caller applies it)."""
    if kind in (RELU, CLIP) or (np.dtype(dtype) == np.float32 and kind in STORED_KINDS):
        return kind
    return 0


NV = 2  # vectors per tile row
MR = 8 if VECTOR_BYTES == 64 else 6


def nr(dtype) -> int:
    """Columns of a tile for ``dtype`` (float32: 32 with AVX-512, float64: 16)."""
    return NV * VECTOR_BYTES // np.dtype(dtype).itemsize


def k_block(dtype) -> int:
    """Reduction steps per call so the B panel (steps x NR) takes half of a 48 KB L1."""
    return (24 << 10) // (nr(dtype) * np.dtype(dtype).itemsize)


def pack_a(w: np.ndarray, rows: int = MR) -> np.ndarray:
    """(M, K) -> panels (ceil(M/rows), K, rows): panel p, step k holds rows p*rows.. of column
    k, zero past M (the tile's A panels; gemm.py's column blocks of a batch-1 head)."""
    m, k = w.shape
    panels = -(-m // rows)
    a = np.zeros((panels * rows, k), w.dtype)
    a[:m] = w
    return np.ascontiguousarray(a.reshape(panels, rows, k).transpose(0, 2, 1))


def _ptr(context, builder, arrty, arr, off):
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.gep(data, [off])


_ONE_TAP = np.zeros(1, np.int64)


@njit(inline="always")
def tile(a, a_off, a_rs, a_ks, b, b_off, ldb, k, c, c_off, ldc, mr, flags, bias, bias_off, res, res_off, lo, hi):
    """One GEMM tile (see the module doc): :func:`tile_taps` with a single tap."""
    tile_taps(
        a,
        a_off,
        a_rs,
        a_ks,
        0,
        b,
        b_off,
        ldb,
        _ONE_TAP,
        1,
        k,
        c,
        c_off,
        ldc,
        mr,
        flags,
        bias,
        bias_off,
        res,
        res_off,
        lo,
        hi,
    )


def _check_operands(a, b, c, bias, res, taps, bf16_c=False):
    """The tiles' operand types: float32 or float64 throughout; with ``bf16_c`` (the blocked
    tile) C may hold bf16 bits (uint16) for float32 operands."""
    if not isinstance(a, types.Array) or a.dtype not in (types.float32, types.float64):
        return False
    narrow = bf16_c and isinstance(c, types.Array) and c.dtype == types.uint16 and a.dtype == types.float32
    if not all(isinstance(x, types.Array) and x.dtype == a.dtype for x in (b, bias, res) + (() if narrow else (c,))):
        return False
    return isinstance(taps, types.Array) and taps.dtype == types.int64


def bf16_store(builder, pc):
    """The epilogue's ``narrow`` for a C of bf16 bits at ``pc`` (i16*): a float32 vector
    rounded to nearest even (llvm_ir.round_bf16) and stored at C's element ``off``."""

    def narrow(x, off):
        h = round_bf16(builder, builder.bitcast(x, ir.VectorType(I32, x.type.count)))
        builder.store(h, builder.bitcast(builder.gep(pc, [off]), h.type.as_pointer())).align = 2

    return narrow


def reduce_by_rows(builder, arow, step, reduce):
    """``reduce(offsets)`` on the tile rows' input offsets: as ``arow[0] + i*step`` when every
    row's offset is that (the tile's pixels side by side in one row of a stride-1 conv, or
    anywhere in a 1x1 conv's unpadded plane), else as the table gave them (``arow``). The first
    addresses A by constant displacements from one pointer; the table's keeps a pointer per
    row, and 8-12 rows spill x86's 16 general registers inside the reduction."""
    same = ir.Constant(ir.IntType(1), 1)
    for i in range(1, len(arow)):
        same = builder.and_(same, builder.icmp_signed("==", builder.sub(arow[i], arow[0]), c64(i * step)))
    with builder.if_else(same) as (side_by_side, table):
        with side_by_side:
            reduce([builder.add(arow[0], c64(i * step)) for i in range(len(arow))])
        with table:
            reduce(arow)


def _tile_codegen(dt, blocked, mr_max, nv, q=1):
    """Codegen of the register tile. Plain (``blocked`` False): tap t reads A at a_ts * t and
    B at taps[t]; C row i vector v at i*ldc + v*lanes; bias per row. Blocked: tap t reads A
    at taps[t] and B at b_ts * t; vector v of C row i at i*ldc + v*c_vs; bias per column.
    ``q`` > 1 (blocked, one vector): a grouped conv's block of q groups of lanes/q channels
    with its input and weights interleaved by group (:func:`interleave_order`): each step
    broadcasts q inputs, one per group, so no lane multiplies another group's zero weight,
    and the sums are put back in channel order before the epilogue."""
    lanes = lanes_of(dt)

    def codegen(context, builder, sig, args):
        if blocked:
            (
                a_v,
                a_off_v,
                pix_v,
                pix_off_v,
                a_ks_v,
                taps_v,
                ntaps_v,
                b_v,
                b_off_v,
                b_ts_v,
                ldb_v,
                k_v,
                c_v,
                c_off_v,
                ldc_v,
                c_vs_v,
                mr_v,
                flags_v,
                bias_v,
                bias_off_v,
                res_v,
                res_off_v,
                lo_v,
                hi_v,
                tail_from_v,
                k_tail_v,
            ) = args[:26]  # then the form (tile_blocked*), read at typing
            a_ty, pix_ty, taps_ty, b_ty, c_ty, bias_ty, res_ty = (sig.args[i] for i in (0, 2, 5, 7, 12, 18, 20))
        else:
            (
                a_v,
                a_off_v,
                a_rs_v,
                a_ks_v,
                a_ts_v,
                b_v,
                b_off_v,
                ldb_v,
                taps_v,
                ntaps_v,
                k_v,
                c_v,
                c_off_v,
                ldc_v,
                mr_v,
                flags_v,
                bias_v,
                bias_off_v,
                res_v,
                res_off_v,
                lo_v,
                hi_v,
            ) = args
            a_ty, b_ty, taps_ty, c_ty, bias_ty, res_ty = (sig.args[i] for i in (0, 5, 8, 11, 16, 18))
        vec = Vectors(builder, dt, align=4)
        splat, vload, zero_v = vec.splat, vec.load, vec.zero

        pa0 = _ptr(context, builder, a_ty, a_v, a_off_v)
        pb0 = _ptr(context, builder, b_ty, b_v, b_off_v)
        ptaps = context.make_array(taps_ty)(context, builder, taps_v).data
        pc = _ptr(context, builder, c_ty, c_v, c_off_v)
        pbias = _ptr(context, builder, bias_ty, bias_v, bias_off_v)
        pres = _ptr(context, builder, res_ty, res_v, res_off_v)

        if blocked:  # each pixel row's own input offset (a tile may cross output rows)
            ppix = _ptr(context, builder, pix_ty, pix_v, pix_off_v)
            arow = [builder.load(builder.gep(ppix, [c64(i)])) for i in range(mr_max)]
        else:
            arow = [builder.mul(c64(i), a_rs_v) for i in range(mr_max)]
        accs = [[cgutils.alloca_once_value(builder, zero_v) for _ in range(nv)] for _ in range(mr_max)]

        def reduce(rows):
            with cgutils.for_range(builder, ntaps_v) as tap_loop:
                tp = tap_loop.index
                tap = builder.load(builder.gep(ptaps, [tp]))
                if blocked:
                    pa = builder.gep(pa0, [tap])
                    pb = builder.gep(pb0, [builder.mul(tp, b_ts_v)])
                else:
                    pa = builder.gep(pa0, [builder.mul(tp, a_ts_v)])
                    pb = builder.gep(pb0, [tap])
                k_tap = builder.select(builder.icmp_signed(">=", tp, tail_from_v), k_tail_v, k_v) if blocked else k_v

                def step(pa_k, pb_k):  # one reduction step: A at pa_k + rows[i], B at pb_k
                    bvec = [vload(pb_k, c64(v * lanes)) for v in range(nv)]
                    for i in range(mr_max):
                        pai = builder.gep(pa_k, [rows[i]])
                        if q == 1:
                            av = splat(builder.load(pai))
                        else:  # q adjacent inputs, one per group, repeated across the vector
                            qty = ir.VectorType(vec.fty, q)
                            ld = builder.load(builder.bitcast(pai, qty.as_pointer()))
                            ld.align = 4
                            av = builder.shuffle_vector(ld, ir.Constant(qty, ir.Undefined), _repeat_mask(q, lanes))
                        for v in range(nv):
                            builder.store(vec.fma(av, bvec[v], builder.load(accs[i][v])), accs[i][v])

                def looped():
                    with cgutils.for_range(builder, k_tap) as loop:
                        kk = loop.index
                        step(builder.gep(pa, [builder.mul(kk, a_ks_v)]), builder.gep(pb, [builder.mul(kk, ldb_v)]))

                if not (blocked and VECTOR_BYTES == 32):
                    looped()
                    return
                # AVX2: a whole block of steps (every tap of a blocked input) unrolled, the
                # pointers advanced by a_ks and ldb, no loop inside the tap (module doc)
                with builder.if_else(builder.icmp_signed("==", k_tap, c64(lanes))) as (whole, part):
                    with whole:
                        pa_k, pb_k = pa, pb
                        for _ in range(lanes):
                            step(pa_k, pb_k)
                            pa_k, pb_k = builder.gep(pa_k, [a_ks_v]), builder.gep(pb_k, [ldb_v])
                    with part:
                        looped()

        if blocked:
            reduce_by_rows(builder, arow, lanes, reduce)
        else:
            reduce(arow)
        if q > 1:
            back = ir.Constant(ir.VectorType(I32, lanes), [int(x) for x in np.argsort(interleave_order(lanes, q))])
            for row in accs:
                acc = builder.load(row[0])
                builder.store(builder.shuffle_vector(acc, ir.Constant(acc.type, ir.Undefined), back), row[0])

        epilogue(
            builder,
            vec,
            dt,
            blocked,
            accs,
            pc,
            pbias,
            pres,
            ldc_v,
            c_vs_v if blocked else None,
            mr_v,
            flags_v,
            lo_v,
            hi_v,
            bf16_store(builder, pc) if blocked and c_ty.dtype == types.uint16 else None,
        )
        return context.get_dummy_value()

    return codegen


def epilogue(builder, vec, dt, blocked, accs, pc, pbias, pres, ldc_v, c_vs_v, mr_v, flags_v, lo_v, hi_v, narrow=None):
    """The tile's epilogue on its accumulators ``accs[row][vector]``: accumulate into C, bias
    (per column when ``blocked``, else per row), residual, Relu/Clip before the store, then the
    other float32 activations over the tile just stored (while it is in L1). One emitter for
    every tile, whatever its reduction (float32 FMAs or bf16 dot products).

    ``narrow(x, off)``: C holds bf16 (microkernel_bf16's store of a rounded vector at C's
    element ``off``): the epilogue applies every activation before the rounding store, and
    it neither accumulates into C nor zeroes padding lanes; the kernel's flags ask for
    neither (conv_blocked.py checks)."""
    mr_max, nv = len(accs), len(accs[0])
    lanes = lanes_of(dt)
    splat, vload, vstore = vec.splat, vec.load, vec.store
    f = EpilogueFlags(builder, vec, flags_v, nv, lo_v, hi_v)
    if pres.type.pointee == ir.IntType(16):  # a bf16 residual (passes/precision.py), widened exactly

        def res_at(off):
            return load_bf16(builder, pres, off, vec.lanes)

    else:

        def res_at(off):
            return vload(pres, off)

    acc_on, bias_on, res_on, nstore, act, lo, hi = f.acc_on, f.bias_on, f.res_on, f.nstore, f.act, f.lo, f.hi
    lo_s, hi_s = f.lo_s, f.hi_s
    if narrow is not None:
        acc_on = ir.Constant(ir.IntType(1), 0)

    def offset(i, v):
        row = builder.mul(c64(i) if isinstance(i, int) else i, ldc_v)
        v = c64(v) if isinstance(v, int) else v
        return builder.add(row, builder.mul(v, c_vs_v) if blocked else builder.mul(v, c64(lanes)))

    def bias_at(i, v):  # per column (blocked) or per row
        if blocked:
            return vload(pbias, c64(v * lanes))
        return splat(builder.load(builder.gep(pbias, [c64(i)])))

    whole = builder.and_(
        builder.not_(acc_on),
        builder.and_(builder.icmp_unsigned("==", nstore, c64(nv)), builder.icmp_signed("==", mr_v, c64(mr_max))),
    )

    def emit(put):  # every result vector, clamped, to put(x, offset, slot): the whole tile or any
        with builder.if_else(whole, likely=True) as (straight, general):
            with straight:
                _straight_epilogue(builder, vec, accs, offset, put, bias_at, res_at, bias_on, res_on, lo, hi)
            with general:
                _general_epilogue(
                    builder,
                    vec,
                    accs,
                    offset,
                    pc,
                    put,
                    bias_at,
                    res_at,
                    mr_v,
                    nstore,
                    acc_on,
                    bias_on,
                    res_on,
                    lo,
                    hi,
                )

    if narrow is not None:
        # another float32 activation comes before the rounding: the tile's vectors wait in a
        # stack array, then one loop per activation kind rounds and stores them
        stash = cgutils.alloca_once(builder, vec.vty, size=ir.Constant(ir.IntType(64), mr_max * nv))
        stored = ir.Constant(ir.IntType(1), 0)
        for k in STORED_KINDS:
            stored = builder.or_(stored, builder.icmp_unsigned("==", act, c64(k)))

        def finish(fn):
            with cgutils.for_range(builder, mr_v) as rows:
                with cgutils.for_range(builder, nstore) as vecs:
                    slot = builder.add(builder.mul(rows.index, c64(nv)), vecs.index)
                    narrow(fn(builder.load(builder.gep(stash, [slot]))), offset(rows.index, vecs.index))

        with builder.if_else(stored, likely=False) as (later, now):
            with later:
                emit(lambda x, off, slot: builder.store(x, builder.gep(stash, [c64(slot)])))
                by_kind(builder, act, activations(builder, vec, lo_s, hi_s, STORED_KINDS), finish)
            with now:
                emit(lambda x, off, slot: narrow(x, off))
        return

    emit(lambda x, off, slot: vstore(x, builder.gep(pc, [off])))
    if dt == types.float32:  # the other activations over the tile just stored

        def over_tile(fn):  # vectors outer, rows inner: a blocked tile's rows lie contiguous
            with cgutils.for_range(builder, nstore) as vecs:
                col = builder.mul(vecs.index, c_vs_v if blocked else c64(lanes))
                with cgutils.for_range(builder, mr_v) as rows:
                    cp = builder.gep(pc, [builder.add(col, builder.mul(rows.index, ldc_v))])
                    vstore(fn(vload(cp)), cp)

        by_kind(builder, act, activations(builder, vec, lo_s, hi_s, STORED_KINDS), over_tile)
    if blocked:
        _zero_padding_lanes(builder, vec, pc, ldc_v, c_vs_v, mr_v, nstore, builder.lshr(flags_v, c64(LANES_SHIFT)))


class EpilogueFlags:
    """What a tile's ``flags`` ask of its epilogue, decoded in IR: ``acc_on``, ``bias_on``,
    ``res_on`` (i1), ``nstore`` (vectors of a row to store: ``flags >> VECTORS_SHIFT``, 0 meaning
    all ``nv``), ``act`` (the activation kind) and the clamp ``lo``/``hi`` vectors that apply
    Relu and Clip (Relu: [0, inf), none: (-inf, inf); selects, so NaN passes)."""

    def __init__(self, builder, vec, flags_v, nv: int, lo_v, hi_v) -> None:
        def flag(bit):
            return builder.icmp_unsigned("!=", builder.and_(flags_v, c64(bit)), c64(0))

        self.acc_on, self.bias_on, self.res_on = flag(ACCUMULATE), flag(BIAS), flag(RESIDUAL)
        nstore = builder.and_(builder.lshr(flags_v, c64(VECTORS_SHIFT)), c64(VECTORS_MASK))
        self.nstore = builder.select(builder.icmp_unsigned("==", nstore, c64(0)), c64(nv), nstore)
        self.act = builder.and_(builder.lshr(flags_v, c64(ACT_SHIFT)), c64(ACT_MASK))
        relu_on = builder.icmp_unsigned("==", self.act, c64(RELU))
        clip_on = builder.icmp_unsigned("==", self.act, c64(CLIP))
        self.lo_s, self.hi_s = vec.splat(lo_v), vec.splat(hi_v)
        inf = vec.const(float("inf"))
        self.lo = builder.select(relu_on, vec.zero, builder.select(clip_on, self.lo_s, builder.fneg(inf)))
        self.hi = builder.select(clip_on, self.hi_s, inf)


def _general_epilogue(
    builder, vec, accs, offset, pc, put, bias_at, res_at, mr_v, nstore, acc_on, bias_on, res_on, lo, hi
):
    """Any tile: rows up to ``mr``, vectors up to ``nstore``, each step under its flag; ``put``
    stores a result vector at an offset of C (read back when accumulating)."""
    for i in range(len(accs)):
        with cgutils.if_likely(builder, builder.icmp_signed("<", c64(i), mr_v)):
            for v in range(len(accs[0])):
                off = offset(i, v)
                cp = builder.gep(pc, [off])
                slot = accs[i][v]
                with builder.if_then(builder.icmp_signed("<", c64(v), nstore)):
                    with cgutils.if_unlikely(builder, acc_on):
                        builder.store(builder.fadd(builder.load(slot), vec.load(cp)), slot)
                    with builder.if_then(bias_on):
                        builder.store(builder.fadd(builder.load(slot), bias_at(i, v)), slot)
                    with builder.if_then(res_on):
                        builder.store(builder.fadd(builder.load(slot), res_at(off)), slot)
                    put(vec.clamp(builder.load(slot), lo, hi), off, i * len(accs[0]) + v)


def _straight_epilogue(builder, vec, accs, offset, put, bias_at, res_at, bias_on, res_on, lo, hi):
    """A whole tile written fresh (no accumulation, every row and vector stored): the flags
    are tested once, not per vector, and the tile is stored by straight-line code: bias
    (or zeros) and the residual added, then the clamp. On 1x1 convs of 8-32 input
    channels the per-vector branches took a fifth of the tile's time."""
    mr, nv = len(accs), len(accs[0])
    bias = [[cgutils.alloca_once_value(builder, vec.zero) for _ in range(nv)] for _ in range(mr)]
    with builder.if_then(bias_on):
        for i in range(mr):
            for v in range(nv):
                builder.store(bias_at(i, v), bias[i][v])

    def store_all(with_res):
        for i in range(mr):
            for v in range(nv):
                off = offset(i, v)
                x = builder.fadd(builder.load(accs[i][v]), builder.load(bias[i][v]))
                if with_res:
                    x = builder.fadd(x, res_at(off))
                put(vec.clamp(x, lo, hi), off, i * nv + v)

    with builder.if_else(res_on) as (res, plain):
        with res:
            store_all(True)
        with plain:
            store_all(False)


def _zero_padding_lanes(builder, vec, pc, ldc_v, c_vs_v, mr_v, nstore, live):
    """Store 0 in the lanes from ``live`` on of each row's last stored vector, when ``live`` >
    0: a blocked output's padding lanes. They come from zero weights, so they hold 0 but where
    an input is Inf or NaN (0 x Inf = NaN); the next conv's zero weights for them would spread
    that NaN to every real channel (cnnrt.core.layout: padding lanes are 0 whatever the input).
    Last in the epilogue, after every activation; one branch per tile when there are none."""
    with cgutils.if_unlikely(builder, builder.icmp_unsigned("!=", live, c64(0))):
        ity = ir.VectorType(ir.IntType(64), vec.lanes)
        lane_ids = ir.Constant(ity, list(range(vec.lanes)))
        pad = builder.icmp_signed(">=", lane_ids, vec.splat(live, ity))
        col = builder.mul(builder.sub(nstore, c64(1)), c_vs_v)
        with cgutils.for_range(builder, mr_v) as rows:
            vec.store(vec.zero, builder.gep(pc, [builder.add(col, builder.mul(rows.index, ldc_v))]), mask=pad)


@intrinsic
def tile_taps(
    typingctx,
    a,
    a_off,
    a_rs,
    a_ks,
    a_ts,
    b,
    b_off,
    ldb,
    taps,
    ntaps,
    k,
    c,
    c_off,
    ldc,
    mr,
    flags,
    bias,
    bias_off,
    res,
    res_off,
    lo,
    hi,
):
    """The register tile summed over ``ntaps`` reductions of ``k`` steps: reduction ``t`` reads
    A from ``a_off + t*a_ts`` and B from ``b_off + taps[t]`` (conv_direct.py: one per kernel
    tap), the accumulators staying in registers throughout. Arrays of one dtype (float32 or
    float64) but ``taps`` (int64); offsets and counts int64."""
    if not _check_operands(a, b, c, bias, res, taps):
        return None
    dt = a.dtype
    i64 = types.int64
    sig = types.void(
        a, i64, i64, i64, i64, b, i64, i64, taps, i64, i64, c, i64, i64, i64, i64, bias, i64, res, i64, dt, dt
    )
    return sig, _tile_codegen(dt, False, MR, NV)


def interleave_order(lanes: int, q: int) -> np.ndarray:
    """The channel of a block that position L holds when its q groups (of lanes/q channels)
    are interleaved: L = k*q + g holds channel k of group g. A grouped conv's input copy and
    weights are laid out so (conv_blocked.py), its tile's sums come out so."""
    lane = np.arange(lanes)
    return (lane % q) * (lanes // q) + lane // q


@intrinsic
def interleave_run(typingctx, src, s, dst, d, count, form):
    """dst[d + p*lanes + L] = src[s + p*lanes + interleave_order(lanes, q)[L]] for the
    count / lanes pixels of a run (q = len(form)): a blocked row's channels interleaved by
    group, one shuffle per pixel."""
    if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and src.dtype == dst.dtype):
        return None
    if not isinstance(form, types.BaseTuple) or len(form) < 2 or src.dtype not in (types.float32, types.float64):
        return None
    q = len(form)
    i64 = types.int64
    sig = types.void(src, i64, dst, i64, i64, form)

    def codegen(context, builder, sig, args):
        src_v, s_v, dst_v, d_v, n_v, _ = args
        vec = Vectors(builder, sig.args[0].dtype, align=4)
        psrc = context.make_array(sig.args[0])(context, builder, src_v).data
        pdst = context.make_array(sig.args[2])(context, builder, dst_v).data
        order = ir.Constant(ir.VectorType(I32, vec.lanes), [int(x) for x in interleave_order(vec.lanes, q)])
        with cgutils.for_range(builder, builder.sdiv(n_v, c64(vec.lanes))) as loop:
            off = builder.mul(loop.index, c64(vec.lanes))
            x = vec.load(psrc, builder.add(s_v, off))
            vec.store(builder.shuffle_vector(x, ir.Constant(x.type, ir.Undefined), order), pdst, builder.add(d_v, off))
        return context.get_dummy_value()

    return sig, codegen


def _repeat_mask(q: int, lanes: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(I32, lanes), [i % q for i in range(lanes)])


def _blocked_tile(mr_max: int, nv: int):
    """tile_blocked with ``mr_max`` pixel rows of ``nv`` channel-block vectors."""

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
        # a grouped conv's panels are one block: wider tiles compile as they are for any form
        q = len(form) if isinstance(form, types.BaseTuple) and nv == 1 else 1
        if not _check_operands(a, b, c, bias, res, taps, bf16_c=True):
            return None
        if not isinstance(pix, types.Array) or pix.dtype != types.int64:
            return None
        dt = a.dtype
        i64 = types.int64
        sig = types.void(
            a,
            i64,
            pix,
            i64,
            i64,
            taps,
            i64,
            b,
            i64,
            i64,
            i64,
            i64,
            c,
            i64,
            i64,
            i64,
            i64,
            i64,
            bias,
            i64,
            res,
            i64,
            dt,
            dt,
            i64,
            i64,
            form,
        )
        return sig, _tile_codegen(dt, True, mr_max, nv, max(q, 1))

    tile_blocked.__doc__ = f"""The register tile for channel-blocked convs (conv_blocked.py), {mr_max} pixels x {nv}
    channel blocks: rows are output pixels (A: the input, ``a[a_off + pix[pix_off + i] + taps[t] +
    kk*a_ks]``: every pixel row has its own offset, so a tile runs across the end of an output
    row), columns output channels (B: the packed weights, ``b[b_off + t*b_ts + kk*ldb +
    j]``). Vector v of C row i (one channel block of one pixel) lies at ``c_off + i*ldc +
    v*c_vs``, the residual alike; taps from ``tail_from`` on take ``k_tail`` steps (a last
    input block of fewer real channels, its padding lanes skipped); ``form``, a tuple: () or,
    for a one-block tile of a grouped conv whose block holds q groups, q zeros (one compiled
    tile per q, chosen by type: the interleaved reduction of :func:`_tile_codegen`); BIAS adds ``bias[bias_off + j]`` per column; ``flags >>
    VECTORS_SHIFT`` > 0 stores only that many vectors of a row (a last panel of fewer blocks),
    ``flags >> LANES_SHIFT`` > 0 zeroes the last one's lanes past that many (padding lanes)."""
    return tile_blocked


# (pixels, channel blocks) of the blocked tiles, by blocks per panel. AVX-512 (32 zmm): 4
# blocks for wide layers, 5 pixels (20 accumulators: 4 weight loads and 5 broadcasts per 20
# FMAs). On AMD Zen 5, every blocked conv of six nets timed alone in one process (2 threads,
# both tiles compiled in that process), 5 x 4 took 0.96-0.99x of 4 x 4's time in total per
# net (MobileNetV2, MnasNet, EfficientNet-B0, DenseNet-121, GoogLeNet, ResNet-50), 6 x 4
# 1.02x of 5 x 4's, and 7 x 4 (28 accumulators) spills. 16-32 channel layers (SqueezeNet's
# squeezes, GoogLeNet's reduces) would waste half or 3/4 of a 4-block panel; their 8 x 2
# stays: 12 x 2 took 1.14-1.39x on MobileNetV2's stem and 24-channel projections, and
# 1.00-1.07x on 16-32 output layers once its rows were addressed side by side (reduce_by_rows).
# Layers of 3 blocks (40, 48 channels) or 3k blocks (96, 144) take 7 x 3 (21 accumulators: 3
# weight loads and 7 broadcasts per 21 FMAs) instead of a 4-block panel with a zero block:
# on AMD Zen 4 (in-process A/B of the panel choice, 2 threads) MnasNet's 16 -> 48 conv at
# 112x112 and batch 8 went 1.25 -> 1.03 ms, its 40-channel projections 0.47 -> 0.36 ms, the
# whole net 0.94-1.0x at batch 8 (two runs), MobileNetV2, MobileNetV3-Large, RegNetY-400MF and
# SqueezeNet 0.97-1.0x.
# AVX2 (16 ymm): 12 accumulators at most leave room for the B vectors and a broadcast; 3 x 4
# spilled an accumulator every step and 2 x 4 (8 accumulators) cannot hide the FMA latency, so
# panels are 2 blocks (6 x 2) or 1 (12 x 1): 6 x 2 took 0.82-0.92x of 2 x 4's time on 1x1
# convs of 16-256 channels (tests of panel_blocks say which panels each target picks).
if VECTOR_BYTES == 64:
    BLOCKED_TILES = {4: (5, 4), 3: (7, 3), 2: (8, 2), 1: (16, 1)}
    PANEL_CHOICES = (4, 3, 2)
else:  # the 3-block tile is compiled for the worker's branch but never chosen
    BLOCKED_TILES = {4: (2, 4), 3: (3, 3), 2: (6, 2), 1: (12, 1)}
    PANEL_CHOICES = (2,)
tile_blocked4 = _blocked_tile(*BLOCKED_TILES[4])
tile_blocked3 = _blocked_tile(*BLOCKED_TILES[3])
tile_blocked2 = _blocked_tile(*BLOCKED_TILES[2])
tile_blocked1 = _blocked_tile(*BLOCKED_TILES[1])


@njit(inline="always")
def emit_row(ob, s, of, d, count, b, rf, has_res, done, kind, alpha, beta):
    """of[d + q] = act(ob[s + q] + b (+ rf[d + q])) for q < count, or a plain copy when the
    tile applied bias and activation already (``done``): the epilogue of results that went
    through scratch (:func:`vector_run`); the activation runs as a second pass over the row
    with its kind dispatched once (act_inplace), as a per-element dispatch kept tanh & co.
    scalar."""
    vector_run(ob, s, of, d, count, b, rf, not done, has_res and not done)
    if kind != 0:
        act_inplace(of[d : d + count], kind, alpha, beta)

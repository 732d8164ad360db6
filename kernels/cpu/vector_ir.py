"""Loops over short runs of floats written as LLVM IR with explicit vectors (Numba intrinsics).

A conv's output rows are short (LeNet's are 28 pixels): LLVM's loop vectoriser takes 64+
float32 elements per vector iteration on AVX-512, so a plain Numba loop over such a row ran
its scalar remainder only, and some loops (the rational tanh) it did not vectorise at all.
These run whole vectors, then one masked vector for the rest (llvm.masked.load/store), so a
28-element row is two vector operations.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES, Vectors, c64, data_pointers, declare, floats, host_has, round_bf16

# Eigen's float rational approximation of tanh (activation.tanh_rational is the scalar twin:
# the same operations in the same order, so both give the same bits)
TANH_CLAMP = 7.99881172180175781
TANH_P = (
    -2.76076847742355e-16,
    2.00018790482477e-13,
    -8.60467152213735e-11,
    5.12229709037114e-08,
    1.48572235717979e-05,
    6.37261928875436e-04,
    4.89352455891786e-03,
)
TANH_Q = (1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03)
TANH_SMALL = 0.0004


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma; vectorises, unlike a libm call)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


@intrinsic
def vector_run(typingctx, src, s, dst, d, count, b, res, add_bias, add_res):
    """dst[d + q] = src[s + q] (+ b) (+ res[d + q]) for q < count (the module doc)."""
    if not floats(src, dst, res):
        return None
    dt, i64 = src.dtype, types.int64
    sig = types.void(src, i64, dst, i64, i64, dt, res, types.boolean, types.boolean)

    def codegen(context, builder, sig, args):
        _, s_v, _, d_v, n_v, b_v, _, bias_on, res_on = args
        psrc, pdst, pres = data_pointers(context, builder, sig, args, 0, 2, 6)
        vec = Vectors(builder, dt)
        bias = vec.splat(b_v)

        def body(off, mask):
            v = vec.load(psrc, builder.add(s_v, off), mask)
            acc = cgutils.alloca_once_value(builder, builder.select(bias_on, builder.fadd(v, bias), v))
            with builder.if_then(res_on):
                r = vec.load(pres, builder.add(d_v, off), mask)
                builder.store(builder.fadd(builder.load(acc), r), acc)
            vec.store(builder.load(acc), pdst, builder.add(d_v, off), mask)

        vec.over(n_v, body)
        return context.get_dummy_value()

    return sig, codegen


def tanh_vector(builder, vec: Vectors, v):
    """tanh of the vector ``v`` (``vec``'s dtype): activation.tanh_rational on vectors, float32
    widened to float64 for the evaluation, as there; NaN stays NaN."""
    f64 = ir.DoubleType()
    fma = vec.fma
    w = builder.fpext(v, ir.VectorType(f64, vec.lanes)) if vec.dt == types.float32 else v
    hi, lo = vec.const(TANH_CLAMP, f64), vec.const(-TANH_CLAMP, f64)
    x = vec.clamp(w, lo, hi)  # NaN passes, and flows through to r
    x2 = builder.fmul(x, x)
    p = fma(x2, vec.const(TANH_P[0], f64), vec.const(TANH_P[1], f64))
    for c in TANH_P[2:]:
        p = fma(p, x2, vec.const(c, f64))
    q = fma(x2, vec.const(TANH_Q[0], f64), vec.const(TANH_Q[1], f64))
    for c in TANH_Q[2:]:
        q = fma(q, x2, vec.const(c, f64))
    r = builder.fdiv(builder.fmul(p, x), q)
    r = builder.select(builder.fcmp_ordered("<", vec.unary("fabs", w), vec.const(TANH_SMALL, f64)), w, r)
    return builder.fptrunc(r, vec.vty) if vec.dt == types.float32 else r


@intrinsic
def tanh_run(typingctx, o, start, count):
    """o[start + q] = tanh(o[start + q]) for q < count, in place (:func:`tanh_vector`)."""
    if not floats(o):
        return None
    sig = types.void(o, types.int64, types.int64)
    dt = o.dtype

    def codegen(context, builder, sig, args):
        _, start_v, n_v = args
        (po,) = data_pointers(context, builder, sig, args, 0)
        vec = Vectors(builder, dt)

        def body(off, mask):
            v = vec.load(po, builder.add(start_v, off), mask)
            vec.store(tanh_vector(builder, vec, v), po, builder.add(start_v, off), mask)

        vec.over(n_v, body)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pixel_reduce(typingctx, x, base, count, out, o, is_max):
    """One channel block's pixels reduced lane by lane: out[o + lane] = the mean of (sum in
    float64, in pixel order) or the max over (NaN skipped, -inf when none) x[base + i*B +
    lane], i < count, B = the vector width in elements. A global pool's plane: the scalar
    loop kept its 16 float64 sums in memory."""
    if not floats(x, out):
        return None
    sig = types.void(x, types.int64, types.int64, out, types.int64, types.boolean)
    dt = x.dtype

    def codegen(context, builder, sig, args):
        _, base_v, n_v, _, o_v, max_on = args
        px, pout = data_pointers(context, builder, sig, args, 0, 3)
        vec = Vectors(builder, dt)
        f64 = ir.DoubleType()
        v64 = ir.VectorType(f64, vec.lanes)
        start = builder.select(max_on, vec.const(float("-inf"), f64), vec.const(0.0, f64))
        acc = cgutils.alloca_once_value(builder, start)
        with cgutils.for_range(builder, n_v) as loop:
            v = vec.load(px, builder.add(base_v, builder.mul(loop.index, c64(vec.lanes))))
            v = builder.fpext(v, v64) if dt == types.float32 else v
            a = builder.load(acc)
            bigger = builder.select(builder.fcmp_ordered(">", v, a), v, a)
            builder.store(builder.select(max_on, bigger, builder.fadd(a, v)), acc)
        a = builder.load(acc)
        mean = builder.fdiv(a, vec.splat(builder.sitofp(n_v, f64), v64))
        r = builder.select(max_on, a, mean)
        vec.store(builder.fptrunc(r, vec.vty) if dt == types.float32 else r, pout, o_v)
        return context.get_dummy_value()

    return sig, codegen


LRN_REACH = 2  # channels below and above a lane that lrn_window_sums reaches (LRN size 5)


def _lanes_from(lanes: int, first: int):
    """The shuffle mask picking ``lanes`` consecutive lanes of two vectors from ``first`` on."""
    return ir.Constant(ir.VectorType(ir.IntType(32), lanes), list(range(first, first + lanes)))


@intrinsic
def lrn_window_sums(typingctx, x, cur, prev, nxt, count, out, o, lo, hi):
    """One channel block's LRN window sums: out[o + q*B + l] = sum over d = -lo..hi, in that
    order from 0, of the square of channel l + d of pixel q (B = the vector width, float32),
    where channel l + d lies in the block at ``cur`` (element offset of its pixel 0), or past
    its ends in the block at ``prev`` / ``nxt`` (-1: none, zeros), for q < count; lo, hi <=
    LRN_REACH. Each term is two blocks' squares shuffled by d lanes (constant masks), added
    whether in the window or not, as 0 when not: the sums of kernels/cpu/norm.py's NCHW LRN
    in the same order, bit for bit (squares are not negative, so an added 0 changes nothing)."""
    if not (floats(x, out) and x.dtype == types.float32):
        return None
    i64 = types.int64
    sig = types.void(x, i64, i64, i64, i64, out, i64, i64, i64)

    def codegen(context, builder, sig, args):
        _, cur_v, prev_v, nxt_v, n_v, _, o_v, lo_v, hi_v = args
        px, pout = data_pointers(context, builder, sig, args, 0, 5)
        vec = Vectors(builder, types.float32)
        lanes = vec.lanes
        has_prev = builder.icmp_signed(">=", prev_v, c64(0))
        has_next = builder.icmp_signed(">=", nxt_v, c64(0))
        on = {
            d: builder.icmp_signed("<=", c64(-d), lo_v) if d < 0 else builder.icmp_signed("<=", c64(d), hi_v)
            for d in range(-LRN_REACH, LRN_REACH + 1)
            if d
        }
        with cgutils.for_range(builder, n_v) as loop:
            q = builder.mul(loop.index, c64(lanes))

            def squares(base, present):
                off = builder.select(present, builder.add(base, q), builder.add(cur_v, q))
                v = vec.load(px, off)
                return builder.select(present, builder.fmul(v, v), vec.zero)

            sq = builder.fmul(vec.load(px, builder.add(cur_v, q)), vec.load(px, builder.add(cur_v, q)))
            below, above = squares(prev_v, has_prev), squares(nxt_v, has_next)
            acc = vec.zero
            for d in range(-LRN_REACH, LRN_REACH + 1):
                if d < 0:  # lanes of (below ++ sq) from lanes + d
                    term = builder.shuffle_vector(below, sq, _lanes_from(lanes, lanes + d))
                elif d > 0:  # lanes of (sq ++ above) from d
                    term = builder.shuffle_vector(sq, above, _lanes_from(lanes, d))
                else:
                    term = sq
                acc = builder.fadd(acc, term if d == 0 else builder.select(on[d], term, vec.zero))
            vec.store(acc, pout, builder.add(o_v, q))
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def affine_run(typingctx, x, xo, out, oo, count, s, t, so, lo, hi):
    """One channel block's pixels: out[oo + q*B + lane] = clamp(fma(x[xo + q*B + lane],
    s[so + lane], t[so + lane]), lo, hi) for q < count, B = the vector width in elements;
    the clamp is selects (NaN passes), so lo = 0, hi = inf is Relu. The scale and shift
    vectors stay in registers over the pixels (a blocked ChannelAffine's plane). ``out`` may
    be uint16 for float32 ones: a bf16 activation (ir.BF16), each vector rounded
    (llvm_ir.round_bf16)."""
    narrow = isinstance(out, types.Array) and out.dtype == types.uint16 and out.layout == "C"
    if not (floats(x, s, t) and (floats(x, out) or (narrow and x.dtype == types.float32))):
        return None
    dt, i64 = x.dtype, types.int64
    sig = types.void(x, i64, out, i64, i64, s, t, i64, dt, dt)

    def codegen(context, builder, sig, args):
        _, xo_v, _, oo_v, n_v, _, _, so_v, lo_v, hi_v = args
        px, pout, ps, pt = data_pointers(context, builder, sig, args, 0, 2, 5, 6)
        vec = Vectors(builder, dt)
        sv, tv = vec.load(ps, so_v), vec.load(pt, so_v)
        lo, hi = vec.splat(lo_v), vec.splat(hi_v)
        with cgutils.for_range(builder, n_v) as loop:
            q = builder.mul(loop.index, c64(vec.lanes))
            v = vec.clamp(vec.fma(vec.load(px, builder.add(xo_v, q)), sv, tv), lo, hi)
            if narrow:
                h = round_bf16(builder, builder.bitcast(v, ir.VectorType(ir.IntType(32), vec.lanes)))
                builder.store(
                    h, builder.bitcast(builder.gep(pout, [builder.add(oo_v, q)]), h.type.as_pointer())
                ).align = 2
            else:
                vec.store(v, pout, builder.add(oo_v, q))
        return context.get_dummy_value()

    return sig, codegen


# float32 lanes of one vector: vpermi2ps picks 16 from two vectors (AVX-512); with AVX2 two
# vpermps and a blend pick 8
PERMUTE2_LANES = VECTOR_BYTES // 4


@intrinsic
def permute2_run(typingctx, a, a_off, b, b_off, y, y_off, count, idx, mask, keep):
    """For q < count pixels of L = PERMUTE2_LANES float32 lanes: lane l of y[y_off + Lq ...]
    becomes lane idx[l] of the 2L lanes a[a_off + Lq ...] ++ b[b_off + Lq ...] where mask[l]
    != 0, else stays (keep) or is zero: one vpermi2ps with AVX-512, two vpermps (which read
    the index's low 3 bits) and a blend on bit 3 with AVX2. A channel permutation between
    blocked tensors (kernels/cpu/blocked.py's BlockedChannelShuffle): each output vector is
    one or a few of these."""
    if not (floats(a, b, y) and a.dtype == types.float32):
        return None
    if not all(isinstance(t, types.Array) and t.dtype == types.int32 and t.layout == "C" for t in (idx, mask)):
        return None
    i64 = types.int64
    sig = types.void(a, i64, b, i64, y, i64, i64, idx, mask, types.boolean)

    def codegen(context, builder, sig, args):
        _, a_v, _, b_v, _, y_v, n_v, _, _, keep_v = args
        pa, pb, py, pidx, pmask = data_pointers(context, builder, sig, args, 0, 2, 4, 7, 8)
        vec = Vectors(builder, types.float32)
        ity = ir.VectorType(ir.IntType(32), PERMUTE2_LANES)
        iv = builder.load(builder.bitcast(pidx, ity.as_pointer()))
        mv = builder.load(builder.bitcast(pmask, ity.as_pointer()))
        iv.align = mv.align = 4  # numpy rows: element-aligned only
        on = builder.icmp_signed("!=", mv, ir.Constant(ity, [0] * PERMUTE2_LANES))
        if PERMUTE2_LANES == 16:
            perm2 = declare(builder, "llvm.x86.avx512.vpermi2var.ps.512", vec.vty, [vec.vty, ity, vec.vty])

            def permute(va, vb):
                return builder.call(perm2, [va, iv, vb])
        else:
            perm = declare(builder, "llvm.x86.avx2.permps", vec.vty, [vec.vty, ity])
            from_b = builder.icmp_signed(
                "!=",
                builder.and_(iv, ir.Constant(ity, [PERMUTE2_LANES] * PERMUTE2_LANES)),
                ir.Constant(ity, [0] * PERMUTE2_LANES),
            )

            def permute(va, vb):
                return builder.select(from_b, builder.call(perm, [vb, iv]), builder.call(perm, [va, iv]))

        with cgutils.for_range(builder, n_v) as loop:
            q = builder.mul(loop.index, c64(PERMUTE2_LANES))
            va = vec.load(pa, builder.add(a_v, q))
            vb = vec.load(pb, builder.add(b_v, q))
            t = permute(va, vb)
            dst = builder.add(y_v, q)
            old = builder.select(keep_v, vec.load(py, dst), vec.zero)
            vec.store(builder.select(on, t, old), py, dst)
        return context.get_dummy_value()

    return sig, codegen


def has_vbmi() -> bool:
    """Whether the host has AVX-512 VBMI (``vpermi2b``: :func:`byte_table_run`)."""
    return host_has("avx512vbmi")


@intrinsic
def byte_table_run(typingctx, table, x, out, start, count):
    """out[start + i] = table[x[start + i]] for i < ``count`` (uint8 codes, a 256-byte table),
    64 lookups per step: the table's four 64-byte quarters in registers, two ``vpermi2b``
    (AVX-512 VBMI; bits 0-6 of a code pick from a half) and the code's top bit choosing
    between them; the rest under a lane mask."""
    arrays = (table, x, out)
    if not all(isinstance(a, types.Array) and a.layout == "C" and a.dtype == types.uint8 for a in arrays):
        return None
    i64 = types.int64
    sig = types.void(table, x, out, i64, i64)

    def codegen(context, builder, sig, args):
        pt, px, po = data_pointers(context, builder, sig, args, 0, 1, 2)
        _, _, _, start_v, n_v = args
        lanes = 64
        bty = ir.VectorType(ir.IntType(8), lanes)
        mty = ir.VectorType(ir.IntType(1), lanes)
        perm = declare(builder, "llvm.x86.avx512.vpermi2var.qi.512", bty, [bty, bty, bty])
        quarters = []
        for k in range(4):
            ld = builder.load(builder.bitcast(builder.gep(pt, [c64(k * lanes)]), bty.as_pointer()))
            ld.align = 1
            quarters.append(ld)
        zero = ir.Constant(bty, [0] * lanes)

        def lookup(codes):
            lo = builder.call(perm, [quarters[0], codes, quarters[1]])
            hi = builder.call(perm, [quarters[2], codes, quarters[3]])
            return builder.select(builder.icmp_signed("<", codes, zero), hi, lo)

        full = builder.sdiv(n_v, c64(lanes))
        with cgutils.for_range(builder, full) as loop:
            at = builder.add(start_v, builder.mul(loop.index, c64(lanes)))
            ld = builder.load(builder.bitcast(builder.gep(px, [at]), bty.as_pointer()))
            ld.align = 1
            builder.store(lookup(ld), builder.bitcast(builder.gep(po, [at]), bty.as_pointer())).align = 1
        done = builder.mul(full, c64(lanes))
        rest = builder.sub(n_v, done)
        with builder.if_then(builder.icmp_signed(">", rest, c64(0))):
            i64v = ir.VectorType(ir.IntType(64), lanes)
            ids = ir.Constant(i64v, list(range(lanes)))
            rv = builder.insert_element(ir.Constant(i64v, ir.Undefined), rest, ir.Constant(ir.IntType(32), 0))
            rv = builder.shuffle_vector(
                rv, ir.Constant(i64v, ir.Undefined), ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)
            )
            mask = builder.icmp_signed("<", ids, rv)
            at = builder.add(start_v, done)
            i32 = ir.IntType(32)
            mload = declare(builder, "llvm.masked.load.v64i8.p0", bty, [bty.as_pointer(), i32, mty, bty])
            mstore = declare(builder, "llvm.masked.store.v64i8.p0", ir.VoidType(), [bty, bty.as_pointer(), i32, mty])
            codes = builder.call(
                mload, [builder.bitcast(builder.gep(px, [at]), bty.as_pointer()), ir.Constant(i32, 1), mask, zero]
            )
            builder.call(
                mstore,
                [lookup(codes), builder.bitcast(builder.gep(po, [at]), bty.as_pointer()), ir.Constant(i32, 1), mask],
            )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def max3_stride2_run(typingctx, src, s, dst, d, count, init):
    """dst[d + q] = the NaN-skipping max of init, src[s + 2q], src[s + 2q + 1], src[s + 2q + 2]
    for q < ``count``, in the generic pool loop's order of selects (kernels/cpu/pool.py: a 3-wide
    window at stride 2, the stem pools of ResNet and SqueezeNet). A step is a vector of outputs:
    two loads of twice as many inputs, one of them two elements on, split into their even and odd
    lanes by shuffles, where the scalar loop's strided loads stayed one element at a time (on
    8-bit codes, 64 outputs a step). The last step loads and stores under lane masks."""
    if not all(isinstance(a, types.Array) and a.layout == "C" and a.ndim == 1 for a in (src, dst)):
        return None
    dt = src.dtype
    if dst.dtype != dt or not isinstance(dt, (types.Integer, types.Float)) or not isinstance(init, types.Number):
        return None
    i64 = types.int64
    sig = types.void(src, i64, dst, i64, i64, init)

    def codegen(context, builder, sig, args):
        ps, pd = data_pointers(context, builder, sig, args, 0, 2)
        _, s_v, _, d_v, n_v, init_v = args
        ety = context.get_value_type(dt)
        lanes = max(1, VECTOR_BYTES // (dt.bitwidth // 8))
        wide, vty = ir.VectorType(ety, 2 * lanes), ir.VectorType(ety, lanes)
        i32 = ir.IntType(32)
        evens = ir.Constant(ir.VectorType(i32, lanes), [2 * k for k in range(lanes)])
        odds = ir.Constant(ir.VectorType(i32, lanes), [2 * k + 1 for k in range(lanes)])
        ids_w = ir.Constant(ir.VectorType(ir.IntType(64), 2 * lanes), list(range(2 * lanes)))
        ids = ir.Constant(ir.VectorType(ir.IntType(64), lanes), list(range(lanes)))
        init_v = context.cast(builder, init_v, sig.args[5], dt)
        acc0 = builder.insert_element(ir.Constant(vty, ir.Undefined), init_v, ir.Constant(i32, 0))
        acc0 = builder.shuffle_vector(
            acc0, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)
        )

        def greater(a, b):
            if isinstance(dt, types.Float):
                return builder.fcmp_ordered(">", a, b)
            return builder.icmp_signed(">", a, b) if dt.signed else builder.icmp_unsigned(">", a, b)

        def splat64(v, n):
            t = ir.VectorType(ir.IntType(64), n)
            x = builder.insert_element(ir.Constant(t, ir.Undefined), v, ir.Constant(i32, 0))
            return builder.shuffle_vector(x, ir.Constant(t, ir.Undefined), ir.Constant(ir.VectorType(i32, n), [0] * n))

        def masked(op, ptr, mask, value=None):
            name = f"llvm.masked.{op}.v{2 * lanes if value is None else lanes}{'f' if isinstance(dt, types.Float) else 'i'}{dt.bitwidth}.p0"
            if value is None:
                fn = declare(builder, name, wide, [wide.as_pointer(), i32, mask.type, wide])
                return builder.call(fn, [ptr, ir.Constant(i32, 1), mask, ir.Constant(wide, None)])
            fn = declare(builder, name, ir.VoidType(), [vty, vty.as_pointer(), i32, mask.type])
            return builder.call(fn, [value, ptr, ir.Constant(i32, 1), mask])

        steps = builder.sdiv(builder.add(n_v, c64(lanes - 1)), c64(lanes))
        with cgutils.for_range(builder, steps) as loop:
            q0 = builder.mul(loop.index, c64(lanes))
            n = builder.sub(n_v, q0)
            n = builder.select(builder.icmp_signed(">", n, c64(lanes)), c64(lanes), n)
            base = builder.add(s_v, builder.mul(q0, c64(2)))
            two_n = splat64(builder.mul(n, c64(2)), 2 * lanes)
            a_mask = builder.icmp_signed("<", ids_w, two_n)  # src[base : base + 2n]
            b_mask = builder.icmp_signed("<", ids_w, builder.sub(two_n, splat64(c64(1), 2 * lanes)))
            pa = builder.bitcast(builder.gep(ps, [base]), wide.as_pointer())
            pb = builder.bitcast(builder.gep(ps, [builder.add(base, c64(2))]), wide.as_pointer())
            va, vb = masked("load", pa, a_mask), masked("load", pb, b_mask)
            acc = acc0
            for v in (
                builder.shuffle_vector(va, ir.Constant(wide, ir.Undefined), evens),
                builder.shuffle_vector(va, ir.Constant(wide, ir.Undefined), odds),
                builder.shuffle_vector(vb, ir.Constant(wide, ir.Undefined), evens),
            ):
                acc = builder.select(greater(v, acc), v, acc)
            store_mask = builder.icmp_signed("<", ids, splat64(n, lanes))
            masked("store", builder.bitcast(builder.gep(pd, [builder.add(d_v, q0)]), vty.as_pointer()), store_mask, acc)
        return context.get_dummy_value()

    return sig, codegen

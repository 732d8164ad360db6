"""Loops over short runs of floats written as LLVM IR with explicit vectors (Numba intrinsics).

A conv's output rows are short (LeNet's are 28 pixels): LLVM's loop vectoriser takes 64+
float32 elements per vector iteration on AVX-512, so a plain Numba loop over such a row ran
its scalar remainder only, and some loops (the rational tanh) it did not vectorise at all.
These run whole vectors, then one masked vector for the rest (llvm.masked.load/store), so a
28-element row is two vector operations.
"""

from __future__ import annotations

from llvmlite import binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _vector_bytes() -> int:
    try:
        features = ll.get_host_cpu_features()
    except RuntimeError:
        return 32
    return 64 if features.get("avx512f", False) else 32


VECTOR_BYTES = _vector_bytes()

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


class _Vectors:
    """IR helpers for one float dtype: vector type, (masked) loads and stores, splats."""

    def __init__(self, builder, dt):
        self.b = builder
        self.dt = dt
        self.lanes = VECTOR_BYTES // (dt.bitwidth // 8)
        self.fty = ir.FloatType() if dt == types.float32 else ir.DoubleType()
        self.vty = ir.VectorType(self.fty, self.lanes)
        self.i32, self.i64 = ir.IntType(32), ir.IntType(64)
        self.align = dt.bitwidth // 8
        mty = ir.VectorType(ir.IntType(1), self.lanes)
        suffix = f"v{self.lanes}f{dt.bitwidth}.p0"
        pty = self.vty.as_pointer()
        mod = builder.module
        self.mload = cgutils.get_or_insert_function(
            mod, ir.FunctionType(self.vty, [pty, self.i32, mty, self.vty]), f"llvm.masked.load.{suffix}"
        )
        self.mstore = cgutils.get_or_insert_function(
            mod, ir.FunctionType(ir.VoidType(), [self.vty, pty, self.i32, mty]), f"llvm.masked.store.{suffix}"
        )

    def ptr(self, base, off):
        return self.b.bitcast(self.b.gep(base, [off]), self.vty.as_pointer())

    def splat(self, x, vty=None):
        vty = vty or self.vty
        v = self.b.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(self.i32, 0))
        mask = ir.Constant(ir.VectorType(self.i32, self.lanes), [0] * self.lanes)
        return self.b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), mask)

    def const(self, c, fty=None):
        fty = fty or self.fty
        return ir.Constant(ir.VectorType(fty, self.lanes), [c] * self.lanes)

    def load(self, base, off, mask):
        if mask is None:
            ld = self.b.load(self.ptr(base, off))
            ld.align = self.align
            return ld
        return self.b.call(
            self.mload,
            [self.ptr(base, off), ir.Constant(self.i32, self.align), mask, ir.Constant(self.vty, ir.Undefined)],
        )

    def store(self, v, base, off, mask):
        if mask is None:
            self.b.store(v, self.ptr(base, off)).align = self.align
        else:
            self.b.call(self.mstore, [v, self.ptr(base, off), ir.Constant(self.i32, self.align), mask])

    def over(self, count, body):
        """body(offset, mask) for each whole vector of ``count`` elements (mask None), then once
        for the rest with a lane mask."""
        full = self.b.sdiv(count, ir.Constant(self.i64, self.lanes))
        with cgutils.for_range(self.b, full) as loop:
            body(self.b.mul(loop.index, ir.Constant(self.i64, self.lanes)), None)
        off = self.b.mul(full, ir.Constant(self.i64, self.lanes))
        rest = self.b.sub(count, off)
        with self.b.if_then(self.b.icmp_signed(">", rest, ir.Constant(self.i64, 0))):
            lane_ids = ir.Constant(ir.VectorType(self.i64, self.lanes), list(range(self.lanes)))
            body(off, self.b.icmp_signed("<", lane_ids, self.splat(rest, ir.VectorType(self.i64, self.lanes))))


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c with one rounding (llvm.fma; vectorises, unlike a libm call)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


def _floats(*arrays) -> bool:
    """Contiguous arrays of one float dtype: the intrinsics address them by data pointer."""
    ok = all(
        isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) and a.layout == "C" for a in arrays
    )
    return ok and len({a.dtype for a in arrays}) == 1


@intrinsic
def vector_run(typingctx, src, s, dst, d, count, b, res, add_bias, add_res):
    """dst[d + q] = src[s + q] (+ b) (+ res[d + q]) for q < count (the module doc)."""
    if not _floats(src, dst, res):
        return None
    dt, i64 = src.dtype, types.int64
    sig = types.void(src, i64, dst, i64, i64, dt, res, types.boolean, types.boolean)

    def codegen(context, builder, sig, args):
        _, s_v, _, d_v, n_v, b_v, _, bias_on, res_on = args
        psrc, pdst, pres = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 2, 6))
        vec = _Vectors(builder, dt)
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


@intrinsic
def tanh_run(typingctx, o, start, count):
    """o[start + q] = tanh(o[start + q]) for q < count, in place: activation.tanh_rational on
    vectors (float32 widened to float64 for the evaluation, as there)."""
    if not _floats(o):
        return None
    sig = types.void(o, types.int64, types.int64)
    dt = o.dtype

    def codegen(context, builder, sig, args):
        _, start_v, n_v = args
        po = context.make_array(sig.args[0])(context, builder, args[0]).data
        vec = _Vectors(builder, dt)
        f64 = ir.DoubleType()
        v64 = ir.VectorType(f64, vec.lanes)
        fma_v = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v64, [v64] * 3), f"llvm.fma.v{vec.lanes}f64"
        )

        def fma(a, b, c):
            return builder.call(fma_v, [a, b, c])

        fabs = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(ir.VectorType(f64, vec.lanes), [ir.VectorType(f64, vec.lanes)]),
            f"llvm.fabs.v{vec.lanes}f64",
        )

        def body(off, mask):
            v = vec.load(po, builder.add(start_v, off), mask)
            w = builder.fpext(v, ir.VectorType(f64, vec.lanes)) if dt == types.float32 else v
            hi, lo = vec.const(TANH_CLAMP, f64), vec.const(-TANH_CLAMP, f64)
            x = builder.select(builder.fcmp_ordered("<", w, hi), w, hi)
            x = builder.select(builder.fcmp_ordered(">", x, lo), x, lo)
            x2 = builder.fmul(x, x)
            p = fma(x2, vec.const(TANH_P[0], f64), vec.const(TANH_P[1], f64))
            for c in TANH_P[2:]:
                p = fma(p, x2, vec.const(c, f64))
            q = fma(x2, vec.const(TANH_Q[0], f64), vec.const(TANH_Q[1], f64))
            for c in TANH_Q[2:]:
                q = fma(q, x2, vec.const(c, f64))
            r = builder.fdiv(builder.fmul(p, x), q)
            r = builder.select(builder.fcmp_ordered("<", builder.call(fabs, [w]), vec.const(TANH_SMALL, f64)), w, r)
            r = builder.select(builder.fcmp_ordered("==", w, w), r, w)  # NaN stays NaN
            out = builder.fptrunc(r, vec.vty) if dt == types.float32 else r
            vec.store(out, po, builder.add(start_v, off), mask)

        vec.over(n_v, body)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def pixel_reduce(typingctx, x, base, count, out, o, is_max):
    """One channel block's pixels reduced lane by lane: out[o + lane] = the mean of (sum in
    float64, in pixel order) or the max over (NaN skipped, -inf when none) x[base + i*B +
    lane], i < count, B = the vector width in elements. A global pool's plane: the scalar
    loop kept its 16 float64 sums in memory (0.8 ns per element)."""
    if not _floats(x, out):
        return None
    sig = types.void(x, types.int64, types.int64, out, types.int64, types.boolean)
    dt = x.dtype

    def codegen(context, builder, sig, args):
        _, base_v, n_v, _, o_v, max_on = args
        px, pout = (context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 3))
        vec = _Vectors(builder, dt)
        f64 = ir.DoubleType()
        v64 = ir.VectorType(f64, vec.lanes)
        start = builder.select(max_on, vec.const(float("-inf"), f64), vec.const(0.0, f64))
        acc = cgutils.alloca_once_value(builder, start)
        with cgutils.for_range(builder, n_v) as loop:
            off = builder.add(base_v, builder.mul(loop.index, ir.Constant(vec.i64, vec.lanes)))
            v = vec.load(px, off, None)
            v = builder.fpext(v, v64) if dt == types.float32 else v
            a = builder.load(acc)
            bigger = builder.select(builder.fcmp_ordered(">", v, a), v, a)
            builder.store(builder.select(max_on, bigger, builder.fadd(a, v)), acc)
        a = builder.load(acc)
        mean = builder.fdiv(a, vec.splat(builder.sitofp(n_v, f64), v64))
        r = builder.select(max_on, a, mean)
        vec.store(builder.fptrunc(r, vec.vty) if dt == types.float32 else r, pout, o_v, None)
        return context.get_dummy_value()

    return sig, codegen

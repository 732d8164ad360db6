"""The LLVM-IR building blocks of the explicit-vector kernels (microkernel.py, blocked.py, vector_ir.py).

LLVM's loop vectoriser does not produce register-blocked tiles or short-row loops from plain
Numba code, so those kernels are Numba intrinsics that emit vector IR themselves. They share
this: the vector width of the host (:data:`VECTOR_BYTES`), a vector type per float dtype,
(masked) loads and stores, broadcasts, fused multiply-adds and the ``llvm.*`` intrinsic
declarations behind them. The IR is correct on any CPU: LLVM splits vectors wider than the
hardware's.
"""

from __future__ import annotations

from llvmlite import binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils


def host_has(feature: str) -> bool:
    """Whether the host CPU has ``feature`` (LLVM's name: "avx2", "avx512vnni", ...); False
    where LLVM cannot tell."""
    try:
        return bool(ll.get_host_cpu_features().get(feature, False))
    except RuntimeError:
        return False


VECTOR_BYTES = 64 if host_has("avx512f") else 32  # 64 with AVX-512, else 32 (AVX2)
I32, I64 = ir.IntType(32), ir.IntType(64)


def lanes_of(dt) -> int:
    """Elements of a numba float dtype in one vector."""
    return VECTOR_BYTES // (dt.bitwidth // 8)


def c64(v: int) -> ir.Constant:
    return ir.Constant(I64, v)


def floats(*arrays) -> bool:
    """Contiguous arrays of one float dtype: the intrinsics address them by data pointer."""
    ok = all(
        isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) and a.layout == "C" for a in arrays
    )
    return ok and len({a.dtype for a in arrays}) == 1


def data_pointers(context, builder, sig, args, *indices):
    """The data pointers of the array arguments at ``indices``."""
    return [context.make_array(sig.args[i])(context, builder, args[i]).data for i in indices]


def declare(builder, name: str, ret, args) -> ir.Function:
    """An ``llvm.*`` intrinsic of this module (declared once)."""
    return cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, args), name)


def _suffix(vty: ir.VectorType) -> str:
    if isinstance(vty.element, ir.IntType):
        return f"v{vty.count}i{vty.element.width}"
    return f"v{vty.count}f{32 if isinstance(vty.element, ir.FloatType) else 64}"


def masked_load(builder, ptr, mask, align: int, fill=None):
    """The vector at ``ptr`` (a vector pointer) where ``mask`` (<n x i1>) is set, ``fill`` (a
    vector; default zeros) elsewhere; the masked-off lanes are not read (llvm.masked.load: no
    fault past an array's end)."""
    vty = ptr.type.pointee
    mty = ir.VectorType(ir.IntType(1), vty.count)
    fn = declare(builder, f"llvm.masked.load.{_suffix(vty)}.p0", vty, [ptr.type, I32, mty, vty])
    fill = ir.Constant(vty, [0] * vty.count) if fill is None else fill
    return builder.call(fn, [ptr, ir.Constant(I32, align), mask, fill])


class Vectors:
    """IR helpers for one float dtype: vector type, (masked) loads and stores, splats, fma.

    ``align`` is the alignment loads and stores promise (default: the element size)."""

    def __init__(self, builder, dt, align: int | None = None):
        self.b = builder
        self.dt = dt
        self.lanes = lanes_of(dt)
        self.fty = ir.FloatType() if dt == types.float32 else ir.DoubleType()
        self.vty = ir.VectorType(self.fty, self.lanes)
        self.i32, self.i64 = I32, I64
        self.align = align or dt.bitwidth // 8
        self.zero = self.const(0.0)
        self._splat_mask = ir.Constant(ir.VectorType(I32, self.lanes), [0] * self.lanes)

    def ptr(self, base, off=None):
        """``base[off]`` (or ``base`` itself) as a vector pointer."""
        p = base if off is None else self.b.gep(base, [off])
        return self.b.bitcast(p, self.vty.as_pointer())

    def splat(self, x, vty=None):
        """A vector of ``x`` in every lane (a broadcast)."""
        vty = vty or self.vty
        v = self.b.insert_element(ir.Constant(vty, ir.Undefined), x, ir.Constant(I32, 0))
        return self.b.shuffle_vector(v, ir.Constant(vty, ir.Undefined), self._splat_mask)

    def const(self, c, fty=None):
        fty = fty or self.fty
        return ir.Constant(ir.VectorType(fty, self.lanes), [c] * self.lanes)

    def load(self, base, off=None, mask=None):
        """The vector at ``base[off]``; with a lane ``mask``, :func:`masked_load` (other lanes 0, not read)."""
        if mask is None:
            ld = self.b.load(self.ptr(base, off))
            ld.align = self.align
            return ld
        return masked_load(self.b, self.ptr(base, off), mask, self.align)

    def store(self, v, base, off=None, mask=None):
        """``v`` to ``base[off]``; with a lane ``mask``, llvm.masked.store (other lanes untouched)."""
        if mask is None:
            self.b.store(v, self.ptr(base, off)).align = self.align
            return
        mty = ir.VectorType(ir.IntType(1), self.lanes)
        pty = self.vty.as_pointer()
        fn = declare(self.b, f"llvm.masked.store.{_suffix(self.vty)}.p0", ir.VoidType(), [self.vty, pty, I32, mty])
        self.b.call(fn, [v, self.ptr(base, off), ir.Constant(I32, self.align), mask])

    def fma(self, a, b, c):
        """a * b + c lane by lane with one rounding (llvm.fma on the operands' vector type)."""
        return self.b.call(declare(self.b, f"llvm.fma.{_suffix(a.type)}", a.type, [a.type] * 3), [a, b, c])

    def unary(self, name: str, x):
        """An elementwise ``llvm.<name>`` intrinsic (fabs, ...) on ``x``'s vector type."""
        return self.b.call(declare(self.b, f"llvm.{name}.{_suffix(x.type)}", x.type, [x.type]), [x])

    def any(self, mask):
        """Whether any lane of the i1 vector ``mask`` is set (llvm.vector.reduce.or)."""
        mty = ir.VectorType(ir.IntType(1), self.lanes)
        fn = declare(self.b, f"llvm.vector.reduce.or.v{self.lanes}i1", ir.IntType(1), [mty])
        return self.b.call(fn, [mask])

    def clamp(self, x, lo, hi):
        """lo if x < lo, hi if x > hi, else x: selects, so NaN passes."""
        x = self.b.select(self.b.fcmp_ordered("<", x, lo), lo, x)
        return self.b.select(self.b.fcmp_ordered(">", x, hi), hi, x)

    def over(self, count, body):
        """body(offset, mask) for each whole vector of ``count`` elements (mask None), then once
        for the rest with a lane mask."""
        full = self.b.sdiv(count, c64(self.lanes))
        with cgutils.for_range(self.b, full) as loop:
            body(self.b.mul(loop.index, c64(self.lanes)), None)
        off = self.b.mul(full, c64(self.lanes))
        rest = self.b.sub(count, off)
        with self.b.if_then(self.b.icmp_signed(">", rest, c64(0))):
            lane_ids = ir.Constant(ir.VectorType(I64, self.lanes), list(range(self.lanes)))
            body(off, self.b.icmp_signed("<", lane_ids, self.splat(rest, ir.VectorType(I64, self.lanes))))


class _BFloat(ir.types.Type):
    """LLVM's ``bfloat``, which llvmlite's IR types lack: the result type of the AVX-512 BF16
    conversion intrinsics, bitcast to i16 lanes right away."""

    def _to_string(self) -> str:
        return "bfloat"

    def __eq__(self, other) -> bool:
        return isinstance(other, _BFloat)

    def __hash__(self) -> int:
        return hash("bfloat")


NATIVE_BF16 = VECTOR_BYTES == 64 and host_has("avx512bf16")  # vcvtneps2bf16 on 16 lanes


def widen_bf16(builder, bits):
    """<n x i16> bf16 bits -> <n x float>, exact: the bits become a float32's high half."""
    lanes = bits.type.count
    wide = builder.zext(bits, ir.VectorType(I32, lanes))
    return builder.bitcast(
        builder.shl(wide, ir.Constant(wide.type, [16] * lanes)), ir.VectorType(ir.FloatType(), lanes)
    )


def load_bf16(builder, base, off, lanes: int):
    """<lanes x float> widened (:func:`widen_bf16`) from the bf16 bits at i16* ``base`` + ``off``."""
    ptr = builder.bitcast(builder.gep(base, [off]), ir.VectorType(ir.IntType(16), lanes).as_pointer())
    bits = builder.load(ptr)
    bits.align = 2
    return widen_bf16(builder, bits)


def round_bf16(builder, u):
    """<n x i32> float32 bits -> <n x i16> bf16 bits by round-to-nearest-even, NaN kept a
    quiet NaN (microkernel_bf16.to_bf16 is the numpy form). With AVX-512 BF16 one
    ``vcvtneps2bf16`` per 16 lanes (it reads a denormal input as zero, as bf16 kernels' other
    conversions do); else the integer steps. In a bf16 output's epilogue the integer steps
    were about ten vector instructions per stored vector, on 1x1 convs of 16-32 input channels
    as many as the reduction's."""
    lanes = u.type.count
    if NATIVE_BF16 and lanes == 16:
        fty = ir.VectorType(ir.FloatType(), lanes)
        bty = ir.VectorType(_BFloat(), lanes)
        cvt = declare(builder, "llvm.x86.avx512bf16.cvtneps2bf16.512", bty, [fty])
        return builder.bitcast(builder.call(cvt, [builder.bitcast(u, fty)]), ir.VectorType(ir.IntType(16), lanes))
    vty = ir.VectorType(I32, lanes)

    def splat(v):
        return ir.Constant(vty, [v] * lanes)

    hi = builder.lshr(u, splat(16))
    r = builder.lshr(builder.add(builder.add(u, splat(0x7FFF)), builder.and_(hi, splat(1))), splat(16))
    nan = builder.icmp_unsigned(">", builder.and_(u, splat(0x7FFFFFFF)), splat(0x7F800000))
    return builder.trunc(builder.select(nan, builder.or_(hi, splat(0x40)), r), ir.VectorType(ir.IntType(16), lanes))

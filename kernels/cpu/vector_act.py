"""The exp-based and piecewise activations on explicit float32 vectors (a Numba intrinsic).

A fused epilogue called ``math.exp`` per element behind a branch, so LLVM left Sigmoid, SiLU
and Elu scalar: in a 1x1 conv with SiLU the epilogue cost several times the conv. Here they
run as whole vectors plus one masked vector (llvm_ir.Vectors.over), with exp as Cephes' expf:
n = round(t * log2(e)), r = t - n * ln 2 in two parts, exp(r) - 1 = r + r^2 * P(r) (degree 5),
then the scale 2^n applied with one rounding (AVX-512's vscalefps, else two multiplications
by normal powers of two) so results down to the smallest subnormal are right. Sigmoid and
SiLU evaluate e = exp(-|x|) only (it cannot overflow). While every lane's e is a normal float
(|x| <= 87: nearly always) a vector takes the short path, 2^n one multiplication by a power of
two built from the bits of the rounded t * log2(e), then one division; a vector with a lane
past that takes the exact path, which divides the unscaled m = exp(r) and applies 2^n after
the division, so subnormal results keep their precision. Elu uses exp(r) - 1 directly (no
cancellation near 0). The piecewise ones (HardSigmoid, HardSwish, LeakyRelu) are selects and
clamps. Every body lets NaN through by its own arithmetic, with no select against the input:
a select of the loaded value stored back to its address is turned into a masked store by
LLVM's x86 backend, and AVX2's vmaskmovps store is microcoded (HardSwish ran at 0.54 ns per
element for 0.09 with the select gone, Zen 2, one thread). Float64 arrays keep the scalar
formulas (activation.act_scalar): this polynomial is float32-accurate only.

:func:`activations` and :func:`by_kind` are the IR pieces: act_run loops them over a row, and
the register tile (microkernel.py) over the tile it just stored, while it is in L1.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from cnnrt.kernels.activation import ELU, HARD_SIGMOID, HARD_SWISH, LEAKY_RELU, SIGMOID, SILU, TANH
from cnnrt.kernels.cpu.llvm_ir import I32, I64, VECTOR_BYTES, Vectors, data_pointers, declare
from cnnrt.kernels.cpu.vector_ir import tanh_vector

VECTOR_KINDS = (SIGMOID, SILU, ELU, HARD_SIGMOID, HARD_SWISH, LEAKY_RELU)

LOG2E = 1.44269504088896341
LN2_HI, LN2_LO = 0.693359375, -2.12194440e-4  # ln 2 = LN2_HI + LN2_LO, LN2_HI exact in 9 bits
EXPM1_P = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
SCALEF = VECTOR_BYTES == 64  # 2^n by vscalefps (AVX-512); read when a kernel is compiled
T_MIN = -110.0  # exp(t < -110) is 0 in float32 (below half the smallest subnormal); keeps n small
NORMAL_MIN = -87.0  # exp(t >= -87) is a normal float32 (n >= -126)
MAGIC = 12582912.0  # 1.5 * 2^23: x + MAGIC for integral |x| < 2^22 holds x in its low mantissa bits
MAGIC_BITS = 0x4B400000  # the bits of MAGIC


class _Exp:
    """exp(t) for t <= 0 on float32 vectors. :meth:`split` gives m and n with exp(t) = m * 2^n,
    m = exp(r) in [0.7, 1.5], n integral; :meth:`scale` applies 2^n with one rounding; ``__call__``
    gives (m, s2, p, s) for Elu: exp(t) = m * s2, m = (1 + p) * s1 a normal float, p = exp(r) - 1,
    s = s1 * s2 = 2^n."""

    def __init__(self, builder, vec: Vectors):
        self.b, self.vec = builder, vec
        self.ity = ir.VectorType(ir.IntType(32), vec.lanes)
        self.scalef = SCALEF and vec.lanes == 16 and isinstance(vec.vty.element, ir.FloatType)

    def _pow2(self, k):
        b = self.b
        bits = b.shl(
            b.add(k, ir.Constant(self.ity, [127] * self.vec.lanes)), ir.Constant(self.ity, [23] * self.vec.lanes)
        )
        return b.bitcast(bits, self.vec.vty)

    def _ints(self, n):
        """The integral float vector ``n`` (|n| < 2^22) as int32 lanes, poison-free for NaN
        (fptosi of NaN is poison in LLVM): the low mantissa bits of n + MAGIC."""
        b = self.b
        k = b.bitcast(b.fadd(n, self.vec.const(MAGIC)), self.ity)
        return b.sub(k, ir.Constant(self.ity, [MAGIC_BITS] * self.vec.lanes))

    def _halves(self, n):
        """2^n as two normal factors s1 * s2 (n >= -159: down to exp(T_MIN))."""
        b = self.b
        k = self._ints(n)
        k1 = b.ashr(k, ir.Constant(self.ity, [1] * self.vec.lanes))
        return self._pow2(k1), self._pow2(b.sub(k, k1))

    def _expm1(self, t, n):
        """exp(r) - 1 for r = t - n ln 2 (two-part ln 2: r exact to float32)."""
        b, vec = self.b, self.vec
        r = vec.fma(n, vec.const(-LN2_HI), t)
        r = vec.fma(n, vec.const(-LN2_LO), r)
        c = [vec.const(v) for v in EXPM1_P]
        r2 = b.fmul(r, r)
        # P(r) by Estrin's scheme: three independent pairs, then two steps in r^2 (half of
        # Horner's dependent chain: Sigmoid 0.62 -> 0.58 ns per element, Zen 2, one thread)
        hi, mid, lo = vec.fma(c[0], r, c[1]), vec.fma(c[2], r, c[3]), vec.fma(c[4], r, c[5])
        p = vec.fma(vec.fma(hi, r2, mid), r2, lo)
        return vec.fma(r2, p, r)

    def split(self, t):
        """(m, n, p, under): exp(max(t, T_MIN)) = m * 2^n, p = m - 1, under = t < T_MIN."""
        b, vec = self.b, self.vec
        under = b.fcmp_ordered("<", t, vec.const(T_MIN))
        t = b.select(under, vec.const(T_MIN), t)
        n = vec.unary("rint", b.fmul(t, vec.const(LOG2E)))
        p = self._expm1(t, n)
        return b.fadd(p, vec.const(1.0)), n, p, under

    def normal(self, t):
        """exp(t) for NORMAL_MIN <= t <= 0, a normal float32: 2^n is one multiplication by a
        power of two made from the bits of t * log2(e) + MAGIC (rounded once, by the fma).
        NaN gives NaN."""
        b, vec = self.b, self.vec
        k = vec.fma(t, vec.const(LOG2E), vec.const(MAGIC))
        p = self._expm1(t, b.fsub(k, vec.const(MAGIC)))
        n = b.sub(b.bitcast(k, self.ity), ir.Constant(self.ity, [MAGIC_BITS] * vec.lanes))
        return b.fmul(b.fadd(p, vec.const(1.0)), self._pow2(n))

    def scale(self, v, n):
        """v * 2^n rounded once, subnormal results included (normal v, integral n >= -159): one
        vscalefps with AVX-512, else two multiplications by normal powers of two."""
        b, vec = self.b, self.vec
        if self.scalef:
            i16 = ir.IntType(16)
            fn = declare(b, "llvm.x86.avx512.mask.scalef.ps.512", vec.vty, [vec.vty, vec.vty, vec.vty, i16, I32])
            return b.call(fn, [v, n, vec.const(0.0), ir.Constant(i16, -1), ir.Constant(I32, 4)])
        s1, s2 = self._halves(n)
        return b.fmul(b.fmul(v, s1), s2)

    def __call__(self, t):
        b, vec = self.b, self.vec
        m1, n, p, under = self.split(t)
        s1, s2 = self._halves(n)
        s2 = b.select(under, vec.const(0.0), s2)  # exp(t) is 0 in float32 below T_MIN (-Inf too)
        return b.fmul(m1, s1), s2, p, b.fmul(s1, s2)


def activations(builder, vec: Vectors, a, bt, kinds=VECTOR_KINDS):
    """kind -> (x -> act(x)) on float32 vectors for ``kinds`` (of VECTOR_KINDS and TANH), NaN
    passing through; a, bt: alpha and beta splats."""
    bodies = _bodies(builder, vec, a, bt)
    bodies[TANH] = lambda x: tanh_vector(builder, vec, x)
    return {k: bodies[k] for k in kinds}


def branch_value(builder, cond, then, otherwise):
    """then() if the i1 ``cond`` (unlikely) else otherwise(), as one value: a phi of the two blocks."""
    with builder.if_else(cond, likely=False) as (on, off):
        with on:
            v_then = then()
            b_then = builder.block
        with off:
            v_else = otherwise()
            b_else = builder.block
    phi = builder.phi(v_then.type)
    phi.add_incoming(v_then, b_then)
    phi.add_incoming(v_else, b_else)
    return phi


def by_kind(builder, kind_v, fns, emit):
    """emit(fn) under ``if kind_v == k`` for each kind k of ``fns`` (an i64 ``kind_v``): the
    kind is tested once, outside whatever loops ``emit`` makes."""
    for k, fn in fns.items():
        with builder.if_then(builder.icmp_signed("==", kind_v, ir.Constant(I64, k))):
            emit(fn)


def _bodies(builder, vec: Vectors, a, bt):
    """kind -> value -> activated value (float32 vectors); a, bt: alpha and beta splats."""
    b = builder
    exp = _Exp(builder, vec)
    one, zero = vec.const(1.0), vec.const(0.0)

    def sigmoid_parts(x):
        # sigmoid(x) = num / d * 2^(n if x < 0 else 0): 1 / (1 + e) for x >= 0, e / (1 + e) below,
        # e = exp(-|x|) = m * 2^n (0 below T_MIN); the scale comes last, so subnormal results
        # keep their precision
        m, n, _, _ = exp.split(b.fsub(zero, vec.unary("fabs", x)))
        d = b.fadd(one, exp.scale(m, n))
        pos = b.fcmp_ordered(">=", x, zero)
        return pos, b.select(pos, one, m), d, n

    def exact_sigmoid(x):
        pos, num, d, n = sigmoid_parts(x)
        q = b.fdiv(num, d)
        return b.select(pos, q, exp.scale(q, n))

    def exact_silu(x):
        pos, num, d, n = sigmoid_parts(x)
        q = b.fdiv(b.fmul(x, num), d)
        y = b.select(pos, q, exp.scale(q, n))
        # below T_MIN the result is below half the smallest subnormal: x * 0 (NaN at -Inf, as x * sigmoid(x))
        return b.select(b.fcmp_ordered("<", x, vec.const(T_MIN)), b.fmul(x, zero), y)

    def normal_or_exact(normal, exact):
        """x -> normal(x, e = exp(-|x|), x >= 0) when every lane's e is a normal float32 (NaN
        lanes included), else exact(x): one compare and branch per vector, and the common
        case skips the two-step scaling that subnormal results need."""

        def fn(x):
            t = b.fsub(zero, vec.unary("fabs", x))
            far = vec.any(b.fcmp_ordered("<", t, vec.const(NORMAL_MIN)))
            pos = b.fcmp_ordered(">=", x, zero)
            return branch_value(b, far, lambda: exact(x), lambda: normal(x, exp.normal(t), pos))

        return fn

    def sigmoid(x, e, pos):
        return b.fdiv(b.select(pos, one, e), b.fadd(one, e))

    def silu(x, e, pos):
        return b.fdiv(b.fmul(x, b.select(pos, one, e)), b.fadd(one, e))

    def elu(x):
        _, _, p, s = exp(x)
        em1 = vec.fma(s, p, b.fsub(s, one))  # exp(x) - 1 = 2^n (exp(r) - 1) + (2^n - 1)
        return b.select(b.fcmp_ordered(">=", x, zero), x, b.fmul(a, em1))

    def hard_sigmoid(x):
        return vec.clamp(vec.fma(a, x, bt), zero, one)

    def hard_swish(x):  # x * clamp(x * (1/6) + 1/2, 0, 1): one fma in place of a division and an add
        return b.fmul(x, vec.clamp(vec.fma(x, vec.const(1.0 / 6.0), vec.const(0.5)), zero, one))

    def leaky_relu(x):
        return b.select(b.fcmp_ordered(">=", x, zero), x, b.fmul(x, a))

    return {
        SIGMOID: normal_or_exact(sigmoid, exact_sigmoid),
        SILU: normal_or_exact(silu, exact_silu),
        ELU: elu,
        HARD_SIGMOID: hard_sigmoid,
        HARD_SWISH: hard_swish,
        LEAKY_RELU: leaky_relu,
    }


@intrinsic
def act_run(typingctx, o, start, count, kind, alpha, beta):
    """o[start + q] = act(o[start + q]) for q < count, in place, for a kind of VECTOR_KINDS
    (other kinds: nothing happens); float32 contiguous arrays only (the module doc)."""
    if not (isinstance(o, types.Array) and o.dtype == types.float32 and o.layout == "C"):
        return None
    if not (isinstance(kind, types.Integer) and isinstance(alpha, types.Number) and isinstance(beta, types.Number)):
        return None
    sig = types.void(o, start, count, kind, alpha, beta)

    def codegen(context, builder, sig, args):
        _, start_v, n_v, kind_v, alpha_v, beta_v = args
        start_v = context.cast(builder, start_v, sig.args[1], types.int64)
        n_v = context.cast(builder, n_v, sig.args[2], types.int64)
        kind_v = context.cast(builder, kind_v, sig.args[3], types.int64)
        (po,) = data_pointers(context, builder, sig, args, 0)
        vec = Vectors(builder, types.float32)
        a = vec.splat(context.cast(builder, alpha_v, sig.args[4], types.float32))
        bt = vec.splat(context.cast(builder, beta_v, sig.args[5], types.float32))

        def emit(fn):
            def body(off, mask):
                at = builder.add(start_v, off)
                vec.store(fn(vec.load(po, at, mask)), po, at, mask)

            vec.over(n_v, body)

        by_kind(builder, kind_v, activations(builder, vec, a, bt), emit)
        return context.get_dummy_value()

    return sig, codegen

"""Depthwise conv in the channel-blocked layout NCHWc when the block is one vector (B = 16
float32 / 8 float64 with AVX-512, 8 / 4 with AVX2): register-blocked along the output row.

A task is (plane, band of output rows). It copies the band's input rows, padded with zeros,
into a per-thread scratch and runs all its rows in one call of the row kernel, every pixel
with all kh*kw taps: no row classes or column segments, whose short runs left the window
kernel (blocked_window.py) latency-bound at 15-35 GFLOP/s. Reading the interior of wide rows
straight from the input instead (and only the border pixels from padded copies) took three
calls per output row; against one call per band it measured 1.0-2.9x slower on 28-112 wide
planes with AVX2, the copy costing less than the calls.

:func:`_dw_row` (LLVM IR with explicit vectors, as microkernel.py) computes each output row in
groups of 8, 4, 2, 1 pixels: per kernel row it loads each input vector of the group's span
once and reuses it for every (pixel, tap) pair that reads it (with stride 1 and kw = 3, 10
loads feed 24 FMAs, where one load per tap gave 24), the accumulators held in registers,
then the residual and the Relu/Clip clamp before the store. The reuse needs the column offsets
as constants, so the common (kw, stride, dilation) are emitted specialised (``SPECIAL``) and
any other runs a generic form with one load per tap. Other activations run over the band's
output afterwards while it is in cache (act_inplace: vector_act's float32 forms).

Under ``precision="bf16"`` the input and output may be bf16 activations (passes/precision.py):
the band copy widens bf16 to float32 exactly, the sums stay float32 and each stored vector is
rounded once (MobileNetV2's expanded tensors at half the bytes: 0.81-0.85x its bf16 time).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.activation import CLIP, NONE, RELU
from cnnrt.kernels.aligned import per_thread
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import block_size
from cnnrt.kernels.cpu.llvm_ir import Vectors, c64, data_pointers, round_bf16

# (kw, stride along the row, dilation along the row) emitted with input reuse: MobileNet,
# EfficientNet, MixNet (3..11) and the dilated LR-ASPP backbone layers
SPECIAL = tuple((k, s, 1) for k in (3, 5, 7, 9, 11) for s in (1, 2)) + ((3, 1, 2), (5, 1, 2))
GROUPS = (8, 4, 2, 1)  # pixels per register block: 8 accumulators + the span's inputs fit 32 zmm
GENERIC_GROUPS = (4, 1)
WINDOW_BELOW = 20  # strided output rows narrower than this run the window kernel (applies)
TASK_ELEMS = 8192  # output elements per task at least: bands of a few rows on 56-112 wide planes


@intrinsic
def _dw_row(
    typingctx, x, xo, xrs, w, wo, bias, bo, res, out, oo, ow, kh, kw, sw, dh, dw, has_res, lo, hi, nrows, xstep, ostep
):
    """out[oo + g*B] = clamp(bias[bo:] + sum_ij w[wo + (i*kw + j)*B] * x[xo + i*dh*xrs +
    (g*sw + j*dw)*B] (+ res[oo + g*B]), lo, hi) for pixels g < ow; B the vector width, every
    offset in elements, arrays of one float dtype but ``out``, which may also be uint16 for
    float32 ones: a bf16 output (ir.BF16), each vector rounded as microkernel_bf16.to_bf16.
    ``nrows`` such rows, row r at ``xo + r*xstep`` and ``oo + r*ostep``: a narrow plane's band
    is one call, as a call per 7- or 14-pixel row cost more than the row's FMAs."""
    floats = (x, w, bias, res)
    if not all(isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) for a in (*floats, out)):
        if not (isinstance(out, types.Array) and out.dtype == types.uint16 and x.dtype == types.float32):
            return None
    if len({a.dtype for a in floats}) != 1:
        return None
    narrow = out.dtype == types.uint16  # a bf16 output: each result rounded (llvm_ir.round_bf16)
    dt, i64 = x.dtype, types.int64
    sig = types.void(x, i64, i64, w, i64, bias, i64, res, out, *[i64] * 7, types.boolean, dt, dt, i64, i64, i64)

    def codegen(context, builder, sig, args):
        xo0_v, xrs_v, wo_v, bo_v, oo0_v, ow_v, kh_v, kw_v, sw_v, dh_v, dw_v = (
            args[i] for i in (1, 2, 4, 6, 9, *range(10, 16))
        )
        res_on, lo_v, hi_v, nrows_v, xstep_v, ostep_v = args[16:]
        row_at = {}  # the current row's input and output offsets
        px, pw, pb, pres, pout = data_pointers(context, builder, sig, args, 0, 3, 5, 7, 8)
        vec = Vectors(builder, dt)
        lanes = vec.lanes
        init = vec.load(pb, bo_v)
        lo_s, hi_s = vec.splat(lo_v), vec.splat(hi_v)
        pos = cgutils.alloca_once_value(builder, c64(0))
        mul, add = builder.mul, builder.add

        def group(size, cfg):
            xo_v, oo_v = row_at["x"], row_at["o"]
            g0 = builder.load(pos)
            xg = add(xo_v, mul(mul(g0, sw_v), c64(lanes)))
            accs = [cgutils.alloca_once_value(builder, init) for _ in range(size)]
            with cgutils.for_range(builder, kh_v) as rows:
                xrow = add(xg, mul(mul(rows.index, dh_v), xrs_v))
                wrow = add(wo_v, mul(mul(rows.index, kw_v), c64(lanes)))
                acc = [builder.load(a) for a in accs]
                if cfg is not None:
                    k, s, d = cfg
                    loaded = {}
                    for j in range(k):
                        wv = vec.load(pw, add(wrow, c64(j * lanes)))
                        for g in range(size):
                            col = g * s + j * d
                            if col not in loaded:
                                loaded[col] = vec.load(px, add(xrow, c64(col * lanes)))
                            acc[g] = vec.fma(wv, loaded[col], acc[g])
                    for a, v in zip(accs, acc):
                        builder.store(v, a)
                else:
                    for a, v in zip(accs, acc):
                        builder.store(v, a)
                    with cgutils.for_range(builder, kw_v) as taps:
                        wv = vec.load(pw, add(wrow, mul(taps.index, c64(lanes))))
                        xt = add(xrow, mul(mul(taps.index, dw_v), c64(lanes)))
                        for g, a in enumerate(accs):
                            xq = add(xt, mul(mul(c64(g), sw_v), c64(lanes)))
                            builder.store(vec.fma(wv, vec.load(px, xq), builder.load(a)), a)
            for g, a in enumerate(accs):
                o = add(oo_v, mul(add(g0, c64(g)), c64(lanes)))
                with builder.if_then(res_on):
                    builder.store(builder.fadd(builder.load(a), vec.load(pres, o)), a)
                y = vec.clamp(builder.load(a), lo_s, hi_s)
                if narrow:
                    h = round_bf16(builder, builder.bitcast(y, ir.VectorType(ir.IntType(32), lanes)))
                    builder.store(h, builder.bitcast(builder.gep(pout, [o]), h.type.as_pointer())).align = 2
                else:
                    vec.store(y, pout, o)
            builder.store(add(g0, c64(size)), pos)

        def whole_row(cfg):
            with cgutils.for_range(builder, nrows_v) as rows:
                row_at["x"] = add(xo0_v, mul(rows.index, xstep_v))
                row_at["o"] = add(oo0_v, mul(rows.index, ostep_v))
                builder.store(c64(0), pos)
                for size in GROUPS if cfg is not None else GENERIC_GROUPS:
                    count = builder.sdiv(builder.sub(ow_v, builder.load(pos)), c64(size))
                    with cgutils.for_range(builder, count):
                        group(size, cfg)

        done = cgutils.alloca_once_value(builder, cgutils.false_bit)
        for cfg in SPECIAL:
            k, s, d = cfg
            hit = builder.and_(
                builder.icmp_signed("==", kw_v, c64(k)),
                builder.and_(builder.icmp_signed("==", sw_v, c64(s)), builder.icmp_signed("==", dw_v, c64(d))),
            )
            with builder.if_then(hit):
                whole_row(cfg)
                builder.store(cgutils.true_bit, done)
        with builder.if_then(builder.not_(builder.load(done))):
            whole_row(None)
        return context.get_dummy_value()

    return sig, codegen


def widened(v):
    """A band element as the scratch holds it: a float as it is, a bf16 (uint16 bits) as the
    bits of the float32 it stands for (exact)."""
    raise NotImplementedError("widened runs compiled only")


@overload(widened, inline="always")
def _widened(v):
    if v == types.uint16:
        return lambda v: np.uint32(v) << np.uint32(16)
    return lambda v: v


@njit(inline="always")
def _fill(xs, x, plane_base, top, nrows, h, wd, b, pl, ncols):
    """xs[(i*ncols + cc)*b + lane] = input row top + i, column cc - pl (zero outside the
    plane), for i < nrows: the band's window rows, padded, one after the other. A float input
    is copied into the float scratch; a bf16 one (uint16) into the scratch's uint32 view,
    widened (:func:`widened`)."""
    rowlen = ncols * b
    for i in range(nrows):
        src = top + i
        dst = np.uint64(i * rowlen)
        if src < 0 or src >= h:
            for q in range(rowlen):
                xs[dst + np.uint64(q)] = 0
            continue
        lo = min(ncols, pl)  # padded columns before the plane
        hi = max(lo, min(ncols, wd + pl))  # and where the plane ends
        for q in range(lo * b):
            xs[dst + np.uint64(q)] = 0
        s0 = np.uint64(plane_base + (src * wd + lo - pl) * b)
        d0 = dst + np.uint64(lo * b)
        for q in range((hi - lo) * b):
            xs[d0 + np.uint64(q)] = widened(x[s0 + np.uint64(q)])
        for q in range(hi * b, rowlen):
            xs[dst + np.uint64(q)] = 0


@pjit
def _dw_blocked(x, w, bias, res, out, geo, has_res, lo, hi, kind, alpha, beta, scratch, fill, counter, nthreads):
    """Blocked x (planes, H, W, B) -> out (planes, OH, OW, B), flat, B the vector width: w
    (CB, kh*kw, B), bias (CB*B,), res like out; tasks (plane, band of output rows) claimed from
    ``counter`` by ``nthreads`` workers, each with its scratch row (module doc). ``x`` is
    float, or uint16 for a bf16 input, which :func:`_fill` writes into ``fill`` (the scratch,
    or for a bf16 input its uint32 view); ``out`` float, or uint16 for a bf16 output
    (:func:`_dw_row`)."""
    h, wd, oh_n, ow_n, kh, kw, sh, sw, pt, pl, dh, dw, b, band, wp, cb_n = geo
    planes = out.size // (oh_n * ow_n * b)
    nb = (oh_n + band - 1) // band
    n_tasks = planes * nb
    xrs = wp * b  # a padded scratch row
    for t in prange(nthreads):
        xs, xfill = scratch[t], fill[t]
        while True:
            task = blas.claim(counter)
            if task >= n_tasks:
                break
            p = task // nb
            r0 = (task - p * nb) * band
            r1 = min(oh_n, r0 + band)
            wo, bo = (p % cb_n) * kh * kw * b, (p % cb_n) * b
            _fill(xfill, x, p * h * wd * b, r0 * sh - pt, (r1 - 1 - r0) * sh + (kh - 1) * dh + 1, h, wd, b, pl, wp)
            oo = (p * oh_n + r0) * ow_n * b
            _dw_row(
                xs,
                0,
                xrs,
                w,
                wo,
                bias,
                bo,
                res,
                out,
                oo,
                ow_n,
                kh,
                kw,
                sw,
                dh,
                dw,
                has_res,
                lo,
                hi,
                r1 - r0,
                sh * xrs,
                ow_n * b,
            )
            if kind != NONE and kind != RELU and kind != CLIP:
                act_inplace(out[(p * oh_n + r0) * ow_n * b : (p * oh_n + r1) * ow_n * b], kind, alpha, beta)


_dw_blocked_serial = serial_twin(_dw_blocked)


def applies(spec, block: int) -> bool:
    """True when the block is one vector of the spec's dtype (_dw_row's loads are whole blocks),
    unless the output rows are narrow and strided: there (14 -> 7, 28 -> 14 with stride 2) the
    band copy reads twice the rows it writes, and the window kernel measured 1.0-1.4x faster."""
    if block != block_size(spec.dtype):
        return False
    return spec.ow >= WINDOW_BELOW or spec.sw == 1


class RowBlockedDepthwise:
    """The kernel fixed at build for one depthwise ConvSpec (group == C == M) and block B: band
    size, scratch, clamp bounds. ``bf16_in`` / ``bf16_out``: the input / output is a bf16
    activation (ir.BF16, passes/precision.py): widened exactly into the float32 scratch /
    rounded once at the store, the sums float32 either way; a bf16 output's activation must
    end at the clamp (Relu, Clip) and its channels fill whole blocks."""

    def __init__(self, spec, block: int, bf16_in: bool = False, bf16_out: bool = False):
        s = spec
        dt = np.dtype(s.dtype)
        if (bf16_in or bf16_out) and dt != np.float32:
            raise ValueError(f"a bf16 activation goes with a float32 depthwise conv, not {dt}")
        if bf16_out and s.act not in (NONE, RELU, CLIP):
            raise ValueError(f"a bf16 depthwise output ends at Relu/Clip: activation kind {s.act}")
        self.bf16_in, self.bf16_out = bf16_in, bf16_out
        band = max(1, min(s.oh, -(-TASK_ELEMS // (s.ow * block))))
        wp = (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1  # padded columns a whole output row reads
        cb = s.c // block
        self.geo = tuple(
            int(v) for v in (s.h, s.w, s.oh, s.ow, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw, block, band, wp, cb)
        )
        self.threads = numba.config.NUMBA_NUM_THREADS
        rows = max(s.kh, (band - 1) * s.sh + (s.kh - 1) * s.dh + 1)
        self.scratch = per_thread(self.threads, rows * wp * block, dt)
        self.fill = self.scratch.view(np.uint32) if bf16_in else self.scratch  # what _fill writes
        self.counter = np.zeros(1, np.int64)
        lo, hi = {RELU: (0.0, np.inf), CLIP: (s.alpha, s.beta)}.get(s.act, (-np.inf, np.inf))
        self.scalars = (dt.type(lo), dt.type(hi), s.act, dt.type(s.alpha), dt.type(s.beta))
        self.work = s.n * s.c * s.oh * s.ow * s.kh * s.kw
        self.no_res = np.zeros(1, dt)  # writable, as the arena arrays residuals come in

    def __call__(self, x, out, w, bias, res=None):
        nthreads = min(num_threads(), self.threads)
        kern = pick(_dw_blocked, _dw_blocked_serial, self.work, nthreads)
        self.counter[0] = 0
        lo, hi, kind, alpha, beta = self.scalars
        kern(
            x.reshape(-1).view(np.uint16) if self.bf16_in else x.reshape(-1),
            w,
            bias,
            self.no_res if res is None else res.reshape(-1),
            out.reshape(-1).view(np.uint16) if self.bf16_out else out.reshape(-1),
            self.geo,
            res is not None,
            lo,
            hi,
            kind,
            alpha,
            beta,
            self.scratch,
            self.fill,
            self.counter,
            nthreads,
        )

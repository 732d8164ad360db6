"""Depthwise conv in the channel-blocked layout NCHWc when the block is one vector (B = 16
float32 / 8 float64 with AVX-512, 8 / 4 with AVX2): register-blocked along the output row,
read straight from the input.

A task is a few whole planes (small planes) or one plane's band of output rows (large ones),
at least ``TASK_ELEMS`` outputs, claimed from a shared counter; one call of :func:`_dw_rows`
computes a plane's rows. Nothing is copied: the zero padding is where the taps stop. Each
output row runs only the kernel rows that fall inside the plane, and only the pixel groups at
its ends (those holding a pixel whose window crosses the left or right border) load their
columns under a mask that reads zeros outside the row; the groups between read their whole
window from the input. Copying each band into a zero-bordered scratch instead cost 40% of the
kernel's time on 56x56 planes and left the 7x7 ones at a third of the FMA rate.

A row runs in groups of 8 pixels and one group of the rest (1-7): per kernel row, each input
vector of the group's span is loaded once and reused for every (pixel, tap) pair that reads it
(with stride 1 and kw = 3, 10 loads feed 24 FMAs, where one load per tap gave 24), the
accumulators held in registers, then the residual and the Relu/Clip clamp before the store.
The reuse needs the column offsets as constants, so the common (kw, stride, dilation) are
emitted specialised (``SPECIAL``), each compiled only where a model has it (:func:`form_of`),
and any other runs a generic form with one load per tap. Other activations run over the
task's output afterwards while it is in cache (act_inplace: vector_act's float32 forms).

Under ``precision="bf16"`` the input and output may be bf16 activations (passes/precision.py):
each loaded bf16 vector is widened to float32 exactly, the sums stay float32 and each stored
vector is rounded once (MobileNetV2's expanded tensors at half the bytes).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.kernels._jit import njit
from cnnrt.kernels.activation import CLIP, NONE, RELU
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import block_size, readonly
from cnnrt.kernels.cpu.llvm_ir import I32, Vectors, c64, data_pointers, masked_load, round_bf16, widen_bf16
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.threaded import threaded

# (kw, stride along the row, dilation along the row) emitted with input reuse: MobileNet,
# EfficientNet, MixNet (3..11) and the dilated LR-ASPP backbone layers
SPECIAL = tuple((k, s, 1) for k in (3, 5, 7, 9, 11) for s in (1, 2)) + ((3, 1, 2), (5, 1, 2))
# pixels per register block: 8 accumulators and the span's inputs fit 32 zmm; a row's last
# pixels are one smaller group, as 56 = 48 + 4 + 2 left two short latency-bound FMA chains
GROUP = 8
GENERIC_GROUP = 4
TASK_ELEMS = 8192  # output elements per task at least: bands of a few rows on 56-112 wide planes


def interior(w: int, ow: int, kw: int, sw: int, pl: int, dw: int) -> tuple[int, int]:
    """[c0, c1): the output columns whose whole window lies inside an input row of ``w``."""
    c0 = min(ow, -(-pl // sw))
    last = w - 1 - (kw - 1) * dw + pl  # the rightmost window start, in padded columns
    c1 = max(c0, min(ow, last // sw + 1)) if last >= 0 else c0
    return c0, c1


@intrinsic
def _dw_rows(typingctx, x, xo, w, wo, bias, bo, res, out, oo, geo, r0, r1, has_res, lo, hi, form):
    """Output rows [r0, r1) of one plane: out[oo + (r*OW + c)*B] = clamp(bias[bo:] + sum_ij
    w[wo + (i*kw + j)*B] * x[xo + ((r*sh - pt + i*dh)*W + c*sw - pl + j*dw)*B] (+ res at the
    output's offset), lo, hi), taps outside the plane skipped; B the vector width, offsets in
    elements, ``geo`` = (H, W, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw, c0, c1) with [c0, c1)
    the interior columns (:func:`interior`). Arrays of one float dtype, but ``x`` may be uint16
    for float32 ones (a bf16 input, widened exactly) and ``out`` uint16 (a bf16 output, each
    vector rounded as microkernel_bf16.to_bf16). ``form`` says in its type which code to emit
    (:func:`form_of`), so each form compiles only its own."""
    if not (isinstance(form, types.UniTuple) and form.dtype == types.int64):
        return None
    cfg = SPECIAL[form.count - 2] if form.count > 1 else None
    floats = (w, bias, res)
    if not all(isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) for a in floats):
        return None
    if len({a.dtype for a in floats}) != 1 or not isinstance(geo, types.UniTuple):
        return None
    dt = w.dtype
    for a in (x, out):
        if not (isinstance(a, types.Array) and (a.dtype == dt or (a.dtype == types.uint16 and dt == types.float32))):
            return None
    wide_in, narrow = x.dtype == types.uint16, out.dtype == types.uint16
    i64 = types.int64
    sig = types.void(x, i64, w, i64, bias, i64, res, out, i64, geo, i64, i64, types.boolean, dt, dt, form)

    def codegen(context, builder, sig, args):
        xo_v, wo_v, bo_v, oo_v = args[1], args[3], args[5], args[8]
        g = [builder.extract_value(args[9], i) for i in range(14)]
        h_v, w_v, _, ow_v, kh_v, kw_v, sh_v, sw_v, pt_v, pl_v, dh_v, dw_v, c0_v, c1_v = g
        r0_v, r1_v, res_on, lo_v, hi_v = args[10:15]
        px, pw, pb, pres, pout = data_pointers(context, builder, sig, args, 0, 2, 4, 6, 7)
        vec = Vectors(builder, dt)
        lanes = vec.lanes
        mul, add, sub = builder.mul, builder.add, builder.sub
        B = c64(lanes)
        init = vec.load(pb, bo_v)
        lo_s, hi_s = vec.splat(lo_v), vec.splat(hi_v)
        xrs = mul(w_v, B)  # an input row
        at = {}  # the current row: first input row offset (kernel row 0), kernel rows [ilo, ihi), output offset

        ity = ir.VectorType(ir.IntType(16), lanes)  # a bf16 input's vector

        def load_x(off, inside=None):
            """The input vector at ``off`` as floats; with ``inside`` (i1) false, zeros and no read."""
            mask = None if inside is None else vec.splat(inside, ir.VectorType(ir.IntType(1), lanes))
            if not wide_in:
                return vec.load(px, off, mask)
            p = builder.bitcast(builder.gep(px, [off]), ity.as_pointer())
            if mask is None:
                ld = builder.load(p)
                ld.align = 2
            else:
                ld = masked_load(builder, p, mask, 2)
            return widen_bf16(builder, ld)

        def finish(acc, col):
            o = add(at["o"], mul(col, B))
            with builder.if_then(res_on):
                builder.store(builder.fadd(builder.load(acc), vec.load(pres, o)), acc)
            y = vec.clamp(builder.load(acc), lo_s, hi_s)
            if narrow:
                h = round_bf16(builder, builder.bitcast(y, ir.VectorType(I32, lanes)))
                builder.store(h, builder.bitcast(builder.gep(pout, [o]), h.type.as_pointer())).align = 2
            else:
                vec.store(y, pout, o)

        pos = cgutils.alloca_once_value(builder, c64(0))

        def group(size, cfg, checked):
            """``size`` pixels from ``pos``; ``checked``: columns outside the row read as zeros."""
            g0 = builder.load(pos)
            ix0 = sub(mul(g0, sw_v), pl_v)  # the group's first input column
            accs = [cgutils.alloca_once_value(builder, init) for _ in range(size)]

            def x_at(xrow, col):
                """The input vector ``col`` columns (a value) right of the group's first."""
                if not checked:
                    return load_x(add(xrow, mul(col, B)))
                ix = add(ix0, col)
                inside = builder.and_(builder.icmp_signed(">=", ix, c64(0)), builder.icmp_signed("<", ix, w_v))
                return load_x(add(xrow, mul(col, B)), inside)

            def kernel_row(i):
                xrow = add(add(at["x"], mul(mul(i, at["dh"]), xrs)), mul(ix0, B))
                wrow = add(wo_v, mul(mul(i, kw_v), B))
                acc = [builder.load(a) for a in accs]
                if cfg is not None:
                    k, s, d = cfg
                    loaded = {}
                    for j in range(k):
                        wv = vec.load(pw, add(wrow, c64(j * lanes)))
                        for p in range(size):
                            col = p * s + j * d
                            if col not in loaded:
                                loaded[col] = x_at(xrow, c64(col))
                            acc[p] = vec.fma(wv, loaded[col], acc[p])
                    for a, v in zip(accs, acc):
                        builder.store(v, a)
                else:
                    for a, v in zip(accs, acc):
                        builder.store(v, a)
                    with cgutils.for_range(builder, kw_v) as taps:
                        wv = vec.load(pw, add(wrow, mul(taps.index, B)))
                        for p, a in enumerate(accs):
                            col = add(mul(taps.index, dw_v), mul(c64(p), sw_v))
                            builder.store(vec.fma(wv, x_at(xrow, col), builder.load(a)), a)

            with cgutils.for_range_slice(builder, at["ilo"], at["ihi"], c64(1), inc=True) as (i, _):
                kernel_row(i)
            for p, a in enumerate(accs):
                finish(a, add(g0, c64(p)))
            builder.store(add(g0, c64(size)), pos)

        def row(cfg):
            big = GROUP if cfg is not None else GENERIC_GROUP
            dh = dh_v if cfg is None else c64(cfg[2])  # a SPECIAL form's dilation is square
            with cgutils.for_range_slice(builder, r0_v, r1_v, c64(1), inc=True) as (r, _):
                iy0 = sub(mul(r, sh_v), pt_v)
                neg = builder.icmp_signed("<", iy0, c64(0))
                below = builder.sdiv(add(sub(c64(0), iy0), sub(dh, c64(1))), dh)
                ilo = builder.select(neg, below, c64(0))
                ihi = builder.sdiv(add(sub(h_v, iy0), sub(dh, c64(1))), dh)
                ihi = builder.select(builder.icmp_signed("<", kh_v, ihi), kh_v, ihi)
                ihi = builder.select(builder.icmp_signed("<", ihi, ilo), ilo, ihi)
                at.update(dh=dh, x=add(xo_v, mul(iy0, xrs)), ilo=ilo, ihi=ihi, o=add(oo_v, mul(mul(r, ow_v), B)))
                builder.store(c64(0), pos)

                def groups(count, checked):
                    with cgutils.for_range(
                        builder, builder.select(builder.icmp_signed(">", count, c64(0)), count, c64(0))
                    ):
                        group(big, cfg, checked)

                # the left edge in checked groups until past c0 (as many as fit the row), the
                # interior unchecked, the rest checked: whole groups, then one of the remainder
                left = builder.sdiv(add(c0_v, c64(big - 1)), c64(big))
                groups(
                    builder.select(
                        builder.icmp_signed("<", left, builder.sdiv(ow_v, c64(big))), left, builder.sdiv(ow_v, c64(big))
                    ),
                    True,
                )
                past = builder.icmp_signed(">=", builder.load(pos), c0_v)
                groups(builder.select(past, builder.sdiv(sub(c1_v, builder.load(pos)), c64(big)), c64(0)), False)
                groups(builder.sdiv(sub(ow_v, builder.load(pos)), c64(big)), True)
                rest = sub(ow_v, builder.load(pos))
                if cfg is None:
                    with cgutils.for_range(builder, rest):
                        group(1, cfg, True)
                else:
                    for size in range(1, big):
                        with builder.if_then(builder.icmp_signed("==", rest, c64(size))):
                            group(size, cfg, True)

        row(cfg)
        return context.get_dummy_value()

    return sig, codegen


@njit
def _dw_worker(_t, _nthreads, form, x, w, bias, res, out, geo, task, has_res, lo, hi, kind, alpha, beta, counter):
    """One thread's share (kernels.cpu.threaded) of blocked x (planes, H, W, B) -> out
    (planes, OH, OW, B), flat, B the vector width: w (CB, kh*kw, B), bias (CB*B,), res like
    out. ``task`` = (B, CB, planes per task, rows per task): tasks are runs of whole planes
    or one plane's band of rows, claimed from ``counter`` by every thread. ``x`` is float, or
    uint16 for a bf16 input; ``out`` float, or uint16 for a bf16 output (:func:`_dw_rows`);
    ``form`` as :func:`form_of` gives it; ``geo`` :func:`_dw_rows`'s geometry as an int64
    array (a parallel region's arguments hold no tuple)."""
    h, wd, oh, ow, kh, kw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    g = (geo[0], geo[1], oh, ow, kh, kw, geo[6], geo[7], geo[8], geo[9], geo[10], geo[11], geo[12], geo[13])
    b, cb_n, pp, band = task[0], task[1], task[2], task[3]
    planes = out.size // (oh * ow * b)
    nb = (oh + band - 1) // band
    n_tasks = (planes + pp - 1) // pp * nb
    while True:
        t = blas.claim(counter)
        if t >= n_tasks:
            break
        p0, p1, r0, r1 = blas.band_span(t, nb, band, oh, pp, planes)
        for p in range(p0, p1):
            c = p % cb_n
            oo = p * oh * ow * b
            _dw_rows(x, p * h * wd * b, w, c * kh * kw * b, bias, c * b, res, out, oo, g, r0, r1, has_res, lo, hi, form)
            if kind != NONE and kind != RELU and kind != CLIP:
                act_inplace(out[oo + r0 * ow * b : oo + r1 * ow * b], kind, alpha, beta)


_dw_blocked, _dw_blocked_serial = threaded(_dw_worker)


def form_of(spec) -> tuple:
    """The code form of ``spec`` as an argument whose type tells it: zeros, as many as 2 + the
    index in ``SPECIAL`` of the spec's (kw, sw, dw) (its dilation square), else one zero (the
    generic form). A type, not a value, because the kernel is compiled once per form and
    dispatched without the cost of a literal argument."""
    key = (spec.kw, spec.sw, spec.dw)
    n = SPECIAL.index(key) + 2 if key in SPECIAL and spec.dh == spec.dw else 1
    return (0,) * n


def applies(spec, block: int) -> bool:
    """True when the block is one vector of the spec's dtype (_dw_rows's loads are whole blocks)."""
    return block == block_size(spec.dtype)


class RowBlockedDepthwise:
    """The kernel fixed at build for one depthwise ConvSpec (group == C == M) and block B: task
    shape, interior columns, clamp bounds. ``bf16_in`` / ``bf16_out``: the input / output is a
    bf16 activation (ir.BF16, passes/precision.py): widened exactly as it is loaded / rounded
    once at the store, the sums float32 either way; a bf16 output's activation must end at the
    clamp (Relu, Clip) and its channels fill whole blocks."""

    def __init__(self, spec, block: int, bf16_in: bool = False, bf16_out: bool = False):
        s = spec
        dt = np.dtype(s.dtype)
        if (bf16_in or bf16_out) and dt != np.float32:
            raise ValueError(f"a bf16 activation goes with a float32 depthwise conv, not {dt}")
        if bf16_out and s.act not in (NONE, RELU, CLIP):
            raise ValueError(f"a bf16 depthwise output ends at Relu/Clip: activation kind {s.act}")
        self.bf16_in, self.bf16_out = bf16_in, bf16_out
        plane = s.oh * s.ow * block
        band = max(1, min(s.oh, -(-TASK_ELEMS // (s.ow * block))))
        per_task = max(1, TASK_ELEMS // plane) if band == s.oh else 1
        c0, c1 = interior(s.w, s.ow, s.kw, s.sw, s.pl, s.dw)
        self.geo = readonly(
            np.array((s.h, s.w, s.oh, s.ow, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw, c0, c1), np.int64)
        )
        self.task = readonly(np.array((block, s.c // block, per_task, band), np.int64))
        self.form = form_of(s)
        self.threads = numba.config.NUMBA_NUM_THREADS
        self.counter = np.zeros(1, np.int64)
        lo, hi = {RELU: (0.0, np.inf), CLIP: (s.alpha, s.beta)}.get(s.act, (-np.inf, np.inf))
        self.scalars = (dt.type(lo), dt.type(hi), s.act, dt.type(s.alpha), dt.type(s.beta))
        self.work = s.n * s.c * s.oh * s.ow * s.kh * s.kw
        self.no_res = np.zeros(1, dt)  # writable, as the arena arrays residuals come in

    def bind(self, x, out, w, bias, res=None):
        """The conv of these arrays as a call without arguments (kernels.registry.bound)."""
        lo, hi, kind, alpha, beta = self.scalars
        args = (
            x.reshape(-1).view(np.uint16) if self.bf16_in else x.reshape(-1),
            w,
            bias,
            self.no_res if res is None else res.reshape(-1),
            out.reshape(-1).view(np.uint16) if self.bf16_out else out.reshape(-1),
            self.geo,
            self.task,
            res is not None,
            lo,
            hi,
            kind,
            alpha,
            beta,
            self.counter,
        )
        threads, form = self.threads, self.form
        return native_call(
            _dw_blocked,
            _dw_blocked_serial,
            self.work,
            lambda nthreads: (min(nthreads, threads), form, *args),
            ((self.counter, 0, 0),),
        )

    def __call__(self, x, out, w, bias, res=None):
        self.bind(x, out, w, bias, res)()

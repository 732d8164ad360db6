"""Kernels on the channel-blocked layout NCHWc: reorders, pools, ChannelAffine, depthwise conv.

A logical NCHW tensor with C % B == 0 is stored (N, C/B, H, W, B): element [n, cb, h, w, l] is
logical [n, cb*B + l, h, w]. B is the vector width in elements: a pixel of a channel block is
one vector, a window tap one vector operation over B channels.

Pools, ChannelAffine (a 1x1 depthwise conv: scale as weights, shift as bias) and the depthwise
conv are one kernel, :func:`_windows`. At build, output rows are put in classes by their valid
kernel rows and columns in segments by their valid kernel columns, with one tap list per
(class, segment): padding is handled by the lists, never by a test per element. A run of rows
of one class times a segment is one call of :func:`_lane_taps`, LLVM IR with explicit vectors
(as microkernel.py): four pixels at a time, per tap one weight vector and four fused
multiply-adds (or max, or add) into accumulators held in registers, then residual and clamp.
Plain Numba loops over the B lanes did not vectorise (LLVM gave up on the 20+ runtime alias
checks between output, input taps and weights): 5-7x slower than depthwise.py. B that is not
a multiple of the vector width (tests: 4, or 8 for float32 on AVX-512) runs
:func:`_lane_taps_any`, the same operations in plain Numba.

MaxPool skips NaN as pool.py does (a window of only NaN gives -inf); AveragePool divides by
the same per-pixel counts. Relu and Clip are selects (NaN stays NaN); other activations run
over a task's rows afterwards (act_inplace).

Depthwise, MobileNetV2's shapes (3x3 pad 1, bias + ReLU6, float32, B = 16), median ms, one
process alternating with depthwise.py's NCHW kernel, 64-byte aligned tensors (as the arena's),
2-core AVX-512 Xeon. "2t" with the worker spinning (GOMP_SPINCOUNT=1e6), as between back to
back layers: with the default spin count a call often waits for the worker to wake (both
kernels 0-60 us slower). 7x7 and the s2 14x14 layers run the serial twin at 2 threads.

    C, H -> OH, stride   batch 1, 1t: nchw blocked | 2t: nchw blocked | batch 8, 2t: nchw blocked
    32,  112 -> 112, s1            0.198  0.130   |     0.110  0.074  |             1.026  0.762
    96,  112 -> 56,  s2            0.381  0.212   |     0.195  0.098  |             2.090  1.007
    144, 56 -> 56,   s1            0.205  0.157   |     0.111  0.080  |             1.032  0.812
    144, 56 -> 28,   s2            0.125  0.053   |     0.076  0.028  |             0.681  0.436
    192, 28 -> 28,   s1            0.067  0.052   |     0.043  0.032  |             0.399  0.344
    192, 28 -> 14,   s2            0.071  0.016   |     0.070  0.016  |             0.390  0.103
    384, 14 -> 14,   s1            0.046  0.026   |     0.041  0.019  |             0.331  0.202
    576, 14 -> 14,   s1            0.069  0.036   |     0.054  0.027  |             0.449  0.277
    576, 14 -> 7,    s2            0.055  0.014   |     0.057  0.014  |             0.422  0.151
    960, 7 -> 7,     s1            0.049  0.022   |     0.050  0.022  |             0.302  0.091
    all 10                         1.265  0.718   |     0.806  0.410  |             7.122  4.185

The big layers are bound by memory traffic; the 7x7 ones by the dependent multiply-adds of the
few pixels per call (a 7x7 plane is 9 calls, 10 blocks of four pixels and 9 single ones).
Pools, 1 thread, ms NCHW -> blocked: MaxPool 3x3/s2 1x64x112x112 0.256 -> 0.141, 3x3/s1
8x832x7x7 0.344 -> 0.122; AveragePool 2x2/s2 1x256x28x28 0.093 -> 0.055. ChannelAffine is
memory-bound and ~20% slower than norm.py's on 8x256x56x56 (2.5 vs 2.1 ms at 1 thread; 1.1 vs
1.0 at 2): the price of staying blocked, against two reorders.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import config, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels import KernelFn, register
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import block_size, readonly  # block_size: the vector width _lane_taps runs on
from cnnrt.kernels.cpu.conv_common import opt_input as _opt
from cnnrt.kernels.cpu.pool import _taps_inside, _window
from cnnrt.kernels.cpu.vector_ir import VECTOR_BYTES, fma, pixel_reduce

FMA, MAX, SUM = 0, 1, 2  # what a tap does to the accumulator (_lane_taps' mode)
GROUP = 4  # pixels per register block of _lane_taps (6 or 8: no faster here)
TASK_ELEMS = 4096  # output elements per task at least (a task is a band of rows of one plane)


@intrinsic
def _lane_taps(
    typingctx,
    x,
    xo,
    xstep,
    xrstep,
    tx,
    tw,
    t0,
    nt,
    w,
    wo,
    init,
    io,
    res,
    out,
    oo,
    ostep,
    orstep,
    ncol,
    count,
    mode,
    has_res,
    lo,
    hi,
):
    """``count`` pixels, ``ncol`` per row: pixel (r, c) reads x from xo + r*xrstep + c*xstep and
    writes one vector at out[oo + r*orstep + c*ostep]. acc = init[io:] (FMA), lo (MAX) or 0
    (SUM); per tap t in [t0, t0 + nt), v = x[... + tx[t]]: acc = fma(w[wo + tw[t]], v, acc),
    v if v > acc else acc (NaN skipped), or acc + v; then acc (+ res[o]), clamped to [lo, hi]
    by selects (NaN passes). Arrays of one float dtype, tx/tw int64."""
    floats = (x, w, init, res, out)
    if not all(isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) for a in floats):
        return None
    if len({a.dtype for a in floats}) != 1 or not all(isinstance(a, types.Array) for a in (tx, tw)):
        return None
    if tx.dtype != types.int64 or tw.dtype != types.int64:
        return None
    dt, i64 = x.dtype, types.int64
    sig = types.void(
        x,
        i64,
        i64,
        i64,
        tx,
        tw,
        i64,
        i64,
        w,
        i64,
        init,
        i64,
        res,
        out,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        types.boolean,
        dt,
        dt,
    )
    width, align = VECTOR_BYTES // (dt.bitwidth // 8), dt.bitwidth // 8

    def codegen(context, builder, sig, args):
        (
            _,
            xo_v,
            xstep_v,
            xrstep_v,
            _,
            _,
            t0_v,
            nt_v,
            _,
            wo_v,
            _,
            io_v,
            _,
            _,
            oo_v,
            ostep_v,
            orstep_v,
            ncol_v,
            count_v,
            mode_v,
            res_on,
            lo_v,
            hi_v,
        ) = args
        px, ptx, ptw, pw, pinit, pres, pout = (
            context.make_array(sig.args[i])(context, builder, args[i]).data for i in (0, 4, 5, 8, 10, 12, 13)
        )
        vty = ir.VectorType(ir.FloatType() if dt == types.float32 else ir.DoubleType(), width)
        fma_ty = ir.FunctionType(vty, [vty] * 3)
        fma_fn = cgutils.get_or_insert_function(builder.module, fma_ty, f"llvm.fma.v{width}f{dt.bitwidth}")

        def c64(v):
            return ir.Constant(ir.IntType(64), v)

        def vptr(p, off):
            return builder.bitcast(builder.gep(p, [off]), vty.as_pointer())

        def vload(p, off):
            ld = builder.load(vptr(p, off))
            ld.align = align
            return ld

        def splat(s):
            v = builder.insert_element(ir.Constant(vty, ir.Undefined), s, ir.Constant(ir.IntType(32), 0))
            zeros = ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width)
            return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), zeros)

        lo_s, hi_s = splat(lo_v), splat(hi_v)

        def block(op, pos, nq):
            col, rx, ro = (builder.load(a) for a in pos)  # the next pixel: column, its row's offsets
            xs, os = [], []
            for _ in range(nq):  # stepping through the pixels: no division per pixel
                xs.append(builder.add(rx, builder.mul(col, xstep_v)))
                os.append(builder.add(ro, builder.mul(col, ostep_v)))
                wrap = builder.icmp_signed("==", builder.add(col, c64(1)), ncol_v)
                col = builder.select(wrap, c64(0), builder.add(col, c64(1)))
                rx = builder.select(wrap, builder.add(rx, xrstep_v), rx)
                ro = builder.select(wrap, builder.add(ro, orstep_v), ro)
            for a, v in zip(pos, (col, rx, ro)):
                builder.store(v, a)
            start = vload(pinit, io_v) if op == FMA else lo_s if op == MAX else ir.Constant(vty, [0.0] * width)
            accs = [cgutils.alloca_once_value(builder, start) for _ in range(nq)]
            with cgutils.for_range(builder, builder.add(t0_v, nt_v), start=t0_v) as loop:
                toff = builder.load(builder.gep(ptx, [loop.index]))
                if op == FMA:
                    wv = vload(pw, builder.add(wo_v, builder.load(builder.gep(ptw, [loop.index]))))
                for acc, xq in zip(accs, xs):
                    v, a = vload(px, builder.add(xq, toff)), builder.load(acc)
                    if op == FMA:
                        a = builder.call(fma_fn, [wv, v, a])
                    elif op == MAX:
                        a = builder.select(builder.fcmp_ordered(">", v, a), v, a)
                    else:
                        a = builder.fadd(a, v)
                    builder.store(a, acc)
            for acc, o in zip(accs, os):
                with builder.if_then(res_on):
                    builder.store(builder.fadd(builder.load(acc), vload(pres, o)), acc)
                a = builder.load(acc)
                a = builder.select(builder.fcmp_ordered("<", a, lo_s), lo_s, a)
                a = builder.select(builder.fcmp_ordered(">", a, hi_s), hi_s, a)
                builder.store(a, vptr(pout, o)).align = align

        def emit(op):
            pos = [cgutils.alloca_once_value(builder, v) for v in (c64(0), xo_v, oo_v)]
            groups = builder.sdiv(count_v, c64(GROUP))
            with cgutils.for_range(builder, groups):
                block(op, pos, GROUP)
            with cgutils.for_range(builder, count_v, start=builder.mul(groups, c64(GROUP))):
                block(op, pos, 1)

        with builder.if_else(builder.icmp_signed("==", mode_v, c64(FMA))) as (is_fma, other):
            with is_fma:
                emit(FMA)
            with other:
                with builder.if_else(builder.icmp_signed("==", mode_v, c64(MAX))) as (is_max, is_sum):
                    with is_max:
                        emit(MAX)
                    with is_sum:
                        emit(SUM)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always")
def _lane_taps_any(
    x,
    xo,
    xstep,
    xrstep,
    tx,
    tw,
    t0,
    nt,
    w,
    wo,
    init,
    io,
    res,
    out,
    oo,
    ostep,
    orstep,
    ncol,
    count,
    mode,
    has_res,
    lo,
    hi,
    width,
):
    """_lane_taps for any vector width, in plain Numba: the same operations in the same order."""
    for q in range(count):
        r, c = q // ncol, q % ncol
        o, xq = oo + r * orstep + c * ostep, xo + r * xrstep + c * xstep
        for lane in range(width):
            out[o + lane] = init[io + lane] if mode == FMA else lo if mode == MAX else 0.0
        for t in range(t0, t0 + nt):
            xa, wa = xq + tx[t], wo + tw[t]
            for lane in range(width):
                v, a = x[xa + lane], out[o + lane]
                if mode == FMA:
                    a = fma(w[wa + lane], v, a)
                elif mode == MAX:
                    a = v if v > a else a
                else:
                    a = a + v
                out[o + lane] = a
        for lane in range(width):
            a = out[o + lane] + res[o + lane] if has_res else out[o + lane]
            a = lo if a < lo else a
            out[o + lane] = hi if a > hi else a


@pjit
def _windows(x, w, init, res, out, count, geo, rows, segs, tx, tw, mode, has_res, lo, hi, kind, alpha, beta):
    """Blocked x (planes, H, W, B) -> out (planes, OH, OW, B), flat: a window op (module doc),
    over tasks (plane, band of output rows). w: (CB, kh*kw, B) weights (FMA); init: (CB, B)
    bias (FMA); count: (OH, OW) divisors (SUM); rows[oh]: the class of output row oh; segs[s]:
    columns [o0, o1) of segment s, then per class r its tap count; its taps (x and w offsets)
    are tx, tw[(r*S + s)*K :]."""
    h, wd, oh_n, ow_n, sh, sw, pt, pl, b, band, cb_n, kk, vl = geo
    nb = (oh_n + band - 1) // band
    n_seg = segs.shape[0]
    for task in prange(out.size // (oh_n * ow_n * b) * nb):
        p = task // nb
        r0 = (task - p * nb) * band
        r1 = min(oh_n, r0 + band)
        wo, io = (p % cb_n) * kk * b, (p % cb_n) * b
        e0 = r0
        while e0 < r1:  # a run of rows of one class: one call per segment
            e1 = e0 + 1
            while e1 < r1 and rows[e1] == rows[e0]:
                e1 += 1
            xrow, orow = (p * h + e0 * sh - pt) * wd * b, (p * oh_n + e0) * ow_n * b
            for s in range(n_seg):
                o0, o1 = segs[s, 0], segs[s, 1]
                t0, nt = (rows[e0] * n_seg + s) * kk, segs[s, 2 + rows[e0]]
                xo, oo, n_px = xrow + (o0 * sw - pl) * b, orow + o0 * b, (o1 - o0) * (e1 - e0)
                if b % vl == 0:
                    for c in range(0, b, vl):
                        _lane_taps(
                            x,
                            xo + c,
                            sw * b,
                            sh * wd * b,
                            tx,
                            tw,
                            t0,
                            nt,
                            w,
                            wo + c,
                            init,
                            io + c,
                            res,
                            out,
                            oo + c,
                            b,
                            ow_n * b,
                            o1 - o0,
                            n_px,
                            mode,
                            has_res,
                            lo,
                            hi,
                        )
                else:
                    _lane_taps_any(
                        x,
                        xo,
                        sw * b,
                        sh * wd * b,
                        tx,
                        tw,
                        t0,
                        nt,
                        w,
                        wo,
                        init,
                        io,
                        res,
                        out,
                        oo,
                        b,
                        ow_n * b,
                        o1 - o0,
                        n_px,
                        mode,
                        has_res,
                        lo,
                        hi,
                        b,
                    )
            if mode == SUM:
                for oh in range(e0, e1):
                    for o in range(ow_n):
                        d, base = count[oh, o], ((p * oh_n + oh) * ow_n + o) * b
                        for lane in range(b):
                            out[base + lane] /= d
            e0 = e1
        if kind != 0 and kind != 1 and kind != 3:
            act_inplace(out[(p * oh_n + r0) * ow_n * b : (p * oh_n + r1) * ow_n * b], kind, alpha, beta)


@pjit
def _reorder(x, y, hw, b, chunk, to_blocked, cbk, c):
    """(P, B, HW) <-> (P, HW, B), flat, over tasks (plane, chunk of pixels). The inner loop runs
    over the B lanes of a pixel: B input rows read at once, the blocked side contiguous. One
    thread: ~1.2x memcpy's time out of cache (1x144x56x56, 8x144x56x56), 3x in L2 (strided
    scalar loads; a register transpose would take shuffles LLVM does not produce here).
    Planes p = n*cbk + block; the NCHW side has ``c`` <= cbk*B channels per image (from
    blocked: the lanes past c are dropped, a conv's output cropped to its channels)."""
    nch = (hw + chunk - 1) // chunk
    ub, uhw = np.uint64(b), np.uint64(hw)
    for t in prange(x.size // (hw * b) * nch):
        p = t // nch
        s0 = (t - p * nch) * chunk
        base = np.uint64(p * hw * b)
        n = p // cbk
        k = p - n * cbk
        plain = np.uint64((n * c + k * b) * hw)
        nl = min(b, c - k * b)
        for s in range(s0, min(hw, s0 + chunk)):
            us = np.uint64(s)
            if to_blocked:
                for lane in range(b):
                    y[base + us * ub + np.uint64(lane)] = x[plain + np.uint64(lane) * uhw + us]
            else:
                for lane in range(nl):
                    y[plain + np.uint64(lane) * uhw + us] = x[base + us * ub + np.uint64(lane)]


@pjit
def _global(x, out, acc, hw, b, is_max):
    """x (P, HW, B) -> out (P, B), flat: per lane the max over the pixels (NaN skipped, as
    GlobalMaxPool) or the mean (accumulated in float64, as GlobalAveragePool): vector_ir's
    pixel_reduce when B is the vector width, else scalar loops over acc, (P, B) float64
    scratch (an array allocated per plane inside the loop cost more than 7x7 sums)."""
    vector = b * x.itemsize == VECTOR_BYTES
    for p in prange(out.size // b):
        base = p * hw * b
        if vector:
            pixel_reduce(x, base, hw, out, p * b, is_max)
            continue
        a = acc[p]
        for lane in range(b):
            a[lane] = -np.inf if is_max else 0.0
        for s in range(hw):
            for lane in range(b):
                v = x[base + s * b + lane]
                if is_max:
                    a[lane] = v if v > a[lane] else a[lane]
                else:
                    a[lane] += v
        for lane in range(b):
            out[p * b + lane] = a[lane] if is_max else a[lane] / hw


_windows_serial = serial_twin(_windows)
_reorder_serial = serial_twin(_reorder)
_global_serial = serial_twin(_global)


def _valid_taps(out_count, k, s, pad, d, size):
    """Per output position: the taps [t0, t1) of its window (start o*s - pad, step d) in [0, size)."""
    first = np.arange(out_count) * s - pad
    t0 = np.maximum(0, -(first // d))  # -(a // d) is ceil(-a / d)
    return t0, np.maximum(t0, np.minimum(k, (size - 1 - first) // d + 1))


class _Windows:
    """A window op fixed at build: row classes, column segments, tap lists, task bands."""

    def __init__(self, shape5, oh, ow, window, dtype, mode, act=0, alpha=0.0, beta=0.0, count=None):
        n, cb, h, w, b = shape5
        kh, kw, sh, sw, pt, pl, dh, dw = window
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"blocked kernels take float32/float64, got {dt}")
        j0, j1 = _valid_taps(ow, kw, sw, pl, dw, w)
        cut = np.flatnonzero((np.diff(j0) != 0) | (np.diff(j1) != 0)) + 1
        starts, ends = np.r_[0, cut], np.r_[cut, ow]
        classes, rows = np.unique(np.stack(_valid_taps(oh, kh, sh, pt, dh, h), 1), axis=0, return_inverse=True)
        kk = kh * kw
        tx, tw = np.zeros((2, len(classes), len(starts), kk), np.int64)
        counts = np.zeros((len(starts), len(classes)), np.int64)
        for r, (i0, i1) in enumerate(classes):
            for s, o in enumerate(starts):  # row-major tap order, in both lane kernels
                taps = [(i, j) for i in range(i0, i1) for j in range(j0[o], j1[o])]
                counts[s, r] = len(taps)
                tx[r, s, : len(taps)] = [(i * dh * w + j * dw) * b for i, j in taps]
                tw[r, s, : len(taps)] = [(i * kw + j) * b for i, j in taps]
        self.rows, self.tx, self.tw = (readonly(a.reshape(-1).astype(np.int64)) for a in (rows, tx, tw))
        self.segs = readonly(np.concatenate([np.stack([starts, ends], 1), counts], 1).astype(np.int64))
        band = max(1, min(oh, -(-TASK_ELEMS // (ow * b))))
        self.geo = tuple(int(v) for v in (h, w, oh, ow, sh, sw, pt, pl, b, band, cb, kk, block_size(dt)))
        self.count = readonly(np.ones((1, 1), dt) if count is None else np.ascontiguousarray(count, dt))
        # Identity, Relu and Clip are a clamp to [lo, hi] in the lane kernels (NaN passes)
        lo, hi = {1: (0.0, np.inf), 3: (alpha, beta)}.get(act, (-np.inf, np.inf))
        self.scalars = (mode, dt.type(lo), dt.type(hi), act, dt.type(alpha), dt.type(beta))
        self.work = n * cb * b * oh * ow * kk
        self.no_res = np.zeros(1, dt)  # writable, as the arena arrays residuals come in
        self.dummy = readonly(np.zeros(1, dt))

    def __call__(self, x, out, w=None, init=None, res=None):
        kern = pick(_windows, _windows_serial, self.work, num_threads())
        kern(
            x.reshape(-1),
            self.dummy if w is None else w,
            self.dummy if init is None else init,
            self.no_res if res is None else res.reshape(-1),
            out.reshape(-1),
            self.count,
            self.geo,
            self.rows,
            self.segs,
            self.tx,
            self.tw,
            self.scalars[0],
            res is not None,
            *self.scalars[1:],
        )


def _shapes(graph, node, rank_in, rank_out):
    xs, ys = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
    if len(xs) != rank_in or len(ys) != rank_out:
        raise ValueError(f"{node.op} needs rank {rank_in} -> {rank_out}, got {list(xs)} -> {list(ys)}")
    return tuple(xs), tuple(ys), np.dtype(graph.values[node.inputs[0]].dtype)


def _reorder_run(planes, hw, b, to_blocked, cbk, c):
    per_plane = -(-4 * config.NUMBA_NUM_THREADS // planes)  # ~4 tasks per thread if planes are few
    chunk = max(min(hw, 256), -(-hw // per_plane))

    def run(ins, outs):
        x = ins[0].reshape(-1)
        kern = pick(_reorder, _reorder_serial, x.size, num_threads())
        kern(x, outs[0].reshape(-1), hw, b, chunk, to_blocked, cbk, c)

    return run


@register("ReorderToBlocked")
def build_reorder_to_blocked(node, graph) -> KernelFn:
    """X (N, C, H, W) -> Y (N, C/B, H, W, B), B = attr ``block``."""
    (n, c, h, w), ys, _ = _shapes(graph, node, 4, 5)
    b = int(node.attrs["block"])
    if c % b or ys != (n, c // b, h, w, b):
        raise ValueError(f"ReorderToBlocked: {[n, c, h, w]} with block {b} cannot give {list(ys)}")
    return _reorder_run(n * c // b, h * w, b, True, c // b, c)


@register("ReorderFromBlocked")
def build_reorder_from_blocked(node, graph) -> KernelFn:
    """X (N, CB, H, W, B) -> Y (N, C, H, W) with C <= CB*B: the first C channels (a conv's
    output with channels past its last whole block, passes/block_layout.py)."""
    (n, cb, h, w, b), ys, _ = _shapes(graph, node, 5, 4)
    c = ys[1] if len(ys) == 4 else -1
    if ys != (n, c, h, w) or not (cb - 1) * b < c <= cb * b:
        raise ValueError(f"ReorderFromBlocked: {[n, cb, h, w, b]} cannot give {list(ys)}")
    return _reorder_run(n * cb, h * w, b, False, cb, c)


@register("BlockedMaxPool", "BlockedAveragePool")
def build_blocked_pool(node, graph) -> KernelFn:
    """MaxPool / AveragePool (attributes as the IR's) on X (N, CB, H, W, B) -> Y (N, CB, OH, OW, B)."""
    xs, ys, dt = _shapes(graph, node, 5, 5)
    if len(node.outputs) > 1 and node.outputs[1]:
        raise ValueError(f"{node.op} has no Indices output")
    if ys[:2] != xs[:2] or ys[4] != xs[4]:
        raise ValueError(f"{node.op}: {list(xs)} -> {list(ys)} changes N, C/B or B")
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw = _window(node)
    h, w, oh, ow = xs[2], xs[3], ys[2], ys[3]
    count = None
    if node.op == "BlockedAveragePool":  # the divisors of pool.py's AveragePool
        if node.attrs.get("count_include_pad", False):
            ch, cw = _taps_inside(oh, kh, sh, dh, pt, -pt, h + pb), _taps_inside(ow, kw, sw, dw, pl, -pl, w + pr)
        else:
            ch, cw = _taps_inside(oh, kh, sh, dh, pt, 0, h), _taps_inside(ow, kw, sw, dw, pl, 0, w)
        count = np.maximum(ch[:, None] * cw[None, :], 1)  # no tap inside: the sum 0 stays 0
    win = _Windows(xs, oh, ow, (kh, kw, sh, sw, pt, pl, dh, dw), dt, MAX if count is None else SUM, count=count)
    return lambda ins, outs: win(ins[0], outs[0])


@register("BlockedGlobalAveragePool", "BlockedGlobalMaxPool")
def build_blocked_global_pool(node, graph) -> KernelFn:
    """X (N, CB, H, W, B) -> Y (N, CB, 1, 1, B): the bytes of NCHW (N, C, 1, 1)."""
    (n, cb, h, w, b), ys, _ = _shapes(graph, node, 5, 5)
    if ys != (n, cb, 1, 1, b):
        raise ValueError(f"{node.op}: {[n, cb, h, w, b]} -> {list(ys)}")
    is_max = node.op == "BlockedGlobalMaxPool"
    acc = np.empty((n * cb, b))

    def run(ins, outs):
        x = ins[0].reshape(-1)
        pick(_global, _global_serial, x.size, num_threads())(x, outs[0].reshape(-1), acc, h * w, b, is_max)

    return run


@register("BlockedChannelAffine")
def build_blocked_channel_affine(node, graph) -> KernelFn:
    """y = act(x * scale[c] + shift[c]) on X (N, CB, H, W, B); scale, shift (C,), constant or not.
    One fused multiply-add (one rounding; ChannelAffine rounds the product too)."""
    xs, ys, dt = _shapes(graph, node, 5, 5)
    n, cb, h, w, b = xs
    if ys != xs or any(tuple(graph.values[i].shape) != (cb * b,) for i in node.inputs[1:3]):
        raise ValueError(f"BlockedChannelAffine: {list(xs)} -> {list(ys)} with parameters not ({cb * b},)")
    act = ACTIVATIONS[node.attrs.get("activation", "none")]
    alpha, beta = float(node.attrs.get("act_alpha", 0.0)), float(node.attrs.get("act_beta", 0.0))
    win = _Windows(xs, h, w, (1, 1, 1, 1, 0, 0, 1, 1), dt, FMA, act, alpha, beta)
    fixed = [graph.constants.get(i) for i in node.inputs[1:3]]
    fixed = [None if f is None else readonly(np.ascontiguousarray(f, dt).reshape(-1)) for f in fixed]

    def run(ins, outs):
        s = fixed[0] if fixed[0] is not None else readonly(ins[1].reshape(-1))
        t = fixed[1] if fixed[1] is not None else readonly(ins[2].reshape(-1))
        win(ins[0], outs[0], s, t)

    return run


def build_blocked_depthwise(
    spec: ConvSpec, w_const: np.ndarray | None, b_const: np.ndarray | None, block: int
) -> KernelFn:
    """run(ins, outs) of a depthwise conv (group == C == M) in the blocked layout, block B.

    ins = [x (N, C/B, H, W, B), w (M, 1, kh, kw), bias (M,) or None, residual (N, M/B, OH, OW, B)
    or None], outs = [y (N, M/B, OH, OW, B)]; y = act(conv + bias + residual) as ``spec`` says.
    Constant weights are packed here as (C/B, kh*kw, B), runtime ones at every run."""
    s = spec
    if s.m != s.c or s.group != s.c:
        raise ValueError(f"blocked depthwise needs group == C == M, got C={s.c}, M={s.m}, group={s.group}")
    if s.c % block:
        raise ValueError(f"C={s.c} is not a multiple of the block {block}")
    dt, cb, kk = np.dtype(s.dtype), s.c // block, s.kh * s.kw

    def pack(w):
        return np.asarray(w, dt).reshape(cb, block, kk).transpose(0, 2, 1)

    w_buf = np.empty((cb, kk, block), dt)
    if w_const is not None:
        w_buf[...] = pack(w_const)
    w_ro = readonly(w_buf.reshape(-1))
    bias = readonly(np.ascontiguousarray(b_const if b_const is not None else np.zeros(s.m), dt))
    window = (s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw)
    win = _Windows((s.n, cb, s.h, s.w, block), s.oh, s.ow, window, dt, FMA, s.act, s.alpha, s.beta)

    def run(ins, outs):
        if w_const is None:
            np.copyto(w_buf, pack(ins[1]))
        b = bias if b_const is not None or _opt(ins, 2) is None else readonly(ins[2].reshape(-1))
        res = _opt(ins, 3) if s.has_res else None
        if res is not None and not (res.flags.c_contiguous and res.flags.writeable):
            res = np.array(res, dt)  # one compiled signature: C-contiguous and writable
        win(ins[0], outs[0], w_ro, b, res)

    return run

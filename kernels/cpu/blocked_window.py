"""The window kernel of the channel-blocked layout NCHWc (blocked.py): pools, depthwise conv.

In the blocked layout (N, C/B, H, W, B) a pixel of a channel block is one vector of B
channels, and a window tap one vector operation. Pools and the depthwise conv are one
kernel, :func:`_windows`. At
build, output rows are put in classes by their valid kernel rows and columns in segments by
their valid kernel columns, with one tap list per (class, segment): padding is handled by the
lists, never by a test per element. A run of rows of one class times a segment is one call of
:func:`_lane_taps`, LLVM IR with explicit vectors (llvm_ir.py, as microkernel.py): four pixels
at a time, per tap one weight vector and four fused multiply-adds (or max, or add) into
accumulators held in registers, then residual and clamp. Plain Numba loops over the B lanes
do not vectorise (LLVM gives up on the 20+ runtime alias checks between output, input taps
and weights). B that is not a multiple of the vector width (tests: 4, or 8 for float32 on
AVX-512) runs :func:`_lane_taps_any`, the same operations in plain Numba.

MaxPool skips NaN as pool.py does (a window of only NaN gives -inf); AveragePool divides by
the same per-pixel counts. Relu and Clip are selects (NaN stays NaN); other activations run
over a task's rows afterwards (act_inplace).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from cnnrt.kernels._jit import njit, num_threads, pick
from cnnrt.kernels.activation import CLIP, NONE, RELU
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.blas import share
from cnnrt.kernels.cpu.conv_common import block_size, readonly  # block_size: the vector width _lane_taps runs on
from cnnrt.kernels.cpu.llvm_ir import Vectors, c64, data_pointers, load_bf16, round_bf16
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.vector_ir import fma

FMA, MAX, SUM = 0, 1, 2  # what a tap does to the accumulator (_lane_taps' mode)
GROUP = 4  # pixels per register block of _lane_taps (6 or 8: no faster here)
TASK_ELEMS = 4096  # output elements per task at least (a task is a band of rows of one plane)


def _bf16_bits(a, w) -> bool:
    """Whether array type ``a`` holds a bf16 activation's bits (uint16) beside float32 weights."""
    return isinstance(a, types.Array) and a.dtype == types.uint16 and w.dtype == types.float32


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
    v if v > acc else acc (NaN skipped), or acc + v, divided by init[o + io:] (SUM: the
    pixel's divisor in every lane); then acc (+ res[o]), clamped to [lo, hi] by selects (NaN
    passes). Arrays of one float dtype, tx/tw int64."""
    floats = tuple(a for a in (x, w, init, res, out) if not _bf16_bits(a, w))
    if not all(isinstance(a, types.Array) and a.dtype in (types.float32, types.float64) for a in floats):
        return None
    if len({a.dtype for a in floats}) != 1 or not all(isinstance(a, types.Array) for a in (tx, tw)):
        return None
    if tx.dtype != types.int64 or tw.dtype != types.int64:
        return None
    dt, i64 = w.dtype, types.int64
    sig = types.void(x, i64, i64, i64, tx, tw, i64, i64, w, i64, init, i64, res, out, *[i64] * 6, types.boolean, dt, dt)

    def codegen(context, builder, sig, args):
        xo_v, xstep_v, xrstep_v = args[1:4]
        t0_v, nt_v, wo_v, io_v = args[6], args[7], args[9], args[11]
        oo_v, ostep_v, orstep_v, ncol_v, count_v, mode_v, res_on, lo_v, hi_v = args[14:]
        px, ptx, ptw, pw, pinit, pres, pout = data_pointers(context, builder, sig, args, 0, 4, 5, 8, 10, 12, 13)
        vec = Vectors(builder, dt)
        vload, splat = vec.load, vec.splat
        lo_s, hi_s = splat(lo_v), splat(hi_v)

        def xload(off):  # float32, or a bf16 activation's bits widened exactly
            return load_bf16(builder, px, off, vec.lanes) if _bf16_bits(x, w) else vload(px, off)

        def put(v, off):  # float32, or rounded to a bf16 activation's bits
            if not _bf16_bits(out, w):
                vec.store(v, pout, off)
                return
            h = round_bf16(builder, builder.bitcast(v, ir.VectorType(ir.IntType(32), vec.lanes)))
            builder.store(h, builder.bitcast(builder.gep(pout, [off]), h.type.as_pointer())).align = 2

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
            start = vload(pinit, io_v) if op == FMA else lo_s if op == MAX else vec.zero
            accs = [cgutils.alloca_once_value(builder, start) for _ in range(nq)]
            with cgutils.for_range(builder, builder.add(t0_v, nt_v), start=t0_v) as loop:
                toff = builder.load(builder.gep(ptx, [loop.index]))
                if op == FMA:
                    wv = vload(pw, builder.add(wo_v, builder.load(builder.gep(ptw, [loop.index]))))
                for acc, xq in zip(accs, xs):
                    v, a = xload(builder.add(xq, toff)), builder.load(acc)
                    if op == FMA:
                        a = vec.fma(wv, v, a)
                    elif op == MAX:
                        a = builder.select(builder.fcmp_ordered(">", v, a), v, a)
                    else:
                        a = builder.fadd(a, v)
                    builder.store(a, acc)
            for acc, o in zip(accs, os):
                if op == SUM:
                    builder.store(builder.fdiv(builder.load(acc), vload(pinit, builder.add(o, io_v))), acc)
                with builder.if_then(res_on):
                    builder.store(builder.fadd(builder.load(acc), vload(pres, o)), acc)
                put(vec.clamp(builder.load(acc), lo_s, hi_s), o)

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


def _lane_taps_any(args):
    """_lane_taps for any vector width, in plain Numba (:func:`_any_width`: the same operations
    in the same order) on float arrays, its arguments as one tuple; bf16 activations come in
    whole vector blocks only (:class:`Windows`), so for their bits it is empty."""
    raise NotImplementedError("_lane_taps_any runs compiled only")


@overload(_lane_taps_any, inline="always")
def _lane_taps_any_impl(args):
    if any(isinstance(a, types.Array) and a.dtype == types.uint16 for a in args):
        return lambda args: None
    return _any_width


def _act_floats(out, kind, alpha, beta):
    """act_inplace on a float output (a bf16 one ends at a clamp, :class:`Windows`)."""
    raise NotImplementedError("_act_floats runs compiled only")


@overload(_act_floats, inline="always")
def _act_floats_impl(out, kind, alpha, beta):
    if out.dtype == types.uint16:
        return lambda out, kind, alpha, beta: None
    return lambda out, kind, alpha, beta: act_inplace(out, kind, alpha, beta)


def _any_width(args):
    x, xo, xstep, xrstep, tx, tw, t0, nt, w, wo, init, io, res, out, oo, ostep, orstep, ncol, count, mode = args[:20]
    has_res, lo, hi, width = args[20:]
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
            a = out[o + lane] / init[o + io + lane] if mode == SUM else out[o + lane]
            a = a + res[o + lane] if has_res else a
            a = lo if a < lo else a
            out[o + lane] = hi if a > hi else a


@njit
def _windows_worker(
    part, parts, geo, x, w, init, res, out, rows, segs, tx, tw, mode, has_res, lo, hi, kind, alpha, beta
):
    """Blocked x (planes, H, W, B) -> out (planes, OH, OW, B), flat: a window op (module doc),
    over tasks (plane, band of output rows), this part's share of them (kernels.cpu.threaded;
    ``geo`` its geometry tuple). w: (CB, kh*kw, B) weights (FMA); init: (CB, B)
    bias (FMA) or (OH, OW, B) divisors, each pixel's in every lane (SUM); rows[oh]: the class
    of output row oh; segs[s]: columns [o0, o1) of segment s, then per class r its tap count;
    its taps (x and w offsets) are tx, tw[(r*S + s)*K :]. x and out may hold bf16 bits
    (uint16) where Windows says so."""
    h, wd, oh_n, ow_n, sh, sw, pt, pl, b, band, cb_n, kk, vl = geo
    nb = (oh_n + band - 1) // band
    n_seg = segs.shape[0]
    first, end = share(part, parts, out.size // (oh_n * ow_n * b) * nb)
    for task in range(first, end):
        p = task // nb
        r0 = (task - p * nb) * band
        r1 = min(oh_n, r0 + band)
        wo = (p % cb_n) * kk * b
        io = -p * oh_n * ow_n * b if mode == SUM else (p % cb_n) * b  # SUM: init holds a plane's divisors
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
                            io if mode == SUM else io + c,  # SUM's divisors sit at out's offset + io
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
                    head = (x, xo, sw * b, sh * wd * b, tx, tw, t0, nt, w, wo, init, io, res, out, oo)
                    _lane_taps_any(head + (b, ow_n * b, o1 - o0, n_px, mode, has_res, lo, hi, b))
            e0 = e1
        if kind != NONE and kind != RELU and kind != CLIP:
            _act_floats(out[(p * oh_n + r0) * ow_n * b : (p * oh_n + r1) * ow_n * b], kind, alpha, beta)


_windows, _windows_serial = threaded(_windows_worker)


def _valid_taps(out_count, k, s, pad, d, size):
    """Per output position: the taps [t0, t1) of its window (start o*s - pad, step d) in [0, size)."""
    first = np.arange(out_count) * s - pad
    t0 = np.maximum(0, -(first // d))  # -(a // d) is ceil(-a / d)
    return t0, np.maximum(t0, np.minimum(k, (size - 1 - first) // d + 1))


class Windows:
    """A window op fixed at build: row classes, column segments, tap lists, task bands."""

    def __init__(
        self, shape5, oh, ow, window, dtype, mode, act=0, alpha=0.0, beta=0.0, count=None, bf16=(False, False)
    ):
        """``bf16``: (input, output) is a bf16 activation (its bits, read widened or stored
        rounded by _lane_taps): float32 sums, whole vector blocks, an activation that is a clamp."""
        n, cb, h, w, b = shape5
        kh, kw, sh, sw, pt, pl, dh, dw = window
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"blocked kernels take float32/float64, got {dt}")
        if any(bf16) and (dt != np.float32 or b != block_size(dt) or act not in (NONE, RELU, CLIP)):
            raise ValueError("bf16 activations in a window op need float32 vector blocks and a clamp for activation")
        self.bf16 = bf16
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
        # SUM: a plane's divisors, each pixel's in all B lanes, so the lane kernel divides whole
        # vectors (a division per element after the sums took 2/3 of AveragePool's time)
        self.divisors = None if count is None else readonly(np.repeat(np.asarray(count, dt).reshape(-1), b))
        # Identity, Relu and Clip are a clamp to [lo, hi] in the lane kernels (NaN passes)
        lo, hi = {RELU: (0.0, np.inf), CLIP: (alpha, beta)}.get(act, (-np.inf, np.inf))
        self.scalars = (mode, dt.type(lo), dt.type(hi), act, dt.type(alpha), dt.type(beta))
        self.work = n * cb * b * oh * ow * kk
        self.no_res = np.zeros(1, dt)  # writable, as the arena arrays residuals come in
        self.dummy = readonly(np.zeros(1, dt))

    def args(self, x, out, w=None, init=None, res=None) -> tuple:
        """The lane kernel's arguments for these arrays."""
        x, out = x.reshape(-1), out.reshape(-1)
        return (
            self.geo,
            x.view(np.uint16) if self.bf16[0] else x,
            self.dummy if w is None else w,
            self.divisors if self.divisors is not None else self.dummy if init is None else init,
            self.no_res if res is None else res.reshape(-1),
            out.view(np.uint16) if self.bf16[1] else out,
            self.rows,
            self.segs,
            self.tx,
            self.tw,
            self.scalars[0],
            res is not None,
            *self.scalars[1:],
        )

    def bind(self, x, out, w=None, init=None, res=None):
        """The op on these arrays as a call without arguments, offered to a native plan."""
        args = self.args(x, out, w, init, res)
        return native_call(_windows, _windows_serial, self.work, lambda nthreads: (nthreads, *args))

    def __call__(self, x, out, w=None, init=None, res=None):
        nthreads = num_threads()
        pick(_windows, _windows_serial, self.work, nthreads)(nthreads, *self.args(x, out, w, init, res))

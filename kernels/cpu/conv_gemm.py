"""Convolution as GEMM tasks on one pool: im2col (or the input itself, for 1x1) per block of
output pixels, a single-threaded sgemm per block, the epilogue while the block is in cache.

One parallel region per layer. The output of image ``n``, group ``g`` is the GEMM
``W[g] (Mg x K) @ col (K x P)`` with P = OH*OW; it is cut into tasks (n, g, pixel block,
row block) that threads claim from a shared counter (:func:`blas.claim`), so a thread that
is descheduled (a busy machine) delays only the block it holds. Each thread keeps its own
im2col scratch and recomputes it only when its next task is on another pixel block; row
blocks are used only when pixel blocks are too few to keep the threads busy (late layers).

Block sizes are fixed when the session is built (:func:`plan_blocks`) from the shape alone.
"""

from __future__ import annotations

import numpy as np
from cnnrt.kernels._jit import njit, pick, pjit, serial_twin
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_row
from cnnrt.kernels.cpu.conv import _valid_range
from numba import prange

_COL_BUDGET = 1 << 20  # bytes of im2col scratch per task (L2 is 2 MB)
_MIN_TASKS = 8  # pixel blocks are halved (down to 64) until there are this many tasks
_MIN_ROW_TASKS = 4  # below this many, output rows (channels) are split too
_MIN_TASK_MACS = 1 << 19  # ~5 us of GEMM: smaller tasks cost more to hand out than they save
_FOLD_BELOW = 256  # images with fewer output pixels share column blocks at batch > 1


def plan_blocks(n: int, g: int, mg: int, k: int, p: int, itemsize: int, direct: bool) -> tuple[int, int]:
    """(column block, row block) for ``g`` GEMMs of (mg x k) @ (k x n*p).

    Columns are the output pixels of all images, (n, p) flattened. Blocks stay inside an
    image when images are big; small images at batch > 1 (late layers, LeNet) are folded
    together, a block spanning images going through per-thread scratch, so the GEMMs get
    enough columns (OpenBLAS ran at ~90 GFLOP/s on 49 columns, ~125 on 392). Few tasks are
    made up by splitting rows (output channels) into tall blocks first (64 / 128 / 256-row
    blocks on 49 columns: 72 / 85 / 94 GFLOP/s), columns second."""
    if direct:  # 1x1: no im2col scratch, blocks only for parallelism and cache reuse
        want = 1024
    else:
        want = max(128, min(2048, _COL_BUDGET // max(1, k * itemsize)))
    total = n * p
    fold = n > 1 and p < want
    pb = min(total, want) if fold else min(p, want)
    pb = min(total, -(-pb // 16) * 16)
    # no more tasks than the work pays for: a task of under ~_MIN_TASK_MACS is mostly overhead
    while pb < total and mg * k * pb < _MIN_TASK_MACS:
        pb = min(total, pb * 2)
    tasks = g * _blocks(n, p, pb)
    mb = mg
    if tasks < _MIN_TASKS and mg >= 256 and mg * k * total >= 2 * _MIN_TASK_MACS:
        mb = blas.split(mg, min(-(-_MIN_TASKS // tasks), mg // 128), 16)
        tasks *= -(-mg // mb)
    floor = 128 if fold else 64
    while (
        tasks < (_MIN_ROW_TASKS if mb < mg else _MIN_TASKS) and pb >= 2 * floor and mg * k * (pb // 2) >= _MIN_TASK_MACS
    ):
        pb = -(-(pb // 2) // 16) * 16
        tasks = g * _blocks(n, p, pb) * -(-mg // mb)
    if pb < p:  # inside images: split each image evenly
        per = -(-p // pb)  # blocks per image
        even = -(-p // per)  # their even size
        pb = min(p, -(-even // 16) * 16)
    return pb, mb


def _blocks(n: int, p: int, pb: int) -> int:
    """Column blocks of n images of p pixels: per image when pb <= p, else over all columns."""
    return n * -(-p // pb) if pb <= p else -(-(n * p) // pb)


@njit
def _im2col_block(x, n, c0, cg, col, ld, coff, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, p1):
    """col[(c, i, j), q] = x[n, c0 + c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] for output pixels
    q = p - p0, p in [p0, p1) (0 outside the input), stored at col[r*ld + coff + q].

    Indices are cast to unsigned: Numba then emits no negative-index wraparound, which kept
    LLVM from vectorising (8x slower copies) and which slices avoided only at a cost per row."""
    h, w = x.shape[2], x.shape[3]
    np_ = p1 - p0
    kk = kh * kw
    oh0 = p0 // ow
    oh1 = (p1 - 1) // ow + 1
    if ow <= 4:  # tiny rows: element by element, with running (oh, ow) counters
        for r in range(cg * kk):
            c = r // kk
            i = (r - c * kk) // kw
            j = r - c * kk - i * kw
            if r == c * kk:
                xc = x[n, c0 + c]
            base = r * ld + coff
            oh = p0 // ow
            owi = p0 - oh * ow
            for q in range(np_):
                ih = oh * sh + i * dh - pt
                iw = owi * sw + j * dw - pl
                v = xc[np.uint64(ih), np.uint64(iw)] if 0 <= ih < h and 0 <= iw < w else 0
                col[np.uint64(base + q)] = v
                owi += 1
                if owi == ow:
                    owi = 0
                    oh += 1
        return
    for r in range(cg * kk):
        c = r // kk
        i = (r - c * kk) // kw
        j = r - c * kk - i * kw
        off = j * dw - pl
        lo, hi = _valid_range(off, sw, w, ow)
        if r == c * kk:  # one plane view per channel (a view per row cost ~20 ns: LeNet's 5x5)
            xc = x[n, c0 + c]
        base = r * ld + coff
        for oh in range(oh0, oh1):
            a = max(0, oh * ow - p0)  # first column of this output row in the block
            b = min(np_, (oh + 1) * ow - p0)
            s = p0 + a - oh * ow  # its ow
            e = s + (b - a)
            dst = base + a - s  # col index of output column ow: dst + ow
            ih = oh * sh + i * dh - pt
            if ih < 0 or ih >= h:
                for q in range(base + a, base + b):
                    col[np.uint64(q)] = 0
                continue
            vlo = min(max(lo, s), e)  # the valid ow range [lo, hi) intersected with [s, e)
            vhi = max(min(hi, e), vlo)
            uih = np.uint64(ih)
            for q in range(s, vlo):
                col[np.uint64(dst + q)] = 0
            for q in range(vlo, vhi):
                col[np.uint64(dst + q)] = xc[uih, np.uint64(q * sw + off)]
            for q in range(vhi, e):
                col[np.uint64(dst + q)] = 0


@pjit
def _conv_tasks(x, wg, bias, res, out, col, cbuf, counter, nthreads, direct,
                kh, kw, sh, sw, pt, pl, dh, dw, ow, pb, mb, has_res, kind, alpha, beta):  # fmt: skip
    """out[n, g*Mg + m, p] = act(sum_k wg[g, m, k] col[k, (n, p)] + bias + res), task by task.

    x (N, C, H, W); wg (G, Mg, K); out, res (N, M, P) contiguous; per thread: col (K * pb)
    for im2col or folded input, cbuf (mb * pb) for the product of a block spanning images."""
    n_count, c, h, w = x.shape
    g_count, mg, k = wg.shape
    m_count = out.shape[1]
    p_count = out.shape[2]
    cg = c // g_count
    total = n_count * p_count
    per_img = (p_count + pb - 1) // pb  # pb <= P: blocks inside images; pb > P: folded
    n_pb = n_count * per_img if pb <= p_count else (total + pb - 1) // pb
    n_mb = (mg + mb - 1) // mb
    ntasks = g_count * n_pb * n_mb
    hw = h * w
    for t in prange(nthreads):
        scratch = col[t]
        cs = cbuf[t]
        held = -1
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            blk = i // n_mb  # (g, column block), row block fastest: a thread keeps its col
            mi = i - blk * n_mb
            g = blk // n_pb
            b = blk - g * n_pb
            if pb <= p_count:
                n = b // per_img
                q0 = n * p_count + (b - n * per_img) * pb
                q1 = min(n * p_count + p_count, q0 + pb)
            else:
                q0 = b * pb
                q1 = min(total, q0 + pb)
            nq = q1 - q0
            m0 = mi * mb
            m1 = min(mg, m0 + mb)
            n = q0 // p_count
            p0 = q0 - n * p_count
            if (q1 - 1) // p_count == n:  # inside image n: straight into the output
                p1 = p0 + nq
                orow = n * m_count + g * mg  # first output row (n, g*Mg) in the (N*M, P) view
                if direct:
                    blas.gemm(False, m1 - m0, nq, k, wg, (g * mg + m0) * k, k,
                              x, (n * c + g * cg) * hw + p0, hw, 0.0, out, (orow + m0) * p_count + p0, p_count)  # fmt: skip
                else:
                    if blk != held:
                        _im2col_block(x, n, g * cg, cg, scratch, nq, 0, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, p1)
                        held = blk
                    blas.gemm(False, m1 - m0, nq, k, wg, (g * mg + m0) * k, k,
                              scratch, 0, nq, 0.0, out, (orow + m0) * p_count + p0, p_count)  # fmt: skip
                for m in range(m0, m1):
                    ch = g * mg + m
                    if has_res:
                        act_row(out[n, ch, p0:p1], bias[ch], res[n, ch, p0:p1], True, kind, alpha, beta)
                    else:
                        act_row(out[n, ch, p0:p1], bias[ch], res[0, 0, 0:1], False, kind, alpha, beta)
                continue
            # spanning images: gather the columns image by image, GEMM into scratch, scatter
            if blk != held:
                q = q0
                while q < q1:
                    n = q // p_count
                    pa = q - n * p_count
                    pe = min(p_count, pa + q1 - q)
                    if direct:
                        for r in range(k):
                            src = x[n, g * cg + r]
                            _copy_plane_cols(src, scratch, r * nq + q - q0, pa, pe, ow)
                    else:
                        _im2col_block(x, n, g * cg, cg, scratch, nq, q - q0, kh, kw, sh, sw, pt, pl, dh, dw, ow, pa, pe)
                    q += pe - pa
                held = blk
            blas.gemm(False, m1 - m0, nq, k, wg, (g * mg + m0) * k, k, scratch, 0, nq, 0.0, cs, 0, nq)
            q = q0
            while q < q1:
                n = q // p_count
                pa = q - n * p_count
                pe = min(p_count, pa + q1 - q)
                for m in range(m0, m1):
                    ch = g * mg + m
                    o = out[n, ch, pa:pe]
                    src = cs[(m - m0) * nq + q - q0 : (m - m0) * nq + q - q0 + pe - pa]
                    for e in range(pe - pa):
                        o[e] = src[e]
                    if has_res:
                        act_row(o, bias[ch], res[n, ch, pa:pe], True, kind, alpha, beta)
                    else:
                        act_row(o, bias[ch], res[0, 0, 0:1], False, kind, alpha, beta)
                q += pe - pa


_conv_tasks_serial = serial_twin(_conv_tasks)


@njit
def _copy_plane_cols(plane, dst, off, pa, pe, ow):
    """dst[off + (p - pa)] = plane.flat[p] for p in [pa, pe) (plane: one (OH, OW) input channel)."""
    for p in range(pa, pe):
        oh = p // ow
        dst[np.uint64(off + p - pa)] = plane[np.uint64(oh), np.uint64(p - oh * ow)]


def build_tasks(spec, w_const, b_const, direct: bool):
    """run(ins, outs) computing ``spec`` as GEMM tasks (``direct``: 1x1 stride 1 unpadded)."""
    import numba
    from cnnrt.kernels.cpu.conv import readonly

    dt = np.dtype(spec.dtype)
    g, mg, k, p = spec.group, spec.mg, spec.k, spec.oh * spec.ow
    pb, mb = plan_blocks(spec.n, g, mg, k, p, dt.itemsize, direct)
    wg = None if w_const is None else readonly(np.ascontiguousarray(w_const.reshape(g, mg, k)))
    zeros = readonly(np.zeros(spec.m, dt))
    dummy_res = np.zeros((1, 1, 1), dt)
    max_threads = numba.config.NUMBA_NUM_THREADS
    folds = pb > p  # some column blocks span images
    col = np.zeros((max_threads, k * pb if folds or not direct else 1), dt)
    cbuf = np.zeros((max_threads, mb * pb if folds else 1), dt)
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    oshape = (spec.n, spec.m, p)
    ntasks = g * _blocks(spec.n, p, pb) * -(-mg // mb)
    work = spec.n * spec.m * p * k if ntasks > 1 else 0  # one task: nothing to share
    s = spec

    def run(ins, outs):
        w = wg if wg is not None else readonly(np.ascontiguousarray(ins[1]).reshape(g, mg, k))
        b = b_const if b_const is not None else (readonly(ins[2]) if len(ins) > 2 and ins[2] is not None else zeros)
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        counter[0] = 0
        nthreads = min(numba.get_num_threads(), max_threads)
        kern = pick(_conv_tasks, _conv_tasks_serial, work, nthreads)
        kern(ins[0], w, b, dummy_res if r is None else r.reshape(oshape), outs[0].reshape(oshape), col, cbuf,
                    counter, nthreads, direct, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl,
                    s.dh, s.dw, s.ow, pb, mb, r is not None, s.act, alpha, beta)  # fmt: skip

    run.blocks = (pb, mb)
    return run

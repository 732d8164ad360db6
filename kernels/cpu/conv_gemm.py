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
from cnnrt.kernels._jit import njit, pjit
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.activation import act_row
from cnnrt.kernels.cpu.conv import _valid_range
from numba import prange

_COL_BUDGET = 4194304  # bytes of im2col scratch per task
_MIN_TASKS = 8  # pixel blocks are halved (down to 64) until there are this many tasks
_MIN_ROW_TASKS = 4  # below this many, output rows (channels) are split too
_MIN_TASK_MACS = 1 << 19  # ~5 us of GEMM: smaller tasks cost more to hand out than they save


def plan_blocks(n: int, g: int, mg: int, k: int, p: int, itemsize: int, direct: bool) -> tuple[int, int]:
    """(pixel block, row block) for ``n * g`` GEMMs of (mg x k) @ (k x p)."""
    if direct:  # 1x1: no scratch, blocks only for parallelism and cache reuse of the output
        pb = min(p, 1024)
    else:
        pb = max(64, min(2048, _COL_BUDGET // max(1, k * itemsize)))
    pb = min(p, -(-pb // 16) * 16)
    # keep several pixel blocks per image when the image is big enough for that
    while pb > 64 and n * g * -(-p // pb) < _MIN_TASKS:
        pb = max(64, -(-(pb // 2) // 16) * 16)
    # no more tasks than the work pays for: a task of under ~_MIN_TASK_MACS is mostly overhead
    while pb < p and n * g * mg * k * pb < _MIN_TASK_MACS * n * g * 1:
        pb = min(p, pb * 2)
    tasks = n * g * -(-p // pb)
    mb = mg
    if tasks < _MIN_ROW_TASKS and mg >= 64 and mg * k * p >= 2 * _MIN_TASK_MACS:
        # OpenBLAS on few pixels (N = 49) ran at 72 / 85 / 94 GFLOP/s with 64 / 128 / 256-row
        # blocks: few, tall row blocks
        parts = min(-(-_MIN_ROW_TASKS // tasks), max(1, mg // 128))
        mb = blas.split(mg, parts, 16)
    return pb, mb


@njit
def _im2col_block(x, n, c0, cg, col, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, p1):
    """col[(c, i, j), q] = x[n, c0 + c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] for output pixels
    q = p - p0, p in [p0, p1) (0 outside the input); col has row length p1 - p0.

    Indices are cast to unsigned: Numba then emits no negative-index wraparound, which kept
    LLVM from vectorising (8x slower copies) and which slices avoided only at a cost per row."""
    h, w = x.shape[2], x.shape[3]
    np_ = p1 - p0
    kk = kh * kw
    oh0 = p0 // ow
    oh1 = (p1 - 1) // ow + 1
    for r in range(cg * kk):
        c = r // kk
        i = (r - c * kk) // kw
        j = r - c * kk - i * kw
        off = j * dw - pl
        lo, hi = _valid_range(off, sw, w, ow)
        xc = x[n, c0 + c]
        base = r * np_
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
def _conv_tasks(x, wg, bias, res, out, col, counter, nthreads, direct,
                kh, kw, sh, sw, pt, pl, dh, dw, ow, pb, mb, has_res, kind, alpha, beta):  # fmt: skip
    """out[n, g*Mg + m, p] = act(sum_k wg[g, m, k] col[k, p] + bias + res), task by task.

    x (N, C, H, W); wg (G, Mg, K); out, res (N, M, P) contiguous; col (threads, K * pb)."""
    n_count, c, h, w = x.shape
    g_count, mg, k = wg.shape
    m_count = out.shape[1]
    p_count = out.shape[2]
    cg = c // g_count
    n_pb = (p_count + pb - 1) // pb
    n_mb = (mg + mb - 1) // mb
    ntasks = n_count * g_count * n_pb * n_mb
    hw = h * w
    for t in prange(nthreads):
        scratch = col[t]
        held = -1
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            blk = i // n_mb  # (n, g, pixel block), row block fastest: a thread keeps its col
            mi = i - blk * n_mb
            n = blk // (g_count * n_pb)
            rest = blk - n * g_count * n_pb
            g = rest // n_pb
            p0 = (rest - g * n_pb) * pb
            p1 = min(p_count, p0 + pb)
            m0 = mi * mb
            m1 = min(mg, m0 + mb)
            orow = n * m_count + g * mg  # first output row (n, g*Mg) in the (N*M, P) view
            if direct:
                blas.gemm(False, m1 - m0, p1 - p0, k, wg, (g * mg + m0) * k, k,
                          x, (n * c + g * cg) * hw + p0, hw, 0.0, out, (orow + m0) * p_count + p0, p_count)  # fmt: skip
            else:
                if blk != held:
                    _im2col_block(x, n, g * cg, cg, scratch, kh, kw, sh, sw, pt, pl, dh, dw, ow, p0, p1)
                    held = blk
                blas.gemm(False, m1 - m0, p1 - p0, k, wg, (g * mg + m0) * k, k,
                          scratch, 0, p1 - p0, 0.0, out, (orow + m0) * p_count + p0, p_count)  # fmt: skip
            for m in range(m0, m1):
                ch = g * mg + m
                if has_res:
                    act_row(out[n, ch, p0:p1], bias[ch], res[n, ch, p0:p1], True, kind, alpha, beta)
                else:
                    act_row(out[n, ch, p0:p1], bias[ch], res[0, 0, 0:1], False, kind, alpha, beta)


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
    col = np.zeros((max_threads, 1 if direct else k * pb), dt)
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    oshape = (spec.n, spec.m, p)
    s = spec

    def run(ins, outs):
        w = wg if wg is not None else readonly(np.ascontiguousarray(ins[1]).reshape(g, mg, k))
        b = b_const if b_const is not None else (readonly(ins[2]) if len(ins) > 2 and ins[2] is not None else zeros)
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        counter[0] = 0
        _conv_tasks(ins[0], w, b, dummy_res if r is None else r.reshape(oshape), outs[0].reshape(oshape), col,
                    counter, min(numba.get_num_threads(), max_threads), direct, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl,
                    s.dh, s.dw, s.ow, pb, mb, r is not None, s.act, alpha, beta)  # fmt: skip

    run.blocks = (pb, mb)
    return run

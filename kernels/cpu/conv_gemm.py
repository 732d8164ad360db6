"""Convolution as GEMM tasks on one pool: 1x1 convs read the input in place, other kernels
(strided or padded 1x1 by default; any, on request) gather im2col blocks; the product runs on
cnnrt's register tile (microkernel.py) with the weights packed at build and the epilogue
(bias, residual, activation) applied by the tile while it is in L1 (microkernel.tile_act).

One parallel region per layer. The output of image ``n``, group ``g`` is the GEMM
``W[g] (Mg x K) @ B (K x P)`` with P = OH*OW; it is cut into tasks (n, g, pixel block,
row block) that threads claim from a shared counter (:func:`blas.claim`), so a thread that
is descheduled (a busy machine) delays only the block it holds. Within a task, column panels
(NR pixels) are outermost and K is cut into blocks that keep the B panel in L1 while every
row panel's weights stream past it. Tiles whose columns are ragged or span images go through
a scratch tile and get their epilogue when copied out.

Block sizes are fixed when the session is built (:func:`plan_blocks`) from the shape alone.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import njit, pjit, serial_twin
from cnnrt.kernels.aligned import aligned_copy, per_thread
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.conv_common import conv_run, readonly, tile_flags
from cnnrt.kernels.cpu.conv_gather import gather_block
from cnnrt.kernels.cpu.microkernel import MR
from cnnrt.kernels.prepacked import prepacked

_COL_BUDGET = 1 << 20  # bytes of im2col scratch per task (L2 is 2 MB)
_MIN_TASKS = 8  # pixel blocks are halved (down to 64) until there are this many tasks
_MIN_ROW_TASKS = 4  # below this many, output rows (channels) are split too
_MIN_TASK_MACS = 1 << 19  # smaller tasks cost more to hand out than they save


def plan_blocks(n: int, g: int, mg: int, k: int, p: int, itemsize: int, nr: int) -> tuple[int, int]:
    """(column block, row block) for ``g`` GEMMs of (mg x k) @ (k x n*p).

    Columns are the output pixels of all images, (n, p) flattened. Blocks stay inside an
    image when images are big; small images at batch > 1 (late layers, LeNet) are folded
    together, a block spanning images going through per-thread scratch, so the GEMMs get
    enough columns (49 columns fill two 32-wide tiles 77%; a GEMM's rate grows with its
    column count). Few tasks are made up by splitting rows (output channels) into tall blocks
    first (taller row blocks run faster), columns second. Blocks are whole tiles (nr columns,
    MR rows)."""
    want = max(4 * nr, min(2048, _COL_BUDGET // max(1, k * itemsize)))
    total = n * p
    fold = n > 1 and p < want
    pb = min(total, want) if fold else min(p, want)
    pb = min(total, -(-pb // nr) * nr)
    # no more tasks than the work pays for: a task of under ~_MIN_TASK_MACS is mostly overhead
    while pb < total and mg * k * pb < _MIN_TASK_MACS:
        pb = min(total, pb * 2)
    tasks = g * _blocks(n, p, pb)
    mb = mg
    if tasks < _MIN_TASKS and mg >= 256 and mg * k * total >= 2 * _MIN_TASK_MACS:
        mb = blas.split(mg, min(-(-_MIN_TASKS // tasks), mg // 128), MR)
        tasks *= -(-mg // mb)
    floor = 128 if fold else 64
    while (
        tasks < (_MIN_ROW_TASKS if mb < mg else _MIN_TASKS) and pb >= 2 * floor and mg * k * (pb // 2) >= _MIN_TASK_MACS
    ):
        pb = -(-(pb // 2) // nr) * nr
        tasks = g * _blocks(n, p, pb) * -(-mg // mb)
    if pb < p:  # inside images: split each image evenly
        per = -(-p // pb)  # blocks per image
        even = -(-p // per)  # their even size
        pb = min(p, -(-even // nr) * nr)
    return pb, mb


def _blocks(n: int, p: int, pb: int) -> int:
    """Column blocks of n images of p pixels: per image when pb <= p, else over all columns."""
    return n * -(-p // pb) if pb <= p else -(-(n * p) // pb)


@njit
def _pack_panel(src, off, ld, k, width, nr, dst):
    """dst[r*nr + j] = src[off + r*ld + j] for j < width, 0 for width <= j < nr: a ragged last
    panel, so the register tile never reads past its operand."""
    for r in range(k):
        s = np.uint64(off + r * ld)
        d = np.uint64(r * nr)
        for j in range(width):
            dst[d + j] = src[s + j]
        for j in range(width, nr):
            dst[d + j] = 0


@pjit
def _conv_tasks(
    x,
    xf,
    ap,
    bias,
    res,
    out,
    col,
    pbuf,
    tbuf,
    counter,
    nthreads,
    direct,
    kc,
    kh,
    kw,
    sh,
    sw,
    pt,
    pl,
    dh,
    dw,
    ow,
    pb,
    mb,
    has_res,
    kind,
    alpha,
    beta,
    flags,
):
    """out[n, g*Mg + m, p] = act(sum_k W[g, m, k] B[k, (n, p)] + bias + res), task by task.

    x (N, C, H, W) and xf, its flat view; ap: the packed weights (G, panels, K, MR); out, res
    flat (N*M*P). Per thread: col (K x ld) for the block's im2col (or its input columns when
    it spans images; a 1x1 block inside an image is read in place), pbuf (K*NR) for a ragged
    last panel, tbuf (rows of a task x NR) for tiles whose columns are ragged or span images. ``flags``: the epilogue
    the register tile applies (microkernel.py); other activations (``kind``) run per row after."""
    n_count, c = x.shape[0], x.shape[1]
    g_count, n_panels, k = ap.shape[0], ap.shape[1], ap.shape[2]
    nr = pbuf.shape[1] // k
    ld = col.shape[1] // k
    m_count = bias.shape[0]
    mg = m_count // g_count
    p_count = out.shape[0] // (n_count * m_count)
    hw = x.shape[2] * x.shape[3]
    cg = c // g_count
    total = n_count * p_count
    per_img = (p_count + pb - 1) // pb  # pb <= P: blocks inside images; pb > P: folded
    n_pb = n_count * per_img if pb <= p_count else (total + pb - 1) // pb
    n_mb = (mg + mb - 1) // mb
    ntasks = g_count * n_pb * n_mb
    post = kind != 0 and (flags >> mk.ACT_SHIFT) & mk.ACT_MASK == 0  # an activation the tile lacks
    tile_flags = flags if not post else flags & (mk.BIAS | mk.RESIDUAL)
    zero = bias[0] * 0
    for t in prange(nthreads):
        cs = col[t]
        ps = pbuf[t]
        ts = tbuf[t]
        held = -1
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            blk = i // n_mb  # (g, column block), row block fastest: a thread keeps its columns
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
            n0 = q0 // p_count
            inside = (q1 - 1) // p_count == n0
            if direct and inside:  # B is the input itself: rows of length HW
                bsrc = xf
                b0 = (n0 * c + g * cg) * hw + q0 - n0 * p_count
                ldb = hw
            else:
                if blk != held:
                    gather_block(
                        x, xf, g * cg, cg, k, cs, ld, q0, q1, p_count, direct, kh, kw, sh, sw, pt, pl, dh, dw, ow
                    )
                    held = blk
                bsrc = cs
                b0 = 0
                ldb = ld
            n_q = (q1 - q0 + nr - 1) // nr
            width = q1 - q0 - (n_q - 1) * nr  # of the last panel
            if width < nr:
                _pack_panel(bsrc, b0 + (n_q - 1) * nr, ldb, k, width, nr, ps)
            m0 = mi * mb
            m1 = min(mg, m0 + mb)
            p0 = m0 // MR
            p1 = (m1 + MR - 1) // MR
            for tq in range(n_q):
                qa = q0 + tq * nr
                qe = min(q1, qa + nr)
                n = qa // p_count
                pa = qa - n * p_count
                if qe - qa == nr:
                    src, s_off, s_ld = bsrc, b0 + tq * nr, ldb
                else:
                    src, s_off, s_ld = ps, 0, nr
                direct_out = qe - qa == nr and (qe - 1) // p_count == n  # a whole tile inside image n
                # K in blocks of kc: the B panel block (kc x NR) stays in L1 across the row
                # panels, whose A blocks stream from L2
                for k0 in range(0, k, kc):
                    kl = min(kc, k - k0)
                    last = k0 + kl == k
                    acc = mk.ACCUMULATE if k0 > 0 else 0
                    for pnl in range(p0, p1):
                        r0 = pnl * MR  # first row of the panel within the group
                        mr = min(MR, m1 - r0)
                        ch0 = g * mg + r0
                        a_off = ((g * n_panels + pnl) * k + k0) * MR
                        if direct_out:
                            o_off = (n * m_count + ch0) * p_count + pa
                            mk.tile(
                                ap,
                                a_off,
                                1,
                                MR,
                                src,
                                s_off + k0 * s_ld,
                                s_ld,
                                kl,
                                out,
                                o_off,
                                p_count,
                                mr,
                                acc | (tile_flags if last else 0),
                                bias,
                                ch0,
                                res,
                                o_off,
                                alpha,
                                beta,
                            )
                            if last and post:
                                for r in range(mr):
                                    d = o_off + r * p_count
                                    mk.emit_row(out, d, out, d, nr, zero, out, False, False, kind, alpha, beta)
                        else:  # ragged or spanning images: into scratch, the epilogue per image after
                            mk.tile(
                                ap,
                                a_off,
                                1,
                                MR,
                                src,
                                s_off + k0 * s_ld,
                                s_ld,
                                kl,
                                ts,
                                (r0 - p0 * MR) * nr,
                                nr,
                                mr,
                                acc,
                                bias,
                                0,
                                res,
                                0,
                                alpha,
                                beta,
                            )
                if direct_out:
                    continue
                q = qa
                while q < qe:
                    n = q // p_count
                    pa = q - n * p_count
                    pe = min(p_count, pa + qe - q)
                    for r in range(m1 - m0):
                        ch = g * mg + m0 + r
                        d = (n * m_count + ch) * p_count + pa
                        mk.emit_row(
                            ts,
                            (m0 - p0 * MR + r) * nr + q - qa,
                            out,
                            d,
                            pe - pa,
                            bias[ch],
                            res,
                            has_res,
                            False,
                            kind,
                            alpha,
                            beta,
                        )
                    q += pe - pa


_conv_tasks_serial = serial_twin(_conv_tasks)


def build_tasks(spec, w_const, b_const, direct: bool):
    """run(ins, outs) computing ``spec`` as GEMM tasks (``direct``: 1x1 stride 1 unpadded)."""
    dt = np.dtype(spec.dtype)
    g, mg, k, p = spec.group, spec.mg, spec.k, spec.oh * spec.ow
    nr = mk.nr(dt)
    pb, mb = plan_blocks(spec.n, g, mg, k, p, dt.itemsize, nr)

    def pack(w):
        w3 = np.asarray(w, dt).reshape(g, mg, k)
        return readonly(aligned_copy(np.stack([mk.pack_a(w3[i]) for i in range(g)])))

    ap_const = None if w_const is None else prepacked(w_const, ("gemm", dt.str, spec.group), pack)
    zeros = readonly(np.zeros(spec.m, dt))
    dummy_res = np.zeros(1, dt)
    max_threads = numba.config.NUMBA_NUM_THREADS
    folds = pb > p  # some column blocks span images
    # col rows padded to whole panels plus one vector: a row pitch of a large power of two
    # would map every row of a panel to the same few L1 sets
    ld = -(-pb // nr) * nr + nr // 2
    # (the kernel reads nr and ld back from these widths: both are whole cache lines)
    col = per_thread(max_threads, k * ld if folds or not direct else 1, dt)
    pbuf = per_thread(max_threads, k * nr, dt)
    tbuf = per_thread(max_threads, -(-mb // mk.MR) * mk.MR * nr, dt)
    kc = mk.k_block(dt)
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    ntasks = g * _blocks(spec.n, p, pb) * -(-mg // mb)
    work = spec.n * spec.m * p * k if ntasks > 1 else 0  # one task: nothing to share
    flags = tile_flags(spec)
    s = spec

    def args_for(ins, outs, ap, b, nthreads):
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        x, res = ins[0], dummy_res if r is None else r.reshape(-1)
        window = (s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw, s.ow)
        tail = (pb, mb, r is not None, s.act, alpha, beta, flags)
        return (
            x,
            x.reshape(-1),
            ap,
            b,
            res,
            outs[0].reshape(-1),
            col,
            pbuf,
            tbuf,
            counter,
            nthreads,
            direct,
            kc,
            *window,
            *tail,
        )

    kernels = (_conv_tasks, _conv_tasks_serial)
    run = conv_run(kernels, work, args_for, max_threads, (ap_const, pack), (b_const, zeros, readonly), counter)
    run.blocks = (pb, mb)
    return run

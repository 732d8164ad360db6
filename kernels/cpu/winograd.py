"""Winograd F(4x4, 3x3) convolution for 3x3, stride 1, dilation 1, ungrouped layers.

Each 4x4 block of outputs (a tile) comes from a 6x6 block of input:
``Y = A^T [ sum_c (G g_c G^T) * (B^T d_c B) ] A`` (Lavin & Gray 2015), so a tile costs 36
multiplications per (input, output) channel pair instead of 144: a GEMM of a quarter of
im2col's FLOPs, in 36 independent (M x C) @ (C x tiles) products. The weights are transformed
once, when the session is built (in float64, then rounded).

Work is split into tasks (image, block of tile rows, block of output channels) claimed from a
shared counter, as in conv_gemm.py. A task transforms its input tiles into per-thread scratch
(``V``: 36 x tiles x C), runs the 36 GEMMs into ``Mo`` (36 x tiles x M: the register tile of
microkernel.py, with rows of V read in place and U packed into column panels at build) and
applies the output transform fused with the epilogue (bias, residual, activation) while
``Mo`` is in cache. Padding is read as zeros; tiles hanging past the output are computed and
dropped.

F(4x4, 3x3) rather than F(2x2, 3x3) (2.25x fewer multiplications) or F(6x6, 3x3) (5.06x, but
transform entries up to ~100 and a markedly larger float32 error): see the accuracy test in
tests/kernels/test_winograd.py for the bound that its transform magnitudes give.
"""

from __future__ import annotations

import numba
import numpy as np

from cnnrt.kernels._jit import njit
from cnnrt.kernels.aligned import aligned_copy, per_thread_shape, shared_scratch
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.conv_common import conv_run, live_lanes, readonly
from cnnrt.kernels.cpu.microkernel import MR
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.winograd_transforms import (
    input_transform,
    output_scatter,
    output_scatter_blocked,
    output_stage,
)
from cnnrt.kernels.prepacked import prepacked

# the transforms, for the reference implementation and the tests (the kernels inline them)
BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float64,
)
AT = np.array(
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    np.float64,
)
TILE, ALPHA = 4, 6

_V_BUDGET = 256 << 10  # bytes of transformed input per task
_MIN_TASKS = 8
_MIN_TILES = 16


def transform_weights(w: np.ndarray, dtype) -> np.ndarray:
    """(M, C, 3, 3) -> U (36, C, M) = G g G^T per (m, c), computed in float64, rounded once."""
    # two tensordots (BLAS) rather than one einsum: an order of magnitude faster at build; the
    # taps go first, so that the result needs only its two small leading axes swapped (moving
    # (c, m) inward afterwards was most of a VGG's session build)
    wt = np.asarray(w, np.float64).transpose(2, 3, 1, 0)  # (i, j, c, m)
    t = np.tensordot(G, wt, axes=(1, 0))  # (a, j, c, m)
    u = np.tensordot(G, t, axes=(1, 1))  # (b, a, c, m)
    return np.ascontiguousarray(u.transpose(1, 0, 2, 3), dtype=dtype).reshape(ALPHA * ALPHA, w.shape[1], w.shape[0])


def pack_u(u: np.ndarray, nr: int) -> np.ndarray:
    """U (36, C, M) -> B panels (36, ceil(M/nr), C, nr) of the register tile (microkernel.py),
    output channels past M zero."""
    pos, c, m = u.shape
    panels = -(-m // nr)
    up = np.zeros((pos, c, panels * nr), u.dtype)
    up[:, :, :m] = u
    return aligned_copy(up.reshape(pos, c, panels, nr).transpose(0, 2, 1, 3))


def plan_blocks(n: int, c: int, m: int, th: int, tw: int, itemsize: int, nr: int) -> tuple[int, int]:
    """(tile rows per task, output channels per task); tile rows count over all images, so a
    task may span several small images.

    The 36 GEMMs of a task are (tiles x C) @ (C x mb): few tiles starve them (and stream the
    transformed weights once per task), so a task gets at least _MIN_TILES tiles, more up to
    the scratch budget; output channels are split before tile rows are cut below that (the
    input transform is then repeated per channel block, a small cost)."""
    g = n * th
    rows = max(1, min(g, _V_BUDGET // max(1, ALPHA * ALPHA * c * tw * itemsize)))
    rows = max(rows, min(g, -(-_MIN_TILES // tw)))
    tasks = -(-g // rows)
    mb = m
    if tasks < _MIN_TASKS and m >= 64:
        mb = blas.split(m, min(-(-_MIN_TASKS // tasks), max(1, m // 64)), nr)
        tasks *= -(-m // mb)
    while tasks < _MIN_TASKS and rows > 1 and (rows // 2) * tw >= _MIN_TILES:
        rows = -(-rows // 2)
        tasks = -(-g // rows) * -(-m // mb)
    return rows, mb


@njit
def _winograd_tasks_worker(
    t,
    nthreads,
    _form,
    x,
    up,
    bias,
    res,
    out,
    vbuf,
    mbuf,
    ybuf,
    pbuf,
    tbuf,
    counter,
    pt,
    pl,
    rows,
    mb,
    has_res,
    kind,
    alpha,
    beta,
    lanes,
    channels,
):
    """Thread t's share (kernels.cpu.threaded) of out = act(conv3x3(x, g) + bias (+ res)) with
    up = pack_u(transform_weights(g)); see module doc.

    Per-thread scratch: vbuf (36*nt*C + MR*C), mbuf (36*mbp*nt), ybuf (16*mbp*nt) with mbp = mb
    rounded up to whole tile columns, pbuf ((rows*4+2)*(TW*4+2)*C),
    tbuf (6*(TW*4+2)*C) with nt = rows*TW tiles.

    ``lanes`` > 0: x, out and res are channel-blocked (N, C/lanes, H, W, lanes), passed as
    4-D views (N, C/lanes, H, W*lanes), bias of whole blocks; out's lanes past the real
    ``channels`` are stored as 0."""
    b_in = max(1, lanes)
    n_count, c_count = x.shape[0], x.shape[1] * b_in
    m_count, oh, ow = out.shape[1] * b_in, out.shape[2], out.shape[3] // b_in
    th = (oh + 3) // 4
    tw = (ow + 3) // 4
    g_count = n_count * th  # tile rows of all images: a block may span images (small ones)
    n_rb = (g_count + rows - 1) // rows
    n_mb = (m_count + mb - 1) // mb
    ntasks = n_rb * n_mb
    u_panels, nr = up.shape[1], up.shape[3]
    zero = bias[0] * 0
    vs = vbuf[t]
    ms = mbuf[t]
    ys = ybuf[t]
    ph = pbuf[t]
    tv = tbuf[t]
    held = -1
    while True:
        i = blas.claim(counter)
        if i >= ntasks:
            break
        blk = i // n_mb
        mi = i - blk * n_mb
        g0 = blk * rows
        g1 = min(g_count, g0 + rows)
        nt = (g1 - g0) * tw
        if blk != held:
            g = g0
            while g < g1:  # one segment per image
                n = g // th
                ty0 = g - n * th
                ty1 = min(th, ty0 + g1 - g)
                input_transform(x, n, ty0, ty1, tw, pt, pl, ph, tv, vs, nt, (g - g0) * tw, lanes)
                g += ty1 - ty0
            held = blk
        m0 = mi * mb
        m1 = min(m_count, m0 + mb)
        mm = m1 - m0
        n_q = (mm + nr - 1) // nr
        ldm = n_q * nr  # Mo rows padded to whole column panels
        for pos in range(36):  # Mo[pos] (tiles x mm) = V[pos] (tiles x C) @ U[pos][:, m0:m1]
            for p in range((nt + MR - 1) // MR):  # MR tiles: rows of V read in place
                a_off = (pos * nt + p * MR) * c_count
                c_off = (pos * nt + p * MR) * ldm
                mr = min(MR, nt - p * MR)
                for q in range(n_q):
                    b_off = ((pos * u_panels + m0 // nr + q) * c_count) * nr
                    mk.tile(
                        vs,
                        a_off,
                        c_count,
                        1,
                        up,
                        b_off,
                        nr,
                        c_count,
                        ms,
                        c_off + q * nr,
                        ldm,
                        mr,
                        0,
                        bias,
                        0,
                        bias,
                        0,
                        zero,
                        zero,
                    )
        output_stage(ms, ys, ldm * nt)
        g = g0
        while g < g1:
            n = g // th
            ty0 = g - n * th
            ty1 = min(th, ty0 + g1 - g)
            seg = (n, m0, ty0, ty1, tw, (g - g0) * tw)
            if lanes > 0:
                output_scatter_blocked(
                    ys, ldm * nt, ldm, mm, out, res, has_res, bias, seg, kind, alpha, beta, lanes, channels
                )
            else:
                output_scatter(ys, ldm * nt, ldm, mm, out, res, has_res, bias, seg, kind, alpha, beta)
            g += ty1 - ty0


_winograd_tasks, _winograd_tasks_serial = threaded(_winograd_tasks_worker)


def build_winograd(spec, w_const, b_const, lanes: int = 0, owner=None, channels: int | None = None):
    """run(ins, outs) for a 3x3 stride-1 ungrouped conv via F(4x4, 3x3) tasks; ``lanes`` > 0:
    input, output and residual in the channel-blocked layout (conv_blocked.py), the output's
    lanes past the real ``channels`` (default M) stored as 0. ``owner``: the graph whose
    Winograd layers share scratch."""
    dt = np.dtype(spec.dtype)
    th, tw = -(-spec.oh // 4), -(-spec.ow // 4)
    nr = mk.nr(dt)
    b_in = max(1, lanes)
    m_out = -(-spec.m // b_in) * b_in  # the output's channels: whole blocks when blocked
    rows, mb = plan_blocks(spec.n, spec.c, m_out, th, tw, dt.itemsize, nr)
    u_const = (
        None
        if w_const is None
        else readonly(prepacked(w_const, ("winograd", dt.str, nr), lambda w: pack_u(transform_weights(w, dt), nr)))
    )
    real = spec.m if channels is None else channels  # the output's real channels
    if lanes:
        live_lanes(spec.m, real, lanes)  # checks that only the last block has lanes past them

    def whole_blocks(bias):  # the bias the kernel reads: one value per output channel
        if bias.shape[0] == m_out:
            return readonly(bias)
        padded = np.zeros(m_out, dt)
        padded[: spec.m] = bias
        return readonly(padded)

    zeros = readonly(np.zeros(m_out, dt))
    b_const = None if b_const is None else whole_blocks(b_const)
    dummy_res = np.zeros((1, 1, 1, b_in), dt)

    def view(a):
        """Blocked (N, C/B, H, W, B) as the 4-D (N, C/B, H, W*B) the kernel takes, a view
        even of a channel range of a bigger buffer (an in-place Concat's slice at batch > 1,
        whose images lie apart: the kernel indexes by the view's strides)."""
        if lanes == 0:
            return a
        v = a.view()
        v.shape = (a.shape[0], a.shape[1], a.shape[2], a.shape[3] * b_in)  # raises instead of copying
        return v

    max_threads = numba.config.NUMBA_NUM_THREADS
    nt_max = rows * tw
    mbp = -(-mb // nr) * nr
    # scratch shared by the graph's Winograd layers (owner: aligned.shared_scratch); every
    # element a task reads it wrote first
    sizes = {
        "v": (36 * nt_max + MR) * spec.c,
        "m": 36 * mbp * nt_max,
        "y": 16 * mbp * nt_max,
        "p": (min(rows, th) * 4 + 2) * (tw * 4 + 2) * spec.c,
        "t": 6 * (tw * 4 + 2) * spec.c,
    }
    shapes = {k: per_thread_shape(max_threads, v, dt) for k, v in sizes.items()}
    scratch = {k: shared_scratch(owner, f"winograd.{k}", shapes[k], dt) for k in sizes}
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    s = spec
    ntasks = -(-(spec.n * th) // rows) * -(-m_out // mb)
    work = 36 * spec.n * th * tw * spec.c * spec.m if ntasks > 1 else 0  # multiply-adds of the GEMMs

    def args_for(ins, outs, u, b, nthreads):
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        bufs = [scratch[k].view(shapes[k], dt) for k in "vmypt"]
        res = dummy_res if r is None else view(r)
        tail = (counter, s.pt, s.pl, rows, mb, r is not None, s.act, alpha, beta, lanes, real)
        return (nthreads, (), view(ins[0]), u, b, res, view(outs[0]), *bufs, *tail)

    def pack_weights(w):
        return readonly(pack_u(transform_weights(w, dt), nr))

    kernels = (_winograd_tasks, _winograd_tasks_serial)
    run = conv_run(
        kernels, work, args_for, max_threads, (u_const, pack_weights), (b_const, zeros, whole_blocks), counter
    )
    run.blocks = (rows, mb)
    return run

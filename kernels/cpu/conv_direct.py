"""Direct convolution on the register tile: no im2col, the padded input is read in place.

The input of each image is copied once, zero padded, into stride phases (as depthwise.py and
pool.py do): phase (a, b) holds padded rows a, a + s, ... and columns b, b + s, ..., each
plane Hq x Wq. Output pixel (oh, ow) gets the *virtual* column v = oh*Wq + ow, and tap (i, j)
reads phase ((i*d) % s, (j*d) % s) at v + (i*d // s)*Wq + (j*d // s): for every tap, NR
consecutive virtual columns are NR consecutive input values. So the convolution is a sum over
taps of GEMMs whose B panels are the phase planes themselves (one channel per reduction step,
a stride of one channel's phases), computed by the register tile of microkernel.py into a
per-thread block of virtual columns and copied out with the epilogue (bias, residual,
activation) per output row; virtual columns ow >= OW are dropped (Wq - OW of every Wq).

im2col gathered kh*kw copies of the input per layer (0.3-1.7 ns per element here, 25-40% of
the layer); this copies it once. Tasks (image, group, block of virtual columns, block of
output channels) are claimed from a shared counter, as in conv_gemm.py.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import njit, pjit, serial_twin
from cnnrt.kernels.aligned import aligned_copy, aligned_zeros, per_thread
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_common import conv_run, readonly, tile_flags
from cnnrt.kernels.cpu.microkernel import MR
from cnnrt.kernels.prepacked import prepacked

_BLOCK_BUDGET = 512 << 10  # bytes of the per-thread block of virtual outputs (mb x vb)
_MIN_TASKS = 8
_MIN_TASK_MACS = 1 << 19


class Geometry:
    """Shapes of the phase planes and the virtual output for one layer."""

    def __init__(self, spec):
        s_h, s_w = spec.sh, spec.sw
        hp = spec.h + spec.pt + spec.pb
        wp = spec.w + spec.pl + spec.pr
        # every tap's read must stay inside its plane for all output rows: rows up to
        # (OH - 1) + (kh - 1)*dh // sh, columns likewise; extra columns are junk we drop
        self.hq = max(-(-hp // s_h), spec.oh + (spec.kh - 1) * spec.dh // s_h)
        self.wq = max(-(-wp // s_w), spec.ow + (spec.kw - 1) * spec.dw // s_w)
        self.phases = s_h * s_w
        self.plane = self.hq * self.wq
        self.vcols = spec.oh * self.wq  # virtual columns per image
        taps = []
        for i in range(spec.kh):
            for j in range(spec.kw):
                a, b = i * spec.dh, j * spec.dw
                phase = (a % s_h) * s_w + b % s_w
                taps.append(phase * self.plane + (a // s_h) * self.wq + b // s_w)
        self.tap_offsets = np.array(taps, np.int64)


@njit(inline="always")
def _phase_plane(x, xph, p, pt, pl, sh, sw, hq, wq, per_n):
    """The interior of xph[n, c] for p = n*C + c: x[n, c] split into sh*sw stride phases
    (hq x wq planes) at its padded position. Borders and the slack after the last channel are
    zeroed once at build and never written."""
    c_count, h, w = x.shape[1], x.shape[2], x.shape[3]
    plane = hq * wq
    per_c = sh * sw * plane
    n = p // c_count
    c = p - n * c_count
    dst = xph[n * per_n + c * per_c : n * per_n + (c + 1) * per_c]
    xc = x[n, c]
    if sh == 1 and sw == 1:
        for ih in range(h):
            d = dst[(ih + pt) * wq + pl : (ih + pt) * wq + pl + w]
            src = xc[ih]
            for iw in range(w):
                d[iw] = src[iw]
        return
    for ih in range(h):
        r = ih + pt  # padded row
        row0 = ((r % sh) * sw) * plane + (r // sh) * wq
        src = xc[ih]
        for b in range(sw):  # column phase b holds padded columns b, b + sw, ...
            iw0 = (b - pl) % sw  # first input column landing in phase b
            d = dst[row0 + b * plane :]
            q0 = (iw0 + pl) // sw
            for k in range((w - iw0 + sw - 1) // sw):
                d[q0 + k] = src[iw0 + k * sw]


@pjit
def _direct_tasks(
    x,
    xph,
    ap,
    taps,
    bias,
    rf,
    of,
    out_shape,
    obuf,
    counter,
    nthreads,
    per_n,
    per_c,
    wq,
    vb,
    mb,
    kc,
    has_res,
    kind,
    alpha,
    beta,
    tflags,
    nr,
    pads,
    hq,
):
    """out[n, g*Mg + m] = act(sum_{tap, c} W[m, tap, c] xph[n, c, tap shift + v] + bias + res),
    after copying x into its phase planes xph (pads: top, left, stride h, stride w; one
    kernel call for both: a Numba call's fixed cost is a sizeable share of LeNet's small convs).

    ap: packed weights (G, panels, taps*Cg, MR) with the reduction ordered (tap, channel);
    of, rf: the output and residual (N, M, OH, OW = out_shape) flat; obuf per thread (mb
    rounded to MR) x vb virtual columns. ``tflags``: bias and activation for the tile to
    apply on its last reduction (none when a residual must come first)."""
    n_count, m_count, oh, ow = out_shape
    g_count, n_panels, ktot = ap.shape[0], ap.shape[1], ap.shape[2]
    ntaps = taps.shape[0]
    cg = ktot // ntaps
    mg = m_count // g_count
    vcols = oh * wq
    n_vb = (vcols + vb - 1) // vb
    n_mb = (mg + mb - 1) // mb
    ntasks = n_count * g_count * n_vb * n_mb
    done = tflags != 0 or (kind == 0 and not has_res)
    for p in prange(x.shape[0] * x.shape[1]):
        _phase_plane(x, xph, p, pads[0], pads[1], pads[2], pads[3], hq, wq, per_n)
    for t in prange(nthreads):
        ob = obuf[t]
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            mi = i % n_mb
            rest = i // n_mb
            b = rest % n_vb
            rest = rest // n_vb
            g = rest % g_count
            n = rest // g_count
            v0 = b * vb
            v1 = min(vcols, v0 + vb)
            m0 = mi * mb
            m1 = min(mg, m0 + mb)
            p0 = m0 // MR
            p1 = (m1 + MR - 1) // MR
            xbase = n * per_n + g * cg * per_c
            ldo = vb  # obuf: row r of the task at r*vb
            for tq in range((v1 - v0 + nr - 1) // nr):
                va = v0 + tq * nr
                for c0 in range(0, cg, kc):
                    kl = min(kc, cg - c0)
                    acc = mk.ACCUMULATE if c0 > 0 else 0
                    if c0 + kl == cg:
                        acc |= tflags
                    for pnl in range(p0, p1):
                        mr = min(MR, m1 - pnl * MR)
                        a_off = (g * n_panels + pnl) * ktot * MR + c0 * MR
                        o_off = (pnl * MR - p0 * MR) * ldo + tq * nr
                        mk.tile_taps(
                            ap,
                            a_off,
                            1,
                            MR,
                            cg * MR,
                            xph,
                            xbase + c0 * per_c + va,
                            per_c,
                            taps,
                            ntaps,
                            kl,
                            ob,
                            o_off,
                            ldo,
                            mr,
                            acc,
                            bias,
                            g * mg + pnl * MR,
                            ob,
                            0,
                            alpha,
                            beta,
                        )
            # copy the valid columns out, output row by output row (with what the tile did not
            # do); an activation left over runs once per channel over the task's outputs, which
            # are one contiguous run of the plane (per-row calls cost more than tanh itself)
            oh0 = v0 // wq
            oh1 = (v1 - 1) // wq + 1
            for r in range(m1 - m0):
                ch = g * mg + m0 + r
                bch = bias[ch]
                first = -1
                end = 0
                for y in range(oh0, oh1):
                    a = max(0, v0 - y * wq)
                    e = min(ow, v1 - y * wq)
                    if e > a:
                        d = ((n * m_count + ch) * oh + y) * ow + a
                        mk.emit_row(ob, r * ldo + y * wq + a - v0, of, d, e - a, bch, rf, has_res, done, 0, alpha, beta)
                        first = d if first < 0 else first
                        end = d + e - a
                if not done and kind != 0 and first >= 0:
                    act_inplace(of[first:end], kind, alpha, beta)


_direct_tasks_serial = serial_twin(_direct_tasks)


def plan_blocks(n: int, g: int, mg: int, k: int, vcols: int, itemsize: int, nr: int) -> tuple[int, int]:
    """(virtual columns per task, output channels per task)."""
    mb = mg
    vb = max(nr, min(-(-vcols // nr) * nr, (_BLOCK_BUDGET // (max(mg, 1) * itemsize)) // nr * nr))
    tasks = n * g * -(-vcols // vb)
    while tasks < _MIN_TASKS and vb > nr and mg * k * (vb // 2) >= _MIN_TASK_MACS:
        vb = -(-(vb // 2) // nr) * nr
        tasks = n * g * -(-vcols // vb)
    if tasks < _MIN_TASKS and mg >= 2 * MR * 4:
        mb = blas.split(mg, min(-(-_MIN_TASKS // tasks), mg // (4 * MR)), MR)
    return vb, mb


def build_direct(spec, w_const, b_const):
    """run(ins, outs) for ``spec`` (any ungrouped or grouped 2-D conv) by direct tiles."""
    dt = np.dtype(spec.dtype)
    geo = Geometry(spec)
    g, mg, cg = spec.group, spec.mg, spec.cg
    ntaps = spec.kh * spec.kw
    nr = mk.nr(dt)
    vb, mb = plan_blocks(spec.n, g, mg, cg * ntaps, geo.vcols, dt.itemsize, nr)
    n_vblocks = -(-geo.vcols // vb)
    # reads run up to the last block's last panel plus the largest tap shift
    slack = -(-(n_vblocks * vb) // nr) * nr - geo.vcols + int(geo.tap_offsets.max()) + nr
    per_c = geo.phases * geo.plane
    per_n = spec.c * per_c + slack
    xph = aligned_zeros(spec.n * per_n, dt)  # zero borders and slack, for good

    def pack(w):
        # (M, Cg, kh, kw) -> per group (Mg, taps*Cg) with the reduction ordered (tap, channel)
        w5 = np.asarray(w, dt).reshape(g, mg, cg, ntaps).transpose(0, 1, 3, 2).reshape(g, mg, ntaps * cg)
        return readonly(aligned_copy(np.stack([mk.pack_a(w5[i]) for i in range(g)])))

    ap_const = None if w_const is None else prepacked(w_const, ("direct", dt.str, spec.group), pack)
    taps = readonly(geo.tap_offsets)
    zeros = readonly(np.zeros(spec.m, dt))
    dummy_res = np.zeros(1, dt)
    oshape = (spec.n, spec.m, spec.oh, spec.ow)
    tflags = tile_flags(spec) & ~mk.RESIDUAL
    if spec.act != 0 and mk.tile_act(spec.act, dt) == 0:  # the copy-out applies bias and activation
        tflags = 0
    max_threads = numba.config.NUMBA_NUM_THREADS
    obuf = per_thread(max_threads, -(-mb // MR) * MR * vb, dt)
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    kc = mk.k_block(dt)
    pads = np.array([spec.pt, spec.pl, spec.sh, spec.sw], np.int64)
    ntasks = spec.n * g * n_vblocks * -(-mg // mb)
    work = spec.n * spec.m * geo.vcols * cg * ntaps if ntasks > 1 else 0
    s = spec

    def args_for(ins, outs, ap, b, nthreads):
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        res = dummy_res if r is None else r.reshape(-1)
        shape = (oshape, obuf, counter, nthreads, per_n, per_c, geo.wq, vb, mb, kc)
        tail = (r is not None, s.act, alpha, beta, 0 if r is not None else tflags, nr, pads, geo.hq)
        return (ins[0], xph, ap, taps, b, res, outs[0].reshape(-1), *shape, *tail)

    kernels = (_direct_tasks, _direct_tasks_serial)
    run = conv_run(kernels, work, args_for, max_threads, (ap_const, pack), (b_const, zeros, readonly), counter)
    run.blocks = (vb, mb)
    return run

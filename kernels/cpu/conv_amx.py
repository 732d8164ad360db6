"""The bf16 blocked conv on AMX tiles (microkernel_amx.py), ungrouped: a blocked input at any
stride, dilation or padding, or an NCHW stem whose kw taps fold into channels (:class:`FoldedGeometry`).

The input is converted into a bf16 copy laid out for A tiles: 32 channels per pixel (two
float32 blocks side by side, 64 bytes), and, for a stride s, split into s x s phase planes
(phase (a, b) holds padded pixel (s*i + a, s*j + b)), so every tap reads its pixels one
after another: tap (kh, kw) of output pixel (oh, ow) is pixel (oh + kh*dh // sh,
ow + kw*dw // sw) of phase (kh*dh % sh, kw*dw % sw). Output pixels are numbered on the
phase plane's grid, q = oh*PW + ow, so a strip of 32 consecutive q reads 32 consecutive
pixels of each tap, across row ends; the q whose column lies past the output (ow >= OW: the
few columns of padding, a stride's leftover) are computed and dropped. The copy is made in
the pass over the input that the padded copy takes anyway, zero border included; it ends in
a strip's worth of zeros, so the last strip's reads stay inside it.

Weights are packed once, at build: per output block, per tap, per 32 input channels, one
16 x 16 x 2 bf16 B tile (:func:`pack_amx`). The sums are float32; the epilogue is the float32
tile's (bias, residual, activation; the padding lanes of a last block stored as 0).
"""

from __future__ import annotations

from types import SimpleNamespace

import numba
import numpy as np
from numba import prange

from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu import microkernel_amx as amx
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.conv_blocked_plan import plan_tasks, task_span
from cnnrt.kernels.cpu.conv_common import contiguous_output, flat_output, live_lanes, readonly, tile_flags
from cnnrt.kernels.cpu.microkernel_amx import bf16_pixels, fold_pixels
from cnnrt.kernels.cpu.microkernel_bf16 import bf16_run, to_bf16
from cnnrt.kernels.prepacked import prepacked

LANES = amx.OUT_LANES  # float32 channels per block of the input and output
PC = amx.PIXEL_CHANNELS


class PhaseGeometry:
    """Where each tap of a conv reads in the AMX bf16 copy (see the module docstring)."""

    def __init__(self, spec) -> None:
        s = spec
        hp = max(s.h + s.pt + s.pb, (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1)
        wp = max(s.w + s.pl + s.pr, (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1)
        self.ph, self.pw = -(-hp // s.sh), -(-wp // s.sw)
        self.kbn = -(-s.c // PC)  # 32-channel input blocks
        self.phase = self.ph * self.pw * PC  # elements of one phase plane
        self.kb_stride = s.sh * s.sw * self.phase
        self.per_n = self.kbn * self.kb_stride
        taps = []
        self.used = np.zeros(s.sh * s.sw, np.int64)  # the phases some tap reads
        for i in range(s.kh):
            for j in range(s.kw):
                r, c = i * s.dh, j * s.dw
                phase = (r % s.sh) * s.sw + c % s.sw
                self.used[phase] = 1
                taps.append(((phase * self.ph + r // s.sh) * self.pw + c // s.sw) * PC)
        self.taps = np.array(taps, np.int64)
        self.vq = (s.oh - 1) * self.pw + s.ow  # strip grid: q in [0, vq)
        self.length = s.n * self.per_n + amx.STRIP * PC  # the tail: the last strip's over-read


class FoldedGeometry:
    """Where each tap of a stem (an NCHW input of a few channels) reads in its folded AMX
    copy: the kw taps of a kernel row fold into the channels, a pixel of the copy holding
    x[c, r, ow*sw + j - pl] at channel c*kw + j (zero past C*kw, up to whole 32-channel
    blocks), one pixel per output column, and the kh taps stay taps, on sh row phases: 7x7x3
    is 7 taps of 21 channels where it would be 49 of 3. When the whole window fits one
    32-channel block (C*kh*kw <= 32: a 3x3 stem) the kernel rows fold too, channel
    (c*kh + i)*kw + j holding input row oh*sh + i*dh - pt: one tap of 27 channels, a copy
    row per output row."""

    def __init__(self, spec) -> None:
        s = spec
        if s.dw != 1:
            raise ValueError(f"a folded stem needs dilation 1 along the width: {s.dw}")
        self.wpad = max(s.w + s.pl + s.pr, (s.ow - 1) * s.sw + s.kw)  # padded input columns
        self.full = s.c * s.kh * s.kw <= PC
        self.fold_kh = s.kh if self.full else 1  # kernel rows folded into the channels
        self.phases = 1 if self.full else s.sh
        if self.full:
            self.ph = s.oh
        else:
            hp = max(s.h + s.pt + s.pb, (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1)
            self.ph = -(-hp // s.sh)
        self.pw = s.ow
        self.kbn = -(-(s.c * self.fold_kh * s.kw) // PC)
        self.phase = self.ph * self.pw * PC
        self.kb_stride = self.phases * self.phase
        self.per_n = self.kbn * self.kb_stride
        rows = [0] if self.full else [i * s.dh for i in range(s.kh)]
        self.used = np.zeros(self.phases, np.int64)
        self.used[[r % self.phases for r in rows]] = 1
        taps = [((r % self.phases) * self.ph + r // self.phases) * self.pw * PC for r in rows]
        self.taps = np.array(taps, np.int64)
        self.vq = s.oh * s.ow
        self.length = s.n * self.per_n + amx.STRIP * PC

    def fold_weights(self, w: np.ndarray) -> np.ndarray:
        """(M, C, kh, kw) -> the folded conv's weights: (M, C*kh*kw, 1, 1) when the whole
        window folds, else (M, C*kw, kh, 1)."""
        m, c, kh, kw = w.shape
        if self.full:
            return np.ascontiguousarray(w.reshape(m, c * kh * kw, 1, 1))
        return np.ascontiguousarray(w.transpose(0, 1, 3, 2).reshape(m, c * kw, kh, 1))


def pack_amx(w: np.ndarray) -> np.ndarray:
    """(M, C, kh, kw) float32 -> bf16 B tiles (M/16, kh*kw, C/32, 16, 16, 2): for output block
    j, tap t and input block kb, row r holds channels 2r, 2r+1 of each of its 16 outputs (zero
    past M and C)."""
    m, c, kh, kw = w.shape
    mb, kbn = -(-m // LANES), -(-c // PC)
    wpad = np.zeros((mb * LANES, kbn * PC, kh * kw), np.float32)
    wpad[:m, :c] = w.reshape(m, c, kh * kw)
    # (j, n, kb, r, e, t) -> (j, t, kb, r, n, e)
    w6 = wpad.reshape(mb, LANES, kbn, PC // 2, 2, kh * kw).transpose(0, 5, 2, 3, 1, 4)
    return to_bf16(np.ascontiguousarray(w6))


@pjit
def _to_amx_copy(x, xp, pt, pl, sh, sw, ph, pw, kbn, per_n, used):
    """xp (bf16 bits) from x (the float32 input's bits, (N, C/16, H, W*16)): per image and
    32-channel block, sh*sw phase planes of ph x pw pixels of 32 channels: the input's where
    a padded pixel holds it, zeros around and in a 16-channel half past C. Phases no tap
    reads (``used[phase]`` 0: a strided 1x1 conv reads one of four) are left as they are;
    so is nothing else (the buffer is shared)."""
    n_count, cb, h, wl = x.shape
    w = wl // 16
    flat = x.reshape(-1)
    plane_in = h * wl
    phases = sh * sw
    for q in prange(n_count * kbn * phases * ph):
        i = q % ph
        rest = q // ph
        phase = rest % phases
        if used[phase] == 0:
            continue
        rest = rest // phases
        kb = rest % kbn
        n = rest // kbn
        a = phase // sw
        b = phase - a * sw
        row = n * per_n + ((kb * phases + phase) * ph + i) * pw * 32
        ih = sh * i + a - pt
        if ih < 0 or ih >= h:
            xp[row : row + pw * 32] = 0
            continue
        j0 = min(pw, max(0, (pl - b + sw - 1) // sw))  # the first column reading the input
        j1 = max(j0, min(pw, (w - 1 + pl - b) // sw + 1))
        xp[row : row + j0 * 32] = 0
        src0 = (n * cb + 2 * kb) * plane_in + ih * wl + (sw * j0 + b - pl) * 16
        src1 = src0 + plane_in if 2 * kb + 1 < cb else -1
        bf16_pixels(flat, src0, src1, sw * 16, xp, row + j0 * 32, j1 - j0)
        xp[row + j1 * 32 : row + pw * 32] = 0
    xp[n_count * per_n :] = 0


_to_amx_copy_serial = serial_twin(_to_amx_copy)


@pjit
def _to_amx_folded(x, xp, pt, pl, sh, sw, dh, phases, ph, ow, kbn, per_n, kw, fold_kh, wpad, used):
    """xp (bf16 bits) from an NCHW stem input (x: the float32 bits, (N, C, H, W)): per image,
    32-channel block and row phase, ph rows of ``ow`` folded pixels (FoldedGeometry), every
    element of the used phases written. Copy row i of phase a folds the ``fold_kh`` input rows
    sh*i + a + r*dh - pt (r < fold_kh) of every channel, each rounded to bf16 once into a
    zero-bordered row (microkernel_amx.fold_pixels reads them)."""
    n_count, c_count, h, w = x.shape
    rl = wpad + 2 * PC
    flat = x.reshape(-1)
    for q in prange(n_count * phases * ph):
        i = q % ph
        a = (q // ph) % phases
        n = q // (ph * phases)
        if used[a] == 0:
            continue
        rows = np.zeros(c_count * fold_kh * rl, np.uint16)
        for c in range(c_count):
            for r in range(fold_kh):
                ih = sh * i + a + r * dh - pt
                if 0 <= ih < h:
                    bf16_run(flat, ((n * c_count + c) * h + ih) * w, rows, (c * fold_kh + r) * rl + PC + pl, w)
        for kb in range(kbn):
            d = n * per_n + ((kb * phases + a) * ph + i) * ow * PC
            fold_pixels(rows, rl, c_count * fold_kh, kw, kb, sw, xp, d, ow)
    xp[n_count * per_n :] = 0


_to_amx_folded_serial = serial_twin(_to_amx_folded)

# the int64 geometry vector of the task kernel
(G_THREADS, G_PER_N, G_KBN, G_KB_STRIDE, G_OW, G_PW, G_VQ, G_M, G_PANELS, G_PG, G_PXB) = range(11)
(G_IMAGES, G_PER_N_OUT, G_B_BLOCK, G_LIVE, G_NTAPS, G_PLANE, G_PANELS_OUTER, G_LEN) = range(11, 19)


@pjit
def _amx_tasks(xp, wp, taps, cfg, bias, rf, of, counter, g, tflags, kind, alpha, beta):
    """Every task: out[one image's strips in a block of q, the output blocks of a group of
    panels (two blocks each)], a strip (microkernel_amx.amx_strip) at a time, its rows with
    ow < OW stored through the float32 epilogue in output order (the q of a tile that are
    output pixels are consecutive output pixels)."""
    nthreads, per_n, kbn, kb_stride, ow, pw = g[G_THREADS], g[G_PER_N], g[G_KBN], g[G_KB_STRIDE], g[G_OW], g[G_PW]
    vq, m, n_panels, pg, pxb, images = g[G_VQ], g[G_M], g[G_PANELS], g[G_PG], g[G_PXB], g[G_IMAGES]
    per_n_out, b_block, ntaps, plane = g[G_PER_N_OUT], g[G_B_BLOCK], g[G_NTAPS], g[G_PLANE]
    outer = g[G_PANELS_OUTER]
    live = g[G_LIVE] << mk.LANES_SHIFT
    blocks = (m + LANES - 1) // LANES
    n_pgroups = (n_panels + pg - 1) // pg
    n_pblocks = (vq + pxb - 1) // pxb
    ntasks = n_pgroups * n_pblocks * images
    for _t in prange(nthreads):
        amx.amx_begin(cfg)
        scratch = np.empty(2 * 2 * amx.ROWS * LANES, np.float32)
        rows = np.empty(amx.ROWS, np.int64)
        while True:
            i = blas.claim(counter)
            if i >= ntasks:
                break
            p0, p1, q0, q1, n = task_span(i, n_pgroups, pg, n_panels, n_pblocks, pxb, vq, images, outer)
            abase = n * per_n
            obase = n * per_n_out
            for p in range(p0, p1):
                j0 = 2 * p
                nt = min(2, blocks - j0)
                f = tflags | nt << mk.VECTORS_SHIFT
                if p == n_panels - 1:
                    f |= live
                b_off = j0 * b_block
                for v0 in range(q0, q1, amx.STRIP):
                    if nt == 2:
                        amx.amx_strip2(xp, abase + v0 * 32, taps, ntaps, kbn, kb_stride, wp, b_off, b_block, scratch)
                    else:
                        amx.amx_strip1(xp, abase + v0 * 32, taps, ntaps, kbn, kb_stride, wp, b_off, b_block, scratch)
                    for hh in range(2):
                        first = v0 + hh * amx.ROWS
                        mr = 0
                        r0 = 0
                        for r in range(amx.ROWS):
                            q = first + r
                            if q >= q1:
                                break
                            y = q // pw
                            x = q - y * pw
                            if x < ow:
                                if mr == 0:
                                    r0 = y * ow + x
                                rows[mr] = r
                                mr += 1
                        if mr == 0:
                            continue
                        for r in range(mr, amx.ROWS):
                            rows[r] = rows[mr - 1]
                        c_off = obase + j0 * plane + r0 * LANES
                        s_off = hh * nt * amx.ROWS * LANES
                        if nt == 2:
                            amx.amx_store2(
                                scratch, s_off, rows, mr, of, c_off, plane, f, bias, j0 * LANES, rf, c_off, alpha, beta
                            )
                        else:
                            amx.amx_store1(
                                scratch, s_off, rows, mr, of, c_off, plane, f, bias, j0 * LANES, rf, c_off, alpha, beta
                            )
            if kind != 0:  # an activation the epilogue lacks, over the task's outputs
                ya, yb = q0 // pw, (q1 - 1) // pw
                lo_pix = ya * ow + min(q0 - ya * pw, ow)
                hi_pix = yb * ow + min(q1 - 1 - yb * pw, ow - 1) + 1
                for p in range(p0, p1):
                    for v in range(2 * p, min(2 * p + 2, blocks)):
                        base = obase + v * plane
                        act_inplace(of[base + lo_pix * LANES : base + hi_pix * LANES], kind, alpha, beta)
        amx.amx_end()


_amx_tasks_serial = serial_twin(_amx_tasks)


def amx_shape_reason(spec, blocked_input: bool) -> str:
    """Why a bf16 conv with ``spec`` has no AMX kernel, whatever the CPU ("" when it has)."""
    if spec.group != 1:
        return "grouped"
    if not blocked_input and spec.dw != 1:
        return "an NCHW input (a stem) dilated along the width: its taps do not fold into channels"
    return ""


def amx_reason(spec, blocked_input: bool) -> str:
    """Why a bf16 conv with ``spec`` cannot run on the AMX tiles here ("" when it can)."""
    return amx.amx_unsupported_reason() or amx_shape_reason(spec, blocked_input)


def build_amx_conv(
    spec, w_const, b_const, blocked_input=True, owner=None, copied: bool = False, channels: int | None = None
):
    """run(ins, outs) for a bf16 conv on AMX (module docstring): input blocked
    (N, C/16, H, W, 16) or, with ``blocked_input`` False, NCHW (a stem: FoldedGeometry),
    float32; output blocked (N, ceil(M/16), OH, OW, 16) float32, the lanes past ``channels``
    stored as 0. ``owner`` shares the bf16 copy among the graph's convs; ``copied``: the copy
    holds this conv's input already (passes/precision.py)."""
    why = amx_reason(spec, blocked_input)
    if why:
        raise ValueError(f"the AMX bf16 conv cannot run: {why}")
    if w_const is None:
        raise ValueError("a bf16 blocked conv needs constant weights (they are packed bf16 at build)")
    if blocked_input and spec.c % LANES:
        raise ValueError(f"the AMX bf16 conv needs input channels in whole blocks of {LANES}: C={spec.c}")
    s = spec
    if blocked_input:
        geo = PhaseGeometry(spec)
        wp = readonly(prepacked(w_const, ("amx-bf16",), pack_amx))
    else:
        geo = FoldedGeometry(spec)
        wp = readonly(prepacked(w_const, ("amx-bf16-folded", geo.full), lambda w: pack_amx(geo.fold_weights(w))))
    blocks = -(-s.m // LANES)
    live = live_lanes(s.m, channels, LANES)
    bias_pad = np.zeros(blocks * LANES, np.float32)
    if b_const is not None:
        bias_pad[: s.m] = b_const
    bias = readonly(bias_pad)  # a bias given at run time is copied into bias_pad
    xp = shared_scratch(owner, "conv_amx.bf16_input", (geo.length,), np.uint16)
    panels = -(-blocks // 2)
    w_bytes = s.m * s.c * s.kh * s.kw * 2
    in_bytes = s.n * s.c * s.h * s.w * 2
    shape = SimpleNamespace(m=s.m, oh=1, ow=geo.vq, n=s.n)  # the strip grid, as one row of pixels
    pg, pxb, outer = plan_tasks(shape, 4, 2 * LANES, w_bytes, in_bytes, amx.STRIP)
    per_n_out = blocks * LANES * s.oh * s.ow
    g = np.zeros(G_LEN, np.int64)
    for k, v in {
        G_PER_N: geo.per_n,
        G_KBN: geo.kbn,
        G_KB_STRIDE: geo.kb_stride,
        G_OW: s.ow,
        G_PW: geo.pw,
        G_VQ: geo.vq,
        G_M: s.m,
        G_PANELS: panels,
        G_PG: pg,
        G_PXB: pxb,
        G_IMAGES: s.n,
        G_PER_N_OUT: per_n_out,
        G_B_BLOCK: len(geo.taps) * geo.kbn * amx.B_TILE,
        G_LIVE: live,
        G_NTAPS: len(geo.taps),
        G_PLANE: s.oh * s.ow * LANES,
        G_PANELS_OUTER: int(outer),
    }.items():
        g[k] = v
    cfg = readonly(amx.tile_config())
    tflags = tile_flags(spec)
    kind = 0 if mk.tile_act(spec.act, np.float32) else spec.act
    alpha, beta = np.float32(s.alpha), np.float32(s.beta)
    counter = np.zeros(1, np.int64)
    dummy_res = np.zeros(1, np.float32)
    max_threads = numba.config.NUMBA_NUM_THREADS
    work = s.n * s.m * s.oh * s.ow * s.c * s.kh * s.kw // 16  # AMX: ~16x the FMAs' rate
    # the blocked copy is a stream: below ~2^19 elements one thread does it faster than two
    # (64 x 56 x 56: 23 us alone, 26 us on two; 256 x 56 x 56: 150 us alone, 94 us on two);
    # a stem's fold does ~30 operations per input element
    copy_work = s.n * s.c * s.h * s.w * (1 if blocked_input else 32)

    def run(ins, outs):
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        of, g[G_PER_N_OUT] = flat_output(outs[0], per_n_out)
        nthreads = min(num_threads(), max_threads)
        src = xp.view((geo.length,), np.uint16)
        if not blocked_input:
            conv = pick(_to_amx_folded, _to_amx_folded_serial, copy_work, nthreads)
            x = ins[0].reshape(s.n, s.c, s.h, s.w).view(np.uint32)
            conv(
                x,
                src,
                s.pt,
                s.pl,
                s.sh,
                s.sw,
                s.dh,
                geo.phases,
                geo.ph,
                s.ow,
                geo.kbn,
                geo.per_n,
                s.kw,
                geo.fold_kh,
                geo.wpad,
                geo.used,
            )
        elif not copied:
            x = ins[0].reshape(s.n, s.c // LANES, s.h, s.w * LANES).view(np.uint32)
            conv = pick(_to_amx_copy, _to_amx_copy_serial, copy_work, nthreads)
            conv(x, src, s.pt, s.pl, s.sh, s.sw, geo.ph, geo.pw, geo.kbn, geo.per_n, geo.used)
        if b_const is None and len(ins) > 2 and ins[2] is not None:
            bias_pad[: s.m] = ins[2]
        g[G_THREADS] = nthreads
        counter[0] = 0
        kern = pick(_amx_tasks, _amx_tasks_serial, work, nthreads)
        kern(
            src,
            wp,
            geo.taps,
            cfg,
            bias,
            dummy_res if r is None else r.reshape(-1),
            of,
            counter,
            g,
            tflags,
            kind,
            alpha,
            beta,
        )

    return contiguous_output(run, strided=True)

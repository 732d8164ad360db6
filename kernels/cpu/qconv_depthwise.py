"""The depthwise int8 conv (one channel per group) on float32-staged rows.

A depthwise conv does KH*KW multiply-adds per output, too few to pay for packing its input
for a dot-product tile. A task's band of input rows is staged once, each row widened exactly
to float32 and split into the stride's column phases (microkernel_int8.stage_rows: a masked
16*SW-byte load per 16 columns, the input's zero point where a zero-point border would be),
in a scratch of the thread that stays in L1. Each call of microkernel_int8.depthwise_rows_rq
then computes DW_ROWS output rows of 16 pixels, one float32 sum per row held in registers (as
many independent chains in flight), every tap a multiply-add with a load from the staged rows.
Widening the bytes at every tap instead (a masked load, widen and convert per tap, nothing
staged) ran 1.5-2.2x the staged kernel's time on MobileNet's stride-1 shapes; copying each
plane into a zero-point-bordered byte scratch first (with a per-plane allocation and byte
loops) took more time than the multiply-adds (96 channels 112x112 at stride 2: 78 of 124 us).

A task is a band of rows of one plane, or several whole small planes, at least
``TASK_ELEMS`` outputs, claimed from a shared counter (kernels.cpu.threaded).

Sums are float32, exact because a tap sum stays far below 2**24 (|product| < 2**16, a few
dozen taps; :func:`eligible` bounds them); each output gets its int32 bias and is requantized
as MLAS does. Zero points come out as in qconv_vnni: the weight's is subtracted at build, the
input's folded with the bias into ``bias - xz * sum(w - wz)`` per channel (the taps outside
the plane read xz, so they add exactly that).
"""

from __future__ import annotations

import numba
import numpy as np

from cnnrt.kernels._jit import njit, num_threads, pick
from cnnrt.kernels.cpu import blas
from cnnrt.kernels.cpu.conv_common import readonly
from cnnrt.kernels.cpu.microkernel_int8 import (
    DW_ROW_STRIDE,
    DW_ROWS,
    LANES,
    depthwise_form,
    depthwise_rows_rq,
    stage_rows,
)
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.registry import run_of

MAX_TAPS = 255  # taps * 2**16 < 2**24: float32 sums of u8/s8 products stay exact
STRIDES = (1, 2)  # strides along the row that stage their column phases with vector loads
TASK_ELEMS = 4096  # outputs per task at least
STAGE_FLOATS = 8192  # a task's staged rows at most (32 KB: in L1 with the output rows)


def eligible(x_dtype: str, c: int, m: int, group: int, taps: int, out_dtype: str, sw: int) -> bool:
    """One input and one output channel per group, u8/s8 in and out, at most ``MAX_TAPS`` taps,
    a stride along the row in ``STRIDES``."""
    dtypes = x_dtype in ("uint8", "int8") and out_dtype in ("uint8", "int8")
    return group == c == m and taps <= MAX_TAPS and dtypes and sw in STRIDES


@njit
def _dw_worker(_t, _nthreads, form, x, w, biasc, mult, out, geo, task, xz, flo, fhi, zp, counter):
    """One thread's share of x (N*C planes of H*W) -> out (N*C planes of OH*OW), flat:
    ``geo`` = (H, W, kh, kw, SH, DH, DW, PT, PL, OW, OH, C, LQ, RS, SW), ``task`` = (planes per
    task, rows per task); tasks are runs of whole planes or one plane's band of rows, claimed
    from ``counter`` by every thread. Each band's input rows are staged as float32 column
    phases of LQ, RS apart (microkernel_int8.stage_rows), in a scratch of this thread."""
    h, wd, kh, kw, sh, dh = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    pt, pl, ow, oh, c_len, lq, rs, sw = geo[7], geo[8], geo[9], geo[10], geo[11], geo[12], geo[13], geo[14]
    g = (kh, kw, sh, dh, geo[6], rs, ow)
    pp, band = task[0], task[1]
    # a band's staged rows and those the last call's rows past the band read (zeros: no
    # subnormal or NaN operands to slow the multiply-adds whose sums are not stored). Made
    # afresh each call: a scratch kept per thread from build ran stride-2 planes 1.07-1.14x.
    s = np.zeros(((band + DW_ROWS - 2) * sh + (kh - 1) * dh + 1) * sw * rs, np.float32)
    planes = out.size // (oh * ow)
    nb = (oh + band - 1) // band
    n_tasks = (planes + pp - 1) // pp * nb
    ntaps = kh * kw
    while True:
        t = blas.claim(counter)
        if t >= n_tasks:
            break
        p0, p1, rb, r1 = blas.band_span(t, nb, band, oh, pp, planes)
        for p in range(p0, p1):
            c = p % c_len
            staged = (r1 - 1 - rb) * sh + (kh - 1) * dh + 1  # the band's input rows
            stage_rows(x, p * h * wd, h, wd, rb * sh - pt, staged, s, 0, lq, rs, pl, xz, form)
            for r0 in range(rb, r1, DW_ROWS):
                nrows = min(DW_ROWS, r1 - r0)
                so = (r0 - rb) * sh * sw * rs
                for ow0 in range(0, ow, LANES):
                    oo = (p * oh + r0) * ow + ow0
                    count = min(LANES, ow - ow0)
                    depthwise_rows_rq(
                        s, so, g, w, c * ntaps, nrows, ow0, count, biasc, mult, c, out, oo, flo, fhi, zp, form
                    )


_dw_threads, _dw_in_turn = threaded(_dw_worker)


def build(p: dict, x_shape: tuple, requant: tuple):
    """The run function of one depthwise QConv plan (qconv.conv_plan) for an input of
    ``x_shape``; ``requant`` is qconv_vnni.requant_params(p)."""
    w = p["w"]
    m, _, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    (sh, sw), (dh, dw), (pt, pl, _, _) = p["strides"], p["dilations"], p["pads"]
    wi = (w.astype(np.int32) - p["w_zp"].reshape(m, 1, 1, 1)).reshape(m, kh * kw)
    wf = readonly(np.ascontiguousarray(wi.reshape(-1), np.float32))
    biasc = (p["bias"].astype(np.int64) - p["x_zp"] * wi.astype(np.int64).sum(axis=1)).astype(np.int32)
    mult, flo, fhi, zp, _ = requant
    xz = int(p["x_zp"])
    lq = -(-(-(-ow // LANES) * LANES + (kw - 1) * dw // sw) // LANES) * LANES  # every tap's last vector in its phase
    form = depthwise_form(kh, kw, sh, sw, dh, dw, lq)
    rs = DW_ROW_STRIDE if len(form) > 2 else lq  # a specialised form has it as a constant
    rows_fit = max(1, (STAGE_FLOATS // (sw * lq) - (kh - 1) * dh - 1) // sh + 1)
    band = max(1, min(oh, -(-TASK_ELEMS // ow), rows_fit))
    per_task = max(1, TASK_ELEMS // (oh * ow)) if band == oh else 1
    threads = numba.config.NUMBA_NUM_THREADS
    counter = np.zeros(1, np.int64)
    work = 4 * n * m * oh * ow * kh * kw  # MACs, weighted by the staging and per-row cost
    task = readonly(np.array((per_task, band), np.int64))
    geo = readonly(np.array((x_shape[2], x_shape[3], kh, kw, sh, dh, dw, pt, pl, ow, oh, m, lq, rs, sw), np.int64))

    def bind(ins, outs):
        """The step with its views and arguments worked out once (kernels.registry.bound)."""
        x, y = ins[0], outs[0]
        dst = y if y.flags.c_contiguous else np.empty(y.shape, y.dtype)  # a concat's slice: through a copy
        flat = x.reshape(-1) if x.flags.c_contiguous else None
        args = (wf, biasc, mult, dst.reshape(-1), geo, task, xz, flo, fhi, zp, counter)

        def call():
            nthreads = min(num_threads(), threads)
            counter[0] = 0
            xs = flat if flat is not None else np.ascontiguousarray(x).reshape(-1)
            pick(_dw_threads, _dw_in_turn, work, nthreads)(nthreads, form, xs, *args)
            if dst is not y:
                y[...] = dst

        return call

    return run_of(bind)

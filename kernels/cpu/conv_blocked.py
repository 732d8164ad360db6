"""Convolution in the channel-blocked layout (NCHWc): outputs written in place, no copy-out.

A blocked tensor stores logical NCHW as (N, C/B, H, W, B) with B = one vector of channels
(:func:`block_size`). The register tile (microkernel._blocked_tile) runs with output pixels
as rows and output channels as columns: each reduction step broadcasts one input value per
pixel and loads nv vectors of packed weights (nv channel blocks: 4, 3, 2 or 1, whichever
computes the fewest blocks past M, and for bf16 fewest rows past a plane's pixels,
conv_blocked_plan.panel_blocks; a last panel of fewer blocks runs the tile of its own width
instead of computing zero blocks: in float32 RegNetY-400MF's 208 and 104 channels, 13 and 7
blocks, took 0.95x at batch 1 and 8), so an output tile is a few
pixels x nv blocks, stored straight into the output at its final place, with bias, residual
and the activation applied by the tile while it is in L1 (microkernel.tile_act). A tile's pixels are consecutive output pixels of one image, across
row ends; stride and dilation only change where each reads its input (a per-pixel offset
table), so strided and 7x7 convs run the same tile as 3x3 and 1x1 ones.

The input is blocked (N, C/B, H, W, B), or plain NCHW when C is not a multiple of B (stems
with 3 input channels: the reduction steps then run over channels one plane apart); either
way a padded conv first copies it into a zero-bordered buffer, so every tap of every pixel
is a valid read. Tasks are (block of output panels, block of one image's output pixels),
claimed from a shared counter; which way the work is cut depends on whether the weights or
the input are the bigger stream (conv_blocked_plan.plan_tasks).
"""

from __future__ import annotations

from pathlib import Path

import numba
import numpy as np

from cnnrt.core.ir import BF16
from cnnrt.core.layout import is_blocked
from cnnrt.kernels._jit import njit, num_threads, pick
from cnnrt.kernels.activation import NONE
from cnnrt.kernels.aligned import shared_scratch
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.cpu import blas, conv_algorithm
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu import microkernel_bf16 as mk_bf16
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.blocked import build_blocked_depthwise
from cnnrt.kernels.cpu.conv_amx import build_amx_conv
from cnnrt.kernels.cpu.conv_blocked_bf16 import Bf16Operands
from cnnrt.kernels.cpu.conv_blocked_plan import (
    Geometry,
    dense_group_weights,
    grouped_span,
    pack_interleaved,
    pack_weights,
    panel_blocks,
    plan_tasks,
    task_span,
)
from cnnrt.kernels.cpu.conv_common import (
    block_size,
    contiguous_output,
    flat_output,
    live_lanes,
    pad_copy_step,
    readonly,
    tile_flags,
)
from cnnrt.kernels.cpu.conv_stem import build_stem_conv
from cnnrt.kernels.cpu.microkernel import BLOCKED_TILES
from cnnrt.kernels.cpu.native_call import NativeStep
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.winograd import build_winograd
from cnnrt.kernels.prepacked import prepacked
from cnnrt.kernels.registry import register, run_of


def l2_bytes(cache_dir: Path = Path("/sys/devices/system/cpu/cpu0/cache"), default: int = 1 << 20) -> int:
    """The L2 cache of the first CPU (Linux sysfs ``cache_dir``), or ``default`` where it cannot
    be read."""
    units = {"K": 1 << 10, "M": 1 << 20}
    try:
        for index in sorted(cache_dir.glob("index*")):
            if (index / "level").read_text().strip() == "2":
                size = (index / "size").read_text().strip()
                return int(size[:-1]) * units[size[-1]] if size[-1:] in units else int(size)
    except (OSError, ValueError):
        pass
    return default


# weights per reduction chunk, re-read by every tile of a task: they stream from L2 at full
# speed, while each chunk boundary costs every tile a pass over its outputs (load, add, store).
# 96 KB chunks measured 2-6% faster per layer and ~2.4% per model (ResNet-50, DenseNet-121,
# EfficientNet-B0) than L1-sized ones (24 KB); with a 1 MB L2 (AMD Zen 5, 2 threads) 384 KB
# ran 3x3 and 1x1 layers of ResNet-50, ResNet-18 and DenseNet-121 in 0.88-1.0x of 96 KB's time
# and ResNet-50 end to end in 0.96-0.98x (in-process A/B, both orders). 3/8 of the L2,
# at most 384 KB (larger chunks were not measured).
_B_CHUNK_BYTES = min(384 << 10, l2_bytes() * 3 // 8)

# the int64 geometry vector handed to the task kernel (one array instead of ~18 scalars:
# Numba's dispatcher unboxes every argument, a cost per argument on every call)
(
    G_PER_N_IN,
    G_A_ROW,
    G_A_RS,
    G_A_KS,
    G_KSTEP,
    G_NTAPS,
    G_TCHUNK,
    G_OH,
    G_OW,
    G_M,
    G_LANES,
    G_PANELS,
    G_PG,
    G_IMAGES,
    G_PXB,
    G_PER_N_OUT,
    G_NV,
    G_BMR,
    G_LIVE,
    G_TAIL_FROM,
    G_K_TAIL,
    G_PANELS_OUTER,
    G_NV_LAST,
    G_BMR_LAST,
    G_LEN,
) = range(25)


@njit
def _blocked_worker(_t, _nthreads, form, xp, wp, taps, pin, bias, rf, of, counter, g, tflags, kind, alpha, beta):
    """One thread's share of the conv (kernels.cpu.threaded): tasks claimed from ``counter``
    until none is left. Every task: out[a block of one image's pixels, channels of its
    panels] by tiles of pixels x nv blocks (microkernel.BLOCKED_TILES), the reduction (taps x kstep) cut into
    chunks whose weights stay in L1. An image's output pixels are one run (OH x OW of a
    block lie contiguous), so tiles run across output-row ends: every pixel gets its input
    offset from a table made once per task, and the tile's rows past the task's last pixel
    re-read that pixel (no read past the input, no tile wasted on a row's ragged end: 7x7 is
    13 tiles of 4, not 7 x 2). A last block past M (M not whole blocks) is computed from zero
    weights and bias and stored: the output has whole blocks; the last panel's tiles store 0
    in its lanes past the real channels (``G_LIVE`` of them in the last block, 0: all real),
    which the zero weights leave NaN where an input is Inf or NaN. Panel p's reduction starts
    ``pin[p]`` elements into the image (0 but for grouped convs: their block's input). Taps
    from ``G_TAIL_FROM`` on (the last input block's, when its real channels are fewer than a
    block) reduce over ``G_K_TAIL`` steps, the rest over ``G_KSTEP``. ``form``: () but for a
    grouped conv of q groups per block, q zeros (microkernel.tile_blocked1's form: the
    one-block tile on its interleaved input and weights)."""
    per_n_in, a_row, a_rs, a_ks = g[G_PER_N_IN], g[G_A_ROW], g[G_A_RS], g[G_A_KS]
    kstep, ntaps, tchunk, oh, ow, m = g[G_KSTEP], g[G_NTAPS], g[G_TCHUNK], g[G_OH], g[G_OW], g[G_M]
    lanes, n_panels, pg, images, pxb, per_n_out = (
        g[G_LANES],
        g[G_PANELS],
        g[G_PG],
        g[G_IMAGES],
        g[G_PXB],
        g[G_PER_N_OUT],
    )
    nv, bmr = g[G_NV], g[G_BMR]  # the tile: bmr pixels x nv blocks (BLOCKED_TILES)
    nv_last, bmr_last = g[G_NV_LAST], g[G_BMR_LAST]  # the last panel's (fewer live blocks: its own tile)
    live = g[G_LIVE] << mk.LANES_SHIFT
    tail_from, k_tail, outer = g[G_TAIL_FROM], g[G_K_TAIL], g[G_PANELS_OUTER]
    nr = nv * lanes
    npix = oh * ow
    plane = npix * lanes
    n_pgroups = (n_panels + pg - 1) // pg
    n_pblocks = (npix + pxb - 1) // pxb
    ntasks = n_pgroups * n_pblocks * images
    pix = np.empty(pxb + max(bmr, bmr_last), np.int64)
    while True:
        i = blas.claim(counter)
        if i >= ntasks:
            break
        p0, p1, q0, q1, n = task_span(i, n_pgroups, pg, n_panels, n_pblocks, pxb, npix, images, outer)
        y = q0 // ow
        x = q0 - y * ow
        for j in range(q1 - q0):
            pix[j] = y * a_row + x * a_rs
            x += 1
            if x == ow:
                x = 0
                y += 1
        for j in range(q1 - q0, q1 - q0 + max(bmr, bmr_last)):
            pix[j] = pix[q1 - q0 - 1]
        abase = n * per_n_in
        obase = n * per_n_out
        for t0 in range(0, ntaps, tchunk):
            tn = min(tchunk, ntaps - t0)
            fl = mk.ACCUMULATE if t0 > 0 else 0
            if t0 + tn == ntaps:
                fl |= tflags
            tv = taps[t0 : t0 + tn]
            tf = tail_from - t0
            for p in range(p0, p1):
                f = fl | min(nv, (m - p * nr + lanes - 1) // lanes) << mk.VECTORS_SHIFT
                if p == n_panels - 1:
                    f |= live
                b_off = (p * ntaps + t0) * kstep * nr
                cbase = obase + nv * p * plane
                tv_nv, tmr = (nv_last, bmr_last) if p == n_panels - 1 else (nv, bmr)
                for q in range(q0, q1, tmr):
                    c_off = cbase + q * lanes
                    mr = min(tmr, q1 - q)
                    args = (
                        *(xp, abase + pin[p], pix, q - q0, a_ks, tv, tn, wp, b_off, kstep * nr, nr, kstep, of),
                        *(c_off, lanes, plane, mr, f, bias, p * nr, rf, c_off, alpha, beta, tf, k_tail, form),
                    )
                    if tv_nv == 4:
                        mk_bf16.tile_blocked4(*args)
                    elif tv_nv == 3:
                        mk_bf16.tile_blocked3(*args)
                    elif tv_nv == 2:
                        mk_bf16.tile_blocked2(*args)
                    else:
                        mk_bf16.tile_blocked1(*args)
        if kind != 0:  # an activation the tile lacks, over the task's outputs block by block
            for p in range(p0, p1):
                for v in range(nv):
                    if (nv * p + v) * lanes >= m:
                        break
                    base = obase + (nv * p + v) * plane
                    act_inplace(of[base + q0 * lanes : base + q1 * lanes], kind, alpha, beta)


_blocked_tasks, _blocked_tasks_serial = threaded(_blocked_worker)


def build_blocked_conv(
    spec,
    w_const,
    b_const,
    blocked_input: bool,
    owner=None,
    precision: str = "f32",
    bf16_copied: bool = False,
    channels: int | None = None,
    bf16_in: bool = False,
    bf16_out: bool = False,
    in_channels: int | None = None,
):
    """run(ins, outs) for ``spec`` (ungrouped, or grouped with groups tiling the channel
    blocks, conv_blocked_plan.grouped_span) with a blocked output (N, ceil(M/B), OH, OW, B):
    when M is not whole blocks, the channels past it are computed from zero weights and bias
    (passes/block_layout.py crops them off right after). The input blocked (N, C/B, H, W, B)
    or, with ``blocked_input`` False, NCHW. ``owner`` (the graph) shares the padded-input
    scratch among its convs (aligned.shared_scratch). ``precision`` "bf16": input and weights
    in bf16 on the same tiles (conv_blocked_bf16.py); ``bf16_copied``: the shared bf16 copy
    holds this conv's input already (passes/precision.py). ``channels``: the real output
    channels (default M; fewer when the layout pass padded the weights to whole blocks): the
    lanes past them are stored as 0 (:func:`live_lanes`). ``bf16_in`` / ``bf16_out``: the
    input / output is a bf16 activation (ir.BF16, passes/precision.py). A bf16 output is
    rounded once, from the whole reduction: its tasks do not cut the reduction into chunks
    (the weights of a panel, 64 channels x C x taps in bf16, stay in L2 instead of L1), its
    activation is one the tile applies (microkernel.tile_act) and every channel is real.
    A float32 conv (SqueezeNet's 3x3 stem under bf16) may write a bf16 output too: its tile
    rounds at the store, as the bf16 tile does.
    ``in_channels``: the real channels of a blocked input (default C): an ungrouped conv
    reduces over only those of the last block (the tile's ``k_tail``; 24 channels in two
    blocks: 24 steps per pixel, not 32; in bf16 12 pairs, not 16)."""
    dt = np.dtype(spec.dtype)
    lanes = block_size(dt)
    live = live_lanes(spec.m, channels, lanes)
    span = spec.c
    if spec.group != 1:
        span = grouped_span(spec.cg, spec.mg, spec.group, lanes) if blocked_input else None
        if span is None:
            raise ValueError(
                f"blocked conv needs group 1, or groups tiling blocks of {lanes} on a blocked input: "
                f"group {spec.group}, {spec.cg} input and {spec.mg} output channels per group"
            )
        if precision != "f32":
            raise ValueError(f"grouped blocked conv runs float32 only, asked for {precision}")
    # a grouped conv whose block holds q groups reduces over one group's channels, its input
    # and weights interleaved by group (microkernel.interleave_order), not over block-diagonal
    # weights (half of whose FMAs, at q = 2, multiply zeros)
    q = lanes // spec.cg if spec.group != 1 and spec.cg == spec.mg and span == lanes and spec.cg < lanes else 1
    form = (0,) * q if q > 1 else ()
    if spec.group != 1:  # grouped: a panel is one block
        nv = 1
    elif precision == "bf16":
        nv = panel_blocks(spec.m, lanes, mk_bf16.BF16_PANEL_CHOICES, mk_bf16.BF16_TILES, spec.oh * spec.ow)
    else:
        nv = panel_blocks(spec.m, lanes)
    bmr = (mk_bf16.BF16_TILES if precision == "bf16" else BLOCKED_TILES)[nv][0]
    nr = nv * lanes
    m_pad = -(-spec.m // lanes) * lanes
    if blocked_input and spec.c % lanes:
        raise ValueError(f"blocked conv needs input channels in whole blocks of {lanes}: C={spec.c}")
    geo = Geometry(spec, blocked_input, lanes, span)
    if q > 1:  # each step reads q inputs (one per group) of a pixel's interleaved block
        geo.kstep, geo.a_ks = spec.cg, q
    ntaps = len(geo.taps)
    w_bytes = spec.m * span * spec.kh * spec.kw * dt.itemsize
    in_bytes = spec.n * spec.c * spec.h * spec.w * dt.itemsize
    pg, pxb, outer = plan_tasks(spec, dt.itemsize, nr, w_bytes, in_bytes, bmr)
    xp_len = spec.n * geo.per_n
    group, panels = spec.group, -(-spec.m // nr)
    # each panel's first input block (grouped: the span its groups read; else block 0)
    pin = readonly(
        np.array([(p * nr // span) * (span // lanes) * geo.plane if group > 1 else 0 for p in range(panels)], np.int64)
    )

    def pack(w):
        w = np.asarray(w, dt)
        if q > 1:
            return pack_interleaved(w, lanes, q)
        return pack_weights(dense_group_weights(w, group, span) if group > 1 else w, nr, geo.kstep)

    wp_const = (
        None
        if w_const is None
        else readonly(prepacked(w_const, ("blocked", dt.str, nr, geo.kstep) + ((group, q) if group > 1 else ()), pack))
    )
    if bf16_in and precision != "bf16":
        raise ValueError("a bf16 activation is read by bf16 convs only")
    if bf16_out and (dt != np.float32 or spec.group != 1):
        raise ValueError(f"a bf16 output is written by ungrouped convs on float32 or bf16 operands: {spec}")
    if bf16_out and (live or (spec.act != NONE and not mk.tile_act(spec.act, dt))):
        raise ValueError(
            "a bf16 output needs whole blocks of real channels and an activation the tile applies: "
            f"M={spec.m}, {live} real lanes in the last block, activation kind {spec.act}"
        )
    bf16 = Bf16Operands(spec, geo, wp_const, w_const, nr, owner, bf16_copied, bf16_in) if precision == "bf16" else None
    if bf16 is not None:
        wp_const, geo = bf16.weights, bf16.geo
        ntaps = len(geo.taps)
    padded = (geo.padded or q > 1) and bf16 is None  # an interleaved input is always a copy
    xp = shared_scratch(owner, "conv_blocked.padded", (xp_len,), dt) if padded else None
    zeros = readonly(np.zeros(m_pad, dt))
    bias_pad = np.zeros(m_pad, dt)  # the tile reads bias vectors of whole blocks
    if b_const is not None:
        bias_pad[: spec.m] = b_const
        b_const = readonly(bias_pad)
    bias_runtime = readonly(bias_pad)  # read-only like constants: one compiled signature
    dummy_res = np.zeros(1, dt)
    tflags = tile_flags(spec)
    kind = 0 if mk.tile_act(spec.act, dt) else spec.act  # an activation the tile lacks
    geom = np.zeros(G_LEN, np.int64)
    values = {
        G_PER_N_IN: geo.per_n,
        G_A_ROW: geo.a_row,
        G_A_RS: geo.a_rs,
        G_A_KS: geo.a_ks,
        G_KSTEP: geo.kstep,
        G_NTAPS: ntaps,
        G_TCHUNK: ntaps if bf16_out else max(1, _B_CHUNK_BYTES // (geo.kstep * nr * dt.itemsize)),
        G_OH: spec.oh,
        G_OW: spec.ow,
        G_M: spec.m,
        G_LANES: lanes,
        G_PANELS: -(-spec.m // nr),
        G_PG: pg,
        G_IMAGES: spec.n,
        G_PXB: pxb,
        G_PER_N_OUT: m_pad * spec.oh * spec.ow,
        G_NV: nv,
        G_BMR: bmr,
        G_LIVE: live,
        G_TAIL_FROM: ntaps,
        G_K_TAIL: geo.kstep,
        G_PANELS_OUTER: int(outer),
        G_NV_LAST: nv,
        G_BMR_LAST: bmr,
    }
    live_last = -(-spec.m // lanes) - (values[G_PANELS] - 1) * nv
    if live_last < nv:  # a last panel of fewer blocks takes their tile, not zero blocks
        values[G_NV_LAST], values[G_BMR_LAST] = live_last, (mk_bf16.BF16_TILES if bf16 else BLOCKED_TILES)[live_last][0]
    real_in = in_channels or spec.c
    if blocked_input and group == 1 and real_in % lanes and real_in > spec.c - lanes:
        values[G_TAIL_FROM] = ntaps - spec.kh * spec.kw  # the taps of the last input block
        values[G_K_TAIL] = real_in % lanes
    for k, v in values.items():
        geom[k] = v
    max_threads = numba.config.NUMBA_NUM_THREADS
    counter = np.zeros(1, np.int64)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    per_n_out = values[G_PER_N_OUT]
    ntasks = -(-values[G_PANELS] // pg) * spec.n * -(-spec.oh * spec.ow // pxb)
    work = spec.n * spec.m * spec.oh * spec.ow * span * spec.kh * spec.kw if ntasks > 1 else 0
    lead = spec.n * geo.planes
    s = spec

    def bind(ins, outs):
        """The step on these arrays as a call without arguments: what does not change between
        runs (flat views, the output's image stride, the kernel's arguments) worked out once
        (kernels.registry.bound)."""
        r = ins[3] if len(ins) > 3 and ins[3] is not None else None
        of, per_n = flat_output(outs[0], per_n_out)
        if bf16_out:
            of = of.view(np.uint16)
        x = ins[0]
        copied = xp.view((xp_len,), dt) if xp is not None else None
        src = x.reshape(lead * geo.plane) if bf16 is None and copied is None else None
        runtime_bias = b_const is None and len(ins) > 2 and ins[2] is not None
        res = dummy_res if r is None else r.reshape(-1)
        if r is not None and r.dtype != dt:  # a bf16 activation (passes/precision.py): its bits
            if bf16 is None or r.dtype.itemsize != 2:
                raise ValueError(f"a {r.dtype} residual is read by bf16 convs only")
            res = res.view(np.uint16)

        def steps(nthreads, wp, b):
            """The kernel calls of a run on ``nthreads`` threads: the input's copy, if any, then the conv."""
            nthreads = min(nthreads, max_threads)
            if bf16 is not None:
                a, first = bf16.input_steps(x, nthreads)
            elif copied is not None:
                a, first = copied, (pad_copy_step(x, copied, s, geo, nthreads, form),)
            else:
                a, first = src, ()
            kern = pick(_blocked_tasks, _blocked_tasks_serial, work, nthreads)
            args = (nthreads, form, a, wp, geo.taps, pin, b, res, of, counter, geom, tflags, kind, alpha, beta)
            return (*first, NativeStep(kern, args, ((geom, G_PER_N_OUT, per_n), (counter, 0, 0))))

        def call():
            wp = wp_const if wp_const is not None else readonly(pack(ins[1]))
            b = b_const if b_const is not None else zeros
            if runtime_bias:
                bias_pad[: s.m] = ins[2]
                b = bias_runtime
            for step in steps(num_threads(), wp, b):
                step.run()

        if wp_const is not None and not runtime_bias:
            const_b = b_const if b_const is not None else zeros
            call.native = lambda nthreads: steps(nthreads, wp_const, const_b)
        return call

    return contiguous_output(run_of(bind), strided=True)


@register("BlockedConv")
def build_blocked_conv_node(node, graph):
    """Conv with a blocked output (passes/block_layout.py) by the node's ``algorithm``:
    ungrouped or grouped on the register tile, ungrouped by Winograd, 3-channel stems by
    conv_stem.py, depthwise by blocked.py. The output's logical value gives its real channels;
    the dense kernels store 0 past them (a depthwise conv's padding lanes are its zero
    weights times the input's, 0 already)."""
    spec = spec_from_node(node, graph)
    dt = np.dtype(spec.dtype)
    ins = list(node.inputs) + [""] * 4
    w_const = graph.constants.get(ins[1])
    b_const = graph.constants.get(ins[2]) if ins[2] else None
    w_const = None if w_const is None else readonly(np.ascontiguousarray(w_const, dt))
    b_const = None if b_const is None else readonly(np.ascontiguousarray(b_const, dt))
    blocked_input = is_blocked(graph.values[ins[0]])
    channels, in_channels = (
        graph.values[graph.values[v].logical].shape[1] if graph.values[v].logical in graph.values else None
        for v in (node.outputs[0], ins[0])
    )
    algorithm = node.attrs.get("algorithm") or conv_algorithm.choose(spec, node.op, blocked_input)[0]
    conv_algorithm.check(spec, algorithm, node.name, node.op, blocked_input)
    bf16_in, bf16_out = (graph.values[v].dtype == BF16 for v in (ins[0], node.outputs[0]))
    if algorithm == "depthwise":
        return contiguous_output(build_blocked_depthwise(spec, w_const, b_const, block_size(dt), bf16_in, bf16_out))
    if (bf16_in or bf16_out) and algorithm == "winograd" or bf16_in and algorithm == "stem":
        raise ValueError(f"the {algorithm} conv reads float32 activations, not bf16 ones")
    if algorithm == "winograd":
        # indexed by strides: writes a strided output itself (passes/concat_in_place.py)
        return contiguous_output(build_winograd(spec, w_const, b_const, block_size(dt), graph, channels), strided=True)
    if algorithm == "stem":
        return contiguous_output(build_stem_conv(spec, w_const, b_const, channels, bf16_out))
    precision, copied = node.attrs.get("precision", "f32"), bool(node.attrs.get("bf16_copied", False))
    if precision == "bf16" and node.attrs.get("bf16_tile") == "amx":
        if bf16_in or bf16_out:
            raise ValueError("the AMX conv reads and writes float32 activations, not bf16 ones")
        return build_amx_conv(spec, w_const, b_const, blocked_input, graph, copied, channels)
    return build_blocked_conv(
        spec, w_const, b_const, blocked_input, graph, precision, copied, channels, bf16_in, bf16_out, in_channels
    )

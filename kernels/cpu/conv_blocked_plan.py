"""How a blocked conv (conv_blocked.py) is laid out: channel blocks per weight panel, the
task split, the packed weights and the input addressing (tap table, strides, padded copy).

Grouped convs (not depthwise) whose groups tile the channel blocks (cg == mg and cg divides
B or B divides cg: RegNet's 8 channels per group, ResNeXt's 32 or more) run one output block
per panel, whose reduction starts at its own input block and covers the ``span`` = max(cg, B)
input channels its groups read. With cg >= B that is the same tile on block-diagonal weights
(:func:`dense_group_weights`); with q = B/cg groups in a block, the block's input and weights
are interleaved by group (:func:`pack_interleaved`), so each step's broadcast carries one
input of every group and no FMA multiplies a zero weight across groups."""

from __future__ import annotations

import numpy as np

from cnnrt.kernels._jit import njit
from cnnrt.kernels.aligned import aligned_copy
from cnnrt.kernels.cpu.microkernel import PANEL_CHOICES, interleave_order

_OUT_BLOCK_BYTES = 256 << 10  # a task's output block: it is re-read per reduction chunk
_MIN_TASKS = 8


# a tile whose pixel count leaves more than this share of an image's rows computed past its
# pixels gives way to a narrower choice that wastes less
ROW_WASTE = 0.05


def panel_blocks(
    m: int, lanes: int, choices: tuple[int, ...] = PANEL_CHOICES, tiles: dict | None = None, npix: int = 0
) -> int:
    """Channel blocks per panel (microkernel.BLOCKED_TILES) for M output channels: of the
    target's ``choices``, the tile computing the fewest blocks past M, the widest on a tie
    (AVX-512, M = 16, 32, 96, 160, 208: 1, 2, 2, 2, 2; the 8x2 and 4x4 tiles load as much per
    FMA, and where both fit M the 4x4 tile measured about as fast). One block alone takes the
    one-block tile. With ``tiles`` ((pixels, blocks) by blocks) and an image's ``npix``
    output pixels, a choice whose tile computes more than :data:`ROW_WASTE` of the rows past
    ``npix`` gives way to the next narrower one that wastes less (bf16 on 7x7: 6-pixel tiles
    compute 54 rows for 49, 7-pixel ones 49; 512 -> 512 3x3 at batch 8 took 0.82-0.88x)."""
    blocks = -(-m // lanes)
    if blocks == 1:
        return 1
    nv = min(choices, key=lambda nv: (-(-blocks // nv) * nv, -nv))
    if tiles and npix:

        def waste(v):
            mr = tiles[v][0]
            return -(-npix // mr) * mr / npix - 1

        narrower = [v for v in choices if v < nv and waste(v) < waste(nv)]
        if waste(nv) > ROW_WASTE and narrower:
            nv = max(narrower)
    return nv


def grouped_span(cg: int, mg: int, group: int, lanes: int) -> int | None:
    """Input channels one output block of a grouped conv reads (a whole number of blocks), or
    None when its groups do not tile the channel blocks (then it has no blocked kernel)."""
    if group <= 1 or cg != mg or (lanes % cg and cg % lanes):
        return None
    return max(cg, lanes)


def dense_group_weights(w: np.ndarray, group: int, span: int) -> np.ndarray:
    """(M, cg, kh, kw) grouped weights -> (M, span, kh, kw): output channel o's weights over
    the ``span`` input channels its block reads (from (o // span) * span), zero outside its
    group. With cg < span some FMAs multiply zeros (cg = 8, B = 16: half), the price of
    whole-vector tiles."""
    m, cg, kh, kw = w.shape
    dense = np.zeros((m, span, kh, kw), w.dtype)
    for o in range(m):
        first = (o // cg) * cg - (o // span) * span  # the group's first input channel in the span
        dense[o, first : first + cg] = w[o]
    return dense


def pack_interleaved(w: np.ndarray, lanes: int, q: int) -> np.ndarray:
    """(M, cg, kh, kw) grouped weights, q groups of cg = lanes/q channels per block ->
    (blocks, kh, kw, cg, lanes): per block, tap and input channel k of a group, the vector
    whose lane L holds output channel microkernel.interleave_order(lanes, q)[L]'s weight for
    its group's channel k (the operand of microkernel.tile_blocked1 with a form of q)."""
    m, cg, kh, kw = w.shape
    blocks = -(-m // lanes)
    wpad = np.zeros((blocks * lanes, cg, kh, kw), w.dtype)
    wpad[:m] = w
    lanes_first = wpad.reshape(blocks, lanes, cg, kh, kw)[:, interleave_order(lanes, q)]
    return aligned_copy(np.ascontiguousarray(lanes_first.transpose(0, 3, 4, 2, 1)))


def plan_tasks(spec, itemsize: int, nr: int, w_bytes: int, in_bytes: int, bmr: int = 4) -> tuple[int, int, bool]:
    """(panels per task, output pixels per task, panels outermost): a task is a block of one
    image's pixels (a multiple of the tile's bmr) for a group of weight panels.

    Whichever stream is bigger is read once: late layers (weights bigger than the input)
    get one panel per task and all pixels, and a panel's tasks for every image run one after
    the other (panels outermost), so each weight panel crosses memory once per batch, not once
    per image; early layers get all panels and blocks of pixels. The output block a task
    re-reads per reduction chunk stays under _OUT_BLOCK_BYTES."""
    panels = -(-spec.m // nr)
    npix = spec.oh * spec.ow
    pg = 1 if w_bytes >= in_bytes else panels
    px_bytes = nr * itemsize * pg

    def fit(pixels):
        return npix if pixels >= npix else max(bmr, pixels // bmr * bmr)

    pxb = fit(_OUT_BLOCK_BYTES // px_bytes)

    def tasks():
        return -(-panels // pg) * spec.n * -(-npix // pxb)

    while tasks() < _MIN_TASKS and pxb > 4 * bmr:
        pxb = fit(-(-pxb // 2))
    while tasks() < _MIN_TASKS and pg > 1:
        pg = -(-pg // 2)
    return pg, pxb, w_bytes >= in_bytes


@njit(inline="always")
def task_span(i, n_pgroups, pg, n_panels, n_pblocks, pxb, npix, images, panels_outer):
    """Task ``i`` of :func:`plan_tasks`' split as (first panel, end panel, first pixel, end
    pixel, image): blocks of ``pxb`` pixels vary fastest, then images, then groups of ``pg``
    panels when ``panels_outer``; else groups of panels fastest, then pixel blocks, then
    images."""
    if panels_outer:
        q = i % n_pblocks
        rest = i // n_pblocks
        n = rest % images
        p0 = (rest // images) * pg
    else:
        p0 = (i % n_pgroups) * pg
        rest = i // n_pgroups
        q = rest % n_pblocks
        n = rest // n_pblocks
    q0 = q * pxb
    return p0, min(n_panels, p0 + pg), q0, min(npix, q0 + pxb), n


def pack_weights(w: np.ndarray, nr: int, kstep: int) -> np.ndarray:
    """(M, C, kh, kw) -> (panels, C/kstep, kh, kw, kstep, nr): per panel of nr output
    channels (the last zero padded), the taps in the order of the tap table, each kstep input
    channels of nr weights."""
    m, c, kh, kw = w.shape
    panels = -(-m // nr)
    wpad = np.zeros((panels * nr, c, kh, kw), w.dtype)
    wpad[:m] = w
    w6 = wpad.reshape(panels, nr, c // kstep, kstep, kh, kw)
    return aligned_copy(np.ascontiguousarray(w6.transpose(0, 2, 4, 5, 3, 1)))


class Geometry:
    """How one conv's input is addressed: padded copy or in place, tap table, strides."""

    def __init__(self, spec, blocked_input: bool, lanes: int, reduce_channels: int | None = None):
        """``reduce_channels``: input channels one output panel reads (a grouped conv's span;
        default all C)."""
        s = spec
        self.padded = any((s.pt, s.pl, s.pb, s.pr))  # read through a zero-bordered copy
        # pixels a row of taps reaches: enough for every output row and column
        hp = max(s.h + s.pt + s.pb, (s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1)
        wp = max(s.w + s.pl + s.pr, (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1)
        if not self.padded:
            hp, wp = s.h, s.w
        self.hp, self.wp = hp, wp
        self.layout_lanes = lanes if blocked_input else 1  # elements per pixel in a plane
        self.planes = s.c // lanes if blocked_input else s.c
        self.plane = hp * wp * self.layout_lanes
        self.kstep = lanes if blocked_input else s.c
        self.a_ks = 1 if blocked_input else self.plane
        self.a_rs = s.sw * self.layout_lanes
        self.a_row = s.sh * wp * self.layout_lanes
        per_block = self.plane if blocked_input else 0
        taps = [
            cb * per_block + (i * s.dh * wp + j * s.dw) * self.layout_lanes
            for cb in range((reduce_channels or s.c) // self.kstep)
            for i in range(s.kh)
            for j in range(s.kw)
        ]
        self.taps = np.array(taps, np.int64)
        self.per_n = self.planes * self.plane

"""Kernels on the channel-blocked layout NCHWc: reorders, pools, ChannelAffine, depthwise conv,
channel Split, Concat and shuffle.

A logical NCHW tensor is stored (N, ceil(C/B), H, W, B): element [n, cb, h, w, l] is logical
[n, cb*B + l, h, w], the lanes past C zero (cnnrt.core.layout). B is the vector width in elements: a pixel of a channel block is
one vector, a window tap one vector operation over B channels. The pools and the depthwise
conv run blocked_window.py's window kernel (a depthwise conv whose block is one vector:
depthwise_blocked.py's row-blocked kernel); ChannelAffine is one vector loop per plane
(vector_ir.affine_run); the reorders, global pools and channel copies are here.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import config, prange

from cnnrt.core.ir import BF16
from cnnrt.core.layout import blocks
from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.activation import CLIP, NONE, RELU
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu import depthwise_blocked
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.blas import share, split_index
from cnnrt.kernels.cpu.blocked_window import FMA, MAX, SUM, Windows
from cnnrt.kernels.cpu.conv_common import flat_output, readonly
from cnnrt.kernels.cpu.conv_common import opt_input as _opt
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.kernels.cpu.native_call import native_call
from cnnrt.kernels.cpu.pool import _taps_inside, _window
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.cpu.vector_ir import PERMUTE2_LANES, affine_run, fma, permute2_run, pixel_reduce
from cnnrt.kernels.registry import KernelFn, register, run_of


@pjit
def _reorder(x, y, planes, hw, b, chunk, to_blocked, cbk, c):
    """(P, B, HW) <-> (P, HW, B), flat, over tasks (plane, chunk of pixels). The inner loop runs
    over the B lanes of a pixel: B input rows read at once, the blocked side contiguous.
    Planes p = n*cbk + block; the NCHW side has ``c`` <= cbk*B channels per image: to blocked,
    the lanes past c are written zero (cnnrt.core.layout's padding lanes); from blocked, they
    are dropped."""
    nch = (hw + chunk - 1) // chunk
    ub, uhw = np.uint64(b), np.uint64(hw)
    for t in prange(planes * nch):
        p = t // nch
        s0 = (t - p * nch) * chunk
        base = np.uint64(p * hw * b)
        n = p // cbk
        k = p - n * cbk
        plain = np.uint64((n * c + k * b) * hw)
        nl = min(b, c - k * b)
        for s in range(s0, min(hw, s0 + chunk)):
            us = np.uint64(s)
            if to_blocked:
                for lane in range(nl):
                    y[base + us * ub + np.uint64(lane)] = x[plain + np.uint64(lane) * uhw + us]
                for lane in range(nl, b):  # the padding lanes of a last partial block
                    y[base + us * ub + np.uint64(lane)] = 0
            else:
                for lane in range(nl):
                    y[plain + np.uint64(lane) * uhw + us] = x[base + us * ub + np.uint64(lane)]


@pjit
def _global(x, out, acc, hw, b, is_max):
    """x (P, HW, B) -> out (P, B), flat: per lane the max over the pixels (NaN skipped, as
    GlobalMaxPool) or the mean (accumulated in float64, as GlobalAveragePool): vector_ir's
    pixel_reduce when B is the vector width, else scalar loops over acc, (P, B) float64
    scratch (an array allocated per plane inside the loop cost more than 7x7 sums)."""
    vector = b * x.itemsize == VECTOR_BYTES
    for p in prange(out.size // b):
        base = p * hw * b
        if vector:
            pixel_reduce(x, base, hw, out, p * b, is_max)
            continue
        a = acc[p]
        for lane in range(b):
            a[lane] = -np.inf if is_max else 0.0
        for s in range(hw):
            for lane in range(b):
                v = x[base + s * b + lane]
                if is_max:
                    a[lane] = v if v > a[lane] else a[lane]
                else:
                    a[lane] += v
        for lane in range(b):
            out[p * b + lane] = a[lane] if is_max else a[lane] / hw


_reorder_serial = serial_twin(_reorder)
_global_serial = serial_twin(_global)


def _shapes(graph, node, rank_in, rank_out):
    xs, ys = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
    if len(xs) != rank_in or len(ys) != rank_out:
        raise ValueError(f"{node.op} needs rank {rank_in} -> {rank_out}, got {list(xs)} -> {list(ys)}")
    return tuple(xs), tuple(ys), np.dtype(graph.values[node.inputs[0]].dtype)


def _reorder_run(planes, hw, b, to_blocked, cbk, c):
    per_plane = -(-4 * config.NUMBA_NUM_THREADS // planes)  # ~4 tasks per thread if planes are few
    chunk = max(min(hw, 256), -(-hw // per_plane))

    def bind(ins, outs):
        x = ins[0].reshape(-1)
        args = (x, outs[0].reshape(-1), planes, hw, b, chunk, to_blocked, cbk, c)
        # a transposition, about 16 MACs' cost per element: alone, 2 threads, Zen 5, NCHW to
        # blocked 18.8K elements 4.3 us serial, 5.2 parallel; 47K 10.1 and 7.2; 150K 32 and 17
        return native_call(_reorder, _reorder_serial, x.size * 16, lambda nthreads: args)

    return run_of(bind)


@register("ReorderToBlocked")
def build_reorder_to_blocked(node, graph) -> KernelFn:
    """X (N, C, H, W) -> Y (N, ceil(C/B), H, W, B), B = attr ``block``, padding lanes zero."""
    (n, c, h, w), ys, _ = _shapes(graph, node, 4, 5)
    b = int(node.attrs["block"])
    cb = blocks(c, b)
    if ys != (n, cb, h, w, b):
        raise ValueError(f"ReorderToBlocked: {[n, c, h, w]} with block {b} cannot give {list(ys)}")
    return _reorder_run(n * cb, h * w, b, True, cb, c)


@register("BlockedSplit")
def build_blocked_split(node, graph) -> KernelFn:
    """Split along the channels of a blocked value into blocked pieces: one pass over the
    input instead of a reorder to NCHW, the Split and a reorder back per piece. A piece that
    starts mid-block is a lane permutation of two input vectors (channel_permutation)."""
    xs = graph.values[node.inputs[0]].shape
    sizes = [int(c) for c in node.attrs["sizes"]]
    n, cbi, h, w, b = xs
    if int(node.attrs["axis"]) % 4 != 1 or blocks(sum(sizes), b) != cbi:
        raise ValueError(f"BlockedSplit: {list(xs)} cannot split into channels {sizes} along axis {node.attrs['axis']}")
    for o, c in zip(node.outputs, sizes):
        if o and graph.values[o].shape != (n, blocks(c, b), h, w, b):
            raise ValueError(
                f"BlockedSplit: a piece of {c} channels of {list(xs)} cannot be {list(graph.values[o].shape)}"
            )
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    return channel_permutation([sum(sizes)], 1, sizes, [bool(o) for o in node.outputs], (n, h, w, b), dt)


@register("BlockedConcat")
def build_blocked_concat(node, graph) -> KernelFn:
    """Concat along the channels of blocked inputs, any channel counts: each output block a
    lane permutation of the input vectors its channels come from (channel_permutation), its
    padding lanes zero. The plain Concat (whole-block inputs) is a copy or nothing at all
    (passes/concat_in_place.py)."""
    ys = graph.values[node.outputs[0]].shape
    sizes = [int(c) for c in node.attrs["sizes"]]
    n, cbo, h, w, b = ys
    if int(node.attrs["axis"]) % 4 != 1 or blocks(sum(sizes), b) != cbo or len(sizes) != len(node.inputs):
        raise ValueError(
            f"BlockedConcat: inputs of {sizes} channels along axis {node.attrs['axis']} cannot give {list(ys)}"
        )
    for name, c in zip(node.inputs, sizes):
        xs = graph.values[name].shape
        if xs != (n, blocks(c, b), h, w, b):
            raise ValueError(f"BlockedConcat: input {name!r} {list(xs)} does not hold {c} channels in blocks of {b}")
    dt = np.dtype(graph.values[node.outputs[0]].dtype)
    return channel_permutation(sizes, 1, [sum(sizes)], [True], (n, h, w, b), dt)


def shuffle_sources(sizes, groups: int, splits, b: int):
    """(rows, src) of BlockedChannelShuffle: output block r is block rows[r, 1] of piece
    rows[r, 0]; its lane l copies lane src[r, l, 2] of block src[r, l, 1] of input
    src[r, l, 0], or is a padding lane (input -1: zero). The pieces' channels in order are the
    shuffle of the inputs' concatenation: channel i*G + g is concatenated channel g*C/G + i."""
    c = sum(sizes)
    starts = np.cumsum([0, *sizes])
    rows, src, o0 = [], [], 0
    for i, piece in enumerate(splits):
        for ob in range(blocks(piece, b)):
            t = np.full((b, 3), -1, np.int64)
            for lane in range(min(b, piece - ob * b)):
                oc = o0 + ob * b + lane
                sc = (oc % groups) * (c // groups) + oc // groups
                k = int(np.searchsorted(starts, sc, side="right")) - 1
                lc = int(sc - starts[k])
                t[lane] = (k, lc // b, lc % b)
            rows.append((i, ob))
            src.append(t)
        o0 += piece
    return np.array(rows, np.int64).reshape(-1, 2), np.array(src, np.int64).reshape(-1, b, 3)


def permute_pairs(src, hw: int):
    """The lane copies of shuffle_sources as permutes of two source vectors (B lanes each):
    output block r runs ops start[r] .. start[r + 1]; op o permutes input blocks
    (ops[o, 0], block offset ops[o, 1]) ++ (ops[o, 2], ops[o, 3]) (offsets in elements of
    an image) by idx[o] into the lanes where mask[o] (vector_ir.permute2_run)."""
    b = src.shape[1]
    start, ops, idx, mask = [0], [], [], []
    for t in src:
        blocks_read = sorted({(int(k), int(ib)) for k, ib, _ in t if k >= 0})
        for j in range(0, len(blocks_read), 2):
            pair = blocks_read[j : j + 2]
            first, second = pair[0], pair[-1]
            ix, m = np.zeros(b, np.int32), np.zeros(b, np.int32)
            for lane, (k, ib, il) in enumerate(t):
                if (k, ib) in pair:
                    ix[lane] = il + (b if (k, ib) == second and second != first else 0)
                    m[lane] = 1
            ops.append((first[0], first[1] * hw * b, second[0], second[1] * hw * b))
            idx.append(ix)
            mask.append(m)
        start.append(len(ops))
    return (
        np.array(start, np.int64),
        np.array(ops, np.int64).reshape(-1, 4),
        np.array(idx, np.int32).reshape(-1, b),
        np.array(mask, np.int32).reshape(-1, b),
    )


def _task(t, nr, nch, hw, chunk):
    """Image, output block and pixel range of task t."""
    n, rest = split_index(t, nr * nch)
    r, q = split_index(rest, nch)
    return n, r, q * chunk, min(hw, q * chunk + chunk)


_task = njit(inline="always")(_task)


@pjit
def _permute_lanes(xs, ys, n_, hw, rows, start, ops, idx, mask, chunk):
    """BlockedChannelShuffle with B = PERMUTE2_LANES on flat (N, CB, HW, B) images (xs and ys:
    tuples of the inputs and pieces): per task (image, output block, chunk of pixels) the
    output block's permute ops (permute_pairs), each a permute of two vectors and a blend per
    pixel."""
    nr, b = rows.shape[0], idx.shape[1]
    nch = (hw + chunk - 1) // chunk
    for t in prange(n_ * nr * nch):
        n, r, p0, p1 = _task(t, nr, nch, hw, chunk)
        y = ys[rows[r, 0]]
        dst = n * (y.size // n_) + (rows[r, 1] * hw + p0) * b
        for o in range(start[r], start[r + 1]):
            xa = xs[ops[o, 0]]
            xb = xs[ops[o, 2]]
            a0 = n * (xa.size // n_) + ops[o, 1] + p0 * b
            b0 = n * (xb.size // n_) + ops[o, 3] + p0 * b
            permute2_run(xa, a0, xb, b0, y, dst, p1 - p0, idx[o], mask[o], o > start[r])


@pjit
def _copy_lanes(xs, ys, n_, hw, rows, src, chunk):
    """BlockedChannelShuffle for any B, lane by lane (shuffle_sources' tables) on flat
    (N, CB, HW, B) images; tasks as _permute_lanes'."""
    nr, b = src.shape[0], src.shape[1]
    nch = (hw + chunk - 1) // chunk
    for t in prange(n_ * nr * nch):
        n, r, p0, p1 = _task(t, nr, nch, hw, chunk)
        y = ys[rows[r, 0]]
        dst = n * (y.size // n_) + rows[r, 1] * hw * b
        for lane in range(b):
            k = src[r, lane, 0]
            if k < 0:
                for p in range(p0, p1):
                    y[dst + p * b + lane] = 0
                continue
            x = xs[k]
            s0 = n * (x.size // n_) + src[r, lane, 1] * hw * b + src[r, lane, 2]
            for p in range(p0, p1):
                y[dst + p * b + lane] = x[s0 + p * b]


_permute_lanes_serial = serial_twin(_permute_lanes)
_copy_lanes_serial = serial_twin(_copy_lanes)


@register("BlockedChannelShuffle")
def build_blocked_channel_shuffle(node, graph) -> KernelFn:
    """Concat + channel shuffle + Split (ShuffleNet's unit boundary) as one pass between
    blocked tensors: the NCHW steps and their reorders become one step (channel_permutation)."""
    sizes = [int(c) for c in node.attrs["sizes"]]
    splits = [int(c) for c in node.attrs["splits"]]
    groups = int(node.attrs["groups"])
    n, _, h, w, b = graph.values[node.inputs[0]].shape
    dt = np.dtype(graph.values[node.inputs[0]].dtype)
    c = sum(sizes)
    if len(sizes) != len(node.inputs) or len(splits) != len(node.outputs) or sum(splits) != c:
        raise ValueError(f"BlockedChannelShuffle: inputs of {sizes} channels cannot give pieces of {splits}")
    if groups < 1 or c % groups:
        raise ValueError(f"BlockedChannelShuffle: {c} channels do not split into {groups} groups")
    for name, ci in zip(node.inputs, sizes):
        xs = graph.values[name].shape
        if xs != (n, blocks(ci, b), h, w, b):
            raise ValueError(
                f"BlockedChannelShuffle: input {name!r} {list(xs)} does not hold {ci} channels in blocks of {b}"
            )
    for o, piece in zip(node.outputs, splits):
        if o and graph.values[o].shape != (n, blocks(piece, b), h, w, b):
            raise ValueError(
                f"BlockedChannelShuffle: a piece of {piece} channels cannot be {list(graph.values[o].shape)}"
            )
    return channel_permutation(sizes, groups, splits, [bool(o) for o in node.outputs], (n, h, w, b), dt)


def channel_permutation(sizes, groups: int, splits, present, dims, dt) -> KernelFn:
    """The kernel moving the channels of blocked inputs of ``sizes`` channels, concatenated and
    shuffled in ``groups`` (1: no shuffle), into blocked pieces of ``splits`` channels
    (shuffle_sources); pieces not ``present`` are not computed. dims = (N, H, W, B). When a
    float32 block is one vector (B = 16 with AVX-512, 8 with AVX2) each output vector is one
    or two vector permutes of input vectors (vector_ir.permute2_run; a whole block one
    permute: a copy), else lane by lane."""
    n, h, w, b = dims
    rows, src = shuffle_sources(sizes, groups, splits, b)
    keep = np.array([present[i] for i in rows[:, 0]], bool)  # omitted pieces: no work
    rows, src = rows[keep], src[keep]
    hw = h * w
    chunk = max(32, -(-hw // (2 * config.NUMBA_NUM_THREADS)))
    work = n * sum(sizes) * hw * 2  # about a MAC's cost per element moved
    if b == PERMUTE2_LANES and dt == np.float32:
        tables = permute_pairs(src, hw)
        kernels = (_permute_lanes, _permute_lanes_serial)
    else:
        tables = (src,)
        kernels = (_copy_lanes, _copy_lanes_serial)

    def bind(ins, outs):
        if not len(rows):
            return lambda: None
        xs = tuple(x.reshape(-1) for x in ins)
        ys = tuple(y.reshape(-1) if y is not None else xs[0][:0] for y in outs)
        args = (xs, ys, n, hw, rows, *tables, chunk)
        return native_call(*kernels, work, lambda nthreads: args)

    return run_of(bind)


@register("ReorderFromBlocked")
def build_reorder_from_blocked(node, graph) -> KernelFn:
    """X (N, CB, H, W, B) -> Y (N, C, H, W) with C <= CB*B: the first C channels (a conv's
    output with channels past its last whole block, passes/block_layout.py)."""
    (n, cb, h, w, b), ys, _ = _shapes(graph, node, 5, 4)
    c = ys[1] if len(ys) == 4 else -1
    if ys != (n, c, h, w) or not (cb - 1) * b < c <= cb * b:
        raise ValueError(f"ReorderFromBlocked: {[n, cb, h, w, b]} cannot give {list(ys)}")
    return _reorder_run(n * cb, h * w, b, False, cb, c)


@register("BlockedMaxPool", "BlockedAveragePool")
def build_blocked_pool(node, graph) -> KernelFn:
    """MaxPool / AveragePool (attributes as the IR's) on X (N, CB, H, W, B) -> Y (N, CB, OH, OW, B);
    X and Y float32, or bf16 activations (passes/precision.py) computed in float32."""
    xs, ys, dt = _shapes(graph, node, 5, 5)
    bf16_in, bf16_out = (graph.values[v].dtype == BF16 for v in (node.inputs[0], node.outputs[0]))
    if bf16_in or bf16_out:
        dt = np.dtype(np.float32)
    if len(node.outputs) > 1 and node.outputs[1]:
        raise ValueError(f"{node.op} has no Indices output")
    if ys[:2] != xs[:2] or ys[4] != xs[4]:
        raise ValueError(f"{node.op}: {list(xs)} -> {list(ys)} changes N, C/B or B")
    kh, kw, sh, sw, pt, pl, pb, pr, dh, dw = _window(node)
    h, w, oh, ow = xs[2], xs[3], ys[2], ys[3]
    count = None
    if node.op == "BlockedAveragePool":  # the divisors of pool.py's AveragePool
        if node.attrs.get("count_include_pad", False):
            ch, cw = _taps_inside(oh, kh, sh, dh, pt, -pt, h + pb), _taps_inside(ow, kw, sw, dw, pl, -pl, w + pr)
        else:
            ch, cw = _taps_inside(oh, kh, sh, dh, pt, 0, h), _taps_inside(ow, kw, sw, dw, pl, 0, w)
        count = np.maximum(ch[:, None] * cw[None, :], 1)  # no tap inside: the sum 0 stays 0
    mode = MAX if count is None else SUM
    win = Windows(xs, oh, ow, (kh, kw, sh, sw, pt, pl, dh, dw), dt, mode, count=count, bf16=(bf16_in, bf16_out))
    return run_of(lambda ins, outs: win.bind(ins[0], outs[0]))


@register("BlockedGlobalAveragePool", "BlockedGlobalMaxPool")
def build_blocked_global_pool(node, graph) -> KernelFn:
    """X (N, CB, H, W, B) -> Y (N, CB, 1, 1, B): the bytes of NCHW (N, C, 1, 1)."""
    (n, cb, h, w, b), ys, _ = _shapes(graph, node, 5, 5)
    if ys != (n, cb, 1, 1, b):
        raise ValueError(f"{node.op}: {[n, cb, h, w, b]} -> {list(ys)}")
    is_max = node.op == "BlockedGlobalMaxPool"
    acc = np.empty((n * cb, b))

    def bind(ins, outs):
        args = (ins[0].reshape(-1), outs[0].reshape(-1), acc, h * w, b, is_max)
        return native_call(_global, _global_serial, args[0].size, lambda nthreads: args)

    return run_of(bind)


@njit
def _affine_worker(part, parts, _form, x, x_per_n, out, s, t, n_, cb, hw, b, chunk, lo, hi, kind, alpha, beta):
    """out = act(x * s + t) per channel over flat (N, CB, HW, B) x and out, x's images
    ``x_per_n`` elements apart (more than CB * HW * B when x is a channel range of a bigger
    buffer); tasks (plane, chunk of pixels), this part's share of them (kernels.cpu.threaded).
    With B the vector width each chunk is one vector_ir.affine_run (Relu and Clip its clamp),
    else lane by lane; other activations run over the chunk after."""
    nch = (hw + chunk - 1) // chunk
    vector = b * x.itemsize == VECTOR_BYTES
    first, end = share(part, parts, n_ * cb * nch)
    for task in range(first, end):
        plane, q = split_index(task, nch)
        blk = plane % cb
        p0 = q * chunk
        p1 = min(hw, p0 + chunk)
        base = plane * hw * b
        xbase = (plane // cb) * x_per_n + blk * hw * b
        if vector:
            affine_run(x, xbase + p0 * b, out, base + p0 * b, p1 - p0, s, t, blk * b, lo, hi)
        else:
            for p in range(p0, p1):
                for lane in range(b):
                    v = fma(x[xbase + p * b + lane], s[blk * b + lane], t[blk * b + lane])
                    v = lo if v < lo else v
                    out[base + p * b + lane] = hi if v > hi else v
        if kind != 0:
            act_inplace(out[base + p0 * b : base + p1 * b], kind, alpha, beta)


_affine, _affine_serial = threaded(_affine_worker)


@register("BlockedChannelAffine")
def build_blocked_channel_affine(node, graph) -> KernelFn:
    """y = act(x * scale[c] + shift[c]) on X (N, CB, H, W, B); scale, shift (C,), constant or not.
    One fused multiply-add (one rounding; ChannelAffine rounds the product too), scale and
    shift held in registers over each plane's pixels."""
    xs, ys, dt = _shapes(graph, node, 5, 5)
    n, cb, h, w, b = xs
    if ys != xs or any(tuple(graph.values[i].shape) != (cb * b,) for i in node.inputs[1:3]):
        raise ValueError(f"BlockedChannelAffine: {list(xs)} -> {list(ys)} with parameters not ({cb * b},)")
    act = ACTIVATIONS[node.attrs.get("activation", "none")]
    alpha, beta = float(node.attrs.get("act_alpha", 0.0)), float(node.attrs.get("act_beta", 0.0))
    # Identity, Relu and Clip are the clamp to [lo, hi] (NaN passes); others run after it
    lo, hi = {RELU: (0.0, np.inf), CLIP: (alpha, beta)}.get(act, (-np.inf, np.inf))
    kind = 0 if act in (NONE, RELU, CLIP) else act
    # a bf16 output (passes/precision.py: read by bf16 convs only, as DenseNet's BN + ReLU
    # before each bottleneck): rounded by affine_run at the store, so vector blocks and the clamp only
    bf16_out = graph.values[node.outputs[0]].dtype == BF16
    if bf16_out and (kind or dt != np.float32 or b * dt.itemsize != VECTOR_BYTES):
        raise ValueError("a bf16 ChannelAffine output needs float32 vector blocks and no activation past Relu/Clip")
    scalars = (dt.type(lo), dt.type(hi), kind, dt.type(alpha), dt.type(beta))
    fixed = [graph.constants.get(i) for i in node.inputs[1:3]]
    fixed = [None if f is None else readonly(np.ascontiguousarray(f, dt).reshape(-1)) for f in fixed]
    hw = h * w
    per_plane = -(-4 * config.NUMBA_NUM_THREADS // (n * cb))  # ~4 tasks per thread if planes are few
    chunk = max(min(hw, 64), -(-hw // per_plane))
    # memory-bound: about four MACs' cost per element. Alone, 2 threads, Zen 5: 188K elements
    # (60 blocks at 14x14) 13.6 us serial, 8.3 parallel; 75K 3.4 serial, 5.1 parallel
    work = n * cb * hw * b * 4

    def bind(ins, outs):
        """Constant scale and shift are bound once (and the step offered to a native plan);
        fed ones are read per run."""
        out = outs[0].reshape(-1).view(np.uint16) if bf16_out else outs[0].reshape(-1)
        # x may be a channel range of a bigger buffer (passes/concat_in_place.py, ops'
        # strided_input): its images each contiguous, apart by that buffer's image stride
        x, x_per_n = flat_output(ins[0], cb * hw * b)
        if fixed[0] is not None and fixed[1] is not None:
            args = (x, x_per_n, out, fixed[0], fixed[1], n, cb, hw, b, chunk, *scalars)
            return native_call(_affine, _affine_serial, work, lambda nthreads: (nthreads, (), *args))

        def call():
            s = fixed[0] if fixed[0] is not None else readonly(np.ascontiguousarray(ins[1], dt).reshape(-1))
            t = fixed[1] if fixed[1] is not None else readonly(np.ascontiguousarray(ins[2], dt).reshape(-1))
            nthreads = num_threads()
            pick(_affine, _affine_serial, work, nthreads)(
                nthreads, (), x, x_per_n, out, s, t, n, cb, hw, b, chunk, *scalars
            )

        return call

    return run_of(bind)


def build_blocked_depthwise(
    spec: ConvSpec,
    w_const: np.ndarray | None,
    b_const: np.ndarray | None,
    block: int,
    bf16_in: bool = False,
    bf16_out: bool = False,
) -> KernelFn:
    """run(ins, outs) of a depthwise conv (group == C == M) in the blocked layout, block B.

    ins = [x (N, C/B, H, W, B), w (M, 1, kh, kw), bias (M,) or None, residual (N, M/B, OH, OW, B)
    or None], outs = [y (N, M/B, OH, OW, B)]; y = act(conv + bias + residual) as ``spec`` says.
    Constant weights are packed here as (C/B, kh*kw, B), runtime ones at every run.
    ``bf16_in`` / ``bf16_out``: x / y is a bf16 activation (the row-blocked kernel only:
    depthwise_blocked.RowBlockedDepthwise)."""
    s = spec
    if s.m != s.c or s.group != s.c:
        raise ValueError(f"blocked depthwise needs group == C == M, got C={s.c}, M={s.m}, group={s.group}")
    if s.c % block:
        raise ValueError(f"C={s.c} is not a multiple of the block {block}")
    dt, cb, kk = np.dtype(s.dtype), s.c // block, s.kh * s.kw

    def pack(w):
        return np.asarray(w, dt).reshape(cb, block, kk).transpose(0, 2, 1)

    w_buf = np.empty((cb, kk, block), dt)
    if w_const is not None:
        w_buf[...] = pack(w_const)
    w_ro = readonly(w_buf.reshape(-1))
    bias = readonly(np.ascontiguousarray(b_const if b_const is not None else np.zeros(s.m), dt))
    window = (s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw)
    if depthwise_blocked.applies(s, block):  # the block is one vector: the row-blocked kernel
        win = depthwise_blocked.RowBlockedDepthwise(s, block, bf16_in, bf16_out)
    elif bf16_in or bf16_out:
        raise ValueError("a bf16 activation is read and written by the row-blocked depthwise kernel only")
    else:
        win = Windows((s.n, cb, s.h, s.w, block), s.oh, s.ow, window, dt, FMA, s.act, s.alpha, s.beta)

    def compute(ins, outs):
        if w_const is None:
            np.copyto(w_buf, pack(ins[1]))
        b = bias if b_const is not None or _opt(ins, 2) is None else readonly(ins[2].reshape(-1))
        res = _opt(ins, 3) if s.has_res else None
        if res is not None and not (res.flags.c_contiguous and res.flags.writeable):
            res = np.array(res, dt)  # one compiled signature: C-contiguous and writable
        win(ins[0], outs[0], w_ro, b, res)

    def bind(ins, outs):
        """Constant weights and bias, a residual as it lies: the row-blocked kernel's call bound
        to the arrays (kernels.registry.bound); anything else works its arguments out per run."""
        res = _opt(ins, 3) if s.has_res else None
        plain = res is None or (res.flags.c_contiguous and res.flags.writeable)
        runtime_bias = b_const is None and _opt(ins, 2) is not None
        if w_const is None or runtime_bias or not plain or not hasattr(win, "bind"):
            return partial(compute, ins, outs)
        return win.bind(ins[0], outs[0], w_ro, bias, res)

    return run_of(bind)

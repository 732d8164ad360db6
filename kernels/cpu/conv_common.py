"""What the CPU convolution kernels share: read-only constants, the block width of the
channel-blocked layout, index ranges of taps, the register tile's epilogue flags, and the
epilogue pass over an output for the algorithms that do not fuse it."""

from __future__ import annotations

from functools import partial

import numpy as np
from numba import prange, types
from numba.extending import overload

from cnnrt.core.ir import compute_dtype
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu import microkernel as mk
from cnnrt.kernels.cpu.activation import act_row
from cnnrt.kernels.cpu.blas import share
from cnnrt.kernels.cpu.microkernel_bf16 import bf16_run
from cnnrt.kernels.cpu.native_call import NativeStep, native_call
from cnnrt.kernels.cpu.threaded import threaded
from cnnrt.kernels.registry import bound, run_of


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view. Constants reach the jitted kernels read-only (the frontend's arrays
    are), and Numba compiles read-only and writable arrays separately: passing every constant
    and dummy this way keeps one signature per kernel."""
    v = a.view()
    v.flags.writeable = False
    return v


def opt_input(ins, i):
    """Input ``i`` of a step, None when omitted."""
    return ins[i] if i < len(ins) else None


def block_size(dtype) -> int:
    """Channels per block of the blocked layout for ``dtype``: one vector (16 float32 with
    AVX-512); a bf16 activation keeps its float32 value's blocks (ir.BF16)."""
    return mk.VECTOR_BYTES // np.dtype(compute_dtype(str(np.dtype(dtype)))).itemsize


def live_lanes(m: int, channels: int | None, lanes: int) -> int:
    """The real lanes of the last block of a blocked conv output of ``m`` channels (weights
    padded or not) holding ``channels`` real ones (default ``m``), 0 when that block is all
    real. The kernels store 0 in the lanes past them: computed from zero weights, they would
    hold 0 x Inf = NaN where an input is infinite (cnnrt.core.layout's invariant)."""
    channels = m if channels is None else channels
    if not -(-m // lanes) * lanes - lanes < channels <= m:
        raise ValueError(f"{channels} real channels are not the first of the last block of {m} in blocks of {lanes}")
    return channels % lanes


@njit(inline="always")
def valid_range(off, s, size, out_count):
    """[lo, hi): the outputs o whose input index o*s + off lies in [0, size)."""
    lo = 0 if off >= 0 else (s - 1 - off) // s
    hi = (size - 1 - off) // s + 1 if size - 1 - off >= 0 else 0
    hi = min(hi, out_count)
    return min(lo, hi), hi


@pjit
def _epilogue(out, bias, res, has_res, kind, alpha, beta):
    """out[p, s] = act(out[p, s] + bias[p % M] (+ res[p, s])); rows p = n*M + m in parallel."""
    p_count, s_count = out.shape
    m_count = bias.shape[0]
    for p in prange(p_count):
        if has_res:
            act_row(out[p], bias[p % m_count], res[p], True, kind, alpha, beta)
        else:
            act_row(out[p], bias[p % m_count], res[0], False, kind, alpha, beta)


_epilogue_serial = serial_twin(_epilogue)


def epilogue_fn(spec, bias_const):
    """run_epilogue(out4d, bias_in, res_in), or None when there is nothing to do: one parallel
    pass over the output for the algorithms that do not fuse the epilogue into their tiles."""
    if not spec.has_epilogue:
        return None
    dt = np.dtype(spec.dtype)
    zeros = readonly(np.zeros(spec.m, dt))
    dummy_res = np.zeros((1, 1), dt)  # writable, like the arena arrays real residuals come in
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    rows, cols = spec.n * spec.m, spec.oh * spec.ow

    def run_epilogue(out, bias, res):
        b = bias_const if bias_const is not None else (zeros if bias is None else readonly(bias))
        r = dummy_res if res is None else res.reshape(rows, cols)
        kern = pick(_epilogue, _epilogue_serial, rows * cols, num_threads())
        kern(out.reshape(rows, cols), b, r, res is not None, spec.act, alpha, beta)

    return run_epilogue


def tile_flags(spec) -> int:
    """The epilogue flags for the register tile (microkernel.py) of a conv with ``spec``: bias,
    residual and the activation when the tile applies it (microkernel.tile_act)."""
    f = (mk.BIAS if spec.has_bias else 0) | (mk.RESIDUAL if spec.has_res else 0)
    return f | mk.tile_act(spec.act, spec.dtype) << mk.ACT_SHIFT


def image_strided(out: np.ndarray) -> tuple[np.ndarray, int]:
    """(flat, image stride) of an output (N, ...) whose images are each contiguous but lie
    apart in a bigger buffer (a channel range of an in-place Concat's output at batch > 1,
    passes/concat_in_place.py): ``flat`` starts at its first element and ends with its last
    image, the stride is in elements."""
    size = out.itemsize
    if not out[0].flags.c_contiguous or out.strides[0] % size or out.strides[0] < out[0].nbytes:
        raise ValueError(f"an output with strides {out.strides} does not hold whole images apart")
    step = out.strides[0] // size
    span = (out.shape[0] - 1) * step + out[0].size
    return np.lib.stride_tricks.as_strided(out, shape=(span,), strides=(size,)), step


def flat_output(out: np.ndarray, per_n: int) -> tuple[np.ndarray, int]:
    """(flat, image stride) a blocked kernel writes ``out`` through (or reads it through, for
    a kernel taking strided inputs): contiguous, the stride one image's ``per_n`` elements;
    images apart in a bigger buffer (an in-place Concat's channel range), :func:`image_strided`.
    A conv's residual is read at its own images' offsets, not at such an output's:
    :func:`contiguous_output` with ``strided`` computes that case into a scratch."""
    if out.flags.c_contiguous:
        return out.reshape(-1), per_n
    return image_strided(out)


def contiguous_output(run, strided: bool = False):
    """``run`` for kernels that write contiguous outputs only: a strided output (an in-place
    Concat's channel range at batch > 1) is computed into a scratch array, then copied.
    ``strided``: the kernel itself writes an output whose images lie apart in a bigger buffer
    (:func:`flat_output`) unless it reads a residual (ins[3]), whose images lie otherwise. The
    bind offered holds ``run`` and the scratch, not the function it is offered on
    (kernels.registry.bound)."""
    scratch: dict[tuple, np.ndarray] = {}

    def wrapped(ins, outs):
        if _writes_itself(ins, outs, strided):
            run(ins, outs)
        else:
            _via_scratch(run, scratch, ins, outs)

    wrapped.bind = partial(_bind_output, run, scratch, strided)
    return wrapped


def _writes_itself(ins, outs, strided: bool) -> bool:
    """Whether a kernel of :func:`contiguous_output` writes ``outs[0]`` as it lies."""
    return outs[0].flags.c_contiguous or (strided and (len(ins) < 4 or ins[3] is None))


def _via_scratch(run, scratch: dict, ins, outs) -> None:
    """``run`` into a contiguous scratch (one per output shape), copied into ``outs[0]``."""
    out = outs[0]
    tmp = scratch.get(out.shape)
    if tmp is None:
        tmp = scratch[out.shape] = np.empty(out.shape, out.dtype)
    run(ins, [tmp, *outs[1:]])
    out[...] = tmp


def _bind_output(run, scratch: dict, strided: bool, ins, outs):
    """The bind of :func:`contiguous_output`'s kernel."""
    if _writes_itself(ins, outs, strided):
        return bound(run, ins, outs)
    return partial(_via_scratch, run, scratch, ins, outs)


def put_row(src, s, dst, d, count, form):
    """dst[d + k] = src[s + k] for k < count: copied as they are, or, from float32 bits
    (uint32) into bf16 bits (uint16), rounded to nearest even (microkernel_bf16.bf16_run), or,
    with ``form`` a tuple of q >= 2 elements, each pixel's channels interleaved by q groups
    (microkernel.interleave_run: a grouped conv's input)."""
    raise NotImplementedError("put_row runs compiled only")


@overload(put_row, inline="always")
def _put_row(src, s, dst, d, count, form):
    if len(form) >= 2:

        def interleaved(src, s, dst, d, count, form):
            mk.interleave_run(src, s, dst, d, count, form)

        return interleaved

    if src.dtype == types.uint32 and dst.dtype == types.uint16:

        def to_bf16(src, s, dst, d, count, form):
            bf16_run(src, s, dst, d, count)

        return to_bf16

    def copy(src, s, dst, d, count, form):  # an element loop over views indexed from 0: it vectorises
        sv, dv = src[s : s + count], dst[d : d + count]  # (offsets in the loop ran 3-4x slower)
        for k in range(count):
            dv[k] = sv[k]

    return copy


@njit
def _pad_planes_worker(part, parts, form, x, xp, pt, pl, lanes, wp_l, per_plane, per_n):
    """xp's planes from x (N, P, H, W*lanes), this part's share of them (kernels._jit.
    threaded): each plane of per_plane elements (per_n per image) holds x's at row pt, column
    pl*lanes, zeros around; every element written (the buffer is shared with other layers).
    The rows go through :func:`put_row`: a float32 input's padded copy, a bf16 activation's, a
    float32 input's bf16 copy (from its bits, conv_blocked_bf16.py) or, by ``form``, a grouped
    conv's interleaved copy. A task is a band of one plane's rows, at least four per part: a
    few planes (RegNet's 48 channels: 3 blocks) would leave a part idle."""
    n_count, p_count, h, wl = x.shape
    planes = n_count * p_count
    bands = min(h, -(-4 * parts // planes))
    first, end = share(part, parts, planes * bands)
    left = pl * lanes
    for task in range(first, end):
        q = task // bands
        band = task - q * bands
        n = q // p_count
        p = q - n * p_count
        plane = n * per_n + p * per_plane
        top = plane + pt * wp_l
        r0, r1 = band * h // bands, (band + 1) * h // bands
        if band == 0:
            xp[plane:top] = 0
        src = x[n, p].reshape(h * wl)
        # zero fills as slice assignments (an array-to-slice copy would check the two for
        # overlap and go through a temporary, about 3x slower here)
        for ih in range(r0, r1):
            row = top + ih * wp_l
            xp[row : row + left] = 0
            put_row(src, ih * wl, xp, row + left, wl, form)
            xp[row + left + wl : row + wp_l] = 0
        if band == bands - 1:
            xp[top + h * wp_l : plane + per_plane] = 0


pad_planes, pad_planes_serial = threaded(_pad_planes_worker)


def pad_copy_step(x: np.ndarray, dst: np.ndarray, spec, geo, nthreads: int, form: tuple = ()) -> NativeStep:
    """The call of :func:`pad_planes` that copies a conv's input ``x`` (its planes as ``geo``,
    a conv_blocked_plan.Geometry, lays them out) into the flat ``dst``, serial when small;
    ``form`` (q zeros) interleaves each block's q groups (microkernel.interleave_order)."""
    kern = pick(pad_planes, pad_planes_serial, x.size * 8, nthreads)
    planes = x.reshape(spec.n, geo.planes, spec.h, spec.w * geo.layout_lanes)
    args = (
        nthreads,
        form,
        planes,
        dst,
        spec.pt,
        spec.pl,
        geo.layout_lanes,
        geo.wp * geo.layout_lanes,
        geo.plane,
        geo.per_n,
    )
    return NativeStep(kern, args)


def conv_run(kernels: tuple, work: float, args_for, max_threads: int, weights: tuple, bias: tuple, counter=None):
    """run(ins, outs) of a conv kernel over packed weights: ``kernels`` (parallel, serial),
    picked for ``work``, on ``args_for(ins, outs, w, b, nthreads)``, the task ``counter`` reset
    first. ``weights``: (packed constant or None, pack: weights input -> packed); ``bias``:
    (what the kernel reads for a constant bias or None, for no bias, fed: bias input -> what
    it reads). ``run.bind`` binds the call once and, with constant weights and a constant or
    no bias, offers it to a native plan."""
    w_const, pack = weights
    b_const, b_none, fed = bias

    def bias_of(ins):
        if b_const is not None:
            return b_const
        return fed(ins[2]) if len(ins) > 2 and ins[2] is not None else b_none

    def compute(ins, outs):
        w = w_const if w_const is not None else pack(ins[1])
        if counter is not None:
            counter[0] = 0
        nthreads = min(num_threads(), max_threads)
        pick(*kernels, work, nthreads)(*args_for(ins, outs, w, bias_of(ins), nthreads))

    def bind(ins, outs):
        if w_const is None or (b_const is None and len(ins) > 2 and ins[2] is not None):
            return partial(compute, ins, outs)
        b = bias_of(ins)

        def args(nthreads):
            return args_for(ins, outs, w_const, b, min(nthreads, max_threads))

        return native_call(*kernels, work, args, () if counter is None else ((counter, 0, 0),))

    return run_of(bind)

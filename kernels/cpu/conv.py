"""2-D convolution (NCHW) with a fused epilogue: bias, residual add, activation.

The builder fixes everything that depends only on shapes: a :class:`ConvSpec`, the algorithm
(:func:`select_algorithm`, a separate step; a node attribute ``algorithm`` set by a pass
overrides it), prepacked weights and scratch buffers. Algorithms, each a builder
``(spec, w_const, b_const) -> run(ins, outs)`` (constants None when they are runtime inputs):

- ``winograd``: 3x3, stride 1, dilation 1, ungrouped, enough tiles or small weights:
  F(4x4, 3x3) in winograd.py (a quarter of the multiplications).
- ``pointwise``: 1x1, stride 1, no padding: the input already is the GEMM operand.
- ``direct``: every other kernel size (conv_direct.py): the taps read the zero-padded input
  (split into stride phases) in place, no im2col.
- ``im2col``: strided or padded 1x1, strided convs with many channels and outputs (and any
  conv, as an alternative).
- ``fc``: a kernel covering the whole unpadded input (one output pixel): a Gemm.
  ``pointwise`` and ``im2col`` are GEMM tasks on Numba's pool (conv_gemm.py).
  All three GEMM-based algorithms run cnnrt's own register tile (microkernel.py) on weights
  packed at build, with the epilogue applied while the output tile is in registers or cache.
- ``depthwise``: group == C (channel multiplier M/C >= 1): direct, per output channel from
  the bias, since a GEMM with K = kh*kw would be all overhead (dilation 1: depthwise.py, taps
  as whole-plane vector passes; else _depthwise below).
- ``pointwise_numpy`` / ``im2col_numpy``: the same GEMMs through ``np.matmul`` (BLAS's own
  threads): a second, independent reference for the tests.

The epilogue ``act(y + bias + residual)`` is fused into the task kernels; the others share
one parallel Numba pass over the output (also used by ConvTranspose).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels import register
from cnnrt.kernels._jit import njit, num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.activation import act_row

# im2col block: output rows per block are chosen so one block of columns is about this big
# (fits in L2 beside the GEMM's packed panels).
_COL_BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class ConvSpec:
    """Everything about one convolution that is fixed when the session is built."""

    n: int
    c: int
    h: int
    w: int
    m: int
    oh: int
    ow: int
    kh: int
    kw: int
    sh: int
    sw: int
    pt: int
    pl: int
    pb: int
    pr: int
    dh: int
    dw: int
    group: int
    dtype: str = "float32"
    has_bias: bool = False
    has_res: bool = False
    act: int = 0
    alpha: float = 0.0
    beta: float = 0.0

    @property
    def cg(self) -> int:
        return self.c // self.group

    @property
    def mg(self) -> int:
        return self.m // self.group

    @property
    def k(self) -> int:
        """GEMM reduction length per group: Cg * kh * kw."""
        return self.cg * self.kh * self.kw

    @property
    def has_epilogue(self) -> bool:
        return self.has_bias or self.has_res or self.act != 0


def readonly(a: np.ndarray) -> np.ndarray:
    """A read-only view. Constants reach the jitted kernels read-only (the frontend's arrays
    are), and Numba compiles read-only and writable arrays separately: passing every constant
    and dummy this way keeps one signature per kernel."""
    v = a.view()
    v.flags.writeable = False
    return v


def conv_out_size(size: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (size + pb + pe - (k - 1) * d - 1) // s + 1


# Winograd F(4x4, 3x3) against the direct algorithm (both on the register tile), 1 thread,
# thread CPU time, ms (winograd / direct): 56x56x64 1.37 / 1.79, 28x28x128 1.11 / 1.88,
# 14x14x256 1.24 / 1.93, 7x7x512 1.78 / 2.52 (batch 8: 8.6 / 17.1), 7x7 160->320 0.46 / 0.57.
# It loses with few input channels (the transforms are paid per channel, the GEMMs get a
# short reduction): 56x56 32->32 0.54 / 0.47, 16->64 0.77 / 0.54; and when tiles hang far over
# the output: SqueezeNet's 13x13 (66% of the tile outputs used) 64->256 0.60 / 0.45.
# Those isolated runs keep the weights in cache; inside a model they come from memory
# (~8 GB/s here), and the transformed weights are 4x the direct ones (36 vs 9 per channel
# pair): ResNet-18 at batch 1, 2 threads, 7x7x512 2.7 ms with Winograd (4 tiles) vs 2.0 direct
# (onnxruntime 1.1). With 16 tiles (14x14) Winograd still pays on the whole model: sessions
# alternating in one process, batch 1, ms with 16 / 40 as the minimum: vgg16 129 / 137,
# resnet18 24.8 / 25.2, densenet121 50.3 / 51.1, resnet50 58.8 / 57.3.
WINOGRAD_MIN_CHANNELS = 64
WINOGRAD_MIN_OUTPUTS = 32
WINOGRAD_MIN_TILE_USE = 0.75  # outputs / (tiles * 16)
WINOGRAD_MIN_TILES = 16  # over the batch; below it, only with transformed weights in L2
WINOGRAD_L2_BYTES = 2 << 20


def select_algorithm(spec: ConvSpec) -> str:
    """Pick the algorithm for a layer from its shape alone."""
    if spec.group == spec.c and spec.group > 1:
        return "depthwise"
    if applicable(spec, "winograd") and spec.c >= WINOGRAD_MIN_CHANNELS and spec.m >= WINOGRAD_MIN_OUTPUTS:
        tiles = -(-spec.oh // 4) * -(-spec.ow // 4)
        u_bytes = 36 * spec.c * spec.m * np.dtype(spec.dtype).itemsize
        enough = spec.n * tiles >= WINOGRAD_MIN_TILES or u_bytes <= WINOGRAD_L2_BYTES
        if enough and spec.oh * spec.ow / (16 * tiles) >= WINOGRAD_MIN_TILE_USE:
            return "winograd"
    if (spec.kh, spec.kw, spec.sh, spec.sw) == (1, 1, 1, 1) and not any((spec.pt, spec.pl, spec.pb, spec.pr)):
        return "pointwise"
    if covers_input(spec):
        return "fc"
    if spec.kh * spec.kw == 1:  # strided 1x1: im2col gathers the 1/s^2 of the input it uses
        return "im2col"
    # strided, many channels, large output: the gathered columns beat reading s*s phase planes
    # (2 threads, cold caches, ms im2col / direct: 56x56 64->128 s2 0.98 / 1.20, batch 8
    # 5.05 / 6.15, 28x28 128->256 s2 0.99 / 1.05; but 14x14 256->512 s2 1.21 / 1.08)
    if max(spec.sh, spec.sw) > 1 and spec.c >= 64 and spec.oh * spec.ow >= 400:
        return "im2col"
    return "direct"


def applicable(spec: ConvSpec, algorithm: str) -> bool:
    """Whether ``algorithm`` can compute ``spec`` (for overrides coming from node attributes)."""
    if algorithm == "depthwise":
        return spec.group == spec.c
    if algorithm in ("pointwise", "pointwise_numpy"):
        return (spec.kh, spec.kw, spec.sh, spec.sw) == (1, 1, 1, 1) and not any((spec.pt, spec.pl, spec.pb, spec.pr))
    if algorithm == "fc":
        return covers_input(spec)
    if algorithm == "winograd":
        return (spec.kh, spec.kw, spec.sh, spec.sw, spec.dh, spec.dw, spec.group) == (3, 3, 1, 1, 1, 1, 1)
    return algorithm in ALGORITHMS


# ----------------------------------------------------------------------------- jitted parts


@njit(inline="always")
def _valid_range(off, s, size, out_count):
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


@pjit
def _im2col(x, col, kh, kw, sh, sw, pt, pl, dh, dw, oh0, oh1, ow_count):
    """col[(c, i, j), (oh - oh0) * OW + ow] = x[c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] (0 outside)."""
    c_count, h, w = x.shape
    kk = kh * kw
    for r in prange(c_count * kk):
        c = r // kk
        i = (r - c * kk) // kw
        j = r - c * kk - i * kw
        lo, hi = _valid_range(j * dw - pl, sw, w, ow_count)
        off = j * dw - pl
        crow = col[r]
        # slice copies compile to memcpy-like loops; element loops here were 2x slower
        for oh in range(oh0, oh1):
            ih = oh * sh + i * dh - pt
            base = (oh - oh0) * ow_count
            if ih < 0 or ih >= h:
                crow[base : base + ow_count] = 0
                continue
            crow[base : base + lo] = 0
            if hi > lo:
                if sw == 1:
                    crow[base + lo : base + hi] = x[c, ih, lo + off : hi + off]
                else:
                    crow[base + lo : base + hi] = x[c, ih, lo * sw + off : (hi - 1) * sw + off + 1 : sw]
            crow[base + hi : base + ow_count] = 0


@pjit
def _depthwise(x, w, bias, out, mult, kh, kw, sh, sw, pt, pl, dh, dw):
    """Direct conv for group == C (+ bias): output channel m reads input channel m // mult.

    Per output plane, tap by tap: the block of outputs whose tap lands inside the input is a 2-D
    view, updated with the tap's weight times the matching (strided) input view. Views indexed
    from 0 matter: indexing rows as xrow[o + off] (off may be negative) was 8x slower. Residual
    and activation are left to _epilogue: fusing them here doubled this kernel's compile time.
    """
    n_count, m_count, oh_count, ow_count = out.shape
    h = x.shape[2]
    wd = x.shape[3]
    for p in prange(n_count * m_count):
        n = p // m_count
        m = p - n * m_count
        xc = x[n, m // mult]
        oc = out[n, m]
        oc[:, :] = bias[m]
        for i in range(kh):
            r0, r1 = _valid_range(i * dh - pt, sh, h, oh_count)
            if r1 <= r0:
                continue
            ih0 = r0 * sh + i * dh - pt
            for j in range(kw):
                c0, c1 = _valid_range(j * dw - pl, sw, wd, ow_count)
                if c1 <= c0:
                    continue
                wv = w[m, i * kw + j]
                iw0 = c0 * sw + j * dw - pl
                iw1 = (c1 - 1) * sw + j * dw - pl + 1
                for a in range(r1 - r0):
                    # rows sliced from the planes (not from a strided 2-D view) stay contiguous
                    # for unit stride, so the loop vectorises
                    orow = oc[r0 + a, c0:c1]
                    if sw == 1:
                        xrow = xc[ih0 + a * sh, iw0:iw1]
                        for b in range(c1 - c0):
                            orow[b] += wv * xrow[b]
                    else:
                        xrow2 = xc[ih0 + a * sh, iw0:iw1:sw]
                        for b in range(c1 - c0):
                            orow[b] += wv * xrow2[b]


# ----------------------------------------------------------------------------- algorithms


_epilogue_serial = serial_twin(_epilogue)


def _epilogue_fn(spec: ConvSpec, bias_const):
    """run_epilogue(out4d, bias_in, res_in), or None when there is nothing to do."""
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


def build_pointwise(spec: ConvSpec, w_const, b_const):
    g, mg, cg, hw = spec.group, spec.mg, spec.cg, spec.h * spec.w
    wg = None if w_const is None else np.ascontiguousarray(w_const.reshape(g, mg, cg))
    epi = _epilogue_fn(spec, b_const)
    xshape, oshape = (spec.n, g, cg, hw), (spec.n, g, mg, hw)

    def run(ins, outs):
        w = wg if wg is not None else ins[1].reshape(g, mg, cg)
        out = outs[0]
        np.matmul(w, ins[0].reshape(xshape), out=out.reshape(oshape))
        if epi is not None:
            epi(out, _opt(ins, 2), _opt(ins, 3))

    return run


def build_im2col(spec: ConvSpec, w_const, b_const):
    g, mg, k = spec.group, spec.mg, spec.k
    ohw = spec.oh * spec.ow
    dt = np.dtype(spec.dtype)
    wg = None if w_const is None else np.ascontiguousarray(w_const.reshape(g, mg, k))
    row_bytes = g * k * spec.ow * dt.itemsize
    rows_per_block = max(1, min(spec.oh, _COL_BLOCK_BYTES // max(row_bytes, 1)))
    blocks = [(a, min(spec.oh, a + rows_per_block)) for a in range(0, spec.oh, rows_per_block)]
    col = np.empty(g * k * rows_per_block * spec.ow, dt)
    epi = _epilogue_fn(spec, b_const)
    s = spec

    def run(ins, outs):
        x, out = ins[0], outs[0]
        w = wg if wg is not None else ins[1].reshape(g, mg, k)
        for n in range(s.n):
            xn = x[n]
            on = out[n].reshape(g, mg, ohw)
            for oh0, oh1 in blocks:
                ncol = (oh1 - oh0) * s.ow
                cb = col[: g * k * ncol].reshape(g * k, ncol)
                _im2col(xn, cb, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw, oh0, oh1, s.ow)
                np.matmul(w, cb.reshape(g, k, ncol), out=on[:, :, oh0 * s.ow : oh1 * s.ow])
        if epi is not None:
            epi(out, _opt(ins, 2), _opt(ins, 3))

    return run


def build_depthwise(spec: ConvSpec, w_const, b_const):
    dt = np.dtype(spec.dtype)
    kk = spec.kh * spec.kw
    w2 = None if w_const is None else readonly(np.ascontiguousarray(w_const.reshape(spec.m, kk)))
    zeros = readonly(np.zeros(spec.m, dt))
    if (spec.dh, spec.dw) == (1, 1):
        from cnnrt.kernels.cpu.depthwise import build_flat

        return build_flat(spec, w2, b_const, zeros)
    # the bias is added by _depthwise; the epilogue (if any) only adds residual + activation
    epi = _epilogue_fn(replace(spec, has_bias=False), zeros)
    mult = spec.m // spec.c
    s = spec

    def run(ins, outs):
        # runtime weights are passed read-only too: one compiled signature either way
        w = w2 if w2 is not None else readonly(ins[1].reshape(s.m, kk))
        b = b_const if b_const is not None else _opt(ins, 2)
        b = zeros if b is None else readonly(b)
        out = outs[0]
        _depthwise(ins[0], w, b, out, mult, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw)
        if epi is not None:
            epi(out, None, _opt(ins, 3))

    return run


def build_pointwise_tasks(spec: ConvSpec, w_const, b_const):
    from cnnrt.kernels.cpu.conv_gemm import build_tasks

    return build_tasks(spec, w_const, b_const, direct=True)


def build_im2col_tasks(spec: ConvSpec, w_const, b_const):
    from cnnrt.kernels.cpu.conv_gemm import build_tasks

    return build_tasks(spec, w_const, b_const, direct=False)


def build_direct(spec: ConvSpec, w_const, b_const):
    from cnnrt.kernels.cpu.conv_direct import build_direct as build

    return build(spec, w_const, b_const)


def covers_input(spec: ConvSpec) -> bool:
    """The kernel spans the whole unpadded input (LeNet's last conv, FC-as-conv heads): one
    output pixel per image, whose im2col column is the image itself, flattened."""
    return (
        (spec.kh, spec.kw, spec.oh, spec.ow) == (spec.h, spec.w, 1, 1)
        and not any((spec.pt, spec.pl, spec.pb, spec.pr))
        and spec.group == 1
        and (spec.dh, spec.dw) == (1, 1)
    )


def build_fc(spec: ConvSpec, w_const, b_const):
    """A conv that :func:`covers_input` is a fully connected layer: (N, K) @ W^T (K = C*kh*kw)
    by the Gemm kernel's column tasks and epilogue. As a GEMM tile it filled 1 of 32 columns
    (LeNet-5's 16x5x5 -> 120: ~25 us a run)."""
    from cnnrt.kernels.cpu.gemm import _gemm_epilogue, _gemm_epilogue_serial, _gemm_runner

    dt = np.dtype(spec.dtype)
    n, m, k = spec.n, spec.m, spec.k
    w2 = None if w_const is None else np.ascontiguousarray(w_const.reshape(m, k))
    mm = None if w2 is None else _gemm_runner(w2, True, n, m, k)
    zeros = readonly(np.zeros((1, m), dt))
    one = dt.type(1.0)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    s = spec

    def run(ins, outs):
        x, out = ins[0].reshape(n, k), outs[0].reshape(n, m)
        if mm is not None:
            mm(x, out)
        else:
            np.matmul(x, (w2 if w2 is not None else ins[1].reshape(m, k)).T, out=out)
        b = b_const if b_const is not None else _opt(ins, 2)
        if s.has_res:
            out += ins[3].reshape(n, m)
        if b is not None or s.act != 0:
            c = zeros if b is None else readonly(b.reshape(1, m))
            kern = pick(_gemm_epilogue, _gemm_epilogue_serial, out.size, num_threads())
            kern(out, c, one, one, s.act, alpha, beta)

    return run


def build_winograd(spec: ConvSpec, w_const, b_const):
    from cnnrt.kernels.cpu.winograd import build_winograd as build

    return build(spec, w_const, b_const)


ALGORITHMS = {
    "winograd": build_winograd,
    "pointwise": build_pointwise_tasks,
    "depthwise": build_depthwise,
    "im2col": build_im2col_tasks,
    "direct": build_direct,
    "fc": build_fc,
    # the same GEMMs through np.matmul (BLAS's own threads): a second reference
    "pointwise_numpy": build_pointwise,
    "im2col_numpy": build_im2col,
}


def _opt(ins, i):
    return ins[i] if i < len(ins) else None


# ----------------------------------------------------------------------------- entry points


def spec_from_node(node, graph, logical=lambda shape, channels=None: shape) -> ConvSpec:
    """ConvSpec from an IR Conv node and its graph's Values (checks shapes). ``logical(shape,
    channels)`` maps a stored shape to its NCHW one (blocked layouts: conv_blocked.py; the
    output's with the weights' channel count)."""
    a = node.attrs
    xv, wv, yv = graph.values[node.inputs[0]], graph.values[node.inputs[1]], graph.values[node.outputs[0]]
    n, c, h, w = logical(xv.shape)
    m, cg, kh, kw = wv.shape
    y_shape = logical(yv.shape, m)
    ins = list(node.inputs) + [""] * (4 - len(node.inputs))
    if ins[3] and graph.values[ins[3]].shape != yv.shape:
        raise ValueError(
            f"residual {ins[3]!r} has shape {list(graph.values[ins[3]].shape)}, output is {list(yv.shape)}"
        )
    alpha, beta = float(a.get("act_alpha", 0.0)), float(a.get("act_beta", 0.0))
    spec = ConvSpec(
        n,
        c,
        h,
        w,
        m,
        y_shape[2],
        y_shape[3],
        kh,
        kw,
        *a.get("strides", (1, 1)),
        *a.get("pads", (0, 0, 0, 0)),
        *a.get("dilations", (1, 1)),
        int(a.get("group", 1)),
        xv.dtype,
        bool(ins[2]),
        bool(ins[3]),
        ACTIVATIONS[a.get("activation", "none")],
        alpha,
        beta,
    )
    _check(spec, y_shape, wv.shape)
    return spec


def _check(spec: ConvSpec, out_shape, w_shape) -> None:
    if spec.c % spec.group or spec.m % spec.group or w_shape[1] * spec.group != spec.c:
        raise ValueError(f"weight {list(w_shape)} with group {spec.group} does not fit C={spec.c}, M={spec.m}")
    oh = conv_out_size(spec.h, spec.kh, spec.sh, spec.dh, spec.pt, spec.pb)
    ow = conv_out_size(spec.w, spec.kw, spec.sw, spec.dw, spec.pl, spec.pr)
    if tuple(out_shape) != (spec.n, spec.m, oh, ow):
        raise ValueError(f"output shape {list(out_shape)} != computed {[spec.n, spec.m, oh, ow]}")
    if spec.dtype not in ("float32", "float64"):
        raise TypeError(f"Conv supports float32/float64, got {spec.dtype}")


def build_conv_spec(spec: ConvSpec, w_const, b_const, algorithm: str | None = None):
    """run(ins, outs) for ``spec`` with ``algorithm`` (default: :func:`select_algorithm`)."""
    algorithm = algorithm or select_algorithm(spec)
    if not applicable(spec, algorithm):
        raise ValueError(f"conv algorithm {algorithm!r} cannot compute {spec}")
    dt = np.dtype(spec.dtype)
    if w_const is not None:
        w_const = readonly(np.ascontiguousarray(w_const, dtype=dt))
    if b_const is not None:
        b_const = readonly(np.ascontiguousarray(b_const, dtype=dt))
    return ALGORITHMS[algorithm](spec, w_const, b_const)


@register("Conv")
def build_conv(node, graph):
    spec = spec_from_node(node, graph)
    ins = list(node.inputs) + [""] * 4
    w_const = graph.constants.get(ins[1])
    b_const = graph.constants.get(ins[2]) if ins[2] else None
    return build_conv_spec(spec, w_const, b_const, node.attrs.get("algorithm"))


def conv2d(
    x,
    w,
    b=None,
    r=None,
    strides=(1, 1),
    pads=(0, 0, 0, 0),
    dilations=(1, 1),
    group=1,
    activation="none",
    act_alpha=0.0,
    act_beta=0.0,
    algorithm=None,
    out=None,
):
    """Convolve NCHW ``x`` with ``w`` [M, C/group, kh, kw] (+ bias ``b``, residual ``r``, activation).

    A convenience wrapper (builds and runs once); sessions use the registered builder.
    """
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    if x.ndim != 4 or w.ndim != 4 or x.dtype != w.dtype:
        raise ValueError(f"need 4-D x and w of one dtype, got {x.dtype}{list(x.shape)}, {w.dtype}{list(w.shape)}")
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    oh = conv_out_size(h, kh, strides[0], dilations[0], pads[0], pads[2])
    ow = conv_out_size(wd, kw, strides[1], dilations[1], pads[1], pads[3])
    spec = ConvSpec(
        n,
        c,
        h,
        wd,
        m,
        oh,
        ow,
        kh,
        kw,
        *strides,
        *pads,
        *dilations,
        group,
        str(x.dtype),
        b is not None,
        r is not None,
        ACTIVATIONS[activation],
        act_alpha,
        act_beta,
    )
    _check(spec, (n, m, oh, ow), w.shape)
    if r is not None:
        r = np.ascontiguousarray(r, dtype=x.dtype)
        if r.shape != (n, m, oh, ow):
            raise ValueError(f"residual shape {list(r.shape)} != output {[n, m, oh, ow]}")
    if out is None:
        out = np.empty((n, m, oh, ow), x.dtype)
    run = build_conv_spec(spec, w, b, algorithm)
    run([x, w, b, r], [out])
    return out

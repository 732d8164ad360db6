"""2-D convolution (NCHW) with a fused epilogue: bias, residual add, activation.

The builder fixes everything that depends only on shapes: a ConvSpec (kernels/conv_spec.py),
the algorithm (the node's ``algorithm`` attribute, written by passes/select_algorithm.py from
conv_algorithm.py's rule), prepacked weights and scratch buffers. Each algorithm is a builder
``(spec, w_const, b_const) -> run(ins, outs)`` (constants None when they are runtime inputs):
``winograd`` in winograd.py, ``direct`` in conv_direct.py, ``pointwise`` and ``im2col`` as GEMM
tasks on Numba's pool in conv_gemm.py (cnnrt's register tile, microkernel.py, on weights
packed at build, the epilogue applied while the output tile is in cache), ``depthwise`` in
depthwise.py (dilation 1: taps as whole-plane vector passes) or _depthwise below, and here
``fc`` (a Gemm) and the ``np.matmul`` references ``pointwise_numpy`` / ``im2col_numpy``.

The epilogue ``act(y + bias + residual)`` is fused into the task kernels; the others share
one parallel Numba pass over the output (conv_common.epilogue_fn, also used by ConvTranspose).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels._jit import num_threads, pick, pjit
from cnnrt.kernels.conv_spec import ConvSpec, check_shapes, conv_out_size, spec_from_node
from cnnrt.kernels.cpu import conv_algorithm
from cnnrt.kernels.cpu.conv_common import epilogue_fn, opt_input, readonly, valid_range
from cnnrt.kernels.cpu.conv_direct import build_direct
from cnnrt.kernels.cpu.conv_gemm import build_tasks
from cnnrt.kernels.cpu.depthwise import build_flat
from cnnrt.kernels.cpu.gemm import _gemm_epilogue, _gemm_epilogue_serial, weights_runner
from cnnrt.kernels.cpu.native_call import NativeStep
from cnnrt.kernels.cpu.winograd import build_winograd
from cnnrt.kernels.registry import register, run_of

# im2col block: output rows per block are chosen so one block of columns is about this big
# (fits in L2 beside the GEMM's packed panels).
_COL_BLOCK_BYTES = 1 << 20


@pjit
def _im2col(x, col, kh, kw, sh, sw, pt, pl, dh, dw, oh0, oh1, ow_count):
    """col[(c, i, j), (oh - oh0) * OW + ow] = x[c, oh*sh + i*dh - pt, ow*sw + j*dw - pl] (0 outside)."""
    c_count, h, w = x.shape
    kk = kh * kw
    for r in prange(c_count * kk):
        c = r // kk
        i = (r - c * kk) // kw
        j = r - c * kk - i * kw
        lo, hi = valid_range(j * dw - pl, sw, w, ow_count)
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
            r0, r1 = valid_range(i * dh - pt, sh, h, oh_count)
            if r1 <= r0:
                continue
            ih0 = r0 * sh + i * dh - pt
            for j in range(kw):
                c0, c1 = valid_range(j * dw - pl, sw, wd, ow_count)
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


def build_pointwise(spec: ConvSpec, w_const, b_const):
    g, mg, cg, hw = spec.group, spec.mg, spec.cg, spec.h * spec.w
    wg = None if w_const is None else np.ascontiguousarray(w_const.reshape(g, mg, cg))
    epi = epilogue_fn(spec, b_const)
    xshape, oshape = (spec.n, g, cg, hw), (spec.n, g, mg, hw)

    def run(ins, outs):
        w = wg if wg is not None else ins[1].reshape(g, mg, cg)
        out = outs[0]
        np.matmul(w, ins[0].reshape(xshape), out=out.reshape(oshape))
        if epi is not None:
            epi(out, opt_input(ins, 2), opt_input(ins, 3))

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
    epi = epilogue_fn(spec, b_const)
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
            epi(out, opt_input(ins, 2), opt_input(ins, 3))

    return run


def build_depthwise(spec: ConvSpec, w_const, b_const):
    dt = np.dtype(spec.dtype)
    kk = spec.kh * spec.kw
    w2 = None if w_const is None else readonly(np.ascontiguousarray(w_const.reshape(spec.m, kk)))
    zeros = readonly(np.zeros(spec.m, dt))
    if (spec.dh, spec.dw) == (1, 1):
        return build_flat(spec, w2, b_const, zeros)
    # the bias is added by _depthwise; the epilogue (if any) only adds residual + activation
    epi = epilogue_fn(replace(spec, has_bias=False), zeros)
    mult = spec.m // spec.c
    s = spec

    def run(ins, outs):
        # runtime weights are passed read-only too: one compiled signature either way
        w = w2 if w2 is not None else readonly(ins[1].reshape(s.m, kk))
        b = b_const if b_const is not None else opt_input(ins, 2)
        b = zeros if b is None else readonly(b)
        out = outs[0]
        _depthwise(ins[0], w, b, out, mult, s.kh, s.kw, s.sh, s.sw, s.pt, s.pl, s.dh, s.dw)
        if epi is not None:
            epi(out, None, opt_input(ins, 3))

    return run


def build_fc(spec: ConvSpec, w_const, b_const):
    """A conv that covers its input (ConvSpec.covers_input) is a fully connected layer:
    (N, K) @ W^T (K = C*kh*kw) by the Gemm kernels (gemm.weights_runner) and epilogue; as a GEMM tile
    its single output pixel would fill 1 of 32 columns."""
    dt = np.dtype(spec.dtype)
    n, m, k = spec.n, spec.m, spec.k
    w2 = None if w_const is None else np.ascontiguousarray(w_const.reshape(m, k))
    mm = None if w2 is None else weights_runner(w2, n, m, k)
    zeros = readonly(np.zeros((1, m), dt))
    one = dt.type(1.0)
    alpha, beta = dt.type(spec.alpha), dt.type(spec.beta)
    s = spec

    def epilogue(out, b, nthreads):
        """The bias and activation call, or None when there is neither."""
        if b is None and s.act == 0:
            return None
        c = zeros if b is None else readonly(b.reshape(1, m))
        kern = pick(_gemm_epilogue, _gemm_epilogue_serial, out.size, nthreads)
        return NativeStep(kern, (out, c, one, one, s.act, alpha, beta))

    def compute(ins, outs):
        x, out = ins[0].reshape(n, k), outs[0].reshape(n, m)
        if mm is not None:
            mm(x, out)
        else:
            np.matmul(x, (w2 if w2 is not None else ins[1].reshape(m, k)).T, out=out)
        b = b_const if b_const is not None else opt_input(ins, 2)
        if s.has_res:
            out += ins[3].reshape(n, m)
        epi = epilogue(out, b, num_threads())
        if epi is not None:
            epi.run()

    def bind(ins, outs):
        """Constant weights, a constant or no bias, no residual: the product's and the
        epilogue's kernel calls offered to a native plan."""
        call = partial(compute, ins, outs)
        if mm is None or s.has_res or (b_const is None and opt_input(ins, 2) is not None):
            return call
        x, out = ins[0].reshape(n, k), outs[0].reshape(n, m)

        def native(nthreads):
            product = mm.step(x, out, nthreads)
            if product is None:
                return None
            epi = epilogue(out, b_const, nthreads)
            return (product,) if epi is None else (product, epi)

        call.native = native
        return call

    return run_of(bind)


ALGORITHMS = {
    "winograd": build_winograd,
    "pointwise": lambda spec, w, b: build_tasks(spec, w, b, direct=True),
    "depthwise": build_depthwise,
    "im2col": lambda spec, w, b: build_tasks(spec, w, b, direct=False),
    "direct": build_direct,
    "fc": build_fc,
    "pointwise_numpy": build_pointwise,
    "im2col_numpy": build_im2col,
}


def build_conv_spec(spec: ConvSpec, w_const, b_const, algorithm: str | None = None, node: str = ""):
    """run(ins, outs) for ``spec`` with ``algorithm`` (None: conv_algorithm.choose's, for
    callers without a resolved node: conv2d and kernel tests)."""
    if spec.dtype not in ("float32", "float64"):
        raise TypeError(f"Conv supports float32/float64, got {spec.dtype}")
    if spec.c == 0 or spec.m == 0:  # a sum over no channels, or no output: the epilogue alone
        return _no_channels(spec, b_const)
    algorithm = algorithm or conv_algorithm.choose(spec)[0]
    conv_algorithm.check(spec, algorithm, node)
    dt = np.dtype(spec.dtype)
    if w_const is not None:
        w_const = readonly(np.ascontiguousarray(w_const, dtype=dt))
    if b_const is not None:
        b_const = readonly(np.ascontiguousarray(b_const, dtype=dt))
    return ALGORITHMS[algorithm](spec, w_const, b_const)


def _no_channels(spec: ConvSpec, b_const):
    """Zero input channels: the output is act(bias + residual), as ONNX (and onnxruntime) say."""
    epi = epilogue_fn(spec, b_const)

    def run(ins, outs):
        outs[0].fill(0)
        if epi is not None and outs[0].size:
            epi(outs[0], opt_input(ins, 2), opt_input(ins, 3))

    return run


@register("Conv")
def build_conv(node, graph):
    spec = spec_from_node(node, graph)
    ins = list(node.inputs) + [""] * 4
    w_const = graph.constants.get(ins[1])
    b_const = graph.constants.get(ins[2]) if ins[2] else None
    return build_conv_spec(spec, w_const, b_const, node.attrs.get("algorithm"), node.name)


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
    check_shapes(spec, (n, m, oh, ow), w.shape)
    if r is not None:
        r = np.ascontiguousarray(r, dtype=x.dtype)
        if r.shape != (n, m, oh, ow):
            raise ValueError(f"residual shape {list(r.shape)} != output {[n, m, oh, ow]}")
    if out is None:
        out = np.empty((n, m, oh, ow), x.dtype)
    run = build_conv_spec(spec, w, b, algorithm)
    run([x, w, b, r], [out])
    return out

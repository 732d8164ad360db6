"""Conv on CUDA with the fused epilogue: bias, residual (added before the activation), activation.

Three algorithms; the node's ``algorithm`` attribute names the one to run (conv_algorithm.py
decides, passes/select_algorithm.py writes it; tests pin each path by setting it):

``implicit_gemm``  the general case. Per group, Y[oc, p] = sum_k W[oc, k] * im2col(X)[k, p]
                   with p over (n, oh, ow) and k over (ic, kh, kw); the im2col tile is
                   gathered straight into shared memory, never materialised. Same tiling
                   as kernels/cuda/gemm.py.
``pointwise``      1x1 kernels with stride 1 and no padding: the same tiled GEMM with the
                   im2col index arithmetic dropped (X[n] is already the [C, H*W] matrix).
``direct``         one thread per output, looping over its window; chosen for depthwise
                   convs (one input channel per group) where a GEMM has K = kh*kw only.
"""

from __future__ import annotations

import functools

import numba
import numpy as np
from numba import cuda

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.conv_spec import spec_from_node
from cnnrt.kernels.registry import register

from . import config, conv_algorithm
from .common import (
    act,
    epilogue_params,
    launcher_1d,
    launcher_tiles,
    nchw_index,
    require_float,
    shape_of,
    tile_origin,
    tile_products,
)
from .device import placeholder, upload_flat


@functools.cache
def implicit_gemm_kernel(tb: int, micro: int, bk: int, dtype: str, pointwise: bool):
    """Tiled implicit-GEMM conv kernel for one tile geometry and dtype (see module docstring)."""
    bm = tb * micro
    bmp = bm + 1
    nbt = numba.from_dtype(np.dtype(dtype))
    zero = np.dtype(dtype).type(0)
    nthreads = tb * tb

    @cuda.jit
    def kernel(
        X,
        Wt,
        Bias,
        R,
        Y,
        NB,
        C,
        H,
        W,
        OC,
        OH,
        OW,
        ICg,
        OCg,
        groups,
        KH,
        KW,
        sh,
        sw,
        pt,
        pl,
        dh,
        dw,
        has_bias,
        has_res,
        kind,
        aa,
        ab,
    ):
        sa = cuda.shared.array((bk, bmp), nbt)
        sb = cuda.shared.array((bk, bmp), nbt)
        acc = cuda.local.array((micro, micro), nbt)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        tid = ty * tb + tx
        khw = KH * KW
        K = ICg * khw
        ohw = OH * OW
        P = NB * ohw
        tiles_m = (OCg + bm - 1) // bm
        tiles_n = (P + bm - 1) // bm
        per_group = tiles_m * tiles_n
        for t in range(cuda.blockIdx.x, groups * per_group, cuda.gridDim.x):
            g, m0, p0 = tile_origin(t, per_group, tiles_n, bm)
            for i in range(micro):
                for j in range(micro):
                    acc[i, j] = zero
            for k0 in range(0, K, bk):
                for e in range(tid, bm * bk, nthreads):  # weights: row-major [OC, K]
                    mm = e // bk
                    kk = e - mm * bk
                    m = m0 + mm
                    k = k0 + kk
                    sa[kk, mm] = Wt[(g * OCg + m) * K + k] if (m < OCg and k < K) else zero
                for e in range(tid, bk * bm, nthreads):  # im2col, consecutive threads on p
                    kk = e // bm
                    pp = e - kk * bm
                    k = k0 + kk
                    p = p0 + pp
                    v = zero
                    if k < K and p < P:
                        n = p // ohw
                        q = p - n * ohw
                        if pointwise:
                            v = X[(n * C + g * ICg + k) * ohw + q]
                        else:
                            ic = k // khw
                            r = k - ic * khw
                            kh = r // KW
                            kw = r - kh * KW
                            oh = q // OW
                            ih = oh * sh - pt + kh * dh
                            iw = (q - oh * OW) * sw - pl + kw * dw
                            if 0 <= ih < H and 0 <= iw < W:
                                v = X[((n * C + g * ICg + ic) * H + ih) * W + iw]
                    sb[kk, pp] = v
                cuda.syncthreads()
                tile_products(acc, sa, sb, bk, micro, tb, tx, ty)
                cuda.syncthreads()
            for i in range(micro):
                m = m0 + ty + i * tb
                if m < OCg:
                    oc = g * OCg + m
                    for j in range(micro):
                        p = p0 + tx + j * tb
                        if p < P:
                            n = p // ohw
                            yi = (n * OC + oc) * ohw + (p - n * ohw)
                            v = acc[i, j]
                            if has_bias:
                                v += Bias[oc]
                            if has_res:
                                v += R[yi]
                            Y[yi] = act(v, kind, aa, ab)

    return kernel


@cuda.jit
def _conv_direct(
    X, Wt, Bias, R, Y, total, C, H, W, OC, OH, OW, ICg, OCg, KH, KW, sh, sw, pt, pl, dh, dw, has_res, kind, aa, ab
):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, oc, oh, ow = nchw_index(i, OC, OH, OW)
        g = oc // OCg
        acc = Bias[oc]  # the builder passes zeros when the conv has no bias
        for icl in range(ICg):
            xbase = (n * C + g * ICg + icl) * H
            wbase = (oc * ICg + icl) * KH
            for kh in range(KH):
                ih = oh * sh - pt + kh * dh
                if 0 <= ih < H:
                    for kw in range(KW):
                        iw = ow * sw - pl + kw * dw
                        if 0 <= iw < W:
                            acc += X[(xbase + ih) * W + iw] * Wt[(wbase + kh) * KW + kw]
        if has_res:
            acc += R[i]
        Y[i] = act(acc, kind, aa, ab)


@register("Conv", backend="cuda")
def build_conv(node, graph):
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    res = node.inputs[3] if len(node.inputs) > 3 and node.inputs[3] else None
    dtype = require_float(node, graph, *[v for v in (x, w, bias, res) if v])
    nb, c, h, wd = shape_of(graph, x)
    oc, icg, kh, kw = shape_of(graph, w)
    _, _, oh, ow = shape_of(graph, node.outputs[0])
    groups = int(node.attrs.get("group", 1))
    sh, sw = node.attrs.get("strides", (1, 1))
    dh, dw = node.attrs.get("dilations", (1, 1))
    pt, pl, _, _ = node.attrs.get("pads", (0, 0, 0, 0))
    if icg * groups != c or oc % groups:
        raise UnsupportedOpError(
            f"node {node.name!r} (Conv): W{[oc, icg, kh, kw]} and group={groups} do not fit {c} input channels"
        )
    if res is not None and shape_of(graph, res) != shape_of(graph, node.outputs[0]):
        raise UnsupportedOpError(f"node {node.name!r} (Conv): residual {res!r} must have the output's shape")
    spec = spec_from_node(node, graph)
    algo = node.attrs.get("algorithm") or conv_algorithm.choose(spec)[0]
    conv_algorithm.check(spec, algo, node.name)
    kind, aa, ab = epilogue_params(node, dtype)
    ocg = oc // groups
    dummy = placeholder(dtype.name)
    geometry = (sh, sw, pt, pl, dh, dw)
    epilogue = (kind, aa, ab)

    if algo == "direct":
        total = nb * oc * oh * ow
        launch = launcher_1d(_conv_direct, total)
        zeros = None if bias else upload_flat(np.zeros(oc, dtype))  # the direct kernel always adds a bias
        dims = (total, c, h, wd, oc, oh, ow, icg, ocg, kh, kw, *geometry, 1 if res else 0, *epilogue)

        def run(ins, outs):
            launch(ins[0], ins[1], ins[2] if bias else zeros, ins[3] if res else dummy, outs[0], *dims)

        return run
    cfg = config.current()
    tiles = groups * -(-ocg // cfg.tile) * -(-(nb * oh * ow) // cfg.tile)
    kernel = implicit_gemm_kernel(cfg.tile_threads, cfg.micro, cfg.tile_k, dtype.name, algo == "pointwise")
    launch = launcher_tiles(kernel, tiles)
    dims = (nb, c, h, wd, oc, oh, ow, icg, ocg, groups, kh, kw, *geometry, 1 if bias else 0, 1 if res else 0, *epilogue)

    def run(ins, outs):
        launch(ins[0], ins[1], ins[2] if bias else dummy, ins[3] if res else dummy, outs[0], *dims)

    return run

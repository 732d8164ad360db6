"""ConvTranspose on CUDA: a gather formulation, one thread per output, with the fused epilogue.

The scatter form (each input adds into a window of outputs) races between threads; the
gather form asks, for output (oh, ow) and tap (kh, kw), which input pixel lands there:
``ih = (oh + pad_top - kh * dh) / sh`` when that division is exact and in range. The
frontend has already folded output_padding / output_shape / auto_pad into ``pads`` and
the output shape, so outputs no input reaches simply get the bias.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import act, epilogue_params, launcher_1d, nchw_index, require_float, shape_of
from .device import upload_flat


@cuda.jit
def _conv_transpose(X, Wt, Bias, Y, total, C, H, W, OC, OH, OW, ICg, OCg, KH, KW, sh, sw, pt, pl, dh, dw, kind, aa, ab):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        n, oc, oh, ow = nchw_index(i, OC, OH, OW)
        g = oc // OCg
        ocl = oc - g * OCg
        acc = Bias[oc]
        for icl in range(ICg):
            ic = g * ICg + icl
            for kh in range(KH):
                th = oh + pt - kh * dh
                if th >= 0 and th % sh == 0 and th // sh < H:
                    ih = th // sh
                    for kw in range(KW):
                        tw = ow + pl - kw * dw
                        if tw >= 0 and tw % sw == 0 and tw // sw < W:
                            xv = X[((n * C + ic) * H + ih) * W + tw // sw]
                            acc += xv * Wt[((ic * OCg + ocl) * KH + kh) * KW + kw]
        Y[i] = act(acc, kind, aa, ab)


@register("ConvTranspose", backend="cuda")
def build_conv_transpose(node, graph):
    x, w = node.inputs[:2]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    dtype = require_float(node, graph, *[v for v in (x, w, bias) if v])
    nb, c, h, wd = shape_of(graph, x)
    wc, ocg, kh, kw = shape_of(graph, w)
    _, oc, oh, ow = shape_of(graph, node.outputs[0])
    groups = int(node.attrs.get("group", 1))
    if wc != c or c % groups or ocg * groups != oc:
        raise UnsupportedOpError(
            f"node {node.name!r} (ConvTranspose): W{[wc, ocg, kh, kw]}, group={groups} do not fit X{[nb, c, h, wd]} -> {oc} channels"
        )
    sh, sw = node.attrs.get("strides", (1, 1))
    dh, dw = node.attrs.get("dilations", (1, 1))
    pt, pl, _, _ = node.attrs.get("pads", (0, 0, 0, 0))
    kind, aa, ab = epilogue_params(node, dtype)
    zeros = None if bias else upload_flat(np.zeros(oc, dtype))
    total = nb * oc * oh * ow
    launch = launcher_1d(_conv_transpose, total)
    icg = c // groups

    dims = (total, c, h, wd, oc, oh, ow, icg, ocg, kh, kw, sh, sw, pt, pl, dh, dw, kind, aa, ab)

    def run(ins, outs):
        launch(ins[0], ins[1], ins[2] if bias else zeros, outs[0], *dims)

    return run

"""2-D transposed convolution (NCHW): GEMM into columns, then col2im with the epilogue fused.

Input pixel (ih, iw) of channel c scatters ``X[n, c, ih, iw] * W[c, mg, i, j]`` to output pixel
``(ih*sh + i*dh - pt, iw*sw + j*dw - pl)`` of channel ``g*Mg + mg``. Per batch item:

1. ``cols[g, (mg, i, j), ih*W + iw] = sum_c Wt[g, (mg, i, j), c] * X[n, g*Cg + c, ih, iw]``: one
   batched ``np.matmul`` with ``Wt`` prepacked (transposed per group) at build time;
2. ``_col2im``: per output channel (parallel, so the scatter is race-free), start from the bias,
   add every (i, j) row of ``cols`` at its shifted output position;
3. residual (an optional 4th input, as for Conv) and activation: conv's shared epilogue pass.

The output size is the output Value's shape: ``output_padding`` / ``output_shape`` were turned
into pads by the frontend, and positions no input reaches just get the bias.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels._jit import pjit
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cpu.conv_common import epilogue_fn, readonly, valid_range
from cnnrt.kernels.registry import register


@pjit
def _col2im(cols, bias, out, h, w, kh, kw, sh, sw, pt, pl, dh, dw):
    """out[m] = bias[m] + scatter of the rows cols[m*kh*kw + (i*kw + j)], channels in parallel."""
    m_count, oh_count, ow_count = out.shape
    kk = kh * kw
    for m in prange(m_count):
        oc = out[m]
        oc[:, :] = bias[m]
        for i in range(kh):
            for j in range(kw):
                crow = cols[m * kk + i * kw + j]
                off = j * dw - pl
                # input columns iw whose output column iw*sw + off lies in [0, OW)
                lo, hi = valid_range(off, sw, ow_count, w)
                if hi <= lo:
                    continue
                for ih in range(h):
                    oh = ih * sh + i * dh - pt
                    if oh < 0 or oh >= oh_count:
                        continue
                    # 0-based views (see conv._depthwise): direct shifted indexing does not vectorise
                    cs = crow[ih * w + lo : ih * w + hi]
                    if sw == 1:
                        os1 = oc[oh, lo + off : hi + off]
                        for t in range(hi - lo):
                            os1[t] += cs[t]
                    else:
                        os2 = oc[oh, lo * sw + off : (hi - 1) * sw + off + 1 : sw]
                        for t in range(hi - lo):
                            os2[t] += cs[t]


def _pack_weight(w: np.ndarray, group: int) -> np.ndarray:
    """W [C, Mg, kh, kw] -> Wt [g, Mg*kh*kw, Cg] (contiguous), the GEMM's left operand."""
    c = w.shape[0]
    cg = c // group
    return np.ascontiguousarray(w.reshape(group, cg, -1).transpose(0, 2, 1))


@register("ConvTranspose")
def build_conv_transpose(node, graph):
    a = node.attrs
    ins = list(node.inputs) + [""] * (4 - len(node.inputs))
    xv, wv, yv = graph.values[ins[0]], graph.values[ins[1]], graph.values[node.outputs[0]]
    n, c, h, w = xv.shape
    _, mg, kh, kw = wv.shape
    group = int(a.get("group", 1))
    m = mg * group
    sh, sw = a.get("strides", (1, 1))
    pt, pl, pb, pr = a.get("pads", (0, 0, 0, 0))
    dh, dw = a.get("dilations", (1, 1))
    if c % group or wv.shape[0] != c:
        raise ValueError(f"weight {list(wv.shape)} does not fit C={c} with group={group}")
    oh = (h - 1) * sh + (kh - 1) * dh + 1 - pt - pb
    ow = (w - 1) * sw + (kw - 1) * dw + 1 - pl - pr
    # output_padding may add rows past the last reachable one: never fewer than computed
    if yv.shape[:2] != (n, m) or yv.shape[2] < oh or yv.shape[3] < ow:
        raise ValueError(f"output shape {list(yv.shape)} does not fit a transposed conv giving {[n, m, oh, ow]}")
    if ins[3] and graph.values[ins[3]].shape != yv.shape:
        raise ValueError(f"residual shape {list(graph.values[ins[3]].shape)} != output {list(yv.shape)}")
    dt = np.dtype(xv.dtype)
    if dt.kind != "f":
        raise TypeError(f"ConvTranspose needs a floating-point input, got {dt}")
    cg, kk = c // group, kh * kw
    w_const = graph.constants.get(ins[1])
    wt = None if w_const is None else _pack_weight(np.asarray(w_const, dt), group)
    b_const = graph.constants.get(ins[2]) if ins[2] else None
    bias_fixed = np.zeros(m, dt) if not ins[2] else (None if b_const is None else np.ascontiguousarray(b_const, dt))
    bias_fixed = None if bias_fixed is None else readonly(bias_fixed)
    cols = np.empty((group, mg * kk, h * w), dt)
    cols2 = cols.reshape(m * kk, h * w)
    kind = ACTIVATIONS[a.get("activation", "none")]
    has_res = bool(ins[3])
    epi = None
    if kind != 0 or has_res:
        # residual + activation in conv's shared epilogue (bias is already in from _col2im); the
        # epilogue reads only n, m, oh, ow and the activation fields of the spec
        spec = ConvSpec(
            n,
            c,
            h,
            w,
            m,
            yv.shape[2],
            yv.shape[3],
            kh,
            kw,
            sh,
            sw,
            pt,
            pl,
            pb,
            pr,
            dh,
            dw,
            group,
            str(dt),
            False,
            has_res,
            kind,
            float(a.get("act_alpha", 0.0)),
            float(a.get("act_beta", 0.0)),
        )
        epi = epilogue_fn(spec, readonly(np.zeros(m, dt)))

    def run(ins_, outs):
        x, out = ins_[0], outs[0]
        wg = wt if wt is not None else _pack_weight(ins_[1], group)
        bias = bias_fixed if bias_fixed is not None else readonly(ins_[2])
        for i in range(n):
            np.matmul(wg, x[i].reshape(group, cg, h * w), out=cols)
            _col2im(cols2, bias, out[i], h, w, kh, kw, sh, sw, pt, pl, dh, dw)
        if epi is not None:
            epi(out, None, ins_[3] if len(ins_) > 3 else None)

    return run

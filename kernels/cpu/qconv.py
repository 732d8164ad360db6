"""QConv on the CPU: the integer convolution of QLinearConv / ConvInteger and of the
DequantizeLinear -> Conv -> QuantizeLinear groups passes/fuse_qdq.py makes.

The accumulator is ``sum((x - x_zp) * (w - w_zp)) + bias`` in int32, exact on every CPU,
requantized as onnxruntime's MLAS does (cnnrt.core.quantization.requantize), so the bytes match
its QLinearConv wherever MLAS's accumulator is exact too. It is not for uint8 x int8 on x86
CPUs without VNNI: there MLAS multiplies with vpmaddubsw, which adds pairs of products in
saturating int16, so onnxruntime's bytes differ from the exact ones (tests/reference.py models
that arithmetic).

Ungrouped convs with s8 weights run on the int8 register tile, on vpdpbusd with VNNI and on
its exact vpmaddwd form with AVX2 (at stride 1 with taps as offsets into the input,
kernels/cpu/qconv_vnni_taps.py; else on an im2col, kernels/cpu/qconv_vnni.py), depthwise ones
at row strides 1 and 2 read in place (kernels/cpu/qconv_depthwise.py). The rest (grouped
convs, u8 weights, weight zero points, int32 outputs, CPUs without AVX2) sum on float32
arithmetic kept exact (im2col + BLAS over short stretches of the reduction; depthwise taps
over whole planes). Without VNNI the int8 model runs no faster than the float32 one, which a
session build says once (:data:`NO_VNNI`).
"""

from __future__ import annotations

import warnings

import numpy as np

from cnnrt.core import quantization as qnt
from cnnrt.core.ops import op_attrs
from cnnrt.kernels.cpu import qconv_amx, qconv_depthwise, qconv_vnni, qconv_vnni_taps
from cnnrt.kernels.cpu.quant import param, scalar
from cnnrt.kernels.registry import register


def conv_plan(node, graph) -> dict:
    """Everything a QConv kernel needs, from the node and its constants."""
    a = op_attrs(node)
    w = np.asarray(graph.constants[node.inputs[3]])
    m = w.shape[0]
    y = graph.values[node.outputs[0]]
    plan = dict(
        w=w,
        x_zp=scalar(graph, node, 2),
        w_zp=np.broadcast_to(param(graph, node, 5).astype(np.int32).reshape(-1), (m,)),
        bias=param(graph, node, 8, np.zeros(m, np.int32)).astype(np.int32).reshape(-1),
        group=int(a["group"]),
        strides=tuple(a["strides"]),
        pads=tuple(a["pads"]),
        dilations=tuple(a["dilations"]),
        out_dtype=y.dtype,
        out_shape=y.shape,
    )
    # weights prepared once: zero point taken out, float32, one (M/group, K) matrix per group
    plan["wf"] = (w.astype(np.float32) - plan["w_zp"].reshape(m, 1, 1, 1)).reshape(
        plan["group"], m // plan["group"], -1
    )
    plan["chunk"] = exact_chunk(graph.values[node.inputs[0]].dtype, plan["x_zp"], w, plan["w_zp"])
    if y.dtype != "int32":
        plan["multiplier"] = np.broadcast_to(
            qnt.requant_multiplier(param(graph, node, 1), param(graph, node, 4), param(graph, node, 6)), (m,)
        )
        plan["y_zp"] = scalar(graph, node, 7)
        plan["lo"], plan["hi"] = a["out_lo"], a["out_hi"]
    return plan


def exact_chunk(x_dtype: str, x_zp: int, w: np.ndarray, w_zp: np.ndarray) -> int:
    """The longest stretch of the reduction a float32 GEMM sums exactly: every partial sum of
    ``chunk`` products stays below 2**24."""
    lo, hi = qnt.QRANGE[x_dtype]
    x_max = max(hi - x_zp, x_zp - lo, 1)
    w_max = max(int(np.abs(w.reshape(w.shape[0], -1).astype(np.int32) - w_zp.reshape(-1, 1)).max(initial=1)), 1)
    return max(1, (2**24 - 1) // (x_max * w_max))


def accumulate(x: np.ndarray, p: dict) -> np.ndarray:
    """The int32 accumulator (N, M, OH, OW): im2col, then float32 GEMMs over stretches of the
    reduction short enough to be exact (:func:`exact_chunk`), summed in int32."""
    w = p["w"]
    m, cg, kh, kw = w.shape
    n, _, oh, ow = p["out_shape"]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = p["strides"], p["dilations"], p["pads"]
    xf = np.pad(x.astype(np.float32) - np.float32(p["x_zp"]), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    wf, chunk = p["wf"], p["chunk"]
    if p["group"] == m and cg == 1 and kh * kw <= chunk:
        return _depthwise(xf, wf.reshape(m, kh * kw), p) + p["bias"].reshape(1, m, 1, 1)
    acc = np.zeros((n, m, oh * ow), np.int32)
    mg = m // p["group"]
    for g in range(p["group"]):
        taps = [
            xf[
                :,
                g * cg : (g + 1) * cg,
                i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                j * dw : j * dw + sw * (ow - 1) + 1 : sw,
            ]
            for i in range(kh)
            for j in range(kw)
        ]
        cols = np.stack(taps, axis=2).reshape(n, cg * kh * kw, oh * ow)
        for k0 in range(0, cg * kh * kw, chunk):
            part = np.matmul(wf[g, :, k0 : k0 + chunk], cols[:, k0 : k0 + chunk])
            acc[:, g * mg : (g + 1) * mg] += part.astype(np.int32)
    return acc.reshape(n, m, oh, ow) + p["bias"].reshape(1, m, 1, 1)


def _depthwise(xf: np.ndarray, wf: np.ndarray, p: dict) -> np.ndarray:
    """One channel per group: the taps summed over whole (N, C, OH, OW) planes at once (float32,
    exact: the kernel's taps are fewer than the exact stretch)."""
    m = wf.shape[0]
    kh, kw = p["w"].shape[2:]
    n, _, oh, ow = p["out_shape"]
    (sh, sw), (dh, dw) = p["strides"], p["dilations"]
    acc = np.zeros((n, m, oh, ow), np.float32)
    prod = np.empty_like(acc)  # one scratch plane set, not a temporary per tap
    for i in range(kh):
        for j in range(kw):
            tap = xf[:, :, i * dh : i * dh + sh * (oh - 1) + 1 : sh, j * dw : j * dw + sw * (ow - 1) + 1 : sw]
            np.multiply(tap, wf[:, i * kw + j].reshape(1, m, 1, 1), out=prod)
            acc += prod
    return acc.astype(np.int32)


def requantize(acc: np.ndarray, p: dict) -> np.ndarray:
    if p["out_dtype"] == "int32":
        return acc
    return qnt.requantize(acc, p["multiplier"], p["y_zp"], p["out_dtype"], p["lo"], p["hi"])


# one message for every QConv, so Python's default filter shows it once per process
NO_VNNI = (
    "int8 convolutions on this CPU (no AVX-512 VNNI) run no faster than the float32 model "
    "(README, int8): run the float32 model for speed"
)


@register("QConv")
def build_qconv(node, graph):
    p = conv_plan(node, graph)
    x_dtype = graph.values[node.inputs[0]].dtype
    if p["group"] == 1 and not qconv_vnni.host_has_vnni():
        warnings.warn(NO_VNNI, RuntimeWarning, stacklevel=2)
    if qconv_vnni.eligible(x_dtype, p["w"], p["w_zp"], p["group"], p["out_dtype"]):
        x_shape = graph.values[node.inputs[0]].shape
        if not qconv_amx.amx_int8_reason(p["w"][0].size):
            return qconv_amx.build(p, x_dtype, x_shape, graph)
        if qconv_vnni_taps.eligible(x_shape[1], p["w"].shape[2:]):
            return qconv_vnni_taps.build(p, x_dtype, x_shape, graph)
        return qconv_vnni.build(p, x_dtype, x_shape, graph)
    x_shape, taps = graph.values[node.inputs[0]].shape, p["w"][0].size
    sw = p["strides"][1]
    if qconv_depthwise.eligible(x_dtype, x_shape[1], p["w"].shape[0], p["group"], taps, p["out_dtype"], sw):
        return qconv_depthwise.build(p, x_shape, qconv_vnni.requant_params(p))

    def run(ins, outs):
        outs[0][...] = requantize(accumulate(ins[0], p), p)

    return run

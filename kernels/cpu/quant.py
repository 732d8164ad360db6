"""QuantizeLinear, DequantizeLinear, QAdd and QMatMul on the CPU: numpy over
cnnrt.core.quantization's formulas (memory-bound steps at a model's int8 edges; the integer
convolutions, where the time goes, are kernels/cpu/qconv.py's).
"""

from __future__ import annotations

import numpy as np

from cnnrt.core import quantization as qnt
from cnnrt.core.ops import attr
from cnnrt.kernels.registry import register


def param(graph, node, i: int, default=0) -> np.ndarray:
    """The constant at input ``i`` of ``node`` (``default`` when the port is absent)."""
    if i >= len(node.inputs) or not node.inputs[i]:
        return np.asarray(default)
    return np.asarray(graph.constants[node.inputs[i]])


def scalar(graph, node, i: int) -> int:
    """The per-tensor zero point at input ``i`` (0 when absent) as a Python int."""
    return int(param(graph, node, i).reshape(-1)[0])


@register("QuantizeLinear")
def build_quantize(node, graph):
    axis, dtype = attr(node, "axis"), graph.values[node.outputs[0]].dtype
    scale, zp = param(graph, node, 1), param(graph, node, 2)

    def run(ins, outs):
        outs[0][...] = qnt.quantize(ins[0], scale, zp, dtype, axis)

    return run


@register("DequantizeLinear")
def build_dequantize(node, graph):
    axis = attr(node, "axis")
    scale, zp = param(graph, node, 1), param(graph, node, 2)

    def run(ins, outs):
        outs[0][...] = qnt.dequantize(ins[0], scale, zp, axis)

    return run


@register("QAdd")
def build_qadd(node, graph):
    sa, za, sb, zb, sy, zy = (param(graph, node, i) for i in (1, 2, 4, 5, 6, 7))
    dtype = graph.values[node.outputs[0]].dtype
    lo, hi = node.attrs.get("out_lo"), node.attrs.get("out_hi")
    qlo, qhi = qnt.QRANGE[dtype]
    lo, hi = qlo if lo is None else lo, qhi if hi is None else hi

    def run(ins, outs):
        f = qnt.dequantize(ins[0], sa, za) + qnt.dequantize(ins[3], sb, zb)
        np.clip(qnt.quantize(f, sy, zy, "int32"), lo, hi, out=outs[0], casting="unsafe")

    return run


@register("QMatMul")
def build_qmatmul(node, graph):
    za, zb = param(graph, node, 2), param(graph, node, 5)
    out_dtype = graph.values[node.outputs[0]].dtype
    requant = out_dtype != "int32"
    if requant:
        mult = qnt.requant_multiplier(param(graph, node, 1), param(graph, node, 4), param(graph, node, 6))
        zy = scalar(graph, node, 7)

    def run(ins, outs):
        # float64 holds every int32 accumulator exactly (|products| < 2**16, K far below 2**37)
        a = ins[0].astype(np.float64) - za.astype(np.float64)
        b = ins[3].astype(np.float64) - zb.astype(np.float64).reshape(-1)
        acc = np.matmul(a, b).astype(np.int32)
        if requant:
            outs[0][...] = qnt.requantize(acc, mult, zy, out_dtype, axis=-1)
        else:
            outs[0][...] = acc

    return run

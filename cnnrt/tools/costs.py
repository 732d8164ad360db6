"""Arithmetic cost of IR nodes: multiply-accumulates (MACs) and accumulation lengths.

MACs count the multiply-adds of the operation as written (not of a fast algorithm such as
Winograd), so GFLOP/s = 2 * MACs / time is comparable across kernels:

====================  ======================================================================
Conv                  N * M * OH * OW * (C / group) * kh * kw   (= out elements * prod(W[1:]))
ConvTranspose         N * C * H * W * (M / group) * kh * kw     (= in elements * prod(W[1:]))
Gemm                  M * N * K
MatMul                prod(out shape) * K
BatchNormalization,   one per output element (a scale and shift)
ChannelAffine
AveragePool           out elements * kh * kw (additions, counted as MACs)
GlobalAveragePool     input elements
LRN                   out elements * size (the windowed sum of squares)
everything else       0 (elementwise ops, comparisons, data movement)
====================  ======================================================================

Bias, residual and fused activations are elementwise epilogues and add nothing.

``accumulation_length`` is the K of the longest sum that forms one output element, which is
what float32 rounding error grows with (used by ``cnnrt compare`` to derive tolerances).
"""

from __future__ import annotations

import math

from cnnrt.core.ir import Graph, Node


def _prod(shape) -> int:
    return int(math.prod(int(d) for d in shape))


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    return tuple(graph.values[name].shape)


def _gemm_mnk(node: Node, graph: Graph) -> tuple[int, int, int]:
    a = _shape(graph, node.inputs[0])
    b = _shape(graph, node.inputs[1])
    ta = int(node.attrs.get("trans_a", node.attrs.get("transA", 0)) or 0)
    tb = int(node.attrs.get("trans_b", node.attrs.get("transB", 0)) or 0)
    m, k = (a[1], a[0]) if ta else (a[0], a[1])
    n = b[0] if tb else b[1]
    return m, n, k


def _logical_op(node: Node) -> str:
    """The NCHW op a channel-blocked one stands for (passes/block_layout.py): the counts are
    the same, from the output's size and the weights' shape, except global pools' windows."""
    return node.op.removeprefix("Blocked")


def node_macs(node: Node, graph: Graph) -> int:
    """Multiply-accumulates one execution of ``node`` performs (see the module table)."""
    op = _logical_op(node)
    try:
        if op == "Conv":
            return _prod(_shape(graph, node.outputs[0])) * _prod(_shape(graph, node.inputs[1])[1:])
        if op == "ConvTranspose":
            return _prod(_shape(graph, node.inputs[0])) * _prod(_shape(graph, node.inputs[1])[1:])
        if op == "Gemm":
            m, n, k = _gemm_mnk(node, graph)
            return m * n * k
        if op == "MatMul":
            return _prod(_shape(graph, node.outputs[0])) * _shape(graph, node.inputs[0])[-1]
        if op in ("BatchNormalization", "ChannelAffine"):
            return _prod(_shape(graph, node.outputs[0]))
        if op == "AveragePool":
            return _prod(_shape(graph, node.outputs[0])) * _prod(
                node.attrs.get("kernel", node.attrs.get("kernel_shape", ()))
            )
        if op == "GlobalAveragePool":
            return _prod(_shape(graph, node.inputs[0]))
        if op == "LRN":
            return _prod(_shape(graph, node.outputs[0])) * int(node.attrs.get("size", 1))
    except (KeyError, IndexError):
        return 0
    return 0


def accumulation_length(node: Node, graph: Graph) -> int:
    """K of the longest sum behind one output element (1 for elementwise ops)."""
    op = _logical_op(node)
    try:
        if op == "Conv":
            k = _prod(_shape(graph, node.inputs[1])[1:])
            extra = sum(1 for i in node.inputs[2:] if i)  # bias, residual
            return k + extra
        if op == "ConvTranspose":
            w = _shape(graph, node.inputs[1])
            strides = node.attrs.get("strides", (1,) * (len(w) - 2))
            taps = _prod(math.ceil(kd / max(int(s), 1)) for kd, s in zip(w[2:], strides))
            return w[0] // max(int(node.attrs.get("group", 1)), 1) * taps + (
                1 if len(node.inputs) > 2 and node.inputs[2] else 0
            )
        if op == "Gemm":
            return _gemm_mnk(node, graph)[2] + (1 if len(node.inputs) > 2 and node.inputs[2] else 0)
        if op == "MatMul":
            return _shape(graph, node.inputs[0])[-1]
        if op == "AveragePool":
            return _prod(node.attrs.get("kernel", node.attrs.get("kernel_shape", (1,))))
        if op == "GlobalAveragePool":
            return _prod(_shape(graph, node.inputs[0])[2:4])  # H, W (not a blocked input's lanes)
        if op == "LRN":
            return int(node.attrs.get("size", 1))
        if op == "Softmax":
            shape = _shape(graph, node.inputs[0])
            axis = int(node.attrs.get("axis", -1))
            if node.attrs.get("coerce_2d"):
                return _prod(shape[axis % len(shape) :])
            return shape[axis]
        if op == "ReduceMean":
            shape = _shape(graph, node.inputs[0])
            axes = node.attrs.get("axes") or range(len(shape))
            return _prod(shape[a] for a in axes)
        if op in ("Sum", "Max", "Min"):
            return len([i for i in node.inputs if i])
        if op in ("BatchNormalization", "ChannelAffine"):
            return 2
    except (KeyError, IndexError, TypeError, ZeroDivisionError):
        return 1
    return 1


def graph_macs(graph: Graph) -> int:
    """Total MACs of one run of ``graph``."""
    return sum(node_macs(n, graph) for n in graph.nodes)

"""Arithmetic cost of a graph's nodes: multiply-accumulates (MACs) and accumulation lengths.

The formulas are the op table's (cnnrt.core.ops, field ``numerics``; cnnrt.core.op_costs says
what they count); this module applies them to a node in its graph.
"""

from __future__ import annotations

from cnnrt.core.ir import Graph, Node
from cnnrt.core.ops import op_attrs, op_def


def _shape(graph: Graph, name: str) -> tuple[int, ...]:
    """A value's shape; a channel-blocked one's is its logical value's (N, C, H, W): padding
    lanes are not work the model asks for."""
    v = graph.values[name]
    logical = graph.values.get(v.logical) if v.logical else None
    return tuple((logical or v).shape)


def _shapes(graph: Graph, names) -> list[tuple[int, ...] | None]:
    return [_shape(graph, n) if n else None for n in names]


def node_macs(node: Node, graph: Graph) -> int:
    """Multiply-accumulates one execution of ``node`` performs."""
    return op_def(node.op).numerics.macs(op_attrs(node), _shapes(graph, node.inputs), _shapes(graph, node.outputs))


def accumulation_length(node: Node, graph: Graph) -> int:
    """K of the longest sum behind one output element (1 for elementwise ops)."""
    return op_def(node.op).numerics.accumulation(
        op_attrs(node), _shapes(graph, node.inputs), _shapes(graph, node.outputs)
    )


def graph_macs(graph: Graph) -> int:
    """Total MACs of one run of ``graph``."""
    return sum(node_macs(n, graph) for n in graph.nodes)

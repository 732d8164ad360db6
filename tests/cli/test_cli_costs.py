"""MAC counting and accumulation lengths on hand-built IR nodes (formulas from the op definitions)."""

from __future__ import annotations

import numpy as np

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.tools.costs import accumulation_length, graph_macs, node_macs


def _graph(nodes, values, consts):
    vals = {v.name: v for v in values}
    return Graph(nodes, vals, {k: np.zeros(vals[k].shape, np.float32) for k in consts}, ["x"], [nodes[-1].outputs[0]])


def test_grouped_conv_macs():
    # N=2, C=8 -> M=6, group=2, 3x5 kernel, 10x7 output
    n = Node(
        "Conv",
        ("x", "w", "b"),
        ("y",),
        {"group": 2, "strides": (1, 1), "pads": (1, 2, 1, 2), "dilations": (1, 1)},
        "c",
        ("c",),
    )
    g = _graph(
        [n],
        [Value("x", (2, 8, 10, 7)), Value("w", (6, 4, 3, 5)), Value("b", (6,)), Value("y", (2, 6, 10, 7))],
        ["w", "b"],
    )
    assert node_macs(n, g) == 2 * 6 * 10 * 7 * (8 // 2) * 3 * 5
    assert accumulation_length(n, g) == 4 * 3 * 5 + 1


def test_gemm_and_matmul_macs():
    gm = Node("Gemm", ("a", "w"), ("y",), {"trans_a": 0, "trans_b": 1, "alpha": 1.0, "beta": 1.0}, "gemm", ("gemm",))
    g = _graph([gm], [Value("x", (3, 5)), Value("a", (3, 5)), Value("w", (7, 5)), Value("y", (3, 7))], ["w"])
    assert node_macs(gm, g) == 3 * 7 * 5
    assert accumulation_length(gm, g) == 5
    mm = Node("MatMul", ("x", "w"), ("y",), {}, "mm", ("mm",))
    g = _graph([mm], [Value("x", (2, 3, 5)), Value("w", (5, 4)), Value("y", (2, 3, 4))], ["w"])
    assert node_macs(mm, g) == 2 * 3 * 4 * 5
    assert graph_macs(g) == node_macs(mm, g)


def test_elementwise_ops_cost_nothing_and_pools_count_windows():
    relu = Node("Relu", ("x",), ("y",), {}, "r", ("r",))
    g = _graph([relu], [Value("x", (1, 4, 4, 4)), Value("y", (1, 4, 4, 4))], [])
    assert node_macs(relu, g) == 0 and accumulation_length(relu, g) == 1
    pool = Node("AveragePool", ("x",), ("y",), {"kernel": (2, 2), "strides": (2, 2)}, "p", ("p",))
    g = _graph([pool], [Value("x", (1, 4, 4, 4)), Value("y", (1, 4, 2, 2))], [])
    assert node_macs(pool, g) == 16 * 4
    assert accumulation_length(pool, g) == 4

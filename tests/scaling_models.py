"""Graphs of a chosen size in the shapes that stress the build: the scaling test and the
measurements behind its bound build them at several sizes."""

from __future__ import annotations

import numpy as np
from helpers import make_model
from onnx import helper

C = 4  # channels: the graphs are about node count, not arithmetic


def _w(rng, *shape):
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


def identity_chain(n: int):
    """Relu, then ``n`` Identity nodes in a row (remove_identity)."""
    nodes = [helper.make_node("Relu", ["x"], ["v0"], name="relu")]
    nodes += [helper.make_node("Identity", [f"v{i}"], [f"v{i + 1}"], name=f"id{i}") for i in range(n)]
    nodes.append(helper.make_node("Relu", [f"v{n}"], ["y"], name="last"))
    return make_model(nodes, [("x", [1, C, 4, 4], np.float32)], [("y", None, np.float32)])


def conv_relu_chain(n: int):
    """``n // 2`` Conv+Relu pairs (fuse_epilogue), 1x1 convs sharing one weight."""
    rng = np.random.default_rng(0)
    nodes, prev = [], "x"
    for i in range(n // 2):
        nodes.append(helper.make_node("Conv", [prev, "w", "b"], [f"c{i}"], name=f"conv{i}"))
        nodes.append(helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    inits = {"w": _w(rng, C, C, 1, 1) * 0.5, "b": _w(rng, C)}
    return make_model(nodes, [("x", [1, C, 4, 4], np.float32)], [("y", None, np.float32)], inits)


def wide_fanout(n: int):
    """One input read by ``n`` nodes, every output a graph output (all live to the end: the planner)."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu")]
    kinds = ["Sigmoid", "Tanh", "Relu", "Elu"]
    nodes += [helper.make_node(kinds[i % 4], ["r"], [f"y{i}"], name=f"n{i}") for i in range(n)]
    outs = [(f"y{i}", None, np.float32) for i in range(n)]
    return make_model(nodes, [("x", [1, C, 2, 2], np.float32)], outs)


def residual_ladder(n: int):
    """``n // 3`` blocks of Conv, Add(skip), Relu (the residual and activation rules, long lifetimes)."""
    rng = np.random.default_rng(1)
    nodes, prev = [], "x"
    for i in range(n // 3):
        nodes.append(helper.make_node("Conv", [prev, "w"], [f"c{i}"], name=f"conv{i}"))
        nodes.append(helper.make_node("Add", [f"c{i}", prev], [f"a{i}"], name=f"add{i}"))
        nodes.append(helper.make_node("Relu", [f"a{i}"], [f"r{i}"], name=f"relu{i}"))
        prev = f"r{i}"
    nodes.append(helper.make_node("Identity", [prev], ["y"], name="out"))
    inits = {"w": _w(rng, C, C, 1, 1) * 0.2}
    return make_model(nodes, [("x", [1, C, 4, 4], np.float32)], [("y", None, np.float32)], inits)


def concat_pairs(n: int):
    """``n // 2`` Relus concatenated in pairs, each Concat a graph output (concat_in_place and the
    planner nest every pair: each check must stay within its own Concat)."""
    k = n // 2
    nodes = [helper.make_node("Relu", ["x"], [f"r{i}"], name=f"relu{i}") for i in range(k)]
    nodes += [
        helper.make_node("Concat", [f"r{i}", f"r{i + 1}"], [f"c{i}"], name=f"concat{i}", axis=1)
        for i in range(0, k - 1, 2)
    ]
    outs = [(f"c{i}", None, np.float32) for i in range(0, k - 1, 2)]
    return make_model(nodes, [("x", [1, C, 2, 2], np.float32)], outs)


SHAPES = {
    "identity_chain": identity_chain,
    "conv_relu_chain": conv_relu_chain,
    "wide_fanout": wide_fanout,
    "residual_ladder": residual_ladder,
    "concat_pairs": concat_pairs,
}

"""fuse_gelu and fuse_layernorm: every exported form fuses (numerics equal before and after
through the IR interpreter), and each guard declines with its reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pass_helpers import GB, ops, run_pass

from cnnrt.passes.flatten_matmul import flatten_matmul
from cnnrt.passes.fuse_epilogue import fuse_epilogue
from cnnrt.passes.fuse_gelu import fuse_gelu
from cnnrt.passes.fuse_layernorm import fuse_layernorm


def scalar(b: GB, v: float) -> str:
    return b.const(np.array(v, np.float32))


def gelu_graph(form: str, shape=(2, 5, 3), x=None, b=None):
    """x * 0.5 * (1 + erf(x / sqrt 2)) in one of the exported orders; returns (builder, output)."""
    b = b or GB()
    x = x or b.input("x", shape)
    s = b.shape(x)
    if form == "mul_inv_sqrt2":
        t = b.node("Mul", [scalar(b, 1 / math.sqrt(2)), x], s)
    else:
        t = b.node("Div", [x, scalar(b, math.sqrt(2))], s)
    e = b.node("Erf", [t], s)
    a = b.node("Add", [scalar(b, 1.0), e], s)
    if form in ("torch", "mul_inv_sqrt2"):  # (x * a) * 0.5
        y = b.node("Mul", [b.node("Mul", [x, a], s), scalar(b, 0.5)], s)
    elif form == "half_first":  # (x * 0.5) * a
        y = b.node("Mul", [a, b.node("Mul", [x, scalar(b, 0.5)], s)], s)
    else:  # x * (a * 0.5)
        y = b.node("Mul", [x, b.node("Mul", [scalar(b, 0.5), a], s)], s)
    return b, y


@pytest.mark.parametrize("form", ["torch", "half_first", "half_inside", "mul_inv_sqrt2"])
def test_gelu_forms_fuse(form):
    b, y = gelu_graph(form)
    res = run_pass(fuse_gelu, b.build([y]))
    assert ops(res.graph) == ["Gelu"]
    assert res.graph.outputs == [y] and res.graph.nodes[0].inputs == ("x",)
    assert len(res.graph.nodes[0].origin) == 5


def test_gelu_after_a_conv_becomes_its_epilogue():
    b = GB()
    h = b.conv(b.input("x", (1, 3, 6, 6)), 4, name="host")
    b, y = gelu_graph("torch", x=h, b=b)
    g = run_pass(fuse_gelu, b.build([y])).graph
    res = run_pass(fuse_epilogue, g)
    assert ops(res.graph) == ["Conv"] and res.graph.nodes[0].attrs["activation"] == "Gelu"


def test_gelu_declines_a_shared_intermediate_and_a_wrong_constant():
    b, y = gelu_graph("torch")
    add_out = next(n.outputs[0] for n in b.nodes if n.op == "Add")
    extra = b.node("Relu", [add_out], b.shape(add_out))
    res = run_pass(fuse_gelu, b.build([y, extra]))
    assert "Gelu" not in ops(res.graph)
    assert any("has 2 consumers" in why for _, _, why in res.declined)
    b, y = gelu_graph("torch")
    b.constants[b.nodes[0].inputs[1]] = np.array([1.5], np.float32)  # x / 1.5 is not GELU
    assert "Gelu" not in ops(run_pass(fuse_gelu, b.build([y])).graph)


def layernorm_graph(shape=(2, 4, 6), axes=(2,), affine=True, square="Pow", eps=1e-5, b=None, x=None):
    b = b or GB()
    x = x or b.input("x", shape)
    s = b.shape(x)
    red = tuple(1 if i in axes else d for i, d in enumerate(s))
    mean = b.node("ReduceMean", [x], red, axes=axes, keepdims=True)
    d = b.node("Sub", [x, mean], s)
    sq = b.node("Pow", [d, scalar(b, 2.0)], s) if square == "Pow" else b.node("Mul", [d, d], s)
    var = b.node("ReduceMean", [sq], red, axes=axes, keepdims=True)
    std = b.node("Sqrt", [b.node("Add", [var, scalar(b, eps)], red)], red)
    y = b.node("Div", [d, std], s)
    if affine:
        norm = s[axes[0] :]
        y = b.node("Mul", [y, b.rand(*norm[-1:])], s)
        y = b.node("Add", [b.rand(*norm[-1:]), y], s)
    return b, y


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("square", ["Pow", "Mul"])
def test_layernorm_decomposition_fuses(affine, square):
    b, y = layernorm_graph(affine=affine, square=square)
    res = run_pass(fuse_layernorm, b.build([y]))
    assert ops(res.graph) == ["LayerNormalization"]
    ln = res.graph.nodes[0]
    assert ln.attrs == {"axis": 2, "epsilon": pytest.approx(1e-5)} and ln.inputs[0] == "x"
    assert len(ln.inputs) == (3 if affine else 2) and res.graph.outputs == [y]


def test_layernorm_over_two_trailing_axes_fuses_with_broadcast_gamma():
    b, y = layernorm_graph(shape=(2, 3, 4, 5), axes=(2, 3), affine=True)
    res = run_pass(fuse_layernorm, b.build([y]))
    assert ops(res.graph) == ["LayerNormalization"] and res.graph.nodes[0].attrs["axis"] == 2
    assert res.graph.values[res.graph.nodes[0].inputs[1]].shape == (4, 5)


def test_layernorm_declines_channels_first_and_outside_readers():
    b, y = layernorm_graph(shape=(1, 4, 3, 3), axes=(1,), affine=False)
    res = run_pass(fuse_layernorm, b.build([y]))
    assert "LayerNormalization" not in ops(res.graph)
    assert any("not the trailing axes" in why for _, _, why in res.declined)
    b, y = layernorm_graph(affine=False)
    mean_out = b.nodes[0].outputs[0]
    res = run_pass(fuse_layernorm, b.build([y, mean_out]))
    assert "LayerNormalization" not in ops(res.graph)
    assert any("outside the pattern" in why for _, _, why in res.declined)


@pytest.mark.parametrize("tail", ["", "Add", "Add+Gelu", "Relu"])
def test_nd_matmul_by_a_constant_becomes_a_gemm(tail):
    b = GB()
    x = b.input("x", (2, 3, 4, 6))
    y = b.node("MatMul", [x, b.rand(6, 5)], (2, 3, 4, 5))
    if tail.startswith("Add"):
        y = b.node("Add", [b.rand(5), y], (2, 3, 4, 5))
    if tail.endswith(("Gelu", "Relu")):
        y = b.act(tail.split("+")[-1], y)
    g = run_pass(flatten_matmul, b.build([y])).graph
    act = [tail.split("+")[-1]] if tail.endswith(("Gelu", "Relu")) else []
    assert ops(g) == ["Reshape", "Gemm", *act, "Reshape"] and g.outputs == [y]
    assert len(g.nodes[1].inputs) == (3 if tail.startswith("Add") else 2)
    fused = run_pass(fuse_epilogue, g).graph
    assert ops(fused) == ["Reshape", "Gemm", "Reshape"]


def test_matmul_flattening_leaves_an_add_reading_a_graph_output_and_a_runtime_weight():
    b = GB()
    x = b.input("x", (2, 4, 6))
    p = b.node("MatMul", [x, b.rand(6, 5)], (2, 4, 5))
    y = b.node("Add", [p, b.rand(5)], (2, 4, 5))
    res = run_pass(flatten_matmul, b.build([y, p]))
    assert ops(res.graph) == ["Reshape", "Gemm", "Reshape", "Add"] and res.graph.outputs == [y, p]
    b = GB()
    x, w = b.input("x", (2, 4, 6)), b.input("w", (6, 5))
    y = b.node("MatMul", [x, w], (2, 4, 5))
    assert ops(run_pass(flatten_matmul, b.build([y])).graph) == ["MatMul"]

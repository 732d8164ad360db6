"""fuse_epilogue: bias, residual and activation fusion; every guard has a blocked case."""

from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import GB, ops, run_pass

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.passes.fuse_epilogue import fuse_epilogue

ACTS = [
    ("Relu", {}),
    ("LeakyRelu", {"alpha": 0.1}),
    ("Clip", {"min": 0.0, "max": 6.0}),
    ("Clip", {"min": -0.5, "max": 0.25}),
    ("Sigmoid", {}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
    ("HardSwish", {}),
    ("Tanh", {}),
    ("Elu", {"alpha": 0.7}),
]


@pytest.mark.parametrize("op,attrs", ACTS)
@pytest.mark.parametrize("host", ["Conv", "Gemm", "ChannelAffine", "ConvTranspose"])
def test_activation_fuses_into_host(host, op, attrs):
    b = GB()
    if host == "Gemm":
        x = b.input("x", (2, 6))
        h = b.gemm(x, 5, name="host")
    elif host == "Conv":
        x = b.input("x", (1, 3, 5, 5))
        h = b.conv(x, 4, name="host")
    elif host == "ConvTranspose":
        x = b.input("x", (1, 3, 4, 4))
        h = b.node(
            "ConvTranspose",
            [x, b.rand(3, 2, 2, 2)],
            (1, 2, 8, 8),
            name="host",
            strides=(2, 2),
            pads=(0, 0, 0, 0),
            dilations=(1, 1),
            group=1,
            kernel=(2, 2),
            activation="none",
            act_alpha=0.0,
            act_beta=0.0,
        )
    else:
        x = b.input("x", (1, 3, 5, 5))
        h = b.node(
            "ChannelAffine",
            [x, b.rand(3), b.rand(3)],
            (1, 3, 5, 5),
            name="host",
            activation="none",
            act_alpha=0.0,
            act_beta=0.0,
        )
    y = b.act(op, h, name="act", **attrs)
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == [host]
    node = res.graph.nodes[0]
    assert node.attrs["activation"] == op and node.outputs == (y,)
    assert node.name == f"host+{op}" and node.origin == ("host", "act")


def test_clip_params_become_alpha_beta():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    y = b.act("Clip", b.conv(x, 4), min=0.0, max=6.0)
    res = run_pass(fuse_epilogue, b.build([y]))
    a = res.graph.nodes[0].attrs
    assert (a["activation"], a["act_alpha"], a["act_beta"]) == ("Clip", 0.0, 6.0)


@pytest.mark.parametrize("gate,kind", [("Sigmoid", "SiLU"), ("HardSigmoid", "HardSwish")])
@pytest.mark.parametrize("order", [0, 1])
def test_gated_activation(gate, kind, order):
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, name="conv")
    attrs = {"alpha": 1 / 6, "beta": 0.5} if gate == "HardSigmoid" else {}
    s = b.act(gate, c, **attrs)
    y = b.node("Mul", [c, s] if order == 0 else [s, c], b.shape(c))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv"]
    assert res.graph.nodes[0].attrs["activation"] == kind
    assert res.graph.nodes[0].name == f"conv+{kind}"
    assert kind in ACTIVATIONS


def test_hardsigmoid_with_other_params_is_not_hardswish():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    s = b.act("HardSigmoid", c, alpha=0.2, beta=0.5)
    y = b.node("Mul", [c, s], b.shape(c))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert "Mul" in ops(res.graph)


def test_silu_guard_conv_output_read_elsewhere():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    s = b.act("Sigmoid", c)
    y = b.node("Mul", [c, s], b.shape(c))
    z = b.act("Tanh", c)
    res = run_pass(fuse_epilogue, b.build([y, z]))
    assert ops(res.graph) == ["Conv", "Sigmoid", "Mul", "Tanh"]
    assert any("consumers besides the SiLU pattern" in r for _, _, r in res.declined)


def test_silu_guard_sigmoid_read_elsewhere():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    s = b.act("Sigmoid", c)
    y = b.node("Mul", [c, s], b.shape(c))
    res = run_pass(fuse_epilogue, b.build([y, s]))
    assert "Mul" in ops(res.graph)
    assert any("graph output" in r for _, _, r in res.declined)


def test_conv_add_residual_then_relu_resnet_block():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    a = b.act("Relu", b.conv(x, 4, name="conv1"), name="relu1")
    c2 = b.conv(a, 4, name="conv2")
    s = b.add(c2, x, name="add")
    y = b.act("Relu", s, name="relu2")
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv", "Conv"]
    last = res.graph.nodes[1]
    assert last.inputs[3] == x and last.attrs["activation"] == "Relu"
    assert last.origin == ("conv2", "add", "relu2")
    assert last.name == "conv2+residual+Relu"


def test_residual_add_prefers_conv_whose_other_operand_is_earlier():
    # ResNet downsample: Add(main_conv_out, downsample_conv_out), downsample computed later.
    b = GB()
    x = b.input("x", (1, 4, 6, 6))
    main = b.conv(x, 8, stride=2, name="main")
    down = b.conv(x, 8, k=1, stride=2, name="down")
    y = b.act("Relu", b.add(main, down, name="add"))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv", "Conv"]
    fused = res.graph.nodes[1]
    assert fused.name.startswith("down+residual") and fused.inputs[3] == main


def test_residual_reorders_safely_when_other_is_later():
    b = GB()
    x = b.input("x", (1, 4, 6, 6))
    c = b.conv(x, 4, name="conv")
    other = b.act("Tanh", x, name="later")  # defined after the conv
    y = b.add(c, other, name="add")
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Tanh", "Conv"]  # the fused conv moved after its new input
    assert res.graph.nodes[1].inputs[3] == other


def test_sum_of_two_is_a_residual_add():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    y = b.add(b.conv(x, 4), x, op="Sum")
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv"]


def test_residual_guard_broadcast():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    other = b.input("o", (1, 4, 1, 1))
    y = b.add(b.conv(x, 4), other)
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv", "Add"]
    assert any("broadcasts" in r for _, _, r in res.declined)


def test_residual_guard_dtype():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    c = b.conv(x, 4)
    o = b.input("o", (1, 4, 5, 5), dtype="float64")
    y = b.node("Add", [c, o], (1, 4, 5, 5))
    res = run_pass(fuse_epilogue, b.build([y]), check=False)
    assert ops(res.graph) == ["Conv", "Add"]
    assert any("dtypes differ" in r for _, _, r in res.declined)


def test_residual_guard_conv_has_two_consumers_reports_it():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    c = b.conv(x, 4)
    y = b.add(c, x)
    res = run_pass(fuse_epilogue, b.build([y, b.act("Tanh", c)]))
    assert ops(res.graph) == ["Conv", "Add", "Tanh"]
    assert any("has 2 consumers" in r for _, _, r in res.declined)


def test_residual_guard_add_reads_conv_twice():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    c = b.conv(x, 4)
    y = b.add(c, c)
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv", "Add"]


def test_residual_guard_conv_already_activated():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    c = b.conv(x, 4, activation="Relu")
    res = run_pass(fuse_epilogue, b.build([b.add(c, x)]))
    assert ops(res.graph) == ["Conv", "Add"]
    assert any("already has activation" in r for _, _, r in res.declined)


def test_activation_guard_two_consumers():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    r = b.act("Relu", c, name="relu")
    res = run_pass(fuse_epilogue, b.build([r, b.act("Tanh", c)]))
    assert ops(res.graph) == ["Conv", "Relu", "Tanh"]
    assert ("Conv/ConvTranspose/Gemm/ChannelAffine + activation -> fused activation", "relu") in [
        (rule, n) for rule, n, _ in res.declined
    ]
    assert any("has 2 consumers" in why for _, _, why in res.declined)


def test_activation_guard_graph_output():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    res = run_pass(fuse_epilogue, b.build([b.act("Relu", c), c]))
    assert ops(res.graph) == ["Conv", "Relu"]
    assert any("graph output" in why for _, _, why in res.declined)


def test_activation_guard_second_activation_stays():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    y = b.act("Tanh", b.act("Relu", b.conv(x, 4)))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv", "Tanh"]
    assert any("already has activation Relu" in why for _, _, why in res.declined)


@pytest.mark.parametrize("shape", [(1, 4, 1, 1), (4, 1, 1), (1,)])
def test_conv_plus_per_channel_constant_becomes_bias(shape):
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, bias=False)
    k = b.const(np.random.default_rng(3).standard_normal(shape).astype(np.float32))
    y = b.act("Relu", b.add(k, c))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Conv"]
    assert res.graph.constants[res.graph.nodes[0].inputs[2]].shape == (4,)


def test_conv_plus_full_constant_is_residual():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    k = b.rand(1, 4, 5, 5)
    res = run_pass(fuse_epilogue, b.build([b.add(c, k)]))
    assert ops(res.graph) == ["Conv"] and res.graph.nodes[0].inputs[3] == k


@pytest.mark.parametrize("bias", [True, False])
def test_gemm_add_bias_then_relu(bias):
    b = GB()
    x = b.input("x", (3, 6))
    g = b.gemm(x, 4, bias=bias)
    y = b.act("Relu", b.add(g, b.rand(4)))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Gemm"]


@pytest.mark.parametrize("cshape", [(5,), (1, 5), (3, 5)])
def test_matmul_add_becomes_gemm(cshape):
    b = GB()
    x = b.input("x", (3, 4))
    m = b.node("MatMul", [x, b.rand(4, 5)], (3, 5))
    y = b.act("Relu", b.add(m, b.rand(*cshape)))
    res = run_pass(fuse_epilogue, b.build([y]))
    assert ops(res.graph) == ["Gemm"]
    assert res.graph.nodes[0].attrs["activation"] == "Relu"


def test_matmul_guard_weight_not_constant():
    b = GB()
    x = b.input("x", (3, 4))
    w = b.input("w", (4, 5))
    m = b.node("MatMul", [x, w], (3, 5))
    res = run_pass(fuse_epilogue, b.build([b.add(m, b.rand(5))]))
    assert ops(res.graph) == ["MatMul", "Add"]
    assert any("constant 2-D weight" in r for _, _, r in res.declined)


def test_bias_guard_constant_dtype():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    k = b.const(np.ones((1, 4, 1, 1), dtype=np.float64))
    y = b.node("Add", [c, k], (1, 4, 5, 5))
    res = run_pass(fuse_epilogue, b.build([y]), check=False)
    assert ops(res.graph) == ["Conv", "Add"]
    assert any("dtype" in r for _, _, r in res.declined)


def test_fusion_does_not_touch_input_graph_or_constants():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, bias=True)
    y = b.act("Relu", b.add(c, b.rand(1, 4, 1, 1)))
    g = b.build([y])
    bias_before = g.constants[g.nodes[0].inputs[2]].copy()
    res = run_pass(fuse_epilogue, g)
    assert np.array_equal(g.constants[g.nodes[0].inputs[2]], bias_before)
    assert res.graph.nodes[0].inputs[2] != g.nodes[0].inputs[2]

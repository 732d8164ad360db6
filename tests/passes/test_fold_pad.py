"""fold_pad: zero/-inf constant pads on H, W fold into Conv / AveragePool / MaxPool; guards block."""

from __future__ import annotations

import math

import pytest
from pass_helpers import GB, ops, run_pass

from cnnrt.passes.fold_pad import fold_pad


def test_pad_into_conv_adds_pads():
    b = GB()
    x = b.input("x", (1, 3, 6, 6))
    p = b.pad(x, (1, 2, 0, 3), name="pad")
    y = b.conv(p, 4, pad=(1, 0, 1, 0), name="conv")
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == ["Conv"]
    conv = res.graph.nodes[0]
    assert conv.attrs["pads"] == (2, 2, 1, 3) and conv.inputs[0] == x
    assert conv.origin == ("pad", "conv")


def test_pad_into_avgpool_count_include_pad():
    b = GB()
    x = b.input("x", (1, 2, 6, 6))
    y = b.pool("AveragePool", b.pad(x, (1, 1, 1, 1)), k=3, stride=2, count_include_pad=True, pads=(1, 0, 0, 1))
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == ["AveragePool"]
    assert res.graph.nodes[0].attrs["pads"] == (2, 1, 1, 2)


def test_pad_into_unpadded_avgpool_turns_count_include_pad_on():
    b = GB()
    x = b.input("x", (1, 2, 6, 6))
    y = b.pool("AveragePool", b.pad(x, (1, 1, 1, 1)), k=3)
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == ["AveragePool"] and res.graph.nodes[0].attrs["count_include_pad"] is True


def _avgpool_excluding_own_pads(b, x):
    return b.pool("AveragePool", b.pad(x, (1, 1, 1, 1)), k=3, pads=(1, 1, 1, 1))


def _maxpool_minus_inf_pad(b, x):
    return b.pool("MaxPool", b.pad(x, (1, 1, 1, 1), value=-math.inf), k=3, stride=2)


def _maxpool_zero_pad_after_relu(b, x):
    return b.pool("MaxPool", b.pad(b.act("Relu", x), (1, 1, 1, 1)), k=3, stride=2)


def _maxpool_zero_pad_after_fused_relu6_conv(b, x):
    c = b.conv(x, 2, activation="Clip", act_alpha=0.0, act_beta=6.0)
    return b.pool("MaxPool", b.pad(c, (0, 0, 1, 1)), k=2, stride=2)


def _maxpool_zero_pad_on_signed_input(b, x):
    return b.pool("MaxPool", b.pad(x, (1, 1, 1, 1)), k=3)


@pytest.mark.parametrize(
    "net, want_ops, declined",
    [
        (_avgpool_excluding_own_pads, ["Pad", "AveragePool"], "excludes its own padding"),
        (_maxpool_minus_inf_pad, ["MaxPool"], None),
        (_maxpool_zero_pad_after_relu, ["Relu", "MaxPool"], None),
        (_maxpool_zero_pad_after_fused_relu6_conv, ["Conv", "MaxPool"], None),
        (_maxpool_zero_pad_on_signed_input, ["Pad", "MaxPool"], "neither -inf nor 0 on an input known to be >= 0"),
    ],
    ids=lambda v: v.__name__.strip("_") if callable(v) else None,
)
def test_pool_pad_folds_only_when_the_padding_value_cannot_win(net, want_ops, declined):
    b = GB()
    y = net(b, b.input("x", (1, 2, 6, 6)))
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == want_ops
    if declined:
        assert any(declined in r for _, _, r in res.declined)


@pytest.mark.parametrize(
    "pad_kwargs, reason",
    [
        ({"value": 1.0}, "not 0"),
        ({"mode": "reflect"}, "mode"),
        ({"mode": "edge"}, "mode"),
        ({"pads": (0, 1, 1, 1, 0, 0, 1, 1)}, "channel"),
    ],
    ids=["nonzero-value", "reflect", "edge", "channel-pad"],
)
def test_guard_pad_that_conv_padding_cannot_express(pad_kwargs, reason):
    b = GB()
    x = b.input("x", (1, 2, 5, 5))
    y = b.conv(b.pad(x, **pad_kwargs), 2, pad=0)
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == ["Pad", "Conv"] and reason in res.declined[0][2]


def test_guard_negative_pad():
    b = GB()
    x = b.input("x", (1, 2, 6, 6))
    y = b.conv(b.pad(x, (1, -1, 1, 1)), 2, pad=1)
    res = run_pass(fold_pad, b.build([y]), check=False)  # the reference pads with numpy, which cannot crop
    assert ops(res.graph) == ["Pad", "Conv"] and "crops" in res.declined[0][2]


def test_guard_pad_two_consumers():
    b = GB()
    x = b.input("x", (1, 2, 5, 5))
    p = b.pad(x)
    y = b.conv(p, 2, pad=0)
    res = run_pass(fold_pad, b.build([y, b.act("Relu", p)]))
    assert ops(res.graph)[0] == "Pad" and "has 2 consumers" in res.declined[0][2]


def test_guard_pad_graph_output():
    b = GB()
    x = b.input("x", (1, 2, 5, 5))
    p = b.pad(x)
    res = run_pass(fold_pad, b.build([b.conv(p, 2, pad=0), p]))
    assert ops(res.graph)[0] == "Pad" and "graph output" in res.declined[0][2]


def test_guard_pool_pads_reach_kernel():
    b = GB()
    x = b.input("x", (1, 2, 6, 6))
    y = b.pool("MaxPool", b.pad(x, (2, 2, 2, 2), value=-math.inf), k=2, stride=2)
    res = run_pass(fold_pad, b.build([y]))
    assert ops(res.graph) == ["Pad", "MaxPool"] and "kernel size" in res.declined[0][2]


def test_guard_pool_ceil_mode_output():
    b = GB()
    x = b.input("x", (1, 2, 6, 6))
    p = b.pad(x, (1, 1, 1, 1), value=-math.inf)  # 8x8
    y = b.node("MaxPool", [p], (1, 2, 4, 4), kernel=(3, 3), strides=(2, 2), pads=(0, 0, 0, 0), dilations=(1, 1))
    res = run_pass(fold_pad, b.build([y]), check=False)  # ceil-mode shapes: reference cannot check
    assert ops(res.graph) == ["Pad", "MaxPool"] and "ceil-mode" in res.declined[0][2]

"""fuse_se: pool -> 1x1 conv -> 1x1 conv -> Mul becomes one SqueezeExcite; the guards decline
and say why; block_layout keeps it on blocked values. Numerics before/after via the IR
interpreter (run_pass)."""

from __future__ import annotations

import pytest
from pass_helpers import GB, assert_same_outputs, feeds_for, ops, run_pass

from cnnrt.passes.block_layout import block_layout
from cnnrt.passes.fuse_se import fuse_se
from cnnrt.passes.pipeline import run_pipeline


def se_graph(c=24, r=8, hw=5, n=1, pool="GlobalAveragePool", order="xg", acts=("Relu", "HardSigmoid"), bias=True):
    """x -> [depthwise-ish conv] -> SE -> 1x1 conv; returns (builder, y, x_se)."""
    b = GB()
    x = b.input("x", (n, c, hw, hw))
    x = b.conv(x, c, k=3, group=c, activation="Relu", act_alpha=0.0, act_beta=0.0)
    if pool == "GlobalAveragePool":
        s = b.node("GlobalAveragePool", [x], (n, c, 1, 1))
    else:
        s = b.node("ReduceMean", [x], (n, c, 1, 1), axes=(2, 3), keepdims=True)
    alpha, beta = (1 / 6, 0.5) if acts[1] == "HardSigmoid" else (0.0, 0.0)
    h = b.conv(s, r, k=1, bias=bias, activation=acts[0], act_alpha=0.0, act_beta=0.0)
    g = b.conv(h, c, k=1, activation=acts[1], act_alpha=alpha, act_beta=beta)
    y = b.node("Mul", [x, g] if order == "xg" else [g, x], b.shape(x))
    return b, b.conv(y, 16, k=1), x


@pytest.mark.parametrize(
    "pool, order, acts, bias",
    [
        ("GlobalAveragePool", "xg", ("Relu", "HardSigmoid"), True),
        ("ReduceMean", "gx", ("SiLU", "Sigmoid"), False),
    ],
)
def test_se_block_becomes_one_node(pool, order, acts, bias):
    b, y, x = se_graph(pool=pool, order=order, acts=acts, bias=bias)
    res = run_pass(fuse_se, b.build([y]))  # checks the outputs before/after
    assert ops(res.graph) == ["Conv", "SqueezeExcite", "Conv"]
    se = res.graph.nodes[1]
    assert se.inputs[0] == x and se.attrs["squeeze"] == acts[0] and se.attrs["gate"] == acts[1]
    assert [res.graph.constants[i].shape for i in se.inputs[1:]] == [(8, 24), (8,), (24, 8), (24,)]
    assert len(se.origin) == 4 and res.fired  # the pool, the two convs and the Mul


@pytest.mark.parametrize("case", ["gate is an output", "pooled is an output", "3x3 squeeze", "other tensor"])
def test_guards_decline_and_say_why(case):
    b, y, x = se_graph()
    pool = next(n for n in b.nodes if n.op == "GlobalAveragePool")
    squeeze, excite = (n for n in b.nodes if n.op == "Conv" and n.inputs[0] != "x" and n.outputs[0] != y)
    mul = next(n for n in b.nodes if n.op == "Mul")
    outs, want = [y], "is a graph output"
    if case == "gate is an output":
        outs.append(excite.outputs[0])
    elif case == "pooled is an output":
        outs.append(pool.outputs[0])
    elif case == "3x3 squeeze":
        w = b.rand(8, 24, 3, 3)
        b.nodes[b.nodes.index(squeeze)] = squeeze.replace(
            inputs=(squeeze.inputs[0], w, *squeeze.inputs[2:]), attrs={**squeeze.attrs, "pads": (1, 1, 1, 1)}
        )
        want = "not (*, 24, 1, 1)"
    else:  # the gate scales another tensor of x's shape (LR-ASPP's head)
        other = b.input("z", b.shape(x))
        b.nodes[b.nodes.index(mul)] = mul.replace(inputs=(other, excite.outputs[0]))
        want = "is not multiplied into"
    res = run_pass(fuse_se, b.build(outs))
    assert "SqueezeExcite" not in ops(res.graph)
    assert any(want in why for _, _, why in res.declined), res.declined


@pytest.mark.parametrize("c", [16, 32])
def test_block_layout_keeps_the_se_blocked(c):
    b, y, x = se_graph(c=c, hw=4)
    g = b.build([y])
    fused, _ = run_pipeline(g, 2)
    after = block_layout(fused, vector_bytes=64).graph
    assert ops(after).count("BlockedSqueezeExcite") == 1 and "SqueezeExcite" not in ops(after)
    assert ops(after).count("ReorderFromBlocked") == 1  # the graph output only
    assert_same_outputs(g, after, feeds_for(g))


def test_pipeline_fuses_activations_imported_as_nodes():
    """As imported the activations follow the convs: fuse_epilogue folds them, then fuse_se fires."""
    b = GB()
    x = b.input("x", (2, 16, 3, 3))
    h = b.act("Relu", b.conv(b.node("GlobalAveragePool", [x], (2, 16, 1, 1)), 4, k=1))
    g = b.act("HardSigmoid", b.conv(h, 16, k=1), alpha=1 / 6, beta=0.5)
    y = b.node("Mul", [x, g], b.shape(x))
    graph = b.build([y])
    out, log = run_pipeline(graph, 2)
    assert ops(out) == ["SqueezeExcite"] and "fuse_se" in log.order
    assert (out.nodes[0].attrs["gate"], out.nodes[0].attrs["gate_alpha"]) == ("HardSigmoid", pytest.approx(1 / 6))
    assert_same_outputs(graph, out)
    off, _ = run_pipeline(graph, 2, disabled=["fuse_se"])
    assert "SqueezeExcite" not in ops(off)

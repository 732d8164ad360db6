"""fold_affine_concat: ChannelAffine(+act) after a channel Concat of Convs goes into the Convs."""

from __future__ import annotations

import pytest
from pass_helpers import GB, ops, run_pass

from cnnrt.passes.fold_affine_concat import fold_affine_concat
from cnnrt.passes.fold_batchnorm import fold_batchnorm
from cnnrt.passes.fuse_epilogue import fuse_epilogue


def _mixed(b, x, bias=(False, True, False)):
    """MixNet's mixed depthwise conv: Split → depthwise 3x3 / 5x5 / 7x7 → Concat (2 + 3 + 1 channels)."""
    parts = b.node("Split", [x], [(1, 2, 6, 6), (1, 3, 6, 6), (1, 1, 6, 6)], axis=1, sizes=(2, 3, 1))
    convs = [b.conv(p, c, k=k, group=c, bias=bb) for p, c, k, bb in zip(parts, (2, 3, 1), (3, 5, 7), bias)]
    return b.concat(convs)


def _prepared(g):
    """The graph as fold_affine_concat sees it in the pipeline: BN folded, activation fused."""
    return fuse_epilogue(fold_batchnorm(g).graph).graph


@pytest.mark.parametrize("act", ["SiLU", "Relu", "none"])
def test_bn_and_activation_fold_into_each_conv(act):
    b = GB()
    x = b.input("x", (1, 6, 6, 6))
    y = b.bn(_mixed(b, x), name="bn")
    if act == "SiLU":
        y = b.add(y, b.act("Sigmoid", y), op="Mul")
    elif act == "Relu":
        y = b.act("Relu", y)
    g = _prepared(b.build([y]))
    assert ops(g).count("ChannelAffine") == 1
    res = run_pass(fold_affine_concat, g)  # compares outputs with the reference interpreter
    assert ops(res.graph) == ["Split", "Conv", "Conv", "Conv", "Concat"]
    assert res.graph.nodes[-1].outputs == (y,)
    for conv in res.graph.nodes[1:4]:
        assert conv.attrs["activation"] == act and "bn" in conv.origin and len(conv.inputs) == 3


def test_declines_when_a_concat_input_is_not_a_conv():
    b = GB()
    x = b.input("x", (1, 6, 6, 6))
    cat = b.concat([b.conv(x, 2, k=1, pad=0), b.act("Relu", x)])
    g = _prepared(b.build([b.bn(cat)]))
    res = run_pass(fold_affine_concat, g)
    assert "ChannelAffine" in ops(res.graph) and not res.fired
    assert any("does not come from a Conv" in r for _, _, r in res.declined)


def test_declines_when_a_conv_output_is_also_read_elsewhere():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    c1, c2 = b.conv(x, 2), b.conv(x, 3)
    g = _prepared(b.build([b.bn(b.concat([c1, c2])), c1]))
    res = run_pass(fold_affine_concat, g)
    assert "ChannelAffine" in ops(res.graph)
    assert any("graph output" in r for _, _, r in res.declined)


def test_declines_when_a_conv_already_has_an_activation():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    cat = b.concat([b.conv(x, 2, activation="Relu"), b.conv(x, 3)])
    g = _prepared(b.build([b.bn(cat)]))
    res = run_pass(fold_affine_concat, g)
    assert "ChannelAffine" in ops(res.graph)
    assert any("already has activation Relu" in r for _, _, r in res.declined)

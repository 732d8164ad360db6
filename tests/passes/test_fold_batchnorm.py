"""fold_batchnorm: BN into Conv/ConvTranspose/Gemm, else ChannelAffine; each guard blocks."""

from __future__ import annotations

import numpy as np
import pytest
from ir_reference import evaluate
from pass_helpers import GB, assert_same_outputs, ops, run_pass

from cnnrt.passes.fold_batchnorm import fold_batchnorm


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("group", [1, 2])
def test_conv_bn_folds_into_new_constants(bias, group):
    b = GB()
    x = b.input("x", (2, 4, 6, 6))
    c = b.conv(x, 6, group=group, bias=bias, name="conv")
    y = b.bn(c, name="bn")
    g = b.build([y])
    res = run_pass(fold_batchnorm, g)
    assert ops(res.graph) == ["Conv"]
    conv = res.graph.nodes[0]
    assert conv.outputs == (y,)
    assert conv.name == "conv+BatchNormalization"
    assert conv.origin == ("conv", "bn")
    assert conv.inputs[1] not in g.constants and conv.inputs[2] not in g.constants  # fresh names
    assert res.fired and res.changed


def test_shared_weight_is_not_mutated_and_other_user_keeps_it():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c1 = b.conv(x, 3, name="conv1")
    w = b.nodes[-1].inputs[1]
    y1 = b.bn(c1, name="bn")
    # a second conv sharing conv1's weight, without BN
    y2 = b.node("Conv", [x, w], b.shape(c1), name="conv2", **b.nodes[0].attrs)
    g = b.build([y1, y2])
    res = run_pass(fold_batchnorm, g)
    conv2 = res.graph.node("conv2")
    assert conv2.inputs[1] == w and res.graph.constants[w] is g.constants[w]


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_bn(group):
    b = GB()
    x = b.input("x", (1, 4, 4, 4))
    w = b.rand(4, 3, 3, 3)
    attrs = dict(
        strides=(2, 2),
        pads=(1, 1, 0, 0),
        dilations=(1, 1),
        group=group,
        kernel=(3, 3),
        activation="none",
        act_alpha=0.0,
        act_beta=0.0,
    )
    c = b.node("ConvTranspose", [x, w], (1, 3 * group, 8, 8), name="deconv", **attrs)
    y = b.bn(c)
    res = run_pass(fold_batchnorm, b.build([y]))
    assert ops(res.graph) == ["ConvTranspose"]


@pytest.mark.parametrize("trans_b", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
def test_gemm_bn(trans_b, bias):
    b = GB()
    x = b.input("x", (3, 5))
    y = b.bn(b.gemm(x, 4, bias=bias, trans_b=trans_b))
    res = run_pass(fold_batchnorm, b.build([y]))
    assert ops(res.graph) == ["Gemm"]


def test_bn_on_graph_input_becomes_channel_affine_with_reason():
    b = GB()
    x = b.input("x", (2, 3, 4, 4))
    y = b.bn(x, name="bn")
    res = run_pass(fold_batchnorm, b.build([y]))
    assert ops(res.graph) == ["ChannelAffine"]
    node = res.graph.nodes[0]
    assert node.attrs["activation"] == "none" and node.origin == ("bn",)
    assert res.graph.constants[node.inputs[1]].shape == (3,)
    assert res.fired[0][0] == "BatchNormalization -> ChannelAffine"


def test_bn_after_concat_becomes_channel_affine():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    cat = b.concat([b.conv(x, 2), b.conv(x, 3)])
    y = b.bn(cat)
    res = run_pass(fold_batchnorm, b.build([y]))
    assert ops(res.graph) == ["Conv", "Conv", "Concat", "ChannelAffine"]


def _blocked(g, why_part):
    res = run_pass(fold_batchnorm, g)
    assert "BatchNormalization" not in ops(res.graph)  # still becomes ChannelAffine...
    assert "ChannelAffine" in ops(res.graph)  # ...because the fold was declined
    reasons = [r for rule, _, r in fold_declines(g)]
    assert any(why_part in r for r in reasons), reasons


def fold_declines(g):
    from cnnrt.passes.fold_batchnorm import RULES
    from cnnrt.passes.rewrite import apply_rules

    return apply_rules(g, RULES[:1]).declined


def test_guard_conv_output_has_two_consumers():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    y = b.bn(c)
    _blocked(b.build([y, b.act("Relu", c)]), "has 2 consumers")


def test_guard_conv_output_is_graph_output():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    _blocked(b.build([b.bn(c), c]), "is a graph output")


def test_guard_conv_weight_not_constant():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, bias=False, weight=b.input("w", (4, 3, 3, 3)))
    _blocked(b.build([b.bn(c)]), "is not a constant")


def test_guard_conv_already_has_activation():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, activation="Relu")
    _blocked(b.build([b.bn(c)]), "already has activation Relu")


def test_guard_conv_has_residual():
    b = GB()
    x = b.input("x", (1, 4, 5, 5))
    r = b.input("r", (1, 4, 5, 5))
    c = b.conv(x, 4, bias=False, residual=r)
    _blocked(b.build([b.bn(c)]), "residual")


def test_guard_bn_params_not_constant_blocks_everything():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4)
    s = b.input("s", (4,))
    y = b.node("BatchNormalization", [c, s, b.rand(4), b.rand(4), b.rand(4, low=0.5)], (1, 4, 5, 5), epsilon=1e-5)
    res = run_pass(fold_batchnorm, b.build([y]))
    assert ops(res.graph) == ["Conv", "BatchNormalization"]
    assert all("not constants" in r for _, _, r in res.declined) and len(res.declined) == 2


def test_guard_per_activation_bn_stays():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    c = b.conv(x, 2)
    params = [b.rand(2, 3, 3, low=0.5), b.rand(2, 3, 3), b.rand(2, 3, 3), b.rand(2, 3, 3, low=0.5)]
    y = b.node("BatchNormalization", [c, *params], (1, 2, 3, 3), epsilon=1e-5)
    res = run_pass(fold_batchnorm, b.build([y]), check=False)
    assert ops(res.graph) == ["Conv", "BatchNormalization"]
    assert any("per-activation" in r for _, _, r in res.declined)


def test_folded_dtype_follows_weight():
    b = GB()
    x = b.input("x", (1, 3, 4, 4))
    y = b.bn(b.conv(x, 2))
    res = run_pass(fold_batchnorm, b.build([y]))
    conv = res.graph.nodes[0]
    assert all(res.graph.constants[i].dtype == np.float32 for i in conv.inputs[1:])


def test_guard_dtype_mismatch():
    b = GB()
    x = b.input("x", (1, 3, 4, 4), dtype="float64")
    w = b.const(np.ones((2, 3, 1, 1), np.float32))
    c = b.conv(x, 2, k=1, pad=0, bias=False, weight=w, dtype="float64")  # a float64 conv on float32 weights
    reasons = [r for _, _, r in fold_declines(b.build([b.bn(c)]))]
    assert any("dtypes" in r for r in reasons), reasons


def test_guard_folded_weight_would_overflow_float32():
    # 3e38 x BN scale 10 is past float32's 3.4e38: a folded weight would be Inf, while the
    # unfolded Conv and BN stay finite on small inputs
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    c = b.conv(x, 2, k=1, bias=False)
    b.constants[b.nodes[-1].inputs[1]][...] = 3e38
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    params = [b.const(10 * ones), b.const(zeros), b.const(zeros), b.const(ones)]
    g = b.build([b.node("BatchNormalization", [c, *params], b.shape(c), epsilon=1e-5)])
    with np.errstate(over="ignore"):  # as the session runs passes; the guard sees the Inf
        res = run_pass(fold_batchnorm, g, check=False)
        reasons = [r for _, _, r in fold_declines(g)]
    assert ops(res.graph) == ["Conv", "ChannelAffine"]
    assert any("overflow float32" in r for r in reasons), reasons
    feeds = {x: np.random.default_rng(2).uniform(-1e-3, 1e-3, (1, 2, 3, 3)).astype(np.float32)}
    [want] = evaluate(g, feeds)
    assert np.isfinite(want).all() and np.abs(want).max() > 1e35
    assert_same_outputs(g, res.graph, feeds)

"""The pass manager: opt levels, disabling, the log, the round cap and failure reports."""

from __future__ import annotations

from collections import Counter

import pytest
from pass_helpers import GB, assert_same_outputs, ops

from cnnrt.errors import PassError
from cnnrt.passes import PassResult, pipeline
from cnnrt.passes.pipeline import pass_names, run_pipeline


def _resnetish():
    b = GB()
    x = b.input("x", (1, 4, 6, 6))
    a = b.act("Relu", b.bn(b.conv(x, 4, name="conv1"), name="bn1"), name="relu1")
    a = b.node("Dropout", [a], (1, 4, 6, 6), name="drop")
    c = b.bn(b.conv(b.pad(a, (1, 1, 1, 1)), 4, pad=0, name="conv2"), name="bn2")
    y = b.act("Relu", b.add(c, x, name="add"), name="relu2")
    return b.build([y])


def test_opt_levels():
    g = _resnetish()
    g0, log0 = run_pipeline(g, 0)
    assert g0 is g and log0.rounds == 0
    g1, _ = run_pipeline(g, 1)
    assert "Dropout" not in ops(g1) and "BatchNormalization" in ops(g1)
    g2, log2 = run_pipeline(g, 2)
    g2.verify()
    assert ops(g2) == ["Conv", "Conv"]
    assert_same_outputs(g, g2)
    counts = {name: Counter(rule for rule, _ in fired) for name, fired in log2.fired.items()}
    assert counts["fold_batchnorm"] == {"Conv/ConvTranspose/Gemm + BatchNormalization -> Conv/ConvTranspose/Gemm": 2}
    assert sum(counts["fuse_epilogue"].values()) == 3
    assert counts["fold_pad"] and counts["remove_identity"]


def test_disabled_pass_and_unknown_name():
    g = _resnetish()
    g2, log = run_pipeline(g, 2, disabled=["fold_batchnorm"])
    assert ops(g2).count("BatchNormalization") == 2
    assert "fold_batchnorm" not in log.order
    assert_same_outputs(g, g2)
    with pytest.raises(PassError, match="unknown pass name"):
        run_pipeline(g, 2, disabled=["no_such_pass"])


def test_log_says_what_was_declined_and_why():
    b = GB()
    x = b.input("x", (1, 3, 5, 5))
    c = b.conv(x, 4, name="conv")
    r = b.act("Relu", c, name="relu")
    y = b.bn(b.input("z", (1, 3, 5, 5)), name="bn_in")
    g, log = run_pipeline(b.build([r, b.act("Tanh", c), y]), 2)
    lines = "\n".join(log.lines())
    assert "[fuse_epilogue] declined" in lines and "at relu" in lines and "has 2 consumers" in lines
    assert "BN input is a graph input" in lines
    assert "[fold_batchnorm] fired BatchNormalization -> ChannelAffine" in lines


def test_repeats_until_nothing_changes_and_is_capped(monkeypatch):
    calls = []

    def always_changes(graph):
        calls.append(1)
        return PassResult(graph, True)

    monkeypatch.setattr(pipeline, "PASSES", [("always", always_changes, 1)])
    g, log = run_pipeline(_resnetish(), 2)
    assert log.rounds == pipeline.MAX_ROUNDS == len(calls)


def test_failure_names_the_pass_and_those_before(monkeypatch):
    def ok(graph):
        return PassResult(graph, False)

    def broken(graph):
        g = graph.copy()
        g.nodes = g.nodes[1:]  # drops a producer: verify() must catch it
        return PassResult(g, True)

    monkeypatch.setattr(pipeline, "PASSES", [("ok", ok, 1), ("broken", broken, 1)])
    with pytest.raises(PassError, match=r"pass 'broken' failed in round 1 \(after \['ok'\]\)"):
        run_pipeline(_resnetish(), 1)


def test_pass_order_is_the_documented_one():
    assert pass_names() == [
        "remove_identity",
        "fuse_qdq",  # before fold_constants turns the weights' DequantizeLinear into float constants
        "fold_constants",
        "fold_batchnorm",
        "fold_pad",
        "fuse_layernorm",
        "fuse_gelu",
        "flatten_matmul",
        "fuse_epilogue",
        "fold_affine_concat",
        "fuse_se",
        "pool_before_pointwise",
        "eliminate_dead_nodes",
        "concat_in_place",
        "block_layout",  # once, after the fixed point, for a CPU target
    ]

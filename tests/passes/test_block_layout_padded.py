"""block_layout on channel counts that are not whole blocks: the last block is zero padded
(cnnrt.core.layout). Numerics equal before and after (reference interpreter and the kernels),
and every padding lane the kernels write is zero, including after epilogues whose value at 0
is not 0 (Sigmoid, HardSigmoid), which the pass keeps off padded values."""

from __future__ import annotations

import numpy as np
import pytest
from pass_helpers import GB, assert_same_outputs, feeds_for
from reference import activation_ref

from cnnrt.core import layout
from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.passes import block_layout as bl
from cnnrt.passes.block_layout import block_layout
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import plan_memory

# the host's block: the kernels the tests run have its width (16 float32 with AVX-512, 8 with AVX2)
LANES = VECTOR_BYTES // 4
# channel counts by their place against the block (16 lanes: 8, 17, 24, 40): less than one
# block, one channel past a block, half a block past one, and past two
CHANNELS = {
    "half": LANES // 2,
    "one_past": LANES + 1,
    "one_and_half": LANES + LANES // 2,
    "two_and_half": 2 * LANES + LANES // 2,
}

ACTS = {  # the fused activation and its (alpha, beta)
    "Relu": (0.0, 0.0),
    "HardSwish": (0.0, 0.0),
    "SiLU": (0.0, 0.0),
    "Clip": (0.0, 6.0),
    "Sigmoid": (0.0, 0.0),
    "HardSigmoid": (0.2, 0.5),
}


def _net(c, act, alpha, beta):
    """A mobile block on C channels: expand conv with ``act``, depthwise, SE-style gate
    (GAP, 1x1 convs, Sigmoid, broadcast Mul), projection with residual, max pool, GAP."""
    b = GB()
    x = b.input("x", (2, c, 7, 7))
    e = b.conv(x, c, k=1, name="expand", activation=act, act_alpha=alpha, act_beta=beta)
    d = b.conv(e, c, k=3, group=c, name="dw", activation="Relu")
    g = b.node("GlobalAveragePool", [d], (2, c, 1, 1), name="gap")
    s = b.conv(g, c, k=1, name="squeeze", activation="Sigmoid")
    m = b.node("Mul", [d, s], (2, c, 7, 7), name="gate")
    p = b.conv(m, c, k=1, name="project", residual=e)
    mp = b.pool("MaxPool", p, k=3, stride=2, pads=(1, 1, 1, 1), name="pool")
    ap = b.pool("AveragePool", mp, k=2, stride=1, name="avg")
    return b.build([b.node("GlobalAveragePool", [ap], (2, c, 1, 1), name="head")])


def _run_checking_padding(graph, feeds):
    """(outputs, padded values) of the kernels on an arena filled with NaN first, asserting
    every blocked value's padding lanes are zero after its step."""
    ex = Executor(graph, plan_memory(graph))
    ex.arena.fill(0xFF)  # every float32 / float64 word a NaN: a lane nobody writes shows
    for dst, name in zip(ex.input_arrays, graph.inputs):
        np.copyto(dst, feeds[name])
    padded = 0
    for step in ex.steps:
        step.run(step.ins, step.outs)
        for o, a in zip(step.node.outputs, step.outs):
            v = graph.values.get(o)
            if v is None or not layout.is_blocked(v):
                continue
            c = graph.values[v.logical].shape[1]
            lanes = a.transpose(0, 1, 4, 2, 3).reshape(a.shape[0], -1, *a.shape[2:4])
            padded += lanes.shape[1] > c
            assert not np.any(lanes[:, c:]), f"{step.node.name} ({step.node.op}) left non-zero padding lanes"
    return [np.array(ex._array(o)) for o in graph.outputs], padded


@pytest.mark.parametrize("channels", list(CHANNELS))
@pytest.mark.parametrize("act", list(ACTS))
def test_padded_chain_matches_and_keeps_padding_zero(channels, act, monkeypatch):
    monkeypatch.setattr(bl, "MAX_PAD_FRACTION", 2.0)  # half a block and one past one too (the kernels' cases)
    c = CHANNELS[channels]
    before = _net(c, act, *ACTS[act])
    res = block_layout(before, vector_bytes=VECTOR_BYTES)
    after = res.graph
    after.verify()
    blocked = {n.name for n in after.nodes if n.op.startswith("Blocked")}
    assert {"dw", "project", "pool", "avg", "head"} <= blocked
    assert after.values[after.node("dw").outputs[0]].shape == (2, -(-c // LANES), 7, 7, LANES)
    assert after.node("dw").attrs["group"] == -(-c // LANES) * LANES  # depthwise grows with its padding
    if bl.keeps_zero(act, *ACTS[act]):
        assert "expand" in blocked
    else:  # act(0) != 0 on a padded output: not blocked (its input is the NCHW graph input)
        assert "expand" not in blocked
        assert any(node == "expand" and "not 0 at 0" in why for _, node, why in res.declined)
    assert after.node("gate").op == "Mul" and layout.is_blocked(after.values[after.node("gate").outputs[0]])
    assert_same_outputs(before, after)
    feeds = feeds_for(before)
    got, padded = _run_checking_padding(after, feeds)
    assert padded > 0
    want = Executor(before, plan_memory(before)).run([feeds[i] for i in before.inputs])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)


def test_zero_at_zero_table_matches_the_activation_formulas():
    for kind in ACTIVATIONS:
        for alpha, beta in ((0.2, 0.5), (0.0, 6.0), (1.0, 2.0), (-1.0, 0.0)):
            if kind == "none":
                continue
            at0 = activation_ref(np.zeros(1), kind, alpha, beta)[0]
            assert bl.keeps_zero(kind, alpha, beta) == (at0 == 0), (kind, alpha, beta, at0)


def test_concat_with_a_padded_input_before_the_last_places_it_by_lane(monkeypatch):
    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    b = GB()
    x = b.input("x", (1, 32, 5, 5))
    a = b.conv(x, 24, k=1, name="a")
    c = b.conv(x, 16, k=1, name="c")
    first_padded = b.concat([a, c], name="cat")  # 24 + 16: the 24's padding inside
    last_padded = b.concat([c, a], name="cat2")  # 16 + 24: the output's padding is the 24's
    g = b.build([first_padded, last_padded])
    after = block_layout(g, vector_bytes=64).graph
    assert after.node("cat2").op == "Concat" and after.node("cat").op == "BlockedConcat"
    assert all(layout.is_blocked(after.values[after.node(n).outputs[0]]) for n in ("cat", "cat2"))
    assert_same_outputs(g, after)


def test_three_channel_and_grouped_convs_stay_nchw(monkeypatch):
    """Padding 3 channels to 16 costs more than it saves; groups of 6 straddle blocks of 16:
    no blocked kernel."""
    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    b = GB()
    x = b.input("x", (1, 3, 8, 8))
    s = b.conv(x, 24, name="stem")
    gconv = b.conv(s, 24, group=4, name="grouped")
    g = b.build([b.conv(gconv, 3, k=1, name="rgb")])
    res = block_layout(g, vector_bytes=64)
    assert res.graph.node("stem").op == "BlockedConv"
    assert res.graph.node("grouped").op == "Conv" and res.graph.node("rgb").op == "Conv"
    assert any(node == "grouped" and "group 4" in why for _, node, why in res.declined)
    assert_same_outputs(g, res.graph)


def test_grouped_conv_grows_its_groups_with_the_padding(monkeypatch):
    """Groups of half a block (16 lanes: RegNet's 8) on a block and a half of channels, padded
    to two blocks: the blocked conv gets a fourth group of zero weights, and the graph computes
    what it did."""
    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)
    c, cg = LANES + LANES // 2, LANES // 2
    b = GB()
    x = b.input("x", (1, c, 7, 7))
    e = b.conv(x, c, k=1, name="expand", activation="Relu")
    gconv = b.conv(e, c, group=3, name="grouped", activation="Relu")
    g = b.build([b.conv(gconv, 2 * LANES, k=1, name="project")])
    res = block_layout(g, vector_bytes=VECTOR_BYTES)
    node = res.graph.node("grouped")
    assert node.op == "BlockedConv" and node.attrs["group"] == 4
    assert res.graph.values[node.inputs[1]].shape == (2 * LANES, cg, 3, 3)
    assert_same_outputs(g, res.graph)
    feeds = feeds_for(g)
    got, padded = _run_checking_padding(res.graph, feeds)  # the kernels keep padding lanes zero
    assert padded > 0
    want = Executor(g, plan_memory(g)).run([feeds[i] for i in g.inputs])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5)

"""block_layout: the conv chains move to the channel-blocked layout, with reorders only at
their edges; numerics equal (reference interpreter, which runs the blocked ops as NCHW ops
between explicit reorders); the guards keep NCHW where no blocked kernel applies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from pass_helpers import GB, assert_same_outputs, feeds_for, ops

from cnnrt.core import layout
from cnnrt.core.ir import Graph
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.passes import block_layout as bl
from cnnrt.passes.block_layout import block_layout
from cnnrt.passes.pipeline import run_pipeline
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import plan_memory
from cnnrt.tools.compare import derive_tolerances

# tests that run the kernels block for this host (16 float32 lanes with AVX-512, 8 with AVX2)
LANES = VECTOR_BYTES // 4


def _resnetish(c=32):
    b = GB()
    x = b.input("x", (2, 3, 12, 12))
    stem = b.conv(x, c, k=3, stride=2, name="stem", activation="Relu")  # 3 input channels: NCHW input
    p = b.pool("MaxPool", stem, k=3, stride=2, pads=(1, 1, 1, 1), name="pool")
    a = b.conv(p, c, name="conv_a", activation="Relu")
    y = b.conv(a, c, name="conv_b", residual=p, activation="Relu")
    g = b.node("GlobalAveragePool", [y], (2, c, 1, 1), name="gap")
    f = b.node("Reshape", [g], (2, c), name="flatten", shape=(2, c))
    return b.build([b.gemm(f, 10, name="fc")])


def _run_kernels(graph, feeds):
    ex = Executor(graph, plan_memory(graph))
    return ex.run([feeds[i] for i in graph.inputs])


def test_conv_chain_is_blocked_between_reorders_at_its_edges():
    before = _resnetish()
    res = block_layout(before, vector_bytes=VECTOR_BYTES)
    after = res.graph
    after.verify()
    assert res.changed
    assert ops(after) == [
        "BlockedConv",
        "BlockedMaxPool",
        "BlockedConv",
        "BlockedConv",
        "BlockedGlobalAveragePool",
        "Reshape",
        "Reshape",
        "Gemm",
    ]
    # the stem reads the NCHW input (3 channels), everything else blocked (N, C/B, H, W, B)
    stem = after.node("stem")
    assert after.values[stem.inputs[0]].shape == (2, 3, 12, 12)
    assert after.values[stem.outputs[0]].shape == (2, 32 // LANES, 6, 6, LANES)
    conv_b = after.node("conv_b")
    assert after.values[conv_b.inputs[3]].shape == (2, 32 // LANES, 3, 3, LANES)  # the pool's blocked output
    # the GAP's blocked (N, C/B, 1, 1, B) output is the NCHW (N, C, 1, 1) value as a view
    unblock = after.nodes[5]
    assert unblock.outputs[0] == "gap_out" and after.values["gap_out"].shape == (2, 32, 1, 1)
    assert_same_outputs(before, after)
    want = _run_kernels(before, feeds_for(before))
    got = _run_kernels(after, feeds_for(before))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-4)


@pytest.fixture
def one_conv_suffices(monkeypatch):
    monkeypatch.setattr(bl, "MIN_BLOCKED_CONVS", 1)


def test_a_lone_blockable_conv_leaves_the_graph_nchw():
    b = GB()
    x = b.input("x", (1, 16, 6, 6))
    g = b.build([b.pool("MaxPool", b.conv(x, 16, name="conv"), k=2, stride=2)])
    res = block_layout(g, vector_bytes=64)
    assert not res.changed and res.graph is g
    assert any("fewer than 2" in why for _, _, why in res.declined)


def test_reorders_where_nchw_readers_and_outputs_need_them(one_conv_suffices):
    b = GB()
    x = b.input("x", (1, 16, 6, 6))
    a = b.conv(x, 16, name="conv")  # blocked input: a reorder of the graph input
    t = b.act("Tanh", a, name="tanh")  # elementwise on a blocked value: stays blocked
    s = b.pad(t, name="pad")  # no blocked form: reorder back
    g = b.build([s, t])
    after = block_layout(g, vector_bytes=64).graph
    assert ops(after) == ["ReorderToBlocked", "BlockedConv", "Tanh", "ReorderFromBlocked", "Pad"]
    assert after.outputs == ["pad_out", "tanh_out"]
    assert after.values["tanh_out"].shape == (1, 16, 6, 6)  # produced once, by the reorder
    assert_same_outputs(g, after)


@pytest.mark.parametrize(
    "case,reason",
    [("odd_channels", None), ("grouped", "group 2"), ("override", "algorithm override")],
)
def test_guards_keep_convs_nchw(case, reason, one_conv_suffices):
    b = GB()
    x = b.input("x", (1, 32, 5, 5))
    if case == "odd_channels":
        y = b.conv(x, 20, name="conv")  # 20 output channels: not whole blocks
    elif case == "grouped":
        y = b.conv(x, 64, group=2, name="conv")  # 16 in, 32 out per group: no blocked kernel
    else:
        y = b.conv(x, 32, name="conv", algorithm="im2col")
    g = b.build([y])
    res = block_layout(g, vector_bytes=64)
    assert not res.changed and res.graph is g
    if reason:
        assert any(reason in why for _, node, why in res.declined if node == "conv")


def test_conv_with_channels_past_whole_blocks_is_cropped_back(one_conv_suffices):
    classes = LANES + LANES // 4  # 20 with blocks of 16: not whole blocks, too much padding to stay blocked
    b = GB()
    x = b.input("x", (1, 32, 5, 5))
    a = b.conv(x, 32, name="conv")
    y = b.conv(a, classes, k=1, name="head", activation="Relu")
    g = b.build([b.node("GlobalAveragePool", [y], (1, classes, 1, 1), name="gap")])
    after = block_layout(g, vector_bytes=VECTOR_BYTES).graph
    assert ops(after) == ["ReorderToBlocked", "BlockedConv", "BlockedConv", "ReorderFromBlocked", "GlobalAveragePool"]
    head = after.node("head")
    assert after.values[head.outputs[0]].shape == (1, 2, 5, 5, LANES)  # whole blocks
    assert after.values["head_out"].shape == (1, classes, 5, 5)  # the reorder crops
    assert_same_outputs(g, after)
    np.testing.assert_allclose(
        _run_kernels(after, feeds_for(g))[0], _run_kernels(g, feeds_for(g))[0], rtol=1e-4, atol=1e-5
    )


def test_broadcasting_and_per_activation_affine_stay_nchw(one_conv_suffices):
    b = GB()
    x = b.input("x", (1, 16, 4, 4))
    a = b.conv(x, 16, name="conv")
    m = b.node("Mul", [a, b.rand(16, 1, 1)], (1, 16, 4, 4), name="scale")  # broadcast constant
    aff = b.node(
        "ChannelAffine", [a, b.rand(16, 4, 4), b.rand(16, 4, 4)], (1, 16, 4, 4), name="affine", activation="none"
    )
    g = b.build([m, aff])
    after = block_layout(g, vector_bytes=64).graph
    assert ops(after) == ["ReorderToBlocked", "BlockedConv", "ReorderFromBlocked", "Mul", "ChannelAffine"]
    assert_same_outputs(g, after)


def test_concat_of_whole_blocks_stays_blocked_and_block_follows_vector_width():
    b = GB()
    x = b.input("x", (1, 8, 5, 5))
    a = b.conv(x, 8, name="a")
    c = b.conv(x, 16, k=1, name="c")
    y = b.concat([a, c], name="cat")
    g = b.build([b.pool("AveragePool", y, k=2, stride=2, name="avg")])
    after = block_layout(g, vector_bytes=32).graph  # float32, 8 per block (AVX2)
    assert ops(after) == [
        "ReorderToBlocked",
        "BlockedConv",
        "BlockedConv",
        "Concat",
        "BlockedAveragePool",
        "ReorderFromBlocked",
    ]
    assert after.values[after.node("cat").outputs[0]].shape == (1, 3, 5, 5, 8)
    assert_same_outputs(g, after)


def test_pipeline_runs_it_last_and_only_for_a_cpu_target():
    g = _resnetish()
    plain, log = run_pipeline(g, 2)
    assert "BlockedConv" not in ops(plain) and "block_layout" not in log.order
    blocked, log = run_pipeline(g, 2, vector_bytes=64)
    assert ops(blocked).count("BlockedConv") == 3 and log.order[-1] == "block_layout"
    off, _ = run_pipeline(g, 2, disabled=["block_layout"], vector_bytes=64)
    assert "BlockedConv" not in ops(off)
    assert_same_outputs(g, blocked)


def test_blocked_values_carry_their_layout_and_logical_value():
    after = block_layout(_resnetish(), vector_bytes=64).graph
    stem_out = after.values[after.node("stem").outputs[0]]
    assert (stem_out.layout, stem_out.logical, layout.block_of(stem_out.layout)) == ("nchw16c", "stem_out", 16)
    assert layout.is_blocked(stem_out) and not layout.is_blocked(after.values["x"])
    assert all(v.layout == "nchw" and not v.logical for v in after.values.values() if len(v.shape) != 5)


def test_the_layout_is_read_from_the_value_not_its_name():
    """Twins renamed to names without any layout in them still run blocked and still map to
    their logical values (cnnrt compare's tolerances)."""
    g = block_layout(_resnetish(), vector_bytes=VECTOR_BYTES).graph
    renamed = {v: f"t{k}" for k, v in enumerate(n for n in g.values if g.values[n].logical)}
    g = Graph(
        [
            n.replace(
                inputs=tuple(renamed.get(i, i) for i in n.inputs), outputs=tuple(renamed.get(o, o) for o in n.outputs)
            )
            for n in g.nodes
        ],
        {renamed.get(k, k): dataclasses.replace(v, name=renamed.get(k, k)) for k, v in g.values.items()},
        g.constants,
        g.inputs,
        g.outputs,
    )
    g.verify()
    rtol = derive_tolerances(g)
    assert "stem_out" in rtol and "conv_b_out" in rtol
    feeds = feeds_for(g)
    want = _run_kernels(block_layout(_resnetish(), vector_bytes=VECTOR_BYTES).graph, feeds)
    np.testing.assert_array_equal(_run_kernels(g, feeds)[0], want[0])


def test_channel_split_of_a_blocked_value_stays_blocked():
    """ShuffleNet's 58 + 58 and MixNet's 16 + 32 pieces: one BlockedSplit, no reorders, the
    same outputs as the NCHW graph (by the IR reference and by the kernels)."""
    b = GB()
    x = b.input("x", (1, LANES // 2, 6, 6))  # half a block: too much padding, read NCHW
    for sizes in ((58, 58), (16, 32)):
        y = b.conv(x, sum(sizes), k=1, name=f"expand{sizes[0]}", activation="Relu")
        pieces = b.node(
            "Split", [y], [(1, c, 6, 6) for c in sizes], name=f"split{sizes[0]}", n_out=2, axis=1, sizes=sizes
        )
        outs = [b.conv(p, 16, k=3, pads=(1, 1, 1, 1), name=f"c{sizes[0]}_{k}") for k, p in enumerate(pieces)]
        x = b.node("Add", outs, (1, 16, 6, 6), name=f"add{sizes[0]}")
        x = b.conv(x, 16, k=1, name=f"squeeze{sizes[0]}")
    before = b.build([x])
    after = block_layout(before, vector_bytes=VECTOR_BYTES).graph
    after.verify()
    assert ops(after).count("BlockedSplit") == 2 and "Split" not in ops(after)
    # the half-block input is read NCHW by the first conv; only the graph output is reordered
    assert "ReorderToBlocked" not in ops(after) and ops(after).count("ReorderFromBlocked") == 1
    assert after.values[after.node("split58").outputs[1]].shape == (1, -(-58 // LANES), 6, 6, LANES)
    assert_same_outputs(before, after)
    want = _run_kernels(before, feeds_for(before))
    got = _run_kernels(after, feeds_for(before))
    # sums of ~1e3 that cancel: the tolerance scales with the output's magnitude
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5 * np.abs(want[0]).max())


def _shuffle(b, x, groups, name):
    n, c, h, w = 1, 58 * 2, 6, 6
    r = b.node("Reshape", [x], (n, groups, c // groups, h, w), name=f"{name}/r1", shape=(n, groups, c // groups, h, w))
    t = b.node("Transpose", [r], (n, c // groups, groups, h, w), name=f"{name}/t", perm=(0, 2, 1, 3, 4))
    return b.node("Reshape", [t], (n, c, h, w), name=f"{name}/r2", shape=(n, c, h, w))


def test_channel_shuffle_between_blocked_convs_is_one_step():
    """ShuffleNet's units: Concat -> shuffle -> Split becomes one BlockedChannelShuffle (no
    reorders, no Transpose), a shuffle read by two convs one without a Split; the graph
    computes what the NCHW one does (by the IR reference and by the kernels)."""
    b = GB()
    x = b.input("x", (1, LANES // 2, 6, 6))  # half a block: read NCHW, no reorder
    left = b.conv(x, 58, k=1, name="left", activation="Relu")
    right = b.conv(x, 58, k=3, pads=(1, 1, 1, 1), name="right", activation="Relu")
    y = _shuffle(b, b.concat([left, right], name="cat1"), 2, "s1")
    p0, p1 = b.node("Split", [y], [(1, 58, 6, 6)] * 2, name="split", n_out=2, axis=1, sizes=(58, 58))
    q = b.conv(p1, 58, k=1, name="branch", activation="Relu")
    y = _shuffle(b, b.concat([p0, q], name="cat2"), 2, "s2")
    out = b.node(
        "Add", [b.conv(y, 16, k=1, name="h1"), b.conv(y, 16, k=3, pads=(1, 1, 1, 1), name="h2")], (1, 16, 6, 6)
    )
    before = b.build([out])
    after = block_layout(before, vector_bytes=VECTOR_BYTES).graph
    after.verify()
    assert ops(after).count("BlockedChannelShuffle") == 2
    assert not {"Transpose", "Reshape", "Split", "Concat", "BlockedConcat", "ReorderToBlocked"} & set(ops(after))
    assert after.node("s1/t").attrs == {"sizes": [58, 58], "groups": 2, "splits": [58, 58]}
    assert after.node("s2/t").attrs["splits"] == [116]
    assert_same_outputs(before, after)
    want = _run_kernels(before, feeds_for(before))
    got = _run_kernels(after, feeds_for(before))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5 * np.abs(want[0]).max())


def test_channel_concat_of_padded_inputs_stays_blocked():
    """Mixed kernels (MixNet) of a block and a half and of two and a half (24 and 40 with
    blocks of 16): BlockedConcat, the first input's padding lanes dropped; same outputs."""
    sizes = [LANES + LANES // 2, 2 * LANES + LANES // 2]
    b = GB()
    x = b.input("x", (1, 16, 5, 5))
    y = b.conv(x, 32, k=1, name="expand", activation="Relu")
    parts = [b.conv(y, c, k=3, pads=(1, 1, 1, 1), name=f"mix{c}") for c in sizes]
    cat = b.concat(parts, name="cat")
    before = b.build([b.conv(cat, 16, k=1, name="project")])
    after = block_layout(before, vector_bytes=VECTOR_BYTES).graph
    after.verify()
    assert ops(after) == [
        "ReorderToBlocked",
        "BlockedConv",
        "BlockedConv",
        "BlockedConv",
        "BlockedConcat",
        "BlockedConv",
        "ReorderFromBlocked",
    ]
    assert after.node("cat").attrs["sizes"] == sizes
    assert_same_outputs(before, after)
    want = _run_kernels(before, feeds_for(before))
    got = _run_kernels(after, feeds_for(before))
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5 * np.abs(want[0]).max())

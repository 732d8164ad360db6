"""concat_in_place: which Concats become zero-copy, and the guards that keep the others copying."""

from __future__ import annotations

import numpy as np
import pytest
from ir_reference import evaluate
from pass_helpers import GB, feeds_for, run_pass

from cnnrt.kernels.cpu.conv_blocked_bf16 import bf16_unsupported_reason
from cnnrt.kernels.cpu.llvm_ir import VECTOR_BYTES
from cnnrt.passes.block_layout import block_layout
from cnnrt.passes.concat_in_place import concat_in_place
from cnnrt.passes.pipeline import run_pipeline
from cnnrt.passes.select_algorithm import select_algorithm
from cnnrt.runtime.executor import Executor
from cnnrt.runtime.plan import plan_memory


def _marked(graph):
    return {n.name for n in graph.nodes if n.op == "Concat" and n.attrs.get("in_place")}


def test_inception_concat_marked_and_planned_as_slices():
    b = GB()
    x = b.input("x", (1, 3, 6, 6))
    branches = [b.conv(x, 2), b.conv(x, 3, k=1), b.pool("MaxPool", x, k=3, pads=(1, 1, 1, 1))]
    y = b.conv(b.concat(branches, name="cat"), 4)
    res = run_pass(concat_in_place, b.build([y]))
    assert _marked(res.graph) == {"cat"} and res.fired
    plan = plan_memory(res.graph)
    cat_out = res.graph.node("cat").outputs[0]
    starts = [plan.places[v].start for v in branches]
    assert starts == [0, 2, 5] and all(plan.places[v].base == cat_out for v in branches)
    assert "cat" in plan.noop_nodes
    assert len({plan.alias_of[v] for v in branches} | {plan.alias_of[cat_out]}) == 1


def test_densenet_nested_concats_share_one_buffer():
    b = GB()
    x0 = b.input("x", (1, 4, 5, 5))
    feats = [b.act("Relu", x0)]
    cats = []
    for i in range(3):
        cat = b.concat(list(feats), name=f"cat{i}") if len(feats) > 1 else feats[0]
        cats.append(cat)
        feats.append(b.conv(b.act("Relu", cat), 2, name=f"conv{i}"))
    final = b.concat(feats, name="final")
    res = run_pass(concat_in_place, b.build([final]))
    assert _marked(res.graph) == {"cat1", "cat2", "final"}
    plan = plan_memory(res.graph)
    roots = {plan.alias_of[v] for v in feats} | {plan.alias_of[c] for c in cats[1:]}
    assert roots == {final}
    assert [plan.places[f].start for f in feats[1:]] == [4, 6, 8]


def test_guard_batch_two_is_strided():
    b = GB()
    x = b.input("x", (2, 3, 4, 4))
    y = b.concat([b.conv(x, 2), b.conv(x, 2)], name="cat")
    res = run_pass(concat_in_place, b.build([y]))
    assert not _marked(res.graph)
    assert "strided" in res.declined[0][2]


def _blocked_fire(batch: int, residual: bool = False, extra_reader: bool = False, c: int = 32, hw: int = 6):
    """SqueezeNet's fire module at ``batch``, blocked: a 1x1 and a 3x3 conv concatenated,
    read by a 1x1 conv; ``c`` squeeze channels on ``hw`` x ``hw`` pixels. Blocked for this
    host's vectors: the kernels run it."""
    b = GB()
    x = b.input("x", (batch, 16, hw, hw))
    s = b.conv(x, c, k=1, name="squeeze", activation="Relu")
    e1 = b.conv(s, c, k=1, name="expand1", activation="Relu", residual=s if residual else None)
    e3 = b.conv(s, 16 if c < 64 else c, k=3, pads=(1, 1, 1, 1), name="expand3", activation="Relu")
    outs = [b.conv(b.concat([e1, e3], name="cat"), 16, k=1, name="head")]
    if extra_reader:
        outs.append(b.act("Relu", e3))
    before = b.build(outs)
    return before, select_algorithm(
        concat_in_place(block_layout(before, vector_bytes=VECTOR_BYTES).graph).graph, "cpu"
    ).graph


def _executes_like_the_reference(before, after) -> None:
    feeds = feeds_for(before)
    want = evaluate(before, feeds)
    got = Executor(after, plan_memory(after)).run([feeds[i] for i in after.inputs])
    for w, g in zip(want, got):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.abs(w).max())


@pytest.mark.parametrize("algorithm", ["direct", "winograd"])
@pytest.mark.parametrize("residual", [False, True])
def test_blocked_convs_write_strided_slices_at_batch_two(algorithm, residual):
    """At batch 2 a blocked conv's slice of the Concat is strided (its images lie apart): the
    direct tile and Winograd write it in place, a conv with a residual (the tile reads it at
    the output's offsets) through a scratch copy; the Concat is a no-op step and the outputs
    match the NCHW graph's."""
    before, after = _blocked_fire(2, residual)
    after = after.copy()
    after.nodes = [n.with_attrs(algorithm=algorithm) if n.name == "expand3" else n for n in after.nodes]
    assert _marked(after) == {"cat"}
    assert "cat" in plan_memory(after).noop_nodes
    _executes_like_the_reference(before, after)


def test_guard_strided_slice_read_by_another_node():
    _, after = _blocked_fire(2, extra_reader=True)
    assert not _marked(after)


def test_winograd_conv_writes_its_strided_slice():
    """64 channels on 16x16 pixels: expand3 runs Winograd, which indexes its output by strides."""
    before, after = _blocked_fire(2, c=64, hw=16)
    assert after.node("expand3").attrs["algorithm"] == "winograd"
    assert _marked(after) == {"cat"}
    _executes_like_the_reference(before, after)


def test_guard_strided_slice_from_a_depthwise_conv():
    """A depthwise conv writes contiguous outputs only (through a scratch copy)."""
    b = GB()
    x = b.input("x", (2, 32, 6, 6))
    y = b.concat([b.conv(x, 32, k=1, name="pw"), b.conv(x, 32, k=3, group=32, name="dw")], name="cat")
    after = select_algorithm(concat_in_place(block_layout(b.build([y]), vector_bytes=VECTOR_BYTES).graph).graph, "cpu")
    assert after.graph.node("dw").attrs["algorithm"] == "depthwise"
    assert not _marked(after.graph)


def _dense_block(hw: int):
    """DenseNet's block at batch 2: a pool, three BN + ReLU -> 1x1 -> 3x3 layers, each
    concatenating its 32 channels to the block so far, and a transition."""
    b = GB()
    x = b.input("x", (2, 16, hw, hw))
    feats = b.pool("MaxPool", b.conv(x, 32, k=1, activation="Relu"), k=3, pads=(1, 1, 1, 1), name="pool")
    for i in range(3):
        h = b.conv(b.act("Relu", b.bn(feats)), 64, k=1, activation="Relu", name=f"bottleneck{i}")
        feats = b.concat([feats, b.conv(h, 32, name=f"conv{i}")], name=f"cat{i}")
    return b.build([b.conv(b.act("Relu", b.bn(feats)), 16, k=1, name="transition")])


@pytest.mark.parametrize("hw", [6, 16])  # 3x3 convs direct, then Winograd
def test_densenet_concats_nest_in_place_at_batch_two(hw):
    """DenseNet's block at batch 2: each layer's BN + ReLU (a BlockedChannelAffine) reads the
    growing Concat as a strided slice of the block's last one, so every Concat but the first
    (whose pool input cannot be written strided: it copies, into its own slice) is a no-op
    and the block lives in one buffer; the outputs match the unoptimised graph's."""
    before = _dense_block(hw)
    after, log = run_pipeline(before, vector_bytes=VECTOR_BYTES, backend="cpu")
    assert _marked(after) == {"cat1", "cat2"}
    assert {after.node(f"conv{i}").attrs["algorithm"] for i in range(3)} == {"winograd" if hw == 16 else "direct"}
    readers = {n.op for n in after.nodes if after.node("cat1").outputs[0] in n.inputs}
    assert readers == {"Concat", "BlockedChannelAffine"}
    plan = plan_memory(after)
    cats = [after.node(f"cat{i}").outputs[0] for i in range(3)]
    assert {plan.alias_of[c] for c in cats} == {cats[-1]}
    assert any(n == "cat0" and "'pool_out" in why for _, n, why in log.declined["concat_in_place"])
    _executes_like_the_reference(before, after)


@pytest.mark.skipif(bool(bf16_unsupported_reason()), reason="the CPU lacks AVX-512 BF16")
def test_densenet_concats_in_place_under_bf16_give_the_copying_plans_bits():
    """Under bf16 the dense layers' convs run on the bf16 tile and write their float32 outputs
    into the strided slices: the in-place plan gives, bit for bit, what the plan that copies
    every Concat gives."""
    before = _dense_block(16)
    feeds = feeds_for(before)
    outs = []
    for disabled in ((), ("concat_in_place",)):
        g, _ = run_pipeline(before, disabled=disabled, vector_bytes=VECTOR_BYTES, backend="cpu", precision="bf16")
        assert all(g.node(f"conv{i}").attrs.get("precision") == "bf16" for i in range(3))
        assert _marked(g) == ({"cat1", "cat2"} if not disabled else set())
        outs.append(Executor(g, plan_memory(g)).run([feeds[i] for i in g.inputs]))
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


def test_spatial_axis_at_batch_one_channel_one_is_contiguous():
    b = GB()
    x = b.input("x", (1, 1, 4, 4))
    y = b.concat([b.act("Relu", x), b.act("Tanh", x)], axis=2, name="cat")
    res = run_pass(concat_in_place, b.build([y]))
    assert _marked(res.graph) == {"cat"}


def test_guard_constant_input():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    y = b.concat([b.act("Relu", x), b.rand(1, 2, 3, 3)], name="cat")
    res = run_pass(concat_in_place, b.build([y]))
    assert not _marked(res.graph) and "is a constant" in res.declined[0][2]


def _concat_of_a_reshape_view(b, x):
    r = b.node("Reshape", [b.act("Relu", x)], (1, 2, 3, 3), shape=(1, 2, 3, 3))
    return b.concat([r, b.input("z", (1, 2, 3, 3))], name="cat")


def _concat_of_one_input_twice(b, x):
    r = b.act("Relu", x)
    return b.concat([r, r], name="cat")


@pytest.mark.parametrize(
    "net, x_shape, reason",
    [(_concat_of_a_reshape_view, (1, 18), "Reshape view"), (_concat_of_one_input_twice, (1, 2, 3, 3), "twice")],
    ids=["view-input", "input-twice"],
)
def test_guard_inputs_that_cannot_be_slices(net, x_shape, reason):
    b = GB()
    y = net(b, b.input("x", x_shape))
    res = run_pass(concat_in_place, b.build([y]))
    assert not _marked(res.graph) and reason in res.declined[0][2]


def test_guard_value_in_two_unrelated_concats():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    r = b.act("Relu", x)
    c1 = b.concat([r, b.act("Tanh", x)], name="cat1")
    c2 = b.concat([b.act("Sigmoid", x), r], name="cat2")  # r would need to sit in two places
    res = run_pass(concat_in_place, b.build([c1, c2]))
    assert _marked(res.graph) == {"cat2"}
    assert [n for _, n, _ in res.declined] == ["cat1"]


def test_marks_are_recomputed_and_removed_when_invalid():
    b = GB()
    x = b.input("x", (2, 2, 3, 3))
    y = b.concat([b.act("Relu", x), b.act("Tanh", x)], name="cat")
    g = b.build([y])
    g.nodes[-1] = g.nodes[-1].with_attrs(in_place=True)  # stale mark from an earlier round
    res = run_pass(concat_in_place, g)
    assert not _marked(res.graph) and res.changed

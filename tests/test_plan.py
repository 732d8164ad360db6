"""Memory planning: liveness, placement, views, in-place reuse, zero-copy Concat, poison mode."""

from __future__ import annotations

import numpy as np
import pytest
from ir_reference import evaluate  # noqa: E402
from pass_helpers import GB, feeds_for  # noqa: E402

from cnnrt.core.ir import Graph  # noqa: E402
from cnnrt.core.ops import OPS  # noqa: E402
from cnnrt.passes.concat_in_place import concat_in_place  # noqa: E402
from cnnrt.runtime.executor import Executor  # noqa: E402
from cnnrt.runtime.plan import Buffer, MemoryPlan, plan_memory  # noqa: E402

UNARY = ["Relu", "Tanh", "Sigmoid"]


def check_plan_invariants(graph: Graph, plan: MemoryPlan) -> None:
    """No two regions live at the same step overlap; each value's region covers its uses."""
    bufs = list(plan.buffers.values())
    for b in bufs:
        assert 0 <= b.offset and b.offset + b.nbytes <= plan.arena_bytes
    for i, a in enumerate(bufs):
        for b in bufs[i + 1 :]:
            if not (a.last < b.first or b.last < a.first):
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset, (a, b)
    steps_of: dict[str, list[int]] = {v: [-1] for v in graph.inputs}
    for i, n in enumerate(graph.nodes):
        for v in (*n.inputs, *n.outputs):
            if v and v not in graph.constants:
                steps_of.setdefault(v, []).append(i)
    for v, steps in steps_of.items():
        b = plan.region(v)
        assert b.first <= min(steps) and max(steps) <= b.last, (v, b, steps)
    for o in graph.outputs:
        if o not in graph.constants:
            assert plan.region(o).last == len(graph.nodes)
    assert plan.peak_live_bytes <= plan.arena_bytes <= plan.naive_bytes


def run_executor(graph: Graph, feeds, poison=True):
    plan = plan_memory(graph)
    ex = Executor(graph, plan, poison=poison)
    return ex, ex.run([feeds[i] for i in graph.inputs])


def test_chain_reuses_two_buffers():
    b = GB()
    x = b.input("x", (1, 1000))
    y = x
    for k in range(6):
        y = b.node("Transpose", [y], (1, 1000), perm=(0, 1), name=f"t{k}")  # not in place
    g = b.build([y])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    size = 4032  # 4000 bytes aligned to 64
    assert plan.peak_live_bytes == plan.arena_bytes == 2 * size
    assert plan.naive_bytes == 7 * size


def test_in_place_activation_when_input_dies():
    b = GB()
    x = b.input("x", (1, 64))
    r = b.act("Relu", b.node("Transpose", [x], (1, 64), perm=(0, 1)))
    t = b.act("Tanh", r)
    g = b.build([t])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.places[r].kind == "alias" and plan.places[t].kind == "alias"
    assert plan.alias_of[t] == plan.alias_of[r] == g.nodes[0].outputs[0]
    assert all(OPS[op].in_place for op in ("Relu", "Tanh", "ChannelAffine", "Add"))


def test_no_in_place_when_input_still_read_later():
    b = GB()
    x = b.input("x", (1, 64))
    a = b.act("Relu", x)
    t = b.act("Tanh", a)
    s = b.act("Sigmoid", a)
    g = b.build([t, s])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.places[t].kind == "buffer"  # a is still read by Sigmoid
    assert plan.places[s].kind == "alias"  # a dies at Sigmoid


def test_no_in_place_over_graph_output_or_broadcast_operand():
    b = GB()
    x = b.input("x", (2, 8))
    a = b.act("Relu", x)
    t = b.act("Tanh", a)  # a is a graph output: never overwritten
    small = b.act("Relu", b.input("s", (1, 8)))
    y = b.add(small, b.act("Sigmoid", x))  # shapes differ: no in-place
    g = b.build([a, t, y])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.places[t].kind == "buffer" and plan.places[y].kind == "buffer"


def test_view_is_an_alias_and_no_step():
    b = GB()
    x = b.input("x", (1, 2, 3, 4))
    r = b.act("Relu", x)
    flat = b.node("Reshape", [r], (1, 24), shape=(1, 24), name="flatten")
    y = b.gemm(flat, 5)
    g = b.build([y])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.places[flat] == plan.places[flat].__class__("alias", r) and "flatten" in plan.noop_nodes
    ex = Executor(g, plan)
    assert "flatten" not in [s.node.name for s in ex.steps]
    assert np.shares_memory(ex.arrays[flat], ex.arrays[r])


def test_concat_members_are_views_of_the_concat_buffer():
    b = GB()
    x = b.input("x", (1, 3, 4, 4))
    parts = [b.act(op, x) for op in UNARY]
    cat = b.concat(parts, name="cat")
    y = b.act("Relu", b.node("Transpose", [cat], (1, 9, 4, 4), perm=(0, 1, 2, 3)))
    g = concat_in_place(b.build([y])).graph
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    feeds = feeds_for(g)
    ex, (out,) = run_executor(g, feeds)
    assert "cat" not in [s.node.name for s in ex.steps]
    for p in parts:
        assert np.shares_memory(ex.arrays[p], ex.arrays[cat])
        assert ex.arrays[p].flags.c_contiguous
    np.testing.assert_allclose(out, evaluate(g, feeds)[0], rtol=1e-6)


def test_densenet_like_nesting_runs_correctly_with_poison():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    feats = [b.act("Relu", x)]
    for k in range(4):
        cat = b.concat(list(feats)) if len(feats) > 1 else feats[0]
        feats.append(b.act(UNARY[k % 3], b.node("Transpose", [cat], b.shape(cat), perm=(0, 1, 2, 3))))
    y = b.act("Tanh", b.concat(feats))
    g = concat_in_place(b.build([y])).graph
    assert sum(bool(n.attrs.get("in_place")) for n in g.nodes if n.op == "Concat") == 4
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    feeds = feeds_for(g)
    _, (out,) = run_executor(g, feeds)
    np.testing.assert_allclose(out, evaluate(g, feeds)[0], rtol=1e-6)


def test_strided_slices_work_in_the_executor_when_forced():
    # The pass declines batch > 1 (kernels may not accept strided outputs); the planner and
    # executor support it: numpy-ufunc kernels write through strided views.
    b = GB()
    x = b.input("x", (2, 3, 4))
    parts = [b.add(x, b.rand(1, 3, 4)), b.node("Mul", [x, b.rand(1, 3, 4)], (2, 3, 4))]
    cat = b.concat(parts, axis=1, name="cat")
    g = b.build([b.act("Relu", b.node("Transpose", [cat], (2, 6, 4), perm=(0, 1, 2)))])
    g.nodes = [n.with_attrs(in_place=True) if n.name == "cat" else n for n in g.nodes]
    feeds = feeds_for(g)
    ex, (out,) = run_executor(g, feeds)
    assert not ex.arrays[parts[0]].flags.c_contiguous
    np.testing.assert_allclose(out, evaluate(g, feeds)[0], rtol=1e-6)


def test_poison_exposes_a_planning_bug():
    b = GB()
    x = b.input("x", (1, 32))
    a = b.act("Relu", x)
    t = b.act("Tanh", a)
    s = b.act("Sigmoid", a)  # a is read at step 2
    g = b.build([t, s])
    feeds = feeds_for(g)
    plan = plan_memory(g, in_place=False)
    good = Executor(g, plan, poison=True).run([feeds["x"]])
    np.testing.assert_allclose(good[1], evaluate(g, feeds)[1], rtol=1e-6)
    # a buggy plan that thinks `a` dies after step 1
    root = plan.alias_of[a]
    bad_buf = plan.buffers[root]
    bad = MemoryPlan(
        **{
            **plan.__dict__,
            "buffers": {**plan.buffers, root: Buffer(root, bad_buf.offset, bad_buf.nbytes, bad_buf.first, 1)},
        }
    )
    out = Executor(g, bad, poison=True).run([feeds["x"]])
    assert np.isnan(out[1]).all()
    out_nopoison = Executor(g, bad, poison=False).run([feeds["x"]])
    assert not np.isnan(out_nopoison[1]).any()  # without poison the bug would go unnoticed


def test_poison_fills_int_regions_with_a_sentinel():
    b = GB()
    x = b.input("x", (4,), dtype="int64")
    y = b.node("Add", [x, b.const(np.arange(4))], (4,), dtype="int64")
    z = b.node("Add", [y, y], (4,), dtype="int64")
    g = b.build([z])
    plan = plan_memory(g, in_place=False)
    ex = Executor(g, plan, poison=True)
    ex.run([np.arange(4)])
    assert (ex.arrays[y] == np.iinfo(np.int64).max).all()


@pytest.mark.parametrize("seed", range(12))
def test_random_graphs_plan_and_run(seed):
    rng = np.random.default_rng(seed)
    b = GB(seed)
    x = b.input("x", (1, 2, 3, 3))
    vals = [x]
    for _ in range(int(rng.integers(8, 25))):
        choice = rng.integers(0, 5)
        src = vals[int(rng.integers(max(0, len(vals) - 5), len(vals)))]
        if choice <= 1:
            v = b.act(UNARY[int(rng.integers(0, 3))], src)
        elif choice == 2:
            other = vals[int(rng.integers(0, len(vals)))]
            v = b.add(src, other) if b.shape(other) == b.shape(src) else b.act("Relu", src)
        elif choice == 3:
            same = [v for v in vals if b.shape(v)[2:] == b.shape(src)[2:] and v != src and v != x]
            v = b.concat([src, same[-1]]) if same and src != x else b.act("Tanh", src)
        else:
            v = b.node("Transpose", [src], b.shape(src), perm=(0, 1, 2, 3))
        vals.append(v)
    outs = [vals[-1]] + ([vals[len(vals) // 2]] if seed % 2 else [])
    g = concat_in_place(b.build(outs)).graph
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.arena_bytes <= 1.05 * plan.peak_live_bytes + 64 * 4
    feeds = feeds_for(g)
    _, got = run_executor(g, feeds)
    for w, o in zip(evaluate(g, feeds), got):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_arena_close_to_peak_on_branchy_graph():
    b = GB()
    v = b.input("x", (1, 8, 16, 16))
    for k in range(10):
        branches = [b.act(op, b.node("Transpose", [v], b.shape(v), perm=(0, 1, 2, 3))) for op in UNARY[: 1 + k % 3]]
        v = branches[0] if len(branches) == 1 else b.concat(branches)
        v = b.node("Transpose", [v], b.shape(v), perm=(0, 1, 2, 3))
    g = b.build([v])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.arena_bytes <= 1.05 * plan.peak_live_bytes


def test_no_in_place_over_a_second_output_still_read_later():
    b = GB()
    x = b.input("x", (1, 4, 2))
    s0, s1 = b.node("Split", [x], [(1, 2, 2), (1, 2, 2)], n_out=2, axis=1, sizes=(2, 2))
    v = b.node("Reshape", [s1], (1, 4), shape=(1, 4))
    r = b.act("Relu", v)  # s1 is read again below: r must not overwrite it
    t = b.act("Tanh", s1)
    g = b.build([s0, r, t])
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    assert plan.places[r].kind == "buffer"


def test_graph_input_as_concat_member_is_fed_into_the_slice():
    b = GB()
    x = b.input("x", (1, 2, 3, 3))
    y = b.act("Sigmoid", b.concat([x, b.act("Relu", x)], name="cat"))
    g = concat_in_place(b.build([y])).graph
    assert g.node("cat").attrs["in_place"]
    feeds = feeds_for(g)
    ex, (out,) = run_executor(g, feeds)
    assert np.shares_memory(ex.input_arrays[0], ex.arrays[g.node("cat").outputs[0]])
    np.testing.assert_allclose(out, evaluate(g, feeds)[0], rtol=1e-6)


@pytest.mark.parametrize("seed", range(6))
def test_sweep_placement_is_valid_on_random_graphs(seed, monkeypatch):
    """The one-sweep placement (used when too many lifetimes overlap) keeps every invariant."""
    import cnnrt.runtime.plan as plan_mod

    monkeypatch.setattr(plan_mod, "MAX_OVERLAP_PAIRS", -(10**9))  # always sweep
    rng = np.random.default_rng(100 + seed)
    b = GB(seed)
    vals = [b.input("x", (1, 2, 3, 3))]
    for _ in range(int(rng.integers(10, 30))):
        src = vals[int(rng.integers(0, len(vals)))]
        v = b.node("Transpose", [src], b.shape(src), perm=(0, 1, 2, 3)) if rng.random() < 0.5 else b.act("Tanh", src)
        vals.append(v)
    outs = [vals[i] for i in sorted(set(rng.integers(1, len(vals), 4).tolist()))]
    g = b.build(outs)
    plan = plan_memory(g)
    check_plan_invariants(g, plan)
    feeds = feeds_for(g)
    _, got = run_executor(g, feeds)
    for w, o in zip(evaluate(g, feeds), got):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)

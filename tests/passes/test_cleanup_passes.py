"""fold_constants, eliminate_dead_nodes, remove_identity: Before/After structure and the guards."""

from __future__ import annotations

import numpy as np
from pass_helpers import GB, ops, run_pass

from cnnrt.passes.eliminate_dead_nodes import eliminate_dead_nodes
from cnnrt.passes.fold_constants import fold_constants
from cnnrt.passes.remove_identity import remove_identity

# ---------------------------------------------------------------------------- fold_constants


def test_all_constant_chain_folds_and_keeps_runtime_nodes():
    b = GB()
    x = b.input("x", (2, 3))
    k = b.node("Add", [b.rand(2, 3), b.rand(1, 3)], (2, 3), name="kadd")
    k2 = b.node("Mul", [k, b.rand(2, 3)], (2, 3), name="kmul")
    y = b.node("Add", [x, k2], (2, 3), name="runtime")
    res = run_pass(fold_constants, b.build([y]))
    assert ops(res.graph) == ["Add"] and res.graph.nodes[0].name == "runtime"
    assert k2 in res.graph.constants
    assert [n for _, n in res.fired] == ["kadd", "kmul"]


def test_shape_arithmetic_folds_from_known_shapes():
    b = GB()
    x = b.input("x", (2, 3, 4, 5))
    r = b.act("Relu", x)
    s = b.node("Shape", [r], (4,), dtype="int64", name="shape")
    idx = b.const(np.array([0, 1], dtype=np.int64))
    g2 = b.node("Gather", [s, idx], (2,), dtype="int64", axis=0, name="gather")
    res = run_pass(fold_constants, b.build([g2]))
    assert ops(res.graph) == ["Relu"]
    assert res.graph.constants[g2].tolist() == [2, 3]
    assert ("Shape -> constant", "shape") in res.fired


def test_graph_output_folded_keeps_its_name():
    b = GB()
    y = b.node("Add", [b.rand(3), b.rand(3)], (3,))
    b.input("x", (1,))
    res = run_pass(fold_constants, b.build([y]))
    assert res.graph.nodes == [] and y in res.graph.constants and res.graph.outputs == [y]


def test_heavy_all_constant_op_is_declined_not_evaluated():
    b = GB()
    c = b.conv(b.rand(1, 2, 4, 4), 2, pad=0, bias=False, name="conv")
    b.input("x", (1,))
    res = run_pass(fold_constants, b.build([c]))
    assert ops(res.graph) == ["Conv"]
    assert res.declined == [
        ("all-constant node -> constant", "conv", "no numpy evaluator for Conv (passes never call kernels)")
    ]


# ---------------------------------------------------------------------------- dead nodes


def test_dead_nodes_and_constants_removed_inputs_kept():
    b = GB()
    x = b.input("x", (1, 3))
    unused_in = b.input("unused", (1, 3))
    live = b.act("Relu", x, name="live")
    dead = b.node("Add", [b.act("Tanh", x, name="dead1"), b.rand(1, 3)], (1, 3), name="dead2")
    g = b.build([live])
    res = run_pass(eliminate_dead_nodes, g)
    assert ops(res.graph) == ["Relu"]
    assert res.graph.constants == {} and res.graph.inputs == [x, unused_in]
    assert dead not in res.graph.values
    assert not eliminate_dead_nodes(res.graph).changed


def test_multi_output_node_kept_when_one_output_used():
    b = GB()
    x = b.input("x", (1, 2, 4, 4))
    y, idx = b.node(
        "MaxPool",
        [x],
        [(1, 2, 2, 2), (1, 2, 2, 2)],
        n_out=2,
        kernel=(2, 2),
        strides=(2, 2),
        pads=(0, 0, 0, 0),
        dilations=(1, 1),
    )
    res = eliminate_dead_nodes(b.build([y]))
    assert ops(res.graph) == ["MaxPool"]


# ---------------------------------------------------------------------------- identity


def test_identity_and_dropout_removed_readers_rewired():
    b = GB()
    x = b.input("x", (1, 4))
    i = b.act("Identity", b.act("Relu", x, name="relu"))
    d = b.node("Dropout", [i], (1, 4))
    y = b.act("Tanh", d, name="tanh")
    res = run_pass(remove_identity, b.build([y]))
    assert ops(res.graph) == ["Relu", "Tanh"]
    relu = res.graph.node("relu")
    assert res.graph.node("tanh").inputs == relu.outputs
    assert i not in res.graph.values and d not in res.graph.values


def test_identity_to_graph_output_renames_producer():
    b = GB()
    x = b.input("x", (1, 4))
    r = b.act("Relu", x, name="relu")
    t = b.act("Tanh", r, name="tanh")
    y = b.act("Identity", r, name="id")
    res = run_pass(remove_identity, b.build([y, t]))
    assert ops(res.graph) == ["Relu", "Tanh"]
    assert res.graph.node("relu").outputs == (y,) and res.graph.node("tanh").inputs == (y,)
    assert res.graph.outputs == [y, t] and r not in res.graph.values


def test_guard_identity_between_graph_input_and_output():
    b = GB()
    x = b.input("x", (1, 4))
    y = b.act("Identity", x)
    res = run_pass(remove_identity, b.build([y]))
    assert ops(res.graph) == ["Identity"]
    assert "graph input" in res.declined[0][2]


def test_guard_identity_between_two_graph_outputs():
    b = GB()
    x = b.input("x", (1, 4))
    r = b.act("Relu", x)
    y = b.act("Identity", r)
    res = run_pass(remove_identity, b.build([y, r]))
    assert ops(res.graph) == ["Relu", "Identity"]
    assert "both graph outputs" in res.declined[0][2]


def test_guard_dropout_mask_used():
    b = GB()
    x = b.input("x", (1, 4))
    y, mask = b.node("Dropout", [x], [(1, 4), (1, 4)], n_out=2)
    mask_f = b.node("Cast", [mask], (1, 4), to="float32")
    g = b.build([y, mask_f])
    res = remove_identity(g)
    res.graph.verify()
    assert ops(res.graph) == ["Dropout", "Cast"] and "mask" in res.declined[0][2]


def test_guard_folding_that_would_blow_up_constants(monkeypatch):
    from cnnrt.passes import fold_constants as fc

    monkeypatch.setattr(fc, "MAX_FOLDED_BYTES", 100)
    b = GB()
    x = b.input("x", (64,))
    k = b.node("Add", [b.rand(64), b.rand(1)], (64,), name="big")
    y = b.node("Add", [x, k], (64,))
    res = run_pass(fc.fold_constants, b.build([y]))
    assert ops(res.graph) == ["Add", "Add"] and "bytes of new constants" in res.declined[0][2]

"""Graph.verify must reject every malformed graph it claims to check."""

from __future__ import annotations

import numpy as np
import pytest

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.errors import GraphError


def _graph(nodes, constants=None, outputs=("y",)):
    values = {n: Value(n, (1, 4)) for n in ("x", "a", "b", "y")}
    constants = constants or {}
    for k, v in constants.items():
        values[k] = Value(k, v.shape, str(v.dtype))
    return Graph(nodes, values, constants, ["x"], list(outputs))


def test_valid_graph_verifies_and_maps():
    g = _graph([Node("Relu", ("x",), ("a",), name="r1"), Node("Relu", ("a",), ("y",), name="r2")])
    g.verify()
    assert g.producers()["a"].name == "r1"
    assert [n.name for n in g.consumers()["a"]] == ["r2"]
    assert list(g.to_networkx().edges) == [("r1", "r2")]


@pytest.mark.parametrize(
    "nodes, match",
    [
        pytest.param([Node("Relu", ("nope",), ("y",), name="r")], "'nope'", id="undefined-input"),
        pytest.param(
            [Node("Relu", ("a",), ("y",), name="r2"), Node("Relu", ("x",), ("a",), name="r1")],
            "cycle",
            id="out-of-order-nodes",
        ),
        pytest.param(
            [Node("Relu", ("x",), ("y",), name="r1"), Node("Relu", ("x",), ("y",), name="r2")],
            "defined twice",
            id="double-definition",
        ),
        pytest.param(
            [Node("Relu", ("x",), ("a",), name="r"), Node("Relu", ("a",), ("y",), name="r")],
            "two nodes",
            id="duplicate-node-names",
        ),
    ],
)
def test_malformed_node_lists_are_rejected(nodes, match):
    with pytest.raises(GraphError, match=match):
        _graph(nodes).verify()


def test_constant_shape_must_match_value():
    w = np.zeros((2, 2), np.float32)
    g = _graph([Node("Add", ("x", "w"), ("y",), name="add")], constants={"w": w})
    g.values["w"] = Value("w", (3,), "float32")
    with pytest.raises(GraphError, match="constant 'w'"):
        g.verify()


def test_undefined_graph_output_is_rejected():
    g = _graph([Node("Relu", ("x",), ("a",), name="r")], outputs=("y",))
    with pytest.raises(GraphError, match="never defined"):
        g.verify()

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


def test_undefined_input_is_rejected():
    g = _graph([Node("Relu", ("nope",), ("y",), name="r")])
    with pytest.raises(GraphError, match="'nope'"):
        g.verify()


def test_out_of_order_nodes_are_rejected_as_cycle_or_undefined():
    g = _graph([Node("Relu", ("a",), ("y",), name="r2"), Node("Relu", ("x",), ("a",), name="r1")])
    with pytest.raises(GraphError, match="cycle"):
        g.verify()


def test_double_definition_is_rejected():
    g = _graph([Node("Relu", ("x",), ("y",), name="r1"), Node("Relu", ("x",), ("y",), name="r2")])
    with pytest.raises(GraphError, match="defined twice"):
        g.verify()


def test_duplicate_node_names_are_rejected():
    g = _graph([Node("Relu", ("x",), ("a",), name="r"), Node("Relu", ("a",), ("y",), name="r")])
    with pytest.raises(GraphError, match="two nodes"):
        g.verify()


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

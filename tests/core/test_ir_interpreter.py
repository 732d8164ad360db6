"""The IR interpreter (tests/passes/ir_reference.py) against onnxruntime, op by op.

Pass tests trust the interpreter to say what a graph means; here each ONNX op is imported to
its IR form and the interpreter's float64 result is compared with onnxruntime's.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model, ort_run
from ir_reference import evaluate
from onnx import helper

from cnnrt.frontends.onnx import OnnxModel

X = (2, 4, 5, 6)
# name -> (ONNX node, its initializers)
CASES = {
    "LRN": (helper.make_node("LRN", ["x"], ["y"], size=3, alpha=1e-3, beta=0.6, bias=2.0), {}),
    "GlobalMaxPool": (helper.make_node("GlobalMaxPool", ["x"], ["y"]), {}),
    "MaxPool": (helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 2], strides=[2, 1], ceil_mode=1), {}),
    "AveragePool": (
        helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1),
        {},
    ),
    "PRelu": (helper.make_node("PRelu", ["x", "s"], ["y"]), {"s": np.linspace(-1, 1, 4).reshape(4, 1, 1)}),
    "Max": (helper.make_node("Max", ["x", "s"], ["y"]), {"s": np.linspace(-1, 1, 6)}),
    "Min": (helper.make_node("Min", ["x", "s"], ["y"]), {"s": np.linspace(-1, 1, 6)}),
    "Softmax": (helper.make_node("Softmax", ["x"], ["y"], axis=1), {}),
    "LogSoftmax": (helper.make_node("LogSoftmax", ["x"], ["y"], axis=-1), {}),
    "Slice": (
        helper.make_node("Slice", ["x", "st", "en", "ax", "sp"], ["y"]),
        {"st": np.array([4, 1]), "en": np.array([-100, 5]), "ax": np.array([3, 1]), "sp": np.array([-2, 2])},
    ),
    "Resize": (
        helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="linear", coordinate_transformation_mode="half_pixel"),
        {"sc": np.array([1, 1, 1.5, 0.5])},
    ),
    "ResizeNearest": (
        helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest", coordinate_transformation_mode="asymmetric"),
        {"sc": np.array([1, 1, 2.0, 1.5])},
    ),
    "ReduceMean": (helper.make_node("ReduceMean", ["x"], ["y"], axes=[1, 3], keepdims=0), {}),
    "Cast": (helper.make_node("Cast", ["x"], ["y"], to=7), {}),  # to int64
    "Gemm": (helper.make_node("Gemm", ["f", "w"], ["y"], alpha=0.5, beta=2.0, transB=1), {}),
}


def _model(node, inits):
    inits = {k: np.asarray(v, np.float32 if np.asarray(v).dtype.kind == "f" else np.int64) for k, v in inits.items()}
    nodes = [node]
    if "f" in node.input:
        nodes = [helper.make_node("Flatten", ["x"], ["f"]), node]
        inits = {"w": np.linspace(-1, 1, 7 * 120).reshape(7, 120).astype(np.float32), "c": np.ones(7, np.float32)}
        nodes[1].input.append("c")
    out_dtype = np.int64 if node.op_type == "Cast" else np.float32
    return make_model(nodes, [("x", list(X), np.float32)], [("y", None, out_dtype)], inits, opset=13)


@pytest.mark.parametrize("name", sorted(CASES))
def test_interpreter_agrees_with_onnxruntime(name):
    model = _model(*CASES[name])
    x = np.random.default_rng(0).uniform(-3, 3, X).astype(np.float32)
    [want] = ort_run(model, {"x": x})
    graph = OnnxModel(model).to_graph({"x": X})
    [got] = evaluate(graph, {"x": x})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)

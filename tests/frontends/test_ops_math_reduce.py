"""Converters of the math, comparison, reduction and LayerNormalization ops (frontends/ops_reduce.py,
frontends/ops_elementwise.py) on the forms the ONNX backend node tests leave out, against
onnxruntime; and the exported LayerNorm / GELU decompositions fused at opt_level 2."""

from __future__ import annotations

import math

import numpy as np
import pytest
from frontend_helpers import check, make_model
from helpers import ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import ShapeError

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4, 6)).astype(np.float32)


def test_layer_norm_with_broadcast_scale_and_statistics():
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y", "mean", "inv"], axis=-2, epsilon=1e-3)
    scale, bias = rng.standard_normal((1, 6)).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    model = make_model([node], [("x", "float32", X.shape)], ["y", "mean", "inv"], [("s", scale), ("b", bias)], 17)
    check(model, {"x": X}, rtol=1e-5, atol=1e-5)


def test_pow_with_an_integer_exponent_is_cast():
    node = helper.make_node("Pow", ["x", "e"], ["y"])
    model = make_model([node], [("x", "float32", X.shape)], ["y"], [("e", np.array([2, 3, 1, 0, 2, 3], np.int64))], 15)
    check(model, {"x": X}, rtol=1e-6)


@pytest.mark.parametrize("opset, axes_as_input", [(11, False), (13, True)])
def test_reduce_sum_axes_attribute_then_input(opset, axes_as_input):
    if axes_as_input:
        node = helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0)
        inits = [("axes", np.array([-1, 1], np.int64))]
    else:
        node = helper.make_node("ReduceSum", ["x"], ["y"], axes=[-1, 1], keepdims=0)
        inits = []
    check(make_model([node], [("x", "float32", X.shape)], ["y"], inits, opset), {"x": X}, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_opset_20(approximate):
    node = helper.make_node("Gelu", ["x"], ["y"], approximate=approximate)
    check(make_model([node], [("x", "float32", X.shape)], ["y"], [], 20), {"x": X}, rtol=1e-5, atol=1e-6)


def test_shapes_that_do_not_broadcast_are_named():
    node = helper.make_node("Expand", ["x", "shape"], ["y"])
    inits = [("shape", np.array([5, 6], np.int64))]
    with pytest.raises(ShapeError, match="do not broadcast"):
        cnnrt.InferenceSession(make_model([node], [("x", "float32", X.shape)], ["y"], inits))
    node = helper.make_node("LayerNormalization", ["x", "s"], ["y"])
    inits = [("s", np.ones(4, np.float32))]
    with pytest.raises(ShapeError, match="Scale \\[4\\] does not broadcast to the normalised shape \\[6\\]"):
        cnnrt.InferenceSession(make_model([node], [("x", "float32", X.shape)], ["y"], inits, 17))


def _decomposed_block():
    """LayerNorm over the last axis as exported before opset 17, then the erf GELU formula."""
    c = {
        "axes": np.array([-1], np.int64),
        "two": np.array(2.0, np.float32),
        "eps": np.array(1e-6, np.float32),
        "gamma": rng.standard_normal(6).astype(np.float32),
        "beta": rng.standard_normal(6).astype(np.float32),
        "sqrt2": np.array(math.sqrt(2), np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
    }
    n = helper.make_node
    nodes = [
        n("ReduceMean", ["x"], ["mean"], axes=[-1]),
        n("Sub", ["x", "mean"], ["d"]),
        n("Pow", ["d", "two"], ["sq"]),
        n("ReduceMean", ["sq"], ["var"], axes=[-1]),
        n("Add", ["var", "eps"], ["ve"]),
        n("Sqrt", ["ve"], ["std"]),
        n("Div", ["d", "std"], ["normed"]),
        n("Mul", ["normed", "gamma"], ["scaled"]),
        n("Add", ["scaled", "beta"], ["ln"]),
        n("Div", ["ln", "sqrt2"], ["t"]),
        n("Erf", ["t"], ["e"]),
        n("Add", ["e", "one"], ["a"]),
        n("Mul", ["ln", "a"], ["m"]),
        n("Mul", ["m", "half"], ["y"]),
    ]
    del c["axes"]
    return make_model(nodes, [("x", "float32", X.shape)], ["y"], list(c.items()), 13)


def test_decompositions_fuse_and_match_onnxruntime():
    model = _decomposed_block()
    sess = cnnrt.InferenceSession(model)
    assert [n.op for n in sess.graph.nodes] == ["LayerNormalization", "Gelu"]
    [got] = sess.run(None, {"x": X})
    [ref] = ort_run(model, {"x": X})
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)

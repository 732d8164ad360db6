"""1-D Conv, ConvTranspose, MaxPool and AveragePool (frontends/ops_nn.py: imported as 2-D with
height 1) against onnxruntime, and the graph they become: views around one 2-D node."""

from __future__ import annotations

import numpy as np
import pytest
from frontend_helpers import check, make_model
from onnx import helper

import cnnrt
from cnnrt.errors import ShapeError

rng = np.random.default_rng(7)
X = rng.standard_normal((2, 4, 11)).astype(np.float32)


def _model(op, attrs, weight=None, bias=None, n_out=1):
    names = ["x"] + (["w"] if weight is not None else []) + (["b"] if bias is not None else [])
    outs = ["y", "i"][:n_out]
    inits = [(k, v) for k, v in (("w", weight), ("b", bias)) if v is not None]
    node = helper.make_node(op, names, outs, name="n", **attrs)
    return make_model([node], [("x", np.float32, X.shape)], outs, inits, opset=17)


CONV_CASES = [
    {},
    {"strides": [2], "pads": [1, 2]},
    {"dilations": [2], "pads": [2, 0]},
    {"auto_pad": "SAME_UPPER"},
    {"auto_pad": "SAME_LOWER", "strides": [3]},
    {"group": 2, "pads": [1, 1]},
]


@pytest.mark.parametrize("attrs", CONV_CASES)
@pytest.mark.parametrize("bias", [False, True])
def test_conv_1d(attrs, bias):
    group = attrs.get("group", 1)
    w = rng.standard_normal((6, 4 // group, 3)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32) if bias else None
    check(_model("Conv", attrs, w, b), {"x": X}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"strides": [2], "pads": [1, 0]},
        {"strides": [2], "output_padding": [1]},
        {"output_shape": [24], "strides": [2]},
    ],
)
def test_conv_transpose_1d(attrs):
    w = rng.standard_normal((4, 3, 3)).astype(np.float32)
    check(_model("ConvTranspose", attrs, w, rng.standard_normal(3).astype(np.float32)), {"x": X}, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3]},
        {"kernel_shape": [2], "strides": [2], "ceil_mode": 1},
        {"kernel_shape": [3], "pads": [1, 1], "strides": [2]},
        {"kernel_shape": [3], "auto_pad": "SAME_UPPER"},
    ],
)
def test_pool_1d(op, attrs):
    check(_model(op, attrs), {"x": X})


def test_max_pool_1d_indices():
    check(_model("MaxPool", {"kernel_shape": [3], "strides": [2]}, n_out=2), {"x": X})


def test_graph_is_views_around_one_2d_conv():
    w = rng.standard_normal((6, 4, 3)).astype(np.float32)
    sess = cnnrt.InferenceSession(_model("Conv", {"pads": [1, 1]}, w), opt_level=0)
    ops = [n.op for n in sess.graph.nodes]
    assert ops == ["Reshape", "Conv", "Reshape"], ops  # the weight's reshape is folded at import
    conv = sess.graph.nodes[1]
    assert conv.attrs["kernel"] == (1, 3) and conv.attrs["pads"] == (0, 1, 0, 1)
    assert sess.graph.values[conv.outputs[0]].shape == (2, 6, 1, 11)


def test_bad_1d_attributes_name_the_node():
    w = rng.standard_normal((6, 4, 3)).astype(np.float32)
    with pytest.raises(
        ShapeError, match=r"'n' \(Conv.*kernel_shape \[1, 5\] does not match .* imported as its 2-D form with height 1"
    ):
        cnnrt.InferenceSession(_model("Conv", {"kernel_shape": [5]}, w))


@pytest.mark.parametrize(
    "attrs, match",
    [
        ({"strides": [1, 1]}, r"strides \[1, 1\] must have 1 entries"),
        ({"pads": [1]}, r"pads \[1\] must have 2 entries"),
    ],
)
def test_attributes_of_another_rank_are_refused(attrs, match):
    w = rng.standard_normal((6, 4, 3)).astype(np.float32)
    with pytest.raises(ShapeError, match=rf"'n' \(Conv.*{match} for a 1-D input"):
        cnnrt.InferenceSession(_model("Conv", attrs, w))

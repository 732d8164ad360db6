"""Attribute combinations of the nn converters (frontends/ops_nn.py) that onnxruntime refuses
must be refused by cnnrt too, naming the attributes; the ones onnxruntime accepts must give
its answer. One-node models, checked against onnxruntime itself."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import make_model, ort_run
from onnx import AttributeProto, helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail as OrtFail

import cnnrt
from cnnrt.errors import ShapeError

X = np.arange(25, dtype=np.float32).reshape(1, 1, 5, 5)
W = np.linspace(-1, 1, 9, dtype=np.float32).reshape(1, 1, 3, 3)


def _model(op: str, **attrs):
    node = helper.make_node(op, ["x", "w"] if op.startswith("Conv") else ["x"], ["y"], name="n")
    for k, v in attrs.items():  # make_node cannot infer the type of an empty list
        node.attribute.append(helper.make_attribute(k, v, attr_type=AttributeProto.INTS if v == [] else None))
    inits = {"w": W} if op.startswith("Conv") else {}
    return make_model([node], [("x", X.shape, np.float32)], [("y", None, np.float32)], inits)


def _both_refuse(model, match: str):
    with pytest.raises(OrtFail):  # onnxruntime's own refusal, which cnnrt matches
        ort_run(model, {"x": X})
    with pytest.raises(ShapeError, match=match):
        cnnrt.InferenceSession(model, opt_level=0)


def _both_agree(model):
    [want] = ort_run(model, {"x": X})
    [got] = cnnrt.InferenceSession(model, opt_level=0).run(None, {"x": X})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
@pytest.mark.parametrize("pads", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_conv_refuses_pads_beside_auto_pad(op, auto_pad, pads):
    _both_refuse(_model(op, auto_pad=auto_pad, pads=pads), rf"'n' \({op}.*auto_pad='{auto_pad}' and pads=")


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
@pytest.mark.parametrize("attrs", [{"auto_pad": "NOTSET", "pads": [1, 0, 1, 2]}, {"auto_pad": "SAME_LOWER"}])
def test_conv_takes_pads_or_auto_pad_alone(op, attrs):
    _both_agree(_model(op, **attrs))


@pytest.mark.parametrize("op", ["MaxPool", "AveragePool"])
@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "VALID"])
def test_pool_keeps_auto_pad_and_ignores_pads_like_onnxruntime(op, auto_pad):
    _both_agree(_model(op, kernel_shape=[3, 3], auto_pad=auto_pad, pads=[1, 0, 0, 1]))


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
@pytest.mark.parametrize("kernel_shape", [[], [3], [2, 2]], ids=["empty", "rank1", "wrong"])
def test_conv_refuses_kernel_shape_that_is_not_the_weights(op, kernel_shape):
    _both_refuse(
        _model(op, kernel_shape=kernel_shape),
        re.escape(f"kernel_shape {kernel_shape} does not match weight shape [1, 1, 3, 3]"),
    )

"""Elementwise converters (frontends/ops_elementwise.py) end to end: one-node ONNX models run
by cnnrt (opt_level=0, so each IR node runs its own kernel) against onnxruntime, across the
opset versions whose forms differ. Opset-6 forms (which onnxruntime no longer loads) are
checked against numpy."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from frontend_helpers import check, cnnrt_run, make_model
from helpers import ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import ShapeError, UnsupportedOpError


def one_node(op, x, opset=13, attrs=None, extra=(), n_out=1):
    """op(x, *extra) with x fed at run time and extra inputs as initializers ('' = omitted)."""
    names = ["x"] + [("" if v is None else f"p{i}") for i, v in enumerate(extra)]
    inits = [(f"p{i}", v) for i, v in enumerate(extra) if v is not None]
    outs = [f"y{i}" for i in range(n_out)]
    node = helper.make_node(op, names, outs, **(attrs or {}))
    return make_model([node], [("x", x.dtype, x.shape)], outs, inits, opset)


@pytest.fixture
def old_opsets(monkeypatch):
    """Let the importer take opset-6 models (the legacy forms still exist in old exports)."""
    import cnnrt.frontends.schema_checks as checks

    monkeypatch.setattr(checks, "MIN_OPSET", 1)


rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4, 5)).astype(np.float32) * 3


# ---------------------------------------------------------------------------- activations


@pytest.mark.parametrize("opset", [7, 13, 14])
@pytest.mark.parametrize(
    "op,attrs",
    [
        ("Relu", {}),
        ("LeakyRelu", {}),
        ("LeakyRelu", {"alpha": 0.3}),
        ("Elu", {"alpha": 0.7}),
        ("Sigmoid", {}),
        ("Tanh", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("HardSigmoid", {}),
    ],
)
def test_activation(op, attrs, opset):
    check(one_node(op, X, opset, attrs), {"x": X}, rtol=1e-5)


def test_hard_swish():
    check(one_node("HardSwish", X, 14), {"x": X}, rtol=1e-5)


def test_relu_integer_tensor():
    x = rng.integers(-5, 5, (3, 4)).astype(np.int32)
    check(one_node("Relu", x, 14), {"x": x})


def test_sigmoid_rejects_integers():
    x = np.zeros((2,), np.int64)
    with pytest.raises(UnsupportedOpError, match=r"Sigmoid.*int64"):
        cnnrt_run(one_node("Sigmoid", x, 13), {"x": x})


@pytest.mark.parametrize("attrs", [{"min": -1.0, "max": 2.0}, {"min": 0.5}, {"max": -0.5}, {}])
def test_clip_attributes_opset_6_form(attrs):
    # Clip-6 (used by opsets 6..10): bounds are attributes.
    check(one_node("Clip", X, 10, attrs), {"x": X})


@pytest.mark.parametrize(
    "lo,hi",
    [(-1.0, 2.0), (None, 0.5), (-0.5, None), (None, None), (2.0, -1.0)],  # last: min > max -> all max
)
def test_clip_inputs_opset_12(lo, hi):
    extra = [None if lo is None else np.array(lo, np.float32), None if hi is None else np.array(hi, np.float32)]
    check(one_node("Clip", X, 12, extra=extra), {"x": X})


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64])
def test_clip_integer_defaults_to_dtype_limits(dtype):
    x = rng.integers(-100, 100, (4, 6)).astype(dtype)
    check(one_node("Clip", x, 12, extra=[np.array(-7, dtype), None]), {"x": x})
    check(one_node("Clip", x, 12, extra=[None, np.array(9, dtype)]), {"x": x})


def test_clip_runtime_bound_is_rejected_naming_the_node():
    node = helper.make_node("Clip", ["x", "lo"], ["y"], name="myclip")
    m = make_model([node], [("x", np.float32, (3,)), ("lo", np.float32, ())], ["y"], opset=13)
    with pytest.raises(UnsupportedOpError, match=r"myclip.*min.*load time"):
        cnnrt.InferenceSession(m, opt_level=0)


@pytest.mark.parametrize(
    "slope_shape",
    [(3, 1, 1), (1,), (5,), (1, 3, 4, 5), (3, 4, 1), (3, 1, 5)],  # last: non-adjacent axes
)
def test_prelu(slope_shape):
    slope = rng.uniform(0.05, 0.5, slope_shape).astype(np.float32)
    check(one_node("PRelu", X, 13, extra=[slope]), {"x": X})


def test_prelu_legacy_channel_slope(old_opsets):
    # Before opset 7 a 1-D slope of length C applies per channel (axis 1).
    slope = np.array([0.1, 0.2, 0.3], np.float32)
    (y,) = cnnrt_run(one_node("PRelu", X, 6, extra=[slope]), {"x": X})
    np.testing.assert_allclose(y, np.where(X < 0, X * slope.reshape(3, 1, 1), X), rtol=1e-6)


# ---------------------------------------------------------------------------- Softmax


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("axis", [None, 0, 1, 2, -1, -3])
def test_softmax(op, opset, axis):
    attrs = {} if axis is None else {"axis": axis}
    check(one_node(op, X, opset, attrs), {"x": X}, rtol=1e-5, atol=1e-6)


def test_softmax_coerce_2d_differs_from_per_axis():
    # Same node at opset 11 and 13: "flatten to 2-D at axis 1" vs "along axis 1".
    y11 = check(one_node("Softmax", X, 11, {"axis": 1}), {"x": X}, rtol=1e-5)[0]
    y13 = check(one_node("Softmax", X, 13, {"axis": 1}), {"x": X}, rtol=1e-5)[0]
    np.testing.assert_allclose(y11.sum(axis=(1, 2, 3)), 1, rtol=1e-5)
    np.testing.assert_allclose(y13.sum(axis=1), 1, rtol=1e-5)


def test_softmax_large_numbers_are_stable():
    x = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]], np.float32)
    for op in ("Softmax", "LogSoftmax"):
        (y,) = check(one_node(op, x, 13), {"x": x}, rtol=1e-5)
        assert np.isfinite(y).all()


def test_softmax_axis_out_of_range():
    with pytest.raises(ShapeError, match="axis 4"):
        cnnrt_run(one_node("Softmax", X, 13, {"axis": 4}), {"x": X})


# ---------------------------------------------------------------------------- arithmetic


def binary_model(op, a, b, opset=13, attrs=None):
    node = helper.make_node(op, ["a", "b"], ["y"], **(attrs or {}))
    return make_model([node], [("a", a.dtype, a.shape), ("b", b.dtype, b.shape)], ["y"], opset=opset)


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("bshape", [(2, 3, 4, 5), (5,), (3, 1, 1), (1, 3, 4, 1), ()])
def test_binary_broadcasting(op, bshape):
    b = rng.uniform(0.5, 2.0, bshape).astype(np.float32)
    check(binary_model(op, X, b), {"a": X, "b": b}, rtol=1e-6)


def test_binary_broadcasts_both_ways():
    a, b = X[:, :1], rng.standard_normal((4, 1)).astype(np.float32)
    check(binary_model("Mul", a, b), {"a": a, "b": b})


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
def test_integer_div_truncates_toward_zero(dtype):
    a = np.array([7, -7, 7, -7, 0, 9, -9, 1], dtype)
    b = np.array([2, 2, -2, -2, 3, 4, 4, -3], dtype)
    (y,) = check(binary_model("Div", a, b), {"a": a, "b": b})
    np.testing.assert_array_equal(y, [3, -3, -3, 3, 0, 2, -2, 0])


@pytest.mark.parametrize("dtype", [np.float64, np.int64, np.int32, np.int8, np.uint8])
def test_binary_dtypes(dtype):
    a = rng.integers(1, 9, (3, 4)).astype(dtype)
    b = rng.integers(1, 9, (4,)).astype(dtype)
    for op in ("Add", "Mul"):
        check(binary_model(op, a, b, opset=14), {"a": a, "b": b})  # int8/uint8 Add: opset 14


def test_binary_dtype_mismatch_is_an_error():
    a, b = np.zeros(3, np.float32), np.zeros(3, np.int64)
    with pytest.raises(ShapeError, match=r"dtype"):
        cnnrt_run(binary_model("Add", a, b), {"a": a, "b": b})


def test_binary_shapes_that_do_not_broadcast():
    a, b = np.zeros((2, 3), np.float32), np.zeros((4,), np.float32)
    with pytest.raises(ShapeError, match=r"\[2, 3\] and \[4\]"):
        cnnrt_run(binary_model("Add", a, b), {"a": a, "b": b})


@pytest.mark.parametrize(
    "ashape,bshape,axis",
    [((2, 3, 4, 5), (3,), 1), ((2, 3, 4, 5), (3, 4), 1), ((2, 3, 4, 5), (4, 5), None), ((2, 3), (2, 1), 0)],
)
def test_legacy_broadcast_opset_6(old_opsets, ashape, bshape, axis):
    a = rng.standard_normal(ashape).astype(np.float32)
    b = rng.standard_normal(bshape).astype(np.float32)
    attrs = {"broadcast": 1} if axis is None else {"broadcast": 1, "axis": axis}
    (y,) = cnnrt_run(binary_model("Sub", a, b, opset=6, attrs=attrs), {"a": a, "b": b})
    start = len(ashape) - len(bshape) if axis is None else axis
    expected = a - b.reshape(bshape + (1,) * (len(ashape) - start - len(bshape)))
    np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_legacy_shapes_need_broadcast_flag(old_opsets):
    a, b = np.zeros((2, 3), np.float32), np.zeros((3,), np.float32)
    with pytest.raises(ShapeError, match="broadcast=0"):
        cnnrt_run(binary_model("Add", a, b, opset=6), {"a": a, "b": b})


@pytest.mark.parametrize("op", ["Sum", "Max", "Min"])
@pytest.mark.parametrize("shapes", [[(3, 4)], [(3, 4), (3, 4)], [(3, 4), (4,), (3, 1)], [(1,), (2, 3, 4)]])
def test_variadic(op, shapes):
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node(op, names, ["y"])
    m = make_model([node], [(n, np.float32, s) for n, s in zip(names, shapes)], ["y"])
    check(m, dict(zip(names, arrays)))


# ---------------------------------------------------------------------------- Cast, Identity, Dropout


@pytest.mark.parametrize(
    "src,to",
    [
        (np.float32, onnx.TensorProto.INT64),
        (np.float32, onnx.TensorProto.INT32),
        (np.float32, onnx.TensorProto.DOUBLE),
        (np.float32, onnx.TensorProto.FLOAT16),
        (np.float32, onnx.TensorProto.BOOL),
        (np.int64, onnx.TensorProto.FLOAT),
        (np.bool_, onnx.TensorProto.FLOAT),
        (np.uint8, onnx.TensorProto.INT8),
    ],
)
def test_cast(src, to):
    x = (rng.standard_normal((3, 5)) * 4).astype(src)
    check(one_node("Cast", x, 13, {"to": to}), {"x": x})


def test_cast_to_unsupported_type():
    with pytest.raises(UnsupportedOpError, match="BFLOAT16"):
        cnnrt_run(one_node("Cast", X, 13, {"to": onnx.TensorProto.BFLOAT16}), {"x": X})


def test_identity_of_input_and_of_constant():
    w = rng.standard_normal((2, 3)).astype(np.float32)
    nodes = [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Identity", ["w"], ["b"])]
    m = make_model(nodes, [("x", np.float32, (2, 3))], ["a", "b"], [("w", w)])
    x = rng.standard_normal((2, 3)).astype(np.float32)
    a, b = check(m, {"x": x})
    np.testing.assert_array_equal(a, x)
    np.testing.assert_array_equal(b, w)


@pytest.mark.parametrize("opset,with_mask", [(7, False), (7, True), (10, True), (12, False), (13, True)])
def test_dropout_is_identity_in_inference(opset, with_mask):
    extra = [np.array(0.3, np.float32), np.array(False)] if opset >= 12 else []
    attrs = {"ratio": 0.3} if opset < 12 else {}
    m = one_node("Dropout", X, opset, attrs, extra=extra, n_out=2 if with_mask else 1)
    outs, ref = cnnrt_run(m, {"x": X}), ort_run(m, {"x": X})
    np.testing.assert_array_equal(outs[0], X)
    np.testing.assert_array_equal(ref[0], X)
    if with_mask:
        # The mask keeps every element: all ones (the ONNX reference; onnxruntime writes
        # zeros before opset 12). Its type is the input's before opset 10, then bool.
        assert outs[1].dtype == (np.float32 if opset < 10 else np.bool_) == ref[1].dtype
        assert outs[1].shape == X.shape and (outs[1] == 1).all()


def test_dropout_training_mode_is_unsupported():
    m = one_node("Dropout", X, 13, extra=[np.array(0.5, np.float32), np.array(True)])
    with pytest.raises(UnsupportedOpError, match="training_mode"):
        cnnrt_run(m, {"x": X})

"""The public session API: onnxruntime-shaped, re-plans on new shapes, clear input errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from helpers import make_model, ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import CnnrtError, InputError, ModelLoadError, UnsupportedOpError


def _relu_add_model(ir_version=10, initializer_as_input=False):
    w = np.linspace(-1, 1, 4, dtype=np.float32).reshape(1, 4)
    nodes = [
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Add", ["r", "w"], ["y"], name="add"),
    ]
    inputs = [("x", ["batch", 4], np.float32)]
    if initializer_as_input:
        inputs.append(("w", [1, 4], np.float32))
    return make_model(
        nodes,
        inputs,
        [("y", ["batch", 4], np.float32)],
        {"w": w},
        opset=9 if ir_version == 3 else 17,
        ir_version=ir_version,
    )


def test_run_matches_onnxruntime_and_exposes_api(tmp_path):
    model = _relu_add_model()
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    for src in (model, model.SerializeToString(), str(path), path):
        sess = cnnrt.InferenceSession(src)
        [y] = sess.run(None, {"x": x})
        np.testing.assert_array_equal(y, ort_run(model, {"x": x})[0])
    arg = sess.get_inputs()[0]
    assert (arg.name, arg.shape, arg.type) == ("x", ["batch", 4], "tensor(float)")
    assert sess.get_outputs()[0].name == "y"
    assert [n.op for n in sess.graph.nodes][-1] == "Add"
    assert all(n.origin for n in sess.graph.nodes)


def test_new_batch_size_replans_and_old_one_still_works():
    sess = cnnrt.InferenceSession(_relu_add_model())
    for b in (1, 5, 2, 5, 1):
        x = np.full((b, 4), -2.0, np.float32)
        [y] = sess.run(None, {"x": x})
        assert y.shape == (b, 4)
        np.testing.assert_allclose(y, np.tile(np.linspace(-1, 1, 4, dtype=np.float32), (b, 1)))
        assert sess.graph.values["y"].shape == (b, 4)


def test_ir3_initializers_listed_as_inputs_are_constants_unless_fed():
    model = _relu_add_model(ir_version=3, initializer_as_input=True)
    sess = cnnrt.InferenceSession(model)
    assert [a.name for a in sess.get_inputs()] == ["x"]
    x = np.ones((2, 4), np.float32)
    [y] = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, 1 + np.linspace(-1, 1, 4, dtype=np.float32)[None].repeat(2, 0))
    w2 = np.full((1, 4), 10.0, np.float32)
    [y2] = sess.run(None, {"x": x, "w": w2})
    np.testing.assert_allclose(y2, np.full((2, 4), 11.0))
    [y3] = sess.run(None, {"x": x})  # back to the constant
    np.testing.assert_array_equal(y3, y)


@pytest.mark.parametrize(
    "feeds, match",
    [
        ({}, "missing input"),
        ({"x": np.ones((1, 4), np.float32), "zzz": np.ones(1)}, "unknown input"),
        ({"x": np.ones((1, 4), np.float64)}, "dtype float32"),
        ({"x": np.ones((1, 4, 1), np.float32)}, "rank 2"),
        ({"x": np.ones((1, 5), np.float32)}, "dimension 1 must be 4"),
        ({"x": [[1.0, 2.0, 3.0, 4.0]]}, "numpy.ndarray"),
        ({"x": np.ones((0, 4), np.float32)}, "empty dimension"),
    ],
)
def test_bad_feeds_raise_input_error_and_session_stays_usable(feeds, match):
    sess = cnnrt.InferenceSession(_relu_add_model())
    with pytest.raises(InputError, match=match):
        sess.run(None, feeds)
    [y] = sess.run(None, {"x": np.zeros((1, 4), np.float32)})
    assert y.shape == (1, 4)


def test_unknown_output_name_and_output_selection():
    sess = cnnrt.InferenceSession(_relu_add_model())
    x = np.zeros((1, 4), np.float32)
    assert sess.run(["y"], {"x": x})[0].shape == (1, 4)
    with pytest.raises(InputError, match="unknown output"):
        sess.run(["nope"], {"x": x})


def test_non_contiguous_and_read_only_inputs():
    sess = cnnrt.InferenceSession(_relu_add_model())
    base = np.arange(32, dtype=np.float32).reshape(4, 8)
    x = base[:, ::2]
    x.flags.writeable = False
    [y] = sess.run(None, {"x": x})
    np.testing.assert_allclose(y, np.maximum(x, 0) + np.linspace(-1, 1, 4, dtype=np.float32))


def test_unsupported_ops_are_all_listed_at_once():
    nodes = [
        helper.make_node("Relu", ["x"], ["a"], name="ok"),
        helper.make_node("Einsum", ["a"], ["b"], name="bad1", equation="ij->ji"),
        helper.make_node("NonZero", ["b"], ["y"], name="bad2"),
    ]
    model = make_model(nodes, [("x", [2, 2], np.float32)], [("y", None, np.int64)])
    with pytest.raises(UnsupportedOpError) as e:
        cnnrt.InferenceSession(model)
    msg = str(e.value)
    assert "bad1 (Einsum" in msg and "bad2 (NonZero" in msg and "opset 17" in msg and "Supported ops:" in msg


@pytest.mark.parametrize("data", [b"", b"\x00\x01garbage\xff" * 3])
def test_garbage_bytes_raise_model_load_error(data):
    with pytest.raises(ModelLoadError):
        cnnrt.InferenceSession(data)


def test_missing_file_and_bad_type():
    with pytest.raises(ModelLoadError, match="cannot read"):
        cnnrt.InferenceSession("/nonexistent/model.onnx")
    with pytest.raises(ModelLoadError, match="path, bytes or onnx.ModelProto"):
        cnnrt.InferenceSession(12345)


def test_bad_constructor_arguments():
    with pytest.raises(CnnrtError, match="backend"):
        cnnrt.InferenceSession(_relu_add_model(), backend="tpu")
    with pytest.raises(CnnrtError, match="opt_level"):
        cnnrt.InferenceSession(_relu_add_model(), opt_level=7)

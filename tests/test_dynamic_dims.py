"""Symbolic input dims beyond the batch: the session plans on the first concrete shapes, runs any
size onnxruntime runs, and reports the model's own symbolic shapes as onnxruntime does."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close_to, make_model, ort_run
from onnx import helper

import cnnrt
from cnnrt.errors import InputError


def _conv_model(out_shape):
    """Conv+Relu and a global pool on an input of shape [N, 3, H, unnamed]."""
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
        helper.make_node("GlobalAveragePool", ["y"], ["g"]),
    ]
    return make_model(nodes, [("x", ["N", 3, "H", None], np.float32)], [("y", out_shape), ("g", None)], {"w": w})


def _onnxruntime(model):
    ort = pytest.importorskip("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _args(args):
    return [(a.name, list(a.shape), a.type) for a in args]


@pytest.mark.parametrize("out_shape", [None, ["n", "c", "h", "w"], [None] * 4, ["N", 4, 5, None]])
def test_shapes_reported_as_onnxruntime_reports_them(out_shape):
    model = _conv_model(out_shape)
    sess, ref = cnnrt.InferenceSession(model), _onnxruntime(model)
    assert _args(sess.get_inputs()) == _args(ref.get_inputs())
    assert _args(sess.get_outputs()) == _args(ref.get_outputs())
    if out_shape and out_shape[2] == 5:
        return  # a declared output height of 5 that the graph does not compute: nothing to run
    for shape in [(2, 3, 6, 7), (1, 3, 9, 4), (3, 3, 5, 5)]:
        x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
        for got, want in zip(sess.run(None, {"x": x}), ref.run(None, {"x": x})):
            assert_close_to(got, want)
    assert _args(sess.get_outputs()) == _args(ref.get_outputs())  # not the last run's shapes


def test_planning_waits_for_concrete_spatial_dims():
    sess = cnnrt.InferenceSession(_conv_model(None))
    with pytest.raises(InputError, match="no plan yet"):
        sess.graph  # noqa: B018
    with pytest.raises(InputError, match="give their shapes in input_shapes"):
        sess.prepare(batch=2)
    sess.prepare(input_shapes={"x": (2, 3, 8, 8)})
    assert sess.graph.values["y"].shape == (2, 4, 8, 8)


def test_free_dimension_override_fixes_a_symbolic_dim():
    so = cnnrt.SessionOptions()
    so.add_free_dimension_override_by_name("H", 6)
    sess = cnnrt.InferenceSession(_conv_model(None), so)
    assert sess.get_inputs()[0].shape == ["N", 3, 6, None]
    with pytest.raises(InputError, match="dimension 2 must be 6"):
        sess.run(None, {"x": np.zeros((1, 3, 5, 5), np.float32)})
    x = np.ones((1, 3, 6, 5), np.float32)
    assert_close_to(sess.run(["g"], {"x": x})[0], ort_run(_conv_model(None), {"x": x})[1])
    so.add_free_dimension_override_by_name("nope", 2)
    with pytest.raises(InputError, match="name no symbolic input dim"):
        cnnrt.InferenceSession(_conv_model(None), so)


# zoo nets exported with symbolic batch, height and width: three (batch, height, width) each
_SIZES = [(1, 64, 96), (3, 96, 64), (2, 128, 128)]


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "segnet"])
def test_zoo_nets_with_dynamic_batch_height_width_match_onnxruntime(name):
    pytest.importorskip("torch")
    import onnx

    from cnnrt.models.onnx_export import export_cached

    model = onnx.load(str(export_cached(name, dynamic_spatial=True)))
    sess, ref = cnnrt.InferenceSession(model), _onnxruntime(model)
    assert sess.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert _args(sess.get_outputs()) == _args(ref.get_outputs())
    for b, h, w in _SIZES:
        x = np.random.default_rng(h * w + b).standard_normal((b, 3, h, w)).astype(np.float32)
        [got], [want] = sess.run(None, {"input": x}), ref.run(None, {"input": x})
        assert_close_to(got, want)
    assert _args(sess.get_outputs()) == _args(ref.get_outputs())

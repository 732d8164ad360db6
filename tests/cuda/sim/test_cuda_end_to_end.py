"""End to end on CUDA: ONNX models built with onnx.helper, InferenceSession(backend="cuda") vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import make_model, ort_run
from onnx import helper

import cnnrt


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def lenet_like():
    rng = np.random.default_rng(0)
    inits = {
        "w1": _w(rng, 4, 1, 5, 5),
        "b1": _w(rng, 4),
        "w2": _w(rng, 8, 4, 3, 3),
        "b2": _w(rng, 8),
        "w3": _w(rng, 16, 32),
        "b3": _w(rng, 16),
        "w4": _w(rng, 10, 16),
        "b4": _w(rng, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[5, 5]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p2"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["g1"], transB=1),
        helper.make_node("Relu", ["g1"], ["r3"]),
        helper.make_node("Gemm", ["r3", "w4", "b4"], ["g2"], transB=1),
        helper.make_node("Softmax", ["g2"], ["y"], axis=1),
    ]
    return make_model(nodes, [("x", ["N", 1, 16, 16], np.float32)], [("y", None, np.float32)], inits, opset=13)


def mixed():
    """Grouped + dilated conv, BN, ReLU, max/avg pool, ConvTranspose, Concat and Gemm."""
    rng = np.random.default_rng(1)
    inits = {
        "w1": _w(rng, 8, 3, 3, 3),
        "b1": _w(rng, 8),
        "bn_s": (1 + _w(rng, 8)),
        "bn_b": _w(rng, 8),
        "bn_m": _w(rng, 8),
        "bn_v": (0.5 + np.abs(_w(rng, 8))).astype(np.float32),
        "w2": _w(rng, 8, 4, 3, 3),
        "wt": _w(rng, 8, 2, 3, 3),
        "bt": _w(rng, 4),
        "wg": _w(rng, 10, 12 * 5 * 5, scale=0.05),
        "bg": _w(rng, 10),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn"], epsilon=1e-3),
        helper.make_node("Relu", ["bn"], ["r1"]),
        helper.make_node(
            "Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], pads=[2, 2, 2, 2], dilations=[2, 2], group=2
        ),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("AveragePool", ["p"], ["a"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("ConvTranspose", ["p", "wt", "bt"], ["t"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], group=2),
        helper.make_node("Concat", ["a", "t"], ["cat"], axis=1),
        helper.make_node("Flatten", ["cat"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wg", "bg"], ["y"], transB=1),
    ]
    return make_model(nodes, [("x", ["N", 3, 10, 10], np.float32)], [("y", None, np.float32)], inits, opset=13)


@pytest.mark.parametrize("build", [lenet_like, mixed])
@pytest.mark.parametrize("opt_level", [0, 2])
def test_model_matches_onnxruntime(build, opt_level):
    model = build()
    sess = cnnrt.InferenceSession(model, backend="cuda", opt_level=opt_level)
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    rng = np.random.default_rng(opt_level)
    for batch in (1, 2):
        x = rng.standard_normal([batch] + shape[1:]).astype(np.float32)
        [got] = sess.run(None, {"x": x})
        [want] = ort_run(model, {"x": x})
        assert got.shape == want.shape and got.dtype == want.dtype
        scale = max(1.0, float(np.abs(want).max()))
        assert float(np.abs(got - want).max()) <= 1e-4 * scale
    if opt_level == 2 and build is mixed:
        ops = sess.graph.op_counts()
        assert "BatchNormalization" not in ops  # folded: the conv epilogue carries it


def test_device_array_feeds_and_outputs_stay_on_the_device():
    from numba import cuda

    model = lenet_like()
    sess = cnnrt.InferenceSession(model, backend="cuda", poison=True)
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(5).standard_normal(shape).astype(np.float32)
    [want] = ort_run(model, {"x": x})
    [dev] = sess.run(None, {"x": cuda.to_device(x)}, return_device=True)
    assert not isinstance(dev, np.ndarray)
    got = dev.copy_to_host()
    assert float(np.abs(got - want).max()) <= 1e-4 * max(1.0, float(np.abs(want).max()))
    [host] = sess.run(None, {"x": x})  # numpy in, numpy out, same answer
    np.testing.assert_array_equal(host, got)


def test_return_device_needs_the_cuda_backend():
    from cnnrt.errors import InputError

    sess = cnnrt.InferenceSession(lenet_like())
    with pytest.raises(InputError, match="backend='cuda'"):
        sess.run(None, {"x": np.zeros((1, 1, 12, 12), np.float32)}, return_device=True)

"""Small builders shared by tests: one-node ONNX models and the onnxruntime reference."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# zoo nets that only repeat another's layer types at more cost (vgg11_bn and resnet50 stand
# for them): skipped unless CNNRT_ZOO_FULL=1
ZOO_FULL = os.environ.get("CNNRT_ZOO_FULL") == "1"
ZOO_HEAVY = {"vgg11", "vgg16", "vgg19", "vgg16_bn", "vgg19_bn", "resnet101", "mobilenet_v3_large", "mnasnet1_0"}
# zoo nets checked against onnxruntime at full size once (tests/test_zoo_vs_onnxruntime.py) but
# left out of the per-pass loop (tests/test_zoo_passes.py, a session per pass): a scaled-down
# twin runs that loop instead (tests/models/test_scaled_down_zoo_nets.py), or nets whose blocks
# the loop meets elsewhere (mixnet_s: efficientnet_b0's SiLU/SE blocks and shufflenet_v2's
# Split/Concat; lraspp_mobilenet_v3: mobilenet_v3_small's blocks and segnet's Resize)
ZOO_ONCE = {"convnext_tiny", "eca_resnet18", "mixnet_s", "lraspp_mobilenet_v3"}


def zoo_params(names: list[str]) -> list:
    """pytest params of zoo ``names``, the ZOO_HEAVY ones marked slow and skipped unless
    CNNRT_ZOO_FULL=1."""
    import pytest

    heavy = [pytest.mark.slow, pytest.mark.skipif(not ZOO_FULL, reason="repeats a lighter zoo net; CNNRT_ZOO_FULL=1")]
    return [pytest.param(n, marks=heavy) if n in ZOO_HEAVY else n for n in names]


# onnx 1.23 writes IR version 14 by default; onnxruntime 1.31 reads at most 13.
IR_VERSION = 10

_NP_TO_ONNX = {np.dtype("float32"): TensorProto.FLOAT, np.dtype("int64"): TensorProto.INT64}


def make_model(nodes, inputs, outputs, initializers=None, opset=17, ir_version=IR_VERSION, name="test"):
    """inputs/outputs: list of (name, shape or None, dtype); initializers: dict name -> array."""

    def vi(n, shape, dtype=np.float32):
        return helper.make_tensor_value_info(n, _NP_TO_ONNX[np.dtype(dtype)], shape)

    graph = helper.make_graph(
        nodes,
        name,
        [vi(*i) for i in inputs],
        [vi(*o) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in (initializers or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def ort_run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3  # errors only: shape-inference warnings would drown the test output
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def assert_close_to(got: np.ndarray, ref: np.ndarray, rel: float = 1e-3) -> None:
    """max|got - ref| <= rel * max(1, max|ref|), the project's agreement bound."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    assert got.dtype == ref.dtype, (got.dtype, ref.dtype)
    scale = max(1.0, float(np.max(np.abs(ref)))) if ref.size else 1.0
    err = float(np.max(np.abs(got.astype(np.float64) - ref))) if ref.size else 0.0
    assert err <= rel * scale, f"max abs error {err:.3e} > {rel:g} * {scale:.3e}"


def assert_native_plan_matches_python_loop(sess, feeds: dict, got: list[np.ndarray]) -> None:
    """``got`` (``sess.run`` on ``feeds``, through the native plan: runtime/native_plan.py) must
    be the bits the same executor's Python loop gives, and no run of steps may have stayed in
    Python because its segment failed to build."""
    ex = sess.executor
    assert ex.native and ex.native_declined == []
    ex.native = False
    try:
        python_loop = sess.run(None, feeds)
    finally:
        ex.native = True
    for a, b in zip(got, python_loop, strict=True):
        np.testing.assert_array_equal(a, b)

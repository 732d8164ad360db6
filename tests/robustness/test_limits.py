"""Adversarially big graphs must not make loading hang: build time should grow about linearly
with the number of nodes (a 3 MB file can hold 100,000 nodes)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from robust_models import IR_VERSION

import cnnrt


def _chain(n: int, op: str):
    inits = []
    if op == "MatMul":
        inits = [numpy_helper.from_array(np.eye(4, dtype=np.float32), "w")]
    nodes = [
        helper.make_node(op, [f"v{i}"] + (["w"] if op == "MatMul" else []), [f"v{i + 1}"], name=f"n{i}")
        for i in range(n)
    ]
    g = helper.make_graph(
        nodes,
        "chain",
        [helper.make_tensor_value_info("v0", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(f"v{n}", TensorProto.FLOAT, [1, 4])],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    return m


def _build_seconds(m) -> float:
    t = time.perf_counter()
    cnnrt.InferenceSession(m, opt_level=0)
    return time.perf_counter() - t


@pytest.mark.timeout(300)
@pytest.mark.parametrize("op", ["Relu", "MatMul"], ids=["in-place-chain", "buffer-chain"])
def test_build_time_grows_about_linearly(op):
    _build_seconds(_chain(200, op))  # warm the kernels
    # best of 3 and a 20x bound (linear is 8x, the old quadratic planner took ~50x) so a busy
    # 2-core machine does not fail it
    small = min(_build_seconds(_chain(1000, op)) for _ in range(3))
    big = min(_build_seconds(_chain(8000, op)) for _ in range(3))
    print(f"{op}: 1000 nodes {small:.2f} s, 8000 nodes {big:.2f} s (x{big / small:.1f}; linear is x8)")
    assert big < 20 * small, f"8x the nodes took {big / small:.0f}x the time"


def test_deep_chain_still_correct():
    m = _chain(300, "Relu")
    x = np.array([[-1.0, 0.5, -3.0, 2.0]], np.float32)
    [y] = cnnrt.InferenceSession(m).run(None, {"v0": x})
    np.testing.assert_array_equal(y, np.maximum(x, 0))

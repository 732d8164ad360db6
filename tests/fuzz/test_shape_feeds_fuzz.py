"""Property: graphs whose shapes come from the feeds (initializers fed at any shape) or collapse to
nothing (empty channel, row or column slices) either agree with onnxruntime or raise a
CnnrtError; never another exception, never a silently different shape.

CNNRT_FUZZ_EXAMPLES scales the example counts for a longer local sweep (the counts of each
outcome print with -s).
"""

from __future__ import annotations

import warnings
from collections import Counter

import numpy as np
import pytest
from fuzz_lib import compare, fuzz_settings
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from robust_models import IR_VERSION, ort_session

import cnnrt
from cnnrt.errors import CnnrtError

OUTCOMES: Counter = Counter()


def _model(nodes, inputs, inits):
    graph = helper.make_graph(
        nodes,
        "fuzz",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    return m


def _outcome(model, feeds) -> str:
    """'match', 'both-reject', 'ort-rejects', 'cnnrt-rejects'; AssertionError on a wrong answer
    or an exception that is not a CnnrtError."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            got = cnnrt.InferenceSession(model, threads=1, memory_limit=64 << 20).run(None, feeds)
        except CnnrtError:
            got = None
        try:
            ref = ort_session(model).run(None, feeds)
        except Exception:
            ref = None
    if got is None:
        return "both-reject" if ref is None else "cnnrt-rejects"
    if ref is None:
        return "ort-rejects"
    why = compare(got, ref)
    assert why is None, why
    return "match"


@given(st.data())
@fuzz_settings(60)
def test_initializers_fed_at_any_shape(data):
    """Conv (weight and bias overridable) then Gemm (weight overridable), fed at drawn shapes."""
    d = data.draw
    c, hw = d(st.integers(1, 4)), d(st.integers(3, 6))
    m_out, k = d(st.integers(1, 5)), d(st.integers(1, 3))
    w_shape = (m_out, d(st.sampled_from([c, c, c + 1])), k, k)
    b_shape = (d(st.sampled_from([m_out, m_out, m_out + 1])),)
    oh = hw - k + 1
    g_shape = (m_out * oh * oh if oh > 0 else 1, d(st.integers(1, 4)))
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"]),
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("MatMul", ["f", "g"], ["y"]),
    ]
    rng = np.random.default_rng(d(st.integers(0, 99)))
    inits = {
        "w": rng.standard_normal((2, c, 1, 1)).astype(np.float32),
        "b": rng.standard_normal(2).astype(np.float32),
        "g": rng.standard_normal((2 * hw * hw, 3)).astype(np.float32),
    }
    model = _model(nodes, [("x", [1, c, hw, hw]), ("w", None), ("b", None), ("g", None)], inits)
    feeds = {"x": rng.standard_normal((1, c, hw, hw)).astype(np.float32)}
    for name, shape in (("w", w_shape), ("b", b_shape), ("g", g_shape)):
        if d(st.booleans()):
            feeds[name] = rng.standard_normal(shape).astype(np.float32)
    OUTCOMES["fed " + _outcome(model, feeds)] += 1


@given(st.data())
@fuzz_settings(60)
def test_empty_slices_flow_through_the_graph(data):
    """x[:, a:b] (possibly empty, along channels, rows or columns) through a drawn chain of ops."""
    d = data.draw
    c, hw = d(st.integers(1, 4)), d(st.integers(2, 6))
    axis = d(st.sampled_from([1, 2, 3]))
    size = (c, hw, hw)[axis - 1]
    start = d(st.integers(0, size))
    end = d(st.integers(start, size))
    rng = np.random.default_rng(d(st.integers(0, 99)))
    nodes = [helper.make_node("Slice", ["x", "s", "e", "a"], ["v0"])]
    inits = {"s": np.array([start]), "e": np.array([end]), "a": np.array([axis])}
    channels = (c, end - start)[axis == 1]
    prev = "v0"
    for i in range(d(st.integers(1, 3))):
        op = d(st.sampled_from(["Conv", "Relu", "AddBias", "MaxPool", "GlobalAveragePool", "Concat"]))
        out = f"v{i + 1}"
        if op == "Conv":
            m_out = d(st.integers(0, 3))
            inits[f"w{i}"] = rng.standard_normal((m_out, channels, 1, 1)).astype(np.float32)
            inits[f"b{i}"] = rng.standard_normal(m_out).astype(np.float32)
            nodes.append(helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [out]))
            channels = m_out
        elif op == "AddBias":
            inits[f"k{i}"] = rng.standard_normal((1, channels, 1, 1)).astype(np.float32)
            nodes.append(helper.make_node("Add", [prev, f"k{i}"], [out]))
        elif op == "Concat":
            nodes.append(helper.make_node("Concat", [prev, prev], [out], axis=1))
            channels *= 2
        elif op == "MaxPool":
            nodes.append(helper.make_node("MaxPool", [prev], [out], kernel_shape=[1, 1]))
        else:
            nodes.append(helper.make_node(op, [prev], [out]))
        prev = out
    nodes.append(helper.make_node("Identity", [prev], ["y"]))
    inits = {k: v.astype(np.int64) if k in ("s", "e", "a") else v for k, v in inits.items()}
    model = _model(nodes, [("x", [1, c, hw, hw])], inits)
    feeds = {"x": rng.standard_normal((1, c, hw, hw)).astype(np.float32)}
    OUTCOMES["empty " + _outcome(model, feeds)] += 1


def test_outcome_summary():
    """Not a check: prints how the drawn graphs fared (run with -s to see it)."""
    print("\nshape-feed fuzz outcomes:", dict(OUTCOMES.most_common()))


@pytest.fixture(autouse=True, scope="module")
def _reset():
    OUTCOMES.clear()
    yield

"""The math, comparison, selection and reduction CUDA kernels and LayerNormalization, against
tests/reference.py (Gelu runs in test_cuda_elementwise.py's activation test)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op
from helpers import make_model, ort_run
from onnx import helper
from reference import MATH_REFERENCES, arg_reduce_reference, layer_norm_reference, reduce_reference

import cnnrt

EDGES = np.array([-2.5, -0.5, 0.5, 1.5, 2.0, 3e9, -3e9, np.inf, -np.inf], np.float32)


@pytest.mark.parametrize("op", sorted(MATH_REFERENCES))
def test_math(op):
    x = rand(np.random.default_rng(0), 12, lo=-3, hi=3)
    if op in ("Floor", "Ceil", "Abs", "Neg"):
        x = np.concatenate([x, EDGES])
    if op in ("Sqrt", "Log"):  # the simulator runs Python's math, which raises on a negative
        x = np.abs(x) + 0.01
    [y] = run_op(op, [x], [x.shape])
    ref = MATH_REFERENCES[op](x.astype(np.float64))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(y[~finite], ref[~finite])
    assert_close(y[finite], ref[finite], 1e-6)


def test_comparisons_pow_not_where_expand():
    rng = np.random.default_rng(1)
    a = np.round(rand(rng, 2, 3, 4, lo=-2, hi=2))
    b = np.round(rand(rng, 3, 1, lo=-2, hi=2))
    for op, f in (("Equal", np.equal), ("Less", np.less), ("GreaterOrEqual", np.greater_equal)):
        [y] = run_op(op, [a, b], [(a.shape, "bool")])
        np.testing.assert_array_equal(y, f(a, b))
    [y] = run_op("Pow", [np.abs(a) + 0.5, b], [a.shape])
    assert_close(y, np.power(np.abs(a).astype(np.float64) + 0.5, b), 1e-6)
    cond = a > 0
    [y] = run_op("Not", [cond], [(a.shape, "bool")])
    np.testing.assert_array_equal(y, ~cond)
    [y] = run_op("Where", [cond, a, b[:1]], [a.shape])
    np.testing.assert_array_equal(y, np.where(cond, a, b[:1]))
    [y] = run_op("Expand", [b], [(2, 3, 4)], dict(shape=(2, 3, 4)))
    np.testing.assert_array_equal(y, np.broadcast_to(b, (2, 3, 4)))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2"])
def test_reductions(op):
    x = rand(np.random.default_rng(2), 2, 3, 4)
    ref = reduce_reference(x, op, (0, 2), False)
    [y] = run_op(op, [x], [ref.shape], dict(axes=(0, 2), keepdims=False))
    assert_close(y, ref, 1e-6)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [False, True])
def test_arg_reductions(op, last):
    x = np.round(rand(np.random.default_rng(3), 2, 5, 3, lo=-2, hi=2))
    ref = arg_reduce_reference(x, op, 1, True, last)
    [y] = run_op(op, [x], [(ref.shape, "int64")], dict(axis=1, keepdims=True, select_last_index=last))
    np.testing.assert_array_equal(y, ref)


def test_layer_norm_with_statistics():
    rng = np.random.default_rng(4)
    x, scale, bias = rand(rng, 2, 3, 8) + 20, rand(rng, 8), rand(rng, 8)
    ref, mean, inv = layer_norm_reference(x, scale, bias, 2, 1e-5)
    y, m, i = run_op(
        "LayerNormalization",
        [x, scale, bias],
        [x.shape, (mean.shape, "float32"), (inv.shape, "float32")],
        dict(axis=2, epsilon=1e-5),
        const=(1, 2),
    )
    assert_close(y, ref, 1e-5)
    assert_close(m, mean, 1e-6)
    assert_close(i, inv, 1e-5)


def test_fused_layernorm_gelu_linear_block_matches_onnxruntime():
    """A channels-last block as exported before opset 17 (LayerNorm decomposition, Linear, erf
    GELU): on CUDA the passes leave LayerNormalization and a Gemm with a Gelu epilogue."""
    rng = np.random.default_rng(5)
    c = {
        "two": np.array(2.0, np.float32),
        "eps": np.array(1e-6, np.float32),
        "gamma": rand(rng, 8),
        "w": rand(rng, 8, 6),
        "b": rand(rng, 6),
        "sqrt2": np.array(np.sqrt(2), np.float32),
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
        n("Mul", ["normed", "gamma"], ["ln"]),
        n("MatMul", ["ln", "w"], ["p"]),
        n("Add", ["p", "b"], ["h"]),
        n("Div", ["h", "sqrt2"], ["t"]),
        n("Erf", ["t"], ["e"]),
        n("Add", ["e", "one"], ["a"]),
        n("Mul", ["h", "a"], ["m"]),
        n("Mul", ["m", "half"], ["y"]),
    ]
    model = make_model(nodes, [("x", [2, 3, 4, 8], np.float32)], [("y", [2, 3, 4, 6], np.float32)], c, opset=13)
    sess = cnnrt.InferenceSession(model, backend="cuda")
    assert sess.graph.op_counts() == {"LayerNormalization": 1, "Reshape": 2, "Gemm": 1}
    x = rand(rng, 2, 3, 4, 8) * 3 + 1
    [got] = sess.run(None, {"x": x})
    assert_close(got, ort_run(model, {"x": x})[0], 1e-5)

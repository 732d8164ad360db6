"""The math, comparison, selection and reduction kernels and LayerNormalization (CPU) against
the naive references (tests/reference.py), and non-float32 outputs (bool, int64) planned
and returned with their own dtypes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import make_model, ort_run
from kernel_helpers import U32, assert_within, run_node
from onnx import TensorProto, helper
from reference import (
    MATH_REFERENCES,
    arg_reduce_reference,
    gelu_reference,
    layer_norm_reference,
    reduce_reference,
)

import cnnrt
from cnnrt.core.ir import Graph, Node, Value
from cnnrt.errors import GraphError

rng = np.random.default_rng(0)
X = (rng.standard_normal((2, 3, 4, 5)) * 2).astype(np.float32)
# values where rounding functions and signs are decided
EDGES = np.array([-2.5, -0.5, -0.0, 0.0, 0.5, 1.5, 2.0, 1e30, -1e30, np.inf, -np.inf, np.nan], np.float32)


@pytest.mark.parametrize("op", sorted(MATH_REFERENCES))
def test_math_ops(op):
    x = np.concatenate([X.reshape(-1), EDGES])
    if op in ("Sqrt", "Log"):
        x = np.abs(x)
    [y] = run_node(op, [x], {}, [x.shape])
    with np.errstate(all="ignore"):
        ref = MATH_REFERENCES[op](x.astype(np.float64))
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(y[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    assert_within(y[finite], ref[finite], 4 * U32 * np.abs(ref[finite]) + 1e-30, op)


@pytest.mark.parametrize("tanh_approx", [0.0, 1.0])
def test_gelu(tanh_approx):
    x = np.concatenate([X.reshape(-1), EDGES[:-3], np.array([-8.0, 8.0], np.float32)])
    [y] = run_node("Gelu", [x], {"tanh_approx": tanh_approx}, [x.shape])
    ref = gelu_reference(x, tanh_approx)
    # ½x(1 + erf(x/√2)): erf's absolute error (a float32 ulp of 1) times |x|/2 where 1 + erf cancels
    assert_within(y, ref, 4 * U32 * (np.abs(ref) + np.abs(x)) + 1e-37, "Gelu")


def test_pow_and_comparisons_broadcast():
    a = np.abs(X) + 0.1
    b = rng.standard_normal((4, 1)).astype(np.float32)
    [y] = run_node("Pow", [a, b], {}, [X.shape])
    ref = np.power(a.astype(np.float64), b)
    assert_within(y, ref, 4 * U32 * np.abs(ref), "Pow")
    c = np.round(X)
    for op, f in (("Equal", np.equal), ("Less", np.less), ("GreaterOrEqual", np.greater_equal)):
        [y] = run_node(op, [c, c[:, :1]], {}, [X.shape], ["bool"])
        np.testing.assert_array_equal(y, f(c, c[:, :1]))


@pytest.mark.parametrize("op", ["Mul", "Add"])
@pytest.mark.parametrize("scale_shape", [(1, 24, 1, 1), (2, 24, 1, 1)])
@pytest.mark.parametrize("scale_first", [False, True])
def test_per_channel_scale_or_shift_is_numpys_broadcast(op, scale_shape, scale_first):
    """A (N, C, 1, 1) or (1, C, 1, 1) operand of an NCHW one (a squeeze-excitation scale left
    unfused) runs a loop of one scalar per row: the same float operation per element as numpy's."""
    x = rng.standard_normal((2, 24, 7, 9)).astype(np.float32)
    s = rng.standard_normal(scale_shape).astype(np.float32)
    ins = [s, x] if scale_first else [x, s]
    [y] = run_node(op, ins, {}, [x.shape])
    np.testing.assert_array_equal(y, np.multiply(*ins) if op == "Mul" else np.add(*ins))


def test_not_where_expand():
    cond = X > 0
    [y] = run_node("Not", [cond], {}, [X.shape], ["bool"])
    np.testing.assert_array_equal(y, ~cond)
    other = np.float32(-1.0) * np.ones((5,), np.float32)
    [y] = run_node("Where", [cond, X, other], {}, [X.shape])
    np.testing.assert_array_equal(y, np.where(cond, X, other))
    small = X[:1, :, :1]
    [y] = run_node("Expand", [small], {"shape": (2, 3, 4, 5)}, [(2, 3, 4, 5)])
    np.testing.assert_array_equal(y, np.broadcast_to(small, (2, 3, 4, 5)))


@pytest.mark.parametrize("op", ["ReduceSum", "ReduceMax", "ReduceMin", "ReduceL2"])
@pytest.mark.parametrize("axes, keepdims", [((1,), True), ((0, 2, 3), False), ((3,), False)])
def test_reductions(op, axes, keepdims):
    ref = reduce_reference(X, op, axes, keepdims)
    [y] = run_node(op, [X], {"axes": axes, "keepdims": keepdims}, [ref.shape])
    k = math.prod(X.shape[a] for a in axes)
    magnitude = reduce_reference(np.abs(X), "ReduceSum" if op == "ReduceSum" else op, axes, keepdims)
    assert_within(y, ref, 2 * k * U32 * np.abs(magnitude) + 1e-30, op)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("last", [False, True])
@pytest.mark.parametrize("axis, keepdims", [(1, True), (3, False)])
def test_arg_reductions_with_ties(op, last, axis, keepdims):
    x = np.round(X)  # many ties
    ref = arg_reduce_reference(x, op, axis, keepdims, last)
    attrs = {"axis": axis, "keepdims": keepdims, "select_last_index": last}
    [y] = run_node(op, [x], attrs, [ref.shape], ["int64"])
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("axis", [1, 3])
@pytest.mark.parametrize("bias, stats", [(True, True), (False, False)])
def test_layer_norm(axis, bias, stats):
    x = (X + 50).astype(np.float32)  # a mean far from 0: a one-pass variance would cancel
    norm = x.shape[axis:]
    scale = rng.standard_normal(norm).astype(np.float32)
    b = rng.standard_normal(norm).astype(np.float32) if bias else None
    ref, mean, inv = layer_norm_reference(x, scale, b, axis, 1e-5)
    shapes = [x.shape] + ([mean.shape, inv.shape] if stats else [])
    outs = run_node("LayerNormalization", [x, scale, b], {"axis": axis, "epsilon": 1e-5}, shapes, const=(1, 2))
    k = math.prod(norm)
    bound = 8 * math.sqrt(k) * U32 * (np.abs(ref) + np.abs(scale) + 1)
    assert_within(outs[0], ref, bound, "Y")
    if stats:
        assert_within(outs[1], mean, 4 * U32 * np.abs(mean), "Mean")
        assert_within(outs[2], inv, 16 * U32 * np.abs(inv), "InvStdDev")


def test_bool_and_int64_values_are_planned_at_their_own_size():
    """ArgMax (int64) and Less (bool) feed a Where: every value has its dtype's bytes in the arena."""
    nodes = [
        helper.make_node("ArgMax", ["x"], ["idx"], axis=1, keepdims=1),
        helper.make_node("Less", ["x", "zero"], ["neg"]),
        helper.make_node("Where", ["neg", "zero", "x"], ["relu"]),
        helper.make_node("ReduceMax", ["relu"], ["m"], axes=[1], keepdims=1),
    ]
    model = make_model(
        nodes,
        [("x", [2, 7, 3, 3], np.float32)],
        [("idx", [2, 1, 3, 3], np.int64), ("m", [2, 1, 3, 3], np.float32)],
        {"zero": np.zeros(1, np.float32)},
        opset=17,
    )
    model.graph.value_info.append(helper.make_tensor_value_info("neg", TensorProto.BOOL, [2, 7, 3, 3]))
    x = np.round(rng.standard_normal((2, 7, 3, 3)) * 2).astype(np.float32)  # ties: ArgMax takes the first
    sess = cnnrt.InferenceSession(model, opt_level=0)
    got = sess.run(None, {"x": x})
    for g, r in zip(got, ort_run(model, {"x": x})):
        assert g.dtype == r.dtype
        np.testing.assert_array_equal(g, r)
    neg = sess.graph.values["neg"]
    assert neg.dtype == "bool" and neg.nbytes == 2 * 7 * 3 * 3
    assert sess.graph.values["idx"].nbytes == 8 * 2 * 3 * 3


def test_verify_rejects_an_output_of_another_dtype_than_the_op_gives():
    values = {n: Value(n, (3,), "float32") for n in ("a", "b", "c")}
    graph = Graph([Node("Less", ("a", "b"), ("c",), {}, "less")], values, {}, ["a", "b"], ["c"])
    with pytest.raises(GraphError, match="'less' \\(Less\\) output 'c' is float32, but Less gives bool"):
        graph.verify()

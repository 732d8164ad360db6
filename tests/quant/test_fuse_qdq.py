"""passes/fuse_qdq.py: QDQ groups become QConv / QAdd, matching onnxruntime (running the graph as
written, and running the same groups as QLinearConv / QLinearAdd where its int8 arithmetic is
exact) and the IR interpreter of the unfused graph."""

from __future__ import annotations

import numpy as np
import pytest
from ir_reference import evaluate
from onnx import helper
from quant.qdq_models import MLAS_SATURATES_REASON, model, ort_optimized, ort_unfused

import cnnrt
from cnnrt.frontends.onnx import OnnxModel
from cnnrt.passes.fuse_qdq import fuse_qdq
from cnnrt.tools.bench_int8 import onnxruntime_u8s8_saturates

C, M = 8, 8


def _qdq_block(x_dtype="uint8", per_channel=True, float_bias=False, conv_act=None, seed=0):
    """x -> Q -> DQ -> Conv(DQ(W), DQ(b)) [-> act] -> Q -> DQ -> + DQ(Q(x)) -> Q -> DQ -> y."""
    rng = np.random.default_rng(seed)
    zx = np.array(128 if x_dtype == "uint8" else 0, x_dtype)
    w = rng.integers(-127, 128, (M, C, 3, 3)).astype(np.int8)
    ws = rng.uniform(0.002, 0.01, M if per_channel else 1).astype(np.float32).reshape((M,) if per_channel else ())
    bq = rng.integers(-2000, 2000, M).astype(np.int32)
    bs = (np.float32(0.03) * ws).astype(np.float32) * np.ones(M, np.float32)
    inits = dict(xs=np.float32(0.03), xz=zx, w=w, ws=ws, wz=np.zeros(ws.shape, np.int8), bs=bs, b=bq)
    inits.update(cs=np.float32(0.05), cz=np.array(128 if x_dtype == "uint8" else 0, x_dtype))
    inits.update(ys=np.float32(0.06), yz=inits["cz"])
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd2"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
    ]
    if float_bias:
        inits["bf"] = (bq * bs).astype(np.float32)
        bias = "bf"
    else:
        nodes.append(helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], axis=0))
        bias = "bd"
    conv_out = "c" if conv_act is None else "c0"
    nodes.append(helper.make_node("Conv", ["xd", "wd", bias], [conv_out], pads=[1, 1, 1, 1]))
    if conv_act is not None:
        nodes.append(helper.make_node(conv_act, ["c0"], ["c"]))
    nodes += [
        helper.make_node("QuantizeLinear", ["c", "cs", "cz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
        helper.make_node("Add", ["cd", "xd2"], ["s"]),
        helper.make_node("QuantizeLinear", ["s", "ys", "yz"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "ys", "yz"], ["y"]),
    ]
    return model(nodes, [("x", "float32", (1, C, 9, 9))], [("y", "float32", None)], inits)


def _feeds(seed=1):
    return {"x": (np.random.default_rng(seed).standard_normal((1, C, 9, 9)) * 2).astype(np.float32)}


CASES = {
    "u8-per-channel": {},
    "u8-per-tensor": dict(per_channel=False),
    "s8-symmetric": dict(x_dtype="int8"),
    "float-bias-relu": dict(float_bias=True, conv_act="Relu"),
}


# the cases onnxruntime runs as a uint8 x int8 QLinearConv (its optimized graph); the others'
# convs stay float there (int8 input, float bias)
U8S8 = {"u8-per-channel", "u8-per-tensor"}


def _within_one_step(got, want):
    steps = np.abs(got - want) / 0.06
    assert steps.max() <= 1.0 + 1e-4 and (steps > 0.5).mean() < 0.05, (steps.max(), (steps > 0.5).mean())


def _fused(case):
    mdl, feeds = _qdq_block(**CASES[case]), _feeds()
    sess = cnnrt.InferenceSession(mdl)
    assert [n.op for n in sess.graph.nodes if n.attrs.get("precision") == "int8"] == ["QConv", "QAdd"]
    return mdl, feeds, sess.run(None, feeds)[0]


@pytest.mark.parametrize("case", CASES)
def test_fused_qdq_is_within_one_step_of_onnxruntime_running_the_graph_as_written(case):
    """Against onnxruntime with its optimisations off (every Q/DQ and float op as written: the
    file's meaning, on every CPU); cnnrt's unfused graph too."""
    mdl, feeds, got = _fused(case)
    want = ort_unfused(mdl, feeds)[0]
    _within_one_step(got, want)
    unfused = cnnrt.InferenceSession(mdl, disabled_passes=["fuse_qdq"]).run(None, feeds)[0]
    assert np.abs(unfused - want).max() / 0.06 <= 1.0 + 1e-4


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            c, marks=pytest.mark.skipif(c in U8S8 and onnxruntime_u8s8_saturates(), reason=MLAS_SATURATES_REASON)
        )
        for c in CASES
    ],
)
def test_fused_qdq_matches_onnxruntimes_int8_kernels_within_one_step(case):
    """Against onnxruntime with its QDQ fusions (QLinearConv, QLinearAdd), where its u8 x s8
    arithmetic is exact."""
    mdl, feeds, got = _fused(case)
    _within_one_step(got, ort_optimized(mdl, feeds)[0])


def test_the_pass_keeps_the_meaning_within_one_quantization_step():
    mdl, feeds = _qdq_block(), _feeds()
    graph = OnnxModel(mdl).to_graph({"x": (1, C, 9, 9)})
    res = fuse_qdq(graph)
    res.graph.verify()
    assert {n.op for n in res.graph.nodes} >= {"QConv", "QAdd"}
    assert [r for r, _ in res.fired] == [
        "DequantizeLinear -> Conv -> QuantizeLinear -> QConv",
        "DequantizeLinear -> Add -> QuantizeLinear -> QAdd",
    ]
    before, after = evaluate(graph, feeds)[0], evaluate(res.graph, feeds)[0]
    assert np.abs(before - after).max() / 0.06 <= 1.0 + 1e-4


def test_a_conv_output_read_twice_is_declined_with_the_reason():
    mdl = _qdq_block()
    extra = helper.make_node("Relu", ["c"], ["r"])
    mdl.graph.node.append(extra)
    mdl.graph.output.append(helper.make_tensor_value_info("r", 1, None))
    res = fuse_qdq(OnnxModel(mdl).to_graph({"x": (1, C, 9, 9)}))
    assert any("has 2 consumers" in why for _, _, why in res.declined)
    assert "QConv" not in {n.op for n in res.graph.nodes}


def _qdq_silu(x_dtype: str):
    """x -> Q -> DQ -> x * Sigmoid(x) (the sigmoid quantized on its own) -> Q -> DQ, then a Mul by
    a per-channel constant (declined: a table holds one value per code, not per channel) -> Q -> DQ -> y."""
    z = np.array(128 if x_dtype == "uint8" else 0, x_dtype)
    inits = dict(xs=np.float32(0.04), xz=z, ss=np.float32(1 / 255), sz=np.array(0, "uint8"))
    inits.update(ms=np.float32(0.03), mz=z, g=np.linspace(0.5, 1.5, C, dtype=np.float32).reshape(1, C, 1, 1))
    inits.update(gs=np.float32(0.05), gz=z)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("Sigmoid", ["xd"], ["sg"]),
        helper.make_node("QuantizeLinear", ["sg", "ss", "sz"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "ss", "sz"], ["sd"]),
        helper.make_node("Mul", ["xd", "sd"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "ms", "mz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["md"]),
        helper.make_node("Mul", ["md", "g"], ["gm"]),
        helper.make_node("QuantizeLinear", ["gm", "gs", "gz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "gs", "gz"], ["y"]),
    ]
    return model(nodes, [("x", "float32", (1, C, 9, 9))], [("y", "float32", None)], inits)


@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
def test_an_elementwise_island_becomes_one_table_within_one_step_of_onnxruntime(x_dtype):
    mdl, feeds = _qdq_silu(x_dtype), _feeds()
    graph = OnnxModel(mdl).to_graph({"x": (1, C, 9, 9)})
    res = fuse_qdq(graph)
    res.graph.verify()
    assert "DequantizeLinear -> elementwise -> QuantizeLinear -> table" in {r for r, _ in res.fired}
    assert any("non-scalar constant 'g'" in why for _, _, why in res.declined)
    # the table against the unfused graph, value for value (both in numpy float32)
    before, after = evaluate(graph, feeds)[0], evaluate(res.graph, feeds)[0]
    assert np.abs(before - after).max() / 0.05 <= 1.0 + 1e-4
    sess = cnnrt.InferenceSession(mdl)
    ops = [n.op for n in sess.graph.nodes]
    assert ops.count("Gather") == 1 and "Sigmoid" not in ops and ops.count("Mul") == 1  # SiLU: one table
    got, want = sess.run(None, feeds)[0], ort_optimized(mdl, feeds)[0]
    assert np.abs(got - want).max() / 0.05 <= 1.0 + 1e-4
    assert len(np.unique(got)) > 20, "the case saturates: it would test little"


def _qdq_pool_concat():
    """x -> Q -> DQ -> MaxPool -> Q (same parameters) -> DQ, concatenated with a second copy of x
    quantized at another scale and zero point -> Q -> DQ -> y."""
    inits = dict(xs=np.float32(0.04), xz=np.array(128, "uint8"), bs=np.float32(0.03), bz=np.array(100, "uint8"))
    inits.update(cs=np.float32(0.05), cz=np.array(120, "uint8"))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("MaxPool", ["xd"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["p", "xs", "xz"], ["pq"]),
        helper.make_node("DequantizeLinear", ["pq", "xs", "xz"], ["pd"]),
        helper.make_node("QuantizeLinear", ["x", "bs", "bz"], ["bq"]),
        helper.make_node("DequantizeLinear", ["bq", "bs", "bz"], ["bd"]),
        helper.make_node("Concat", ["pd", "bd"], ["c"], axis=1),
        helper.make_node("QuantizeLinear", ["c", "cs", "cz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["y"]),
    ]
    return model(nodes, [("x", "float32", (1, C, 9, 9))], [("y", "float32", None)], inits)


def test_max_pool_and_concat_run_on_the_codes_within_one_step_of_onnxruntime():
    mdl, feeds = _qdq_pool_concat(), _feeds()
    graph = OnnxModel(mdl).to_graph({"x": (1, C, 9, 9)})
    res = fuse_qdq(graph)
    res.graph.verify()
    assert {r for r, _ in res.fired} >= {
        "DequantizeLinear -> MaxPool -> QuantizeLinear -> MaxPool of the codes",
        "DequantizeLinear -> Concat -> QuantizeLinear -> Concat of the codes",
    }
    ops = [n.op for n in res.graph.nodes]
    assert ops.count("Gather") == 2  # both concat inputs requantized by a table (scales differ)
    assert res.graph.values[next(n for n in res.graph.nodes if n.op == "MaxPool").outputs[0]].dtype == "uint8"
    before, after = evaluate(graph, feeds)[0], evaluate(res.graph, feeds)[0]
    np.testing.assert_array_equal(before, after)  # the same roundings in the same order
    got, want = cnnrt.InferenceSession(mdl).run(None, feeds)[0], ort_optimized(mdl, feeds)[0]
    assert np.abs(got - want).max() / 0.05 <= 1.0 + 1e-4
    assert len(np.unique(got)) > 20, "the case saturates: it would test little"


def _qdq_squeeze_excite(x_dtype="uint8"):
    """x -> Q -> DQ -> GlobalAveragePool -> Q -> DQ -> Sigmoid -> Q -> DQ (a gate per channel),
    Mul(DQ(x), gate) -> Q -> DQ -> y: a squeeze-excitation as a static quantizer writes it."""
    z = 128 if x_dtype == "uint8" else 0
    inits = dict(xs=np.float32(0.04), xz=np.array(z - 3, x_dtype), gs=np.float32(0.011), gz=np.array(z + 5, x_dtype))
    inits.update(ss=np.float32(1 / 255), sz=np.array(0 if x_dtype == "uint8" else -128, x_dtype))
    inits.update(ms=np.float32(0.03), mz=np.array(z + 2, x_dtype))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd2"]),
        helper.make_node("GlobalAveragePool", ["xd"], ["g"]),
        helper.make_node("QuantizeLinear", ["g", "gs", "gz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "gs", "gz"], ["gd"]),
        helper.make_node("Sigmoid", ["gd"], ["sg"]),
        helper.make_node("QuantizeLinear", ["sg", "ss", "sz"], ["sq"]),
        helper.make_node("DequantizeLinear", ["sq", "ss", "sz"], ["sd"]),
        helper.make_node("Mul", ["xd2", "sd"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "ms", "mz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["y"]),
    ]
    return model(nodes, [("x", "float32", (2, C, 9, 13))], [("y", "float32", None)], inits)


@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
def test_squeeze_excitation_runs_on_the_codes(x_dtype):
    """The gate's GlobalAveragePool sums the codes exactly (onnxruntime's QLinearGlobalAveragePool
    arithmetic), the gating Mul runs on the codes in the graph's float32 steps (the same bytes as
    the unfused graph given the same gate), and the whole stays within one step of onnxruntime."""
    mdl = _qdq_squeeze_excite(x_dtype)
    feeds = {"x": (np.random.default_rng(4).standard_normal((2, C, 9, 13)) * 2 + 0.3).astype(np.float32)}
    graph = OnnxModel(mdl).to_graph({"x": (2, C, 9, 13)})
    res = fuse_qdq(graph)
    res.graph.verify()
    assert {r for r, _ in res.fired} >= {
        "DequantizeLinear -> Mul by a channel gate -> QuantizeLinear -> QMul",
        "DequantizeLinear -> GlobalAveragePool -> QuantizeLinear -> QGlobalAveragePool",
    }
    ops = [n.op for n in res.graph.nodes]
    assert "GlobalAveragePool" not in ops and "Mul" not in ops
    before, after = evaluate(graph, feeds)[0], evaluate(res.graph, feeds)[0]
    assert np.abs(before - after).max() <= 0.03 + 1e-6  # the pooled sum rounds once: at most a step
    sess = cnnrt.InferenceSession(mdl)
    assert {"QMul", "QGlobalAveragePool"} <= {n.op for n in sess.graph.nodes}
    got = sess.run(None, feeds)[0]
    np.testing.assert_array_equal(got, after)  # the kernels compute what the IR says
    want = ort_optimized(mdl, feeds)[0]
    assert np.abs(got - want).max() / 0.03 <= 1.0 + 1e-4
    assert len(np.unique(got)) > 20, "the case saturates: it would test little"


def test_a_mul_of_two_planes_and_a_per_channel_pool_input_are_declined_with_the_reason():
    """QMul takes a gate of one value per (image, channel) only: a Mul of two dequantized planes
    stays float (declined, logged); a GlobalAveragePool of a per-channel dequantized value stays
    float too."""
    xs = np.array([0.04] * C, np.float32)
    inits = dict(xs=np.float32(0.04), xz=np.array(125, "uint8"), pcs=xs, pcz=np.full(C, 125, "uint8"))
    inits.update(ms=np.float32(0.03), mz=np.array(130, "uint8"))
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["a"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["b"]),
        helper.make_node("Mul", ["a", "b"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "ms", "mz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["y"]),
        helper.make_node("QuantizeLinear", ["x", "pcs", "pcz"], ["pq"], axis=1),
        helper.make_node("DequantizeLinear", ["pq", "pcs", "pcz"], ["pd"], axis=1),
        helper.make_node("GlobalAveragePool", ["pd"], ["g"]),
        helper.make_node("QuantizeLinear", ["g", "ms", "mz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "ms", "mz"], ["z"]),
    ]
    mdl = model(nodes, [("x", "float32", (1, C, 9, 9))], [("y", "float32", None), ("z", "float32", None)], inits)
    graph = OnnxModel(mdl).to_graph({"x": (1, C, 9, 9)})
    res = fuse_qdq(graph)
    res.graph.verify()
    ops = [n.op for n in res.graph.nodes]
    assert "QMul" not in ops and "QGlobalAveragePool" not in ops
    assert "GlobalAveragePool" in ops
    reasons = {(rule, why) for rule, _, why in res.declined}
    gate = "DequantizeLinear -> Mul by a channel gate -> QuantizeLinear -> QMul"
    pool = "DequantizeLinear -> GlobalAveragePool -> QuantizeLinear -> QGlobalAveragePool"
    assert (gate, "not one 4-D operand with a plane") in reasons
    assert any(rule == pool and "per" in why for rule, why in reasons), reasons  # not per tensor
    feeds = _feeds()
    np.testing.assert_array_equal(evaluate(graph, feeds)[0], evaluate(res.graph, feeds)[0])

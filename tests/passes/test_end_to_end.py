"""Passes end to end: small ONNX models through cnnrt at opt_level 0 and 2 against onnxruntime.

These run the real kernels (fused epilogues, ChannelAffine, in-place Concat, in-place
activations) with poison mode on, so a planning bug shows up as a mismatch.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close_to, make_model, ort_run
from onnx import helper

import cnnrt

RNG = np.random.default_rng(0)


def _w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _bn_params(prefix, c):
    return {
        f"{prefix}_s": RNG.uniform(0.5, 1.5, c).astype(np.float32),
        f"{prefix}_b": _w(c),
        f"{prefix}_m": _w(c),
        f"{prefix}_v": RNG.uniform(0.5, 2.0, c).astype(np.float32),
    }


def _bn(prefix, x, y):
    return helper.make_node(
        "BatchNormalization", [x, f"{prefix}_s", f"{prefix}_b", f"{prefix}_m", f"{prefix}_v"], [y], name=prefix
    )


def _compare(model, feeds, expect_ops=None, forbid_ops=(), batch_ok=True):
    ref = ort_run(model, feeds)
    s0 = cnnrt.InferenceSession(model, opt_level=0, poison=True)
    s2 = cnnrt.InferenceSession(model, opt_level=2, poison=True)
    out0 = s0.run(None, feeds)
    out2 = s2.run(None, feeds)
    for r, a, b in zip(ref, out0, out2):
        assert_close_to(a, r, rel=1e-4)
        assert_close_to(b, r, rel=1e-4)
    ops = [n.op for n in s2.graph.nodes]
    for op in forbid_ops:
        assert op not in ops, (op, ops)
    if expect_ops is not None:
        assert ops == expect_ops, ops
    return s2


def test_conv_bn_relu_residual_block():
    inits = {"w1": _w(4, 4, 3, 3), "b1": _w(4), "w2": _w(4, 4, 3, 3), **_bn_params("bn1", 4), **_bn_params("bn2", 4)}
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        _bn("bn1", "c1", "n1"),
        helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        _bn("bn2", "c2", "n2"),
        helper.make_node("Add", ["n2", "x"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["y"], name="relu2"),
    ]
    m = make_model(nodes, [("x", [1, 4, 6, 6], np.float32)], [("y", [1, 4, 6, 6], np.float32)], inits)
    s = _compare(m, {"x": _w(1, 4, 6, 6, scale=1)}, expect_ops=["Conv", "Conv"])
    assert s.graph.nodes[1].origin == ("conv2", "bn2", "add", "relu2")


@pytest.mark.parametrize(
    "act,attrs",
    [
        ("Relu", {}),
        ("LeakyRelu", {"alpha": 0.2}),
        ("Sigmoid", {}),
        ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}),
        ("HardSwish", {}),
        ("Tanh", {}),
        ("Elu", {"alpha": 0.5}),
    ],
)
def test_conv_activation(act, attrs):
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node(act, ["c"], ["y"], **attrs),
    ]
    m = make_model(
        nodes, [("x", [1, 3, 7, 7], np.float32)], [("y", None, np.float32)], {"w": _w(5, 3, 3, 3), "b": _w(5)}
    )
    _compare(m, {"x": _w(1, 3, 7, 7, scale=2)}, expect_ops=["Conv"])


def test_relu6_clip_and_silu():
    inits = {"w": _w(4, 3, 1, 1), "w2": _w(4, 4, 1, 1), "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Clip", ["c", "lo", "hi"], ["r6"]),
        helper.make_node("Conv", ["r6", "w2"], ["c2"]),
        helper.make_node("Sigmoid", ["c2"], ["sg"]),
        helper.make_node("Mul", ["c2", "sg"], ["y"]),
    ]
    m = make_model(nodes, [("x", [1, 3, 5, 5], np.float32)], [("y", None, np.float32)], inits)
    s = _compare(m, {"x": _w(1, 3, 5, 5, scale=5)}, expect_ops=["Conv", "Conv"])
    assert [n.attrs["activation"] for n in s.graph.nodes] == ["Clip", "SiLU"]


def test_flatten_dropout_gemm_relu_classifier():
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w1", "b1"], ["h"], transB=1),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Dropout", ["r"], ["d"]),
        helper.make_node("Gemm", ["d", "w2", "b2"], ["y"], transB=1),
    ]
    inits = {"w1": _w(8, 6), "b1": _w(8), "w2": _w(3, 8), "b2": _w(3)}
    m = make_model(nodes, [("x", [1, 6, 4, 4], np.float32)], [("y", None, np.float32)], inits)
    s = _compare(m, {"x": _w(1, 6, 4, 4, scale=1)}, expect_ops=["GlobalAveragePool", "Reshape", "Gemm", "Gemm"])
    ex = s._current.executor
    assert "Reshape" not in [st.node.op for st in ex.steps]  # the Flatten is a view, no copy


def test_inception_concat_in_place_and_maxpool_pad():
    inits = {
        "w1": _w(2, 3, 1, 1),
        "w3": _w(4, 3, 3, 3),
        "w5": _w(2, 3, 5, 5),
        "wp": _w(2, 3, 1, 1),
        "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
    }
    nodes = [
        helper.make_node("Relu", ["x"], ["xr"]),
        helper.make_node("Conv", ["xr", "w1"], ["b1"]),
        helper.make_node("Relu", ["b1"], ["r1"]),
        helper.make_node("Conv", ["xr", "w3"], ["b3"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b3"], ["r3"]),
        helper.make_node("Conv", ["xr", "w5"], ["b5"], pads=[2, 2, 2, 2]),
        helper.make_node("Relu", ["b5"], ["r5"]),
        helper.make_node("Pad", ["xr", "pads"], ["xp"]),
        helper.make_node("MaxPool", ["xp"], ["mp"], kernel_shape=[3, 3]),
        helper.make_node("Conv", ["mp", "wp"], ["bp"]),
        helper.make_node("Relu", ["bp"], ["rp"]),
        helper.make_node("Concat", ["r1", "r3", "r5", "rp"], ["y"], axis=1),
    ]
    m = make_model(nodes, [("x", [1, 3, 6, 6], np.float32)], [("y", None, np.float32)], inits)
    s = _compare(m, {"x": _w(1, 3, 6, 6, scale=1)}, forbid_ops=["Pad"])
    cat = [n for n in s.graph.nodes if n.op == "Concat"][0]
    assert cat.attrs["in_place"] and cat.name in s.plan.noop_nodes


def test_densenet_block_bn_relu_conv_with_growing_concats():
    inits = {}
    nodes = [helper.make_node("Relu", ["x"], ["f0"])]
    feats = ["f0"]
    c = 4
    for k in range(3):
        cat = f"cat{k}"
        nodes.append(helper.make_node("Concat", list(feats), [cat], axis=1, name=cat))
        inits.update(_bn_params(f"bn{k}", c))
        nodes += [
            _bn(f"bn{k}", cat, f"n{k}"),
            helper.make_node("Relu", [f"n{k}"], [f"r{k}"]),
            helper.make_node("Conv", [f"r{k}", f"w{k}"], [f"f{k + 1}"], pads=[1, 1, 1, 1]),
        ]
        inits[f"w{k}"] = _w(2, c, 3, 3)
        feats.append(f"f{k + 1}")
        c += 2
    nodes.append(helper.make_node("Concat", feats, ["y"], axis=1))
    m = make_model(nodes, [("x", [1, 4, 5, 5], np.float32)], [("y", None, np.float32)], inits)
    s = _compare(m, {"x": _w(1, 4, 5, 5, scale=1)}, forbid_ops=["BatchNormalization"])
    ops = [n.op for n in s.graph.nodes]
    assert ops.count("ChannelAffine") == 3 and "Relu" in ops  # the first Relu is on the graph input
    assert all(n.attrs["activation"] == "Relu" for n in s.graph.nodes if n.op == "ChannelAffine")
    assert all(n.attrs.get("in_place") for n in s.graph.nodes if n.op == "Concat")


def test_batch_two_concat_copies_and_is_correct():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"]),
        helper.make_node("Conv", ["x", "w2"], ["b"]),
        helper.make_node("Concat", ["a", "b"], ["y"], axis=1),
    ]
    m = make_model(
        nodes,
        [("x", [2, 3, 4, 4], np.float32)],
        [("y", None, np.float32)],
        {"w1": _w(2, 3, 1, 1), "w2": _w(3, 3, 1, 1)},
    )
    s = _compare(m, {"x": _w(2, 3, 4, 4, scale=1)})
    assert not [n for n in s.graph.nodes if n.op == "Concat"][0].attrs.get("in_place")
    assert any("strided" in why for _, _, why in s.pass_log.declined["concat_in_place"])


def test_identity_to_output_and_constant_subgraph():
    nodes = [
        helper.make_node("Add", ["k1", "k2"], ["k"]),
        helper.make_node("Mul", ["x", "k"], ["m"]),
        helper.make_node("Identity", ["m"], ["y"]),
    ]
    m = make_model(nodes, [("x", [2, 3], np.float32)], [("y", None, np.float32)], {"k1": _w(3), "k2": _w(3)})
    s = cnnrt.InferenceSession(m, opt_level=1)
    assert [n.op for n in s.graph.nodes] == ["Mul"] and s.graph.nodes[0].outputs == ("y",)
    x = _w(2, 3, scale=1)
    assert_close_to(s.run(None, {"x": x})[0], ort_run(m, {"x": x})[0], rel=1e-6)


def test_disabled_passes_through_session():
    inits = {"w": _w(4, 3, 3, 3), **_bn_params("bn", 4)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]), _bn("bn", "c", "y")]
    m = make_model(nodes, [("x", [1, 3, 5, 5], np.float32)], [("y", None, np.float32)], inits)
    s = cnnrt.InferenceSession(m, opt_level=2, disabled_passes=["fold_batchnorm"])
    assert [n.op for n in s.graph.nodes] == ["Conv", "BatchNormalization"]


def test_in_place_binary_and_channel_affine_chain():
    inits = {"w1": _w(4, 3, 3, 3), "w2": _w(4, 3, 3, 3), "w3": _w(2, 4, 1, 1), **_bn_params("bn", 4)}
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["x", "w2"], ["b"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["a", "b"], ["m"]),
        _bn("bn", "m", "n"),
        helper.make_node("LeakyRelu", ["n"], ["r"], alpha=0.1),
        helper.make_node("Conv", ["r", "w3"], ["y"]),
    ]
    m = make_model(nodes, [("x", [1, 3, 5, 5], np.float32)], [("y", None, np.float32)], inits)
    s = _compare(m, {"x": _w(1, 3, 5, 5, scale=1)}, expect_ops=["Conv", "Conv", "Mul", "ChannelAffine", "Conv"])
    places = s.plan.places
    assert places["m"].kind == "alias" and places["r"].kind == "alias"  # written over their inputs

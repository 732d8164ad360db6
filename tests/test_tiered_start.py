"""The tiered start: the numpy tier computes what onnxruntime does, and a tiered session answers
from it while its native kernels compile, then switches to them."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from helpers import make_model, ort_run
from onnx import helper

import cnnrt
from cnnrt.runtime import tiered

RNG = np.random.default_rng(7)


def _w(*shape):
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def _model_many_ops():
    """Every op family the numpy tier computes itself, in awkward settings (groups, dilation,
    stride, asymmetric and ceil-mode pooling, depthwise with a multiplier, a BN that cannot fold)."""
    nodes = [
        helper.make_node(
            "Conv", ["x", "W1", "B1"], ["c1"], group=2, pads=[1, 2, 1, 0], strides=[1, 2], dilations=[2, 1]
        ),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
        helper.make_node("Conv", ["p1", "W2"], ["c2"], group=4, pads=[1, 1, 1, 1]),  # depthwise, 2 outputs per channel
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        helper.make_node("AveragePool", ["r2"], ["p2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=0),
        helper.make_node("LRN", ["p2"], ["l"], size=3, alpha=1e-2, beta=0.75, bias=1.0),
        helper.make_node("Concat", ["l", "p2"], ["cat"], axis=1),
        helper.make_node("BatchNormalization", ["cat", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("ConvTranspose", ["bn", "WT", "BT"], ["ct"], strides=[2, 2], pads=[1, 1, 0, 0]),
        helper.make_node("Sigmoid", ["ct"], ["sg"]),
        helper.make_node("GlobalAveragePool", ["sg"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "WG", "BG"], ["y"], transB=1),
    ]
    init = {
        "W1": _w(4, 2, 3, 3), "B1": _w(4), "W2": _w(8, 1, 3, 3), "lo": np.float32(0), "hi": np.float32(6),
        "s": _w(16) + 1, "b": _w(16), "m": _w(16), "v": np.abs(_w(16)) + 0.5,
        "WT": _w(16, 3, 3, 3), "BT": _w(3), "WG": _w(5, 3), "BG": _w(5),
    }  # fmt: skip
    return make_model(nodes, [("x", [2, 4, 11, 13], np.float32)], [("y", [2, 5], np.float32)], init)


def _hold_compiles(monkeypatch):
    """Keep every tier's compile thread waiting until the returned event is set."""
    go = threading.Event()
    compile_ = tiered.Tier._compile

    def held(self):
        go.wait(60)
        compile_(self)

    monkeypatch.setattr(tiered.Tier, "_compile", held)
    monkeypatch.setattr(tiered, "is_warm", lambda graph: False)
    monkeypatch.setenv(tiered.ENV, "1")
    return go


def test_tiered_session_answers_from_numpy_then_switches_to_native(monkeypatch):
    go = _hold_compiles(monkeypatch)
    model = _model_many_ops()
    x = RNG.standard_normal((2, 4, 11, 13)).astype(np.float32)
    [ref] = ort_run(model, {"x": x})
    sess = cnnrt.InferenceSession(model.SerializeToString(), threads=1)
    try:
        [first] = sess.run(None, {"x": x})
        assert sess.build_timings["numpy_tier_runs"] == 1  # the native kernels were still "compiling"
        np.testing.assert_allclose(first, ref, rtol=1e-4, atol=1e-5)
    finally:
        go.set()
    tiered.wait_for_compiles()
    [native] = sess.run(None, {"x": x})
    tm = sess.build_timings
    assert tm["numpy_tier_runs"] == 1 and "compile" in tm and "compiled" in tm
    np.testing.assert_allclose(native, ref, rtol=1e-4, atol=1e-5)


def test_untiered_and_warm_plans_start_native(monkeypatch):
    model = _model_many_ops().SerializeToString()
    x = RNG.standard_normal((2, 4, 11, 13)).astype(np.float32)
    monkeypatch.delenv(tiered.ENV, raising=False)
    sess = cnnrt.InferenceSession(model, threads=1)
    sess.run(None, {"x": x})
    tm = sess.build_timings
    assert "numpy_tier_runs" not in tm and tm["first_run"] > 0 and tm["compiled"] >= 0
    assert tiered.is_warm(sess.graph)  # the first native run marked the plan warm
    monkeypatch.setenv(tiered.ENV, "1")
    again = cnnrt.InferenceSession(model, threads=1)
    again.run(None, {"x": x})
    assert "numpy_tier_runs" not in again.build_timings


def test_a_graph_the_tier_cannot_compute_runs_native(monkeypatch):
    go = _hold_compiles(monkeypatch)
    # MaxPool's Indices output is not computed by the tier
    nodes = [helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2], strides=[2, 2])]
    model = make_model(
        nodes, [("x", [1, 2, 4, 4], np.float32)], [("y", [1, 2, 2, 2], np.float32), ("i", [1, 2, 2, 2], np.int64)]
    )
    x = RNG.standard_normal((1, 2, 4, 4)).astype(np.float32)
    ref = ort_run(model, {"x": x})
    sess = cnnrt.InferenceSession(model.SerializeToString(), threads=1)
    go.set()
    got = sess.run(None, {"x": x})  # waits for the native kernels instead of a tier answer
    assert "numpy_tier_runs" not in sess.build_timings
    for g, r in zip(got, ref):
        np.testing.assert_array_equal(g, r)


@pytest.mark.parametrize("approximate", [0.0, 1.0])
def test_numpy_tier_gelu_and_erf_match_the_references(approximate):
    from reference import erf_reference, gelu_reference

    from cnnrt.core.ops import ACTIVATIONS
    from cnnrt.kernels import numpy_tier

    x = np.concatenate([np.linspace(-7, 7, 2001), RNG.standard_normal(500) * 3]).astype(np.float32)
    y = numpy_tier.activate(x.copy(), ACTIVATIONS["Gelu"], approximate, 0.0)
    assert y.dtype == np.float32
    # the rational erf's absolute error (< 7e-8) times ½|x| (<= 3.5): 1 + erf cancels for x < 0
    np.testing.assert_allclose(y, gelu_reference(x, approximate), rtol=1e-6, atol=2.5e-7)
    np.testing.assert_allclose(numpy_tier.erf(x), erf_reference(x), rtol=0, atol=2e-7)


def test_the_tier_computes_squeeze_excite_norms_and_block_rearrangements(monkeypatch):
    """The ops the mobile, segmentation, style-transfer, super-resolution and ConvNeXt zoo nets
    need besides convs: a squeeze-and-excitation block (fused to one SqueezeExcite by the
    passes), InstanceNormalization + Relu, DepthToSpace, LayerNormalization, SpaceToDepth, Resize."""
    go = _hold_compiles(monkeypatch)
    nodes = [
        helper.make_node("GlobalAveragePool", ["x"], ["p"]),
        helper.make_node("Conv", ["p", "Ws", "Bs"], ["s"]),
        helper.make_node("Relu", ["s"], ["sr"]),
        helper.make_node("Conv", ["sr", "We", "Be"], ["e"]),
        helper.make_node("HardSigmoid", ["e"], ["gate"]),
        helper.make_node("Mul", ["x", "gate"], ["se"]),
        helper.make_node("InstanceNormalization", ["se", "g", "b"], ["inorm"]),
        helper.make_node("Relu", ["inorm"], ["ir"]),
        helper.make_node("DepthToSpace", ["ir"], ["d2s"], blocksize=2, mode="CRD"),
        helper.make_node("LayerNormalization", ["d2s", "ls", "lb"], ["ln"], axis=-1),
        helper.make_node("SpaceToDepth", ["ln"], ["s2d"], blocksize=2),
        helper.make_node("Resize", ["s2d", "", "sc"], ["y"], mode="linear"),
    ]
    init = {"Ws": _w(4, 8, 1, 1), "Bs": _w(4), "We": _w(8, 4, 1, 1), "Be": _w(8), "g": _w(8) + 1, "b": _w(8),
            "ls": _w(12) + 1, "lb": _w(12), "sc": np.array([1, 1, 2, 1.5], np.float32)}  # fmt: skip
    model = make_model(nodes, [("x", [2, 8, 6, 6], np.float32)], [("y", [2, 8, 12, 9], np.float32)], init)
    x = RNG.standard_normal((2, 8, 6, 6)).astype(np.float32)
    [ref] = ort_run(model, {"x": x})
    sess = cnnrt.InferenceSession(model.SerializeToString(), threads=1)
    try:
        assert "SqueezeExcite" in {n.op for n in sess.graph.nodes}
        [first] = sess.run(None, {"x": x})
        assert sess.build_timings["numpy_tier_runs"] == 1
        np.testing.assert_allclose(first, ref, rtol=1e-4, atol=1e-4)
    finally:
        go.set()
    tiered.wait_for_compiles()

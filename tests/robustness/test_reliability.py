"""Findings of an adversarial sweep, each pinned: empty-channel convs and overridable initializers
fed at another shape answer as onnxruntime does; a memory limit that counts every byte a session
holds; model files too large for a protobuf, NaN/Inf Resize scales, feeds that do not fit and
MemoryError anywhere become typed errors."""

from __future__ import annotations

import re
from functools import partial

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from robust_models import IR_VERSION, conv_net, input_for, ort_session

import cnnrt
import cnnrt.frontends.loader as loader
import cnnrt.passes.fold_constants as fold_mod
import cnnrt.runtime.executor as executor_mod
from cnnrt.errors import InputError, ModelLoadError, ResourceLimitError, ShapeError


def _model(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


X = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(np.float32)


# ---------------------------------------------------------------------------- empty channels


def _zero_channel_conv():
    """Conv over x[:, 0:0] (no input channels) with a bias, then Relu."""
    nodes = [
        helper.make_node("Slice", ["x", "s", "e", "a"], ["z"]),
        helper.make_node("Conv", ["z", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    inits = {
        "s": np.array([0], np.int64),
        "e": np.array([0], np.int64),
        "a": np.array([1], np.int64),
        "w": np.zeros((5, 0, 3, 3), np.float32),
        "b": np.array([1.5, -2.0, 0.25, 3.0, -0.5], np.float32),
    }
    return _model(nodes, [("x", [1, 4, 8, 8])], ["y"], inits)


@pytest.mark.parametrize("opt_level", [0, 1, 2])
def test_conv_over_zero_channels_gives_the_bias_like_onnxruntime(opt_level):
    m = _zero_channel_conv()
    [want] = ort_session(m).run(None, {"x": X})
    [got] = cnnrt.InferenceSession(m, opt_level=opt_level).run(None, {"x": X})
    assert got.shape == want.shape == (1, 5, 8, 8)
    np.testing.assert_array_equal(got, want)
    assert got.any()  # relu(bias): not all zeros


def test_conv_with_zero_output_channels_gives_an_empty_tensor_like_onnxruntime():
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3])]
    m = _model(
        nodes, [("x", [1, 4, 8, 8])], ["y"], {"w": np.zeros((0, 4, 3, 3), np.float32), "b": np.zeros(0, np.float32)}
    )
    [want] = ort_session(m).run(None, {"x": X})
    [got] = cnnrt.InferenceSession(m).run(None, {"x": X})
    assert got.shape == want.shape == (1, 0, 6, 6)


def test_empty_channels_next_to_blocked_convs_match_onnxruntime():
    """16-channel convs run channel-blocked; an empty channel slice of their output and a conv
    to 0 channels from it must stay out of the blocked layout (no kernel takes 0 blocks)."""
    rng = np.random.default_rng(4)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
        helper.make_node("Slice", ["c", "s", "e", "a"], ["z"]),
        helper.make_node("Conv", ["z", "wz", "bz"], ["y1"], kernel_shape=[1, 1]),
        helper.make_node("Conv", ["c", "w0", "b0"], ["y2"], kernel_shape=[1, 1]),
    ]
    inits = {
        "w": rng.standard_normal((16, 16, 1, 1)).astype(np.float32),
        "s": np.array([3], np.int64),
        "e": np.array([3], np.int64),
        "a": np.array([1], np.int64),
        "wz": np.zeros((16, 0, 1, 1), np.float32),
        "bz": rng.standard_normal(16).astype(np.float32),
        "w0": np.zeros((0, 16, 1, 1), np.float32),
        "b0": np.zeros(0, np.float32),
    }
    graph = helper.make_graph(
        nodes,
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16, 4, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y1", "y2")],
        initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = IR_VERSION
    x = rng.standard_normal((1, 16, 4, 4)).astype(np.float32)
    want = ort_session(m).run(None, {"x": x})
    got = cnnrt.InferenceSession(m).run(None, {"x": x})
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_array_equal(g, w)


# ---------------------------------------------------------------------------- overridable initializers


def _overridable_conv():
    """Conv whose weight is an initializer that is also a graph input (no declared shape)."""
    w = (np.random.default_rng(1).standard_normal((8, 4, 3, 3)) * 0.3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 0, 0])]
    return _model(nodes, [("x", [1, 4, 10, 10]), ("w", None)], ["y"], {"w": w})


@pytest.mark.parametrize("feed_shape", [(1, 4, 3, 3), (2, 4, 3, 3), (8, 4, 1, 1), (8, 4, 3, 3)])
def test_fed_initializer_of_another_shape_builds_the_graph_from_the_feed(feed_shape):
    m = _overridable_conv()
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal(feed_shape).astype(np.float32)
    [want] = ort_session(m).run(None, {"x": x, "w": w})
    [got] = cnnrt.InferenceSession(m).run(None, {"x": x, "w": w})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_plan_cache_is_keyed_by_the_shapes_of_fed_initializers():
    m = _overridable_conv()
    ref, sess = ort_session(m), cnnrt.InferenceSession(m)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    for shape in [(8, 4, 3, 3), (1, 4, 3, 3), (8, 4, 1, 1), (8, 4, 3, 3), (1, 4, 3, 3)]:
        w = rng.standard_normal(shape).astype(np.float32)
        [want] = ref.run(None, {"x": x, "w": w})
        [got] = sess.run(None, {"x": x, "w": w})
        assert got.shape == want.shape, shape
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_a_feed_that_does_not_fit_its_graph_input_is_an_input_error():
    sess = cnnrt.InferenceSession(conv_net())
    with pytest.raises(InputError, match=r"input 'x' of shape \[2, 3, 8, 8\] does not fit the graph input"):
        sess.executor.run([np.zeros((2, 3, 8, 8), np.float32)])


# ---------------------------------------------------------------------------- memory limit


def _expanding_constants(n: int = 1 << 20, count: int = 12):
    """x (n floats) plus ``count`` ConstantOfShape([n], i) constants, added in a chain: folding
    makes 4 MiB of constants per node out of a few bytes of model."""
    nodes, prev = [], "x"
    for i in range(count):
        value = helper.make_tensor("v", TensorProto.FLOAT, [1], [float(i + 1)])
        nodes.append(helper.make_node("ConstantOfShape", ["shape"], [f"k{i}"], value=value))
        nodes.append(helper.make_node("Add", [prev, f"k{i}"], [f"s{i}"]))
        prev = f"s{i}"
    nodes.append(helper.make_node("Relu", [prev], ["y"]))
    return _model(nodes, [("x", [n])], ["y"], {"shape": np.array([n], np.int64)})


def test_constant_folding_stops_at_the_memory_limit_and_the_op_runs_at_run_time():
    limit = 40 << 20
    m = _expanding_constants()
    sess = cnnrt.InferenceSession(m, memory_limit=limit)
    constants = sum(a.nbytes for a in sess.graph.constants.values())
    assert constants <= limit // 2  # 12 x 4 MiB unfolded would be 48 MiB
    assert sess.plan.folded_bytes == constants - sess.plan.constant_bytes
    assert sess.plan.total_bytes <= limit
    declined = [why for _, _, why in sess.pass_log.declined["fold_constants"]]
    assert any("past the memory limit" in why for why in declined)
    x = np.linspace(-100, 40, 1 << 20, dtype=np.float32)
    [y] = sess.run(None, {"x": x})
    want = x
    for i in range(12):
        want = want + np.float32(i + 1)
    np.testing.assert_array_equal(y, np.maximum(want, 0))


def test_constants_count_against_the_limit_before_anything_is_allocated(monkeypatch):
    class NoExecutor:
        def __init__(self, *a, **k):
            raise AssertionError("nothing may be allocated above the limit")

    monkeypatch.setattr("cnnrt.runtime.build.Executor", NoExecutor)
    # a 1x1024 input times a 1024x2048 weight: an 8 MiB initializer, a few KiB of activations
    w = np.zeros((1024, 2048), np.float32)
    m = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [("x", [1, 1024])], ["y"], {"w": w})
    with pytest.raises(ResourceLimitError, match=r"8.0 MiB of initializers and 0 bytes of folded constants need"):
        cnnrt.InferenceSession(m, memory_limit=4 << 20)


def test_plan_reports_every_kind_of_memory_and_the_limit_counts_kernel_buffers(monkeypatch):
    from test_threads import _model as parallel_net  # Winograd, direct, depthwise, BN-free convs

    sess = cnnrt.InferenceSession(parallel_net(), threads=2)
    p = sess.plan
    assert p.constant_bytes > 0  # folded_bytes: test_constant_folding_stops_at_the_memory_limit...
    assert p.winograd_bytes > 0 and p.prepacked_bytes > 0 and p.scratch_bytes > 0
    assert p.total_bytes == (
        p.arena_bytes + p.constant_bytes + p.folded_bytes + p.prepacked_bytes + p.winograd_bytes + p.scratch_bytes
    )
    allocated = []
    monkeypatch.setattr(executor_mod.Executor, "_new_arena", lambda self, n: allocated.append(n))
    below = p.arena_bytes + p.constant_bytes + p.folded_bytes + 1
    with pytest.raises(ResourceLimitError, match=r"node .* its kernel's buffers take the session to"):
        cnnrt.InferenceSession(parallel_net(), threads=2, memory_limit=below)
    assert not allocated  # refused before the arena


# ---------------------------------------------------------------------------- typed errors


def test_a_model_file_over_2_gib_is_refused_without_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "huge.onnx"
    with open(path, "wb") as f:
        f.truncate(3 << 30)  # sparse: no disk used

    def no_parse(self, data):
        raise AssertionError("the file must not be read and parsed")

    monkeypatch.setattr(onnx.ModelProto, "ParseFromString", no_parse)
    with pytest.raises(
        ModelLoadError, match=r"is 3221225472 bytes: not a valid ONNX protobuf, which cannot reach 2 GiB"
    ):
        cnnrt.InferenceSession(str(path))


@pytest.mark.parametrize("scale", [np.nan, np.inf, -np.inf])
def test_resize_scale_that_is_not_finite_says_so(scale):
    nodes = [helper.make_node("Resize", ["x", "", "sc"], ["y"], mode="nearest")]
    m = _model(nodes, [("x", [1, 4, 8, 8])], ["y"], {"sc": np.array([1, 1, scale, 2], np.float32)})
    with pytest.raises(ShapeError, match=r"scales \[1.0, 1.0, -?(nan|inf), 2.0\] must be finite numbers"):
        cnnrt.InferenceSession(m)


def _raise_memory_error(*a, **k):
    raise MemoryError


@pytest.mark.parametrize(
    "target, match",
    [
        (
            lambda mp: (
                mp.setattr(loader.numpy_helper, "to_array", _raise_memory_error),
                mp.setattr(loader, "_from_raw", _raise_memory_error),
            ),
            r"decoding tensor 'w'",
        ),
        (
            lambda mp: mp.setattr("cnnrt.frontends.graph_builder.GraphBuilder.build", _raise_memory_error),
            r"importing the graph for input shapes",
        ),
        (lambda mp: mp.setattr(fold_mod, "evaluate_node", _raise_memory_error), r"optimising the graph"),
        (lambda mp: mp.setattr("cnnrt.runtime.build.plan_memory", _raise_memory_error), r"planning the arena"),
        (lambda mp: mp.setattr(executor_mod, "get_builder", lambda *a: _raise_memory_error), r"building its kernel"),
    ],
    ids=["decode", "import", "fold", "plan", "kernel"],
)
def test_memory_error_while_loading_or_building_is_a_resource_limit_error(monkeypatch, target, match):
    m = conv_net()
    m.graph.node.insert(0, helper.make_node("Add", ["fb", "fb"], ["fb2"]))  # something to fold
    m.graph.node[-2].input[2] = "fb2"
    target(monkeypatch)
    with pytest.raises(ResourceLimitError, match=match):
        cnnrt.InferenceSession(m)


def test_memory_error_while_running_is_a_resource_limit_error_naming_the_node():
    sess = cnnrt.InferenceSession(conv_net())
    step = sess.executor.steps[0]
    sess.executor.calls[0] = partial(_raise_memory_error, step.ins, step.outs)
    with pytest.raises(
        ResourceLimitError, match=rf"node {re.escape(repr(step.node.name))} .*out of memory in its kernel"
    ):
        sess.run(None, input_for(conv_net()))

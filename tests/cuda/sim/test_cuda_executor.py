"""CudaExecutor: device arena and plan places, device-array feeds/outputs, poison, errors."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, conv_attrs, rand
from numba import cuda
from reference import activation_ref, conv2d_reference

from cnnrt.core.ir import Graph, Node, Value
from cnnrt.errors import InputError, UnsupportedOpError
from cnnrt.runtime.cuda_executor import CudaExecutor
from cnnrt.runtime.plan import plan_memory

CONV = conv_attrs((3, 3), pads=(1, 1, 1, 1))


def _graph(batch=1, concat_in_place=False):
    """x -> Conv -> Relu -> (Conv a, Conv b) -> Concat -> Reshape -> output, plus a side output."""
    rng = np.random.default_rng(0)
    w1, w2, w3 = rand(rng, 4, 2, 3, 3), rand(rng, 3, 4, 3, 3), rand(rng, 2, 4, 3, 3)
    v = lambda n, s, dt="float32": Value(n, s, dt)  # noqa: E731
    nodes = [
        Node("Conv", ("x", "w1"), ("c1",), CONV, name="conv1", origin=("conv1",)),
        Node("Relu", ("c1",), ("r1",), {}, name="relu1", origin=("relu1",)),
        Node("Conv", ("r1", "w2"), ("a",), CONV, name="conv_a", origin=("conv_a",)),
        Node("Conv", ("r1", "w3"), ("b",), dict(CONV, activation="Tanh"), name="conv_b", origin=("conv_b",)),
        Node("Concat", ("a", "b"), ("cat",), dict(axis=1, in_place=concat_in_place), name="cat", origin=("cat",)),
        Node("Reshape", ("cat",), ("y",), dict(shape=(batch, 5 * 16)), name="flat", origin=("flat",)),
    ]
    values = {
        "x": v("x", (batch, 2, 4, 4)),
        "w1": v("w1", w1.shape),
        "w2": v("w2", w2.shape),
        "w3": v("w3", w3.shape),
        "c1": v("c1", (batch, 4, 4, 4)),
        "r1": v("r1", (batch, 4, 4, 4)),
        "a": v("a", (batch, 3, 4, 4)),
        "b": v("b", (batch, 2, 4, 4)),
        "cat": v("cat", (batch, 5, 4, 4)),
        "y": v("y", (batch, 80)),
    }
    g = Graph(nodes, values, {"w1": w1, "w2": w2, "w3": w3}, ["x"], ["y", "r1"])
    g.verify()

    def ref(x):
        r1 = np.maximum(conv2d_reference(x, w1, None, (1, 1), (1, 1, 1, 1)), 0)
        a = conv2d_reference(r1, w2, None, (1, 1), (1, 1, 1, 1))
        b = np.tanh(conv2d_reference(r1, w3, None, (1, 1), (1, 1, 1, 1)))
        return [np.concatenate([a, b], 1).reshape(batch, -1), r1]

    return g, ref


@pytest.mark.parametrize("concat_in_place", [False, True])
@pytest.mark.parametrize("poison", [False, True])
def test_plan_places_aliases_and_slices(concat_in_place, poison):
    g, ref = _graph(1, concat_in_place)
    plan = plan_memory(g)
    if concat_in_place:
        assert plan.places["a"].kind == "slice" and "cat" in plan.noop_nodes
    ex = CudaExecutor(g, plan, poison=poison)
    assert "flat" not in [s.node.name for s in ex.steps]  # aliased view: no step
    rng = np.random.default_rng(1)
    for _ in range(2):  # the arena is reused between runs
        x = rand(rng, 1, 2, 4, 4)
        for got, want in zip(ex.run([x]), ref(x)):
            assert_close(got, want, 1e-5)


def test_device_feeds_and_device_outputs():
    g, ref = _graph(2)
    ex = CudaExecutor(g, plan_memory(g))
    x = rand(np.random.default_rng(2), 2, 2, 4, 4)
    host = ex.run([x])
    dev = ex.run([cuda.to_device(x)], return_device=True)
    for h, d, want in zip(host, dev, ref(x)):
        assert hasattr(d, "copy_to_host") and tuple(d.shape) == h.shape
        np.testing.assert_array_equal(d.copy_to_host(), h)
        assert_close(h, want, 1e-5)
    # device outputs are copies: the next run must not change them
    before = dev[0].copy_to_host()
    ex.run([x * 2])
    np.testing.assert_array_equal(dev[0].copy_to_host(), before)
    # chain: a device output fed straight back as a device input of a graph that takes that shape
    [again] = ex.run([cuda.to_device(x)], return_device=True)[:1]
    np.testing.assert_array_equal(again.copy_to_host(), host[0])


def test_bad_feeds_raise_input_error():
    g, _ = _graph(1)
    ex = CudaExecutor(g, plan_memory(g))
    with pytest.raises(InputError, match="expected 1 feeds"):
        ex.run([])
    with pytest.raises(InputError, match="device feed 'x'"):
        ex.run([cuda.to_device(np.zeros((1, 2, 4, 5), np.float32))])
    with pytest.raises(InputError, match="feed 'x' has 40 elements"):
        ex.run([np.zeros((1, 2, 4, 5), np.float32)])


def test_unsupported_op_is_found_at_build_time():
    g = Graph(
        [Node("NoSuchOp", ("x",), ("y",), {}, name="mystery", origin=("m",))],
        {"x": Value("x", (2,)), "y": Value("y", (2,))},
        {},
        ["x"],
        ["y"],
    )
    with pytest.raises(UnsupportedOpError, match="mystery \\(NoSuchOp\\)"):
        CudaExecutor(g, plan_memory(g))


def test_in_place_activation_alias():
    """Relu/Add written over their input when the planner aliases them (IN_PLACE_OPS)."""
    rng = np.random.default_rng(3)
    w = rand(rng, 3, 3, 3, 3)
    nodes = [
        Node("Conv", ("x", "w"), ("c",), CONV, name="conv", origin=("conv",)),
        Node("Sigmoid", ("c",), ("s",), {}, name="sig", origin=("sig",)),
        Node("Add", ("s", "x"), ("y",), {}, name="add", origin=("add",)),
    ]
    values = {n: Value(n, (1, 3, 4, 4)) for n in ("x", "c", "s", "y")} | {"w": Value("w", w.shape)}
    g = Graph(nodes, values, {"w": w}, ["x"], ["y"])
    plan = plan_memory(g)
    assert plan.places["s"].kind == "alias"
    x = rand(rng, 1, 3, 4, 4)
    [y] = CudaExecutor(g, plan).run([x])
    assert_close(y, activation_ref(conv2d_reference(x, w, None, (1, 1), (1, 1, 1, 1)), "Sigmoid") + x, 1e-5)

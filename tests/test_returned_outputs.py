"""The arrays a run returns: the caller's own, never overwritten while anything refers to them,
their memory reused once dropped; a large output the last step writes straight into them."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from helpers import assert_close_to, make_model, ort_run
from onnx import helper

import cnnrt
from cnnrt.runtime.returned import MIN_KEPT_BYTES

# Conv then a x8 nearest Resize: 8 x 4 x 128 x 128 float32 = 2 MiB out of the last step
SHAPE = [8, 3, 16, 16]
OUT = [8, 4, 128, 128]


def _segmentation_like(relu_after: bool = False):
    rng = np.random.default_rng(0)
    consts = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "scales": np.array([1, 1, 8, 8], np.float32)}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["r" if relu_after else "y"], mode="nearest"),
    ]
    if relu_after:
        nodes.append(helper.make_node("Relu", ["r"], ["y"]))
    return make_model(nodes, [("x", SHAPE)], [("y", OUT)], consts)


def _feed(seed):
    return {"x": np.random.default_rng(seed).standard_normal(SHAPE).astype(np.float32)}


@pytest.mark.parametrize("relu_after", [False, True])
def test_large_output_of_the_last_step_matches_onnxruntime_run_after_run(relu_after):
    """Written by the last step straight into the returned array, or (a Relu in place of the
    Resize's buffer: an alias) copied into it."""
    model = _segmentation_like(relu_after)
    sess = cnnrt.InferenceSession(model)
    assert np.prod(OUT) * 4 >= MIN_KEPT_BYTES
    assert sess._now().executor.tail_output == (None if relu_after else 0)
    for seed in range(3):
        [got] = sess.run(None, _feed(seed))
        assert_close_to(got, ort_run(model, _feed(seed))[0])


def test_held_outputs_and_their_views_are_never_overwritten():
    model = _segmentation_like()
    sess = cnnrt.InferenceSession(model)
    [first] = sess.run(None, _feed(0))
    kept = first.copy()
    [second] = sess.run(None, _feed(1))
    view = second[:, 1]
    kept_view = view.copy()
    del second
    gc.collect()
    [third] = sess.run(None, _feed(2))
    np.testing.assert_array_equal(first, kept)  # still held: not reused
    np.testing.assert_array_equal(view, kept_view)  # its array is dropped but a view refers to it
    assert not np.shares_memory(third, first) and not np.shares_memory(third, view)
    assert_close_to(third, ort_run(model, _feed(2))[0])


def test_a_dropped_output_array_is_reused():
    sess = cnnrt.InferenceSession(_segmentation_like())
    [out] = sess.run(None, _feed(0))
    address = out.ctypes.data
    del out
    [again] = sess.run(None, _feed(1))
    assert again.ctypes.data == address
    # `out = sess.run(...)` in a loop: the previous array is still bound while the next fills
    addresses = set()
    for seed in range(4):
        [out] = sess.run(None, _feed(seed))
        addresses.add(out.ctypes.data)
    assert len(addresses) == 2


def test_small_outputs_are_new_arrays_each_run():
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", [2, 3])], [("y", [2, 3])])
    sess = cnnrt.InferenceSession(model)
    assert sess._now().executor.tail_output is None
    x = np.arange(6, dtype=np.float32).reshape(2, 3) - 3
    [a] = sess.run(None, {"x": x})
    [b] = sess.run(None, {"x": -x})
    np.testing.assert_array_equal(a, np.maximum(x, 0))
    np.testing.assert_array_equal(b, np.maximum(-x, 0))

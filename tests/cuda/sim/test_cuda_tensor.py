"""Data-movement CUDA kernels: Concat, Split, Slice, Transpose, Pad, Gather, views, shape ops."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import rand, run_op


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(axis):
    rng = np.random.default_rng(0)
    shapes = {0: [(1, 3, 2), (2, 3, 2)], 1: [(2, 1, 2), (2, 3, 2), (2, 2, 2)], -1: [(2, 3, 1), (2, 3, 3)]}[axis]
    xs = [rand(rng, *s) for s in shapes]
    ref = np.concatenate(xs, axis)
    [y] = run_op("Concat", xs, [ref.shape], dict(axis=axis), const=(1,))
    np.testing.assert_array_equal(y, ref)


def test_concat_int64():
    xs = [np.array([1, 2], np.int64), np.array([3], np.int64)]
    [y] = run_op("Concat", xs, [((3,), "int64")], dict(axis=0))
    np.testing.assert_array_equal(y, [1, 2, 3])


@pytest.mark.parametrize("axis, sizes", [(1, (1, 3, 2)), (0, (2, 1)), (-1, (3, 1))])
def test_split(axis, sizes):
    x = rand(np.random.default_rng(1), 3, 6, 4)
    refs = np.split(x, np.cumsum(sizes)[:-1], axis)
    ys = run_op("Split", [x], [r.shape for r in refs], dict(axis=axis, sizes=sizes))
    for y, r in zip(ys, refs):
        np.testing.assert_array_equal(y, r)


@pytest.mark.parametrize(
    "starts, ends, steps",
    [((0, 1, 0), (2, 3, 5), (1, 1, 2)), ((1, 2, 4), (-1, 3, -1), (-1, 1, -2)), ((0, 0, 1), (2, 4, 4), (1, 3, 1))],
)
def test_slice(starts, ends, steps):
    x = rand(np.random.default_rng(2), 2, 4, 5)
    # IR Slice attrs are normalised: with a negative step, end -1 means through index 0
    ref = x[tuple(slice(s, None if e < 0 else e, k) for s, e, k in zip(starts, ends, steps))]
    [y] = run_op("Slice", [x], [ref.shape], dict(starts=starts, ends=ends, steps=steps))
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("perm", [(0, 2, 3, 1), (3, 2, 1, 0), (1, 0, 2, 3)])
def test_transpose(perm):
    x = rand(np.random.default_rng(3), 2, 3, 4, 2)
    ref = x.transpose(perm)
    [y] = run_op("Transpose", [x], [ref.shape], dict(perm=perm))
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", [(0, 1, 2, 0, 2, 1), (1, 0, 1, 1, 1, 2)])
def test_pad(mode, pads):
    x = rand(np.random.default_rng(4), 2, 3, 4)
    width = list(zip(pads[:3], pads[3:]))
    ref = np.pad(x, width, mode=mode, **({"constant_values": 0.5} if mode == "constant" else {}))
    [y] = run_op("Pad", [x], [ref.shape], dict(mode=mode, pads=pads, value=0.5))
    np.testing.assert_array_equal(y, ref)


def test_pad_negative_crops():
    x = rand(np.random.default_rng(5), 3, 5)
    [y] = run_op("Pad", [x], [(4, 3)], dict(mode="constant", pads=(1, -1, 0, -1), value=0.0))
    ref = np.pad(x[:, 1:4], ((1, 0), (0, 0)))
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("axis, idx", [(0, [2, -1, 0]), (1, [[1, 0], [2, 2]]), (2, 1)])
def test_gather(axis, idx):
    x = rand(np.random.default_rng(6), 3, 4, 2)
    idx = np.asarray(idx, np.int64)
    ref = np.take(x, idx, axis=axis)
    for const in ((1,), ()):
        [y] = run_op("Gather", [x, idx], [ref.shape], dict(axis=axis), const=const)
        np.testing.assert_array_equal(y, ref)


def test_gather_int64_data():
    x = np.array([7, 8, 9, 10], np.int64)
    [y] = run_op("Gather", [x, np.array([3, 0], np.int64)], [((2,), "int64")], dict(axis=0), const=(1,))
    np.testing.assert_array_equal(y, [10, 7])


@pytest.mark.parametrize("op", ["Reshape", "Identity", "Dropout"])
def test_views_copy_constants_and_alias_fed_inputs(op):
    x = rand(np.random.default_rng(7), 2, 6)
    shape = (3, 4) if op == "Reshape" else (2, 6)
    attrs = dict(shape=shape) if op == "Reshape" else {}
    [y] = run_op(op, [x], [shape], attrs, const=(0,))  # a constant input cannot alias: the kernel copies
    np.testing.assert_array_equal(y, x.reshape(shape))
    [y], ex = run_op(op, [x], [shape], attrs, executor=True)  # fed input: planner aliases, no step
    np.testing.assert_array_equal(y, x.reshape(shape))
    assert ex.steps == []


def test_dropout_mask_output():
    x = rand(np.random.default_rng(8), 2, 3)
    y, mask = run_op("Dropout", [x], [x.shape, (x.shape, "bool")])
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()


def test_shape_and_constant_of_shape():
    x = rand(np.random.default_rng(9), 2, 3, 4)
    [s] = run_op("Shape", [x], [((2,), "int64")], dict(start=1, end=None))
    np.testing.assert_array_equal(s, [3, 4])
    [c] = run_op(
        "ConstantOfShape",
        [np.array([2, 3], np.int64)],
        [((2, 3), "int64")],
        dict(value=np.array(7, np.int64)),
        const=(0,),
    )
    np.testing.assert_array_equal(c, np.full((2, 3), 7))
    [c] = run_op(
        "ConstantOfShape", [np.array([4], np.int64)], [(4,)], dict(value=np.array([0.25], np.float32)), const=(0,)
    )
    np.testing.assert_array_equal(c, np.full(4, 0.25, np.float32))

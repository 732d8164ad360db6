"""Pooling and LRN CUDA kernels against numpy references (the references checked against onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op
from reference import pool_out, pool_windows, squeeze_excite_reference

# (x shape, kernel, strides, pads, dilations, ceil_mode)
POOL_CASES = [
    ((1, 2, 6, 6), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),
    ((2, 3, 7, 5), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    ((1, 2, 6, 7), (3, 2), (1, 2), (1, 0, 1, 1), (1, 1), False),
    ((1, 1, 8, 8), (3, 3), (2, 3), (1, 1, 0, 2), (2, 1), True),
    ((1, 2, 6, 6), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
]


def _shape_and_windows(x, case, fill):
    _, kernel, strides, pads, dil, ceil = case
    oh = pool_out(x.shape[2], kernel[0], strides[0], dil[0], pads[0], pads[2], ceil)
    ow = pool_out(x.shape[3], kernel[1], strides[1], dil[1], pads[1], pads[3], ceil)
    return (x.shape[0], x.shape[1], oh, ow), pool_windows(x, kernel, strides, pads, dil, (oh, ow), fill)


def max_pool_ref(x, case, storage_order=0):
    out_shape, (win, inside, _, index) = _shape_and_windows(x, case, -np.inf)
    arg = np.argmax(win, axis=-1)
    y = np.take_along_axis(win, arg[..., None], -1)[..., 0]
    flat = np.take_along_axis(index, arg[..., None], -1)[..., 0]
    h, w = x.shape[2:]
    if storage_order:
        flat = (flat % w) * h + flat // w
    nc = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[0], x.shape[1], 1, 1) * h * w
    return y, flat + nc


def avg_pool_ref(x, case, count_include_pad):
    out_shape, (win, inside, padded, _) = _shape_and_windows(x, case, 0.0)
    counts = (padded if count_include_pad else inside).sum(-1)
    return win.sum(-1) / counts


def _attrs(case, **extra):
    _, kernel, strides, pads, dil, _ = case
    return dict(kernel=kernel, strides=strides, pads=pads, dilations=dil, **extra)


@pytest.mark.parametrize("index", range(len(POOL_CASES)))
@pytest.mark.parametrize("storage_order", [0, 1])
def test_max_pool_with_indices(index, storage_order):
    case = POOL_CASES[index]
    x = rand(np.random.default_rng(index), *case[0])
    ref, ref_idx = max_pool_ref(x, case, storage_order)
    y, idx = run_op("MaxPool", [x], [ref.shape, (ref.shape, "int64")], _attrs(case, storage_order=storage_order))
    np.testing.assert_array_equal(y, ref.astype(np.float32))
    np.testing.assert_array_equal(idx, ref_idx)


def test_max_pool_without_indices():
    case = POOL_CASES[1]
    x = rand(np.random.default_rng(0), *case[0])
    [y] = run_op("MaxPool", [x], [max_pool_ref(x, case)[0].shape], _attrs(case, storage_order=0))
    np.testing.assert_array_equal(y, max_pool_ref(x, case)[0].astype(np.float32))


@pytest.mark.parametrize("index", range(len(POOL_CASES)))
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_average_pool(index, count_include_pad):
    case = POOL_CASES[index]
    x = rand(np.random.default_rng(index), *case[0])
    ref = avg_pool_ref(x, case, count_include_pad)
    [y] = run_op("AveragePool", [x], [ref.shape], _attrs(case, count_include_pad=count_include_pad))
    assert_close(y, ref, 1e-6)


def test_pool_references_agree_with_onnxruntime():
    from helpers import make_model, ort_run
    from onnx import helper

    for case in POOL_CASES:
        xs, kernel, strides, pads, dil, ceil = case
        x = rand(np.random.default_rng(0), *xs)
        kw = dict(kernel_shape=kernel, strides=strides, pads=pads, dilations=dil, ceil_mode=int(ceil))
        for so in (0, 1):
            node = helper.make_node("MaxPool", ["x"], ["y", "i"], storage_order=so, **kw)
            model = make_model(
                [node], [("x", list(xs), np.float32)], [("y", None, np.float32), ("i", None, np.int64)], opset=19
            )
            y, i = ort_run(model, {"x": x})
            ry, ri = max_pool_ref(x, case, so)
            np.testing.assert_array_equal(y, ry.astype(np.float32))
            np.testing.assert_array_equal(i, ri)
        for cip in (0, 1):
            node = helper.make_node("AveragePool", ["x"], ["y"], count_include_pad=cip, **kw)
            [y] = ort_run(
                make_model([node], [("x", list(xs), np.float32)], [("y", None, np.float32)], opset=19), {"x": x}
            )
            assert_close(y, avg_pool_ref(x, case, cip), 1e-6)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pools(op):
    x = rand(np.random.default_rng(2), 2, 5, 3, 4)
    ref = (x.mean if op == "GlobalAveragePool" else x.max)(axis=(2, 3), keepdims=True)
    [y] = run_op(op, [x], [ref.shape])
    assert_close(y, ref, 1e-6)


@pytest.mark.parametrize("acts", [("Relu", "HardSigmoid"), ("SiLU", "Sigmoid")])
def test_squeeze_excite(acts):
    rng = np.random.default_rng(3)
    x, w1, b1, w2, b2 = rand(rng, 2, 6, 3, 4), rand(rng, 2, 6), rand(rng, 2), rand(rng, 6, 2), rand(rng, 6)
    gate = (acts[1], 1 / 6, 0.5) if acts[1] == "HardSigmoid" else (acts[1], 0.0, 0.0)
    ref = squeeze_excite_reference(x, w1, b1, w2, b2, (acts[0], 0.0, 0.0), gate)
    attrs = dict(squeeze=acts[0], gate=gate[0], gate_alpha=gate[1], gate_beta=gate[2])
    [y] = run_op("SqueezeExcite", [x, w1, b1, w2, b2], [x.shape], attrs, const=(1, 2, 3, 4))
    assert_close(y, ref, 1e-5)


@pytest.mark.parametrize("size", [1, 3, 4])
def test_lrn(size):
    x = rand(np.random.default_rng(size), 2, 6, 3, 2, lo=-2, hi=2)
    alpha, beta, bias = 2e-2, 0.75, 1.5
    sq = x.astype(np.float64) ** 2
    c = x.shape[1]
    s = np.stack([sq[:, max(0, i - (size - 1) // 2) : min(c - 1, i + size // 2) + 1].sum(1) for i in range(c)], 1)
    ref = x / (bias + alpha / size * s) ** beta
    [y] = run_op("LRN", [x], [x.shape], dict(size=size, alpha=alpha, beta=beta, bias=bias))
    assert_close(y, ref, 1e-5)

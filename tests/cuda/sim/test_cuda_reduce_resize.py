"""Softmax, ReduceMean and Resize CUDA kernels (Resize references checked against onnxruntime)."""

from __future__ import annotations

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, rand, run_op


@pytest.mark.parametrize(
    "axis, coerce_2d, log", [(-1, False, False), (1, False, True), (0, False, False), (1, True, False), (2, True, True)]
)
def test_softmax(axis, coerce_2d, log):
    x = rand(np.random.default_rng(0), 2, 3, 4, lo=-5, hi=5)
    x[0, 0, 0] = 80.0  # would overflow exp without the max subtraction
    x64 = x.astype(np.float64)
    if coerce_2d:
        a = axis % 3
        x2 = x64.reshape(int(np.prod(x.shape[:a])), -1)
        e = np.exp(x2 - x2.max(1, keepdims=True))
        ref = (np.log(e / e.sum(1, keepdims=True)) if log else e / e.sum(1, keepdims=True)).reshape(x.shape)
    else:
        e = np.exp(x64 - x64.max(axis, keepdims=True))
        ref = e / e.sum(axis, keepdims=True)
        ref = np.log(ref) if log else ref
    [y] = run_op("Softmax", [x], [x.shape], dict(axis=axis, coerce_2d=coerce_2d, log=log))
    assert_close(y, ref, 1e-5)


@pytest.mark.parametrize("axes, keepdims", [((1,), True), ((0, 2), False), ((-1, 1), True), (None, False)])
def test_reduce_mean(axes, keepdims):
    x = rand(np.random.default_rng(1), 2, 3, 4)
    ref = x.astype(np.float64).mean(axis=None if axes is None else tuple(axes), keepdims=keepdims)
    [y] = run_op("ReduceMean", [x], [np.shape(ref)], dict(axes=axes, keepdims=keepdims))
    assert_close(y, ref, 1e-6)


COORD = [
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "half_pixel_symmetric",
]


def source_coord(o, scale, li, lo, mode):
    o, scale = np.float32(o), np.float32(scale)
    if mode == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if lo > 1 else 0.0
    if mode == "align_corners":
        return 0.0 if lo == 1 else o * np.float32(li - 1) / np.float32(lo - 1)
    if mode == "asymmetric":
        return o / scale
    if mode == "tf_half_pixel_for_nn":
        return (o + 0.5) / scale
    adj = np.float32(lo) / (scale * np.float32(li))
    return np.float32(li) / 2 * (1 - adj) + (o + 0.5) / scale - 0.5


def resize_ref(x, out_shape, scales, mode, coord, nearest="round_prefer_floor"):
    if mode == "nearest":
        idx = []
        for d, (li, lo) in enumerate(zip(x.shape, out_shape)):
            c = np.array([source_coord(o, scales[d], li, lo, coord) for o in range(lo)], np.float32)
            r = {
                "round_prefer_floor": np.ceil(c - 0.5),
                "round_prefer_ceil": np.floor(c + 0.5),
                "floor": np.floor(c),
                "ceil": np.ceil(c),
            }[nearest]
            idx.append(np.clip(r.astype(np.int64), 0, li - 1))
        return x[np.ix_(*idx)]
    h, w = x.shape[-2:]
    oh, ow = out_shape[-2:]
    ys = np.clip([source_coord(o, scales[-2], h, oh, coord) for o in range(oh)], 0, h - 1)
    xs = np.clip([source_coord(o, scales[-1], w, ow, coord) for o in range(ow)], 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    xd = x.astype(np.float64)
    top = xd[..., y0, :][..., :, x0] * (1 - wx) + xd[..., y0, :][..., :, x1] * wx
    bot = xd[..., y1, :][..., :, x0] * (1 - wx) + xd[..., y1, :][..., :, x1] * wx
    return top * (1 - wy) + bot * wy


RESIZE_CASES = (
    [
        ("nearest", c, n, s)
        for c in COORD
        for n, s in (("round_prefer_floor", (1, 1, 2.0, 1.5)), ("floor", (1, 1, 0.5, 2.0)))
    ]
    + [("nearest", "asymmetric", m, (1, 1, 1.7, 0.6)) for m in ("round_prefer_ceil", "ceil")]
    + [
        ("linear", c, None, s)
        for c in ("half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel")
        for s in ((1, 1, 2.0, 1.5), (1, 1, 0.6, 1.0))
    ]
)


def _out_shape(shape, scales):
    return tuple(int(np.floor(d * s)) for d, s in zip(shape, scales))


@pytest.mark.parametrize("mode, coord, nearest, scales", RESIZE_CASES)
def test_resize(mode, coord, nearest, scales):
    x = rand(np.random.default_rng(2), 1, 2, 4, 4)
    out_shape = _out_shape(x.shape, scales)
    attrs = dict(mode=mode, coord_mode=coord, scales=scales, **({"nearest_mode": nearest} if nearest else {}))
    [y] = run_op("Resize", [x], [out_shape], attrs)
    assert_close(y, resize_ref(x, out_shape, scales, mode, coord, nearest), 1e-6)


def test_resize_references_agree_with_onnxruntime():
    from helpers import make_model, ort_run
    from onnx import helper

    x = rand(np.random.default_rng(2), 1, 2, 4, 4)
    for mode, coord, nearest, scales in RESIZE_CASES:
        kw = dict(mode=mode, coordinate_transformation_mode=coord, **({"nearest_mode": nearest} if nearest else {}))
        node = helper.make_node("Resize", ["x", "", "scales"], ["y"], **kw)
        model = make_model(
            [node],
            [("x", list(x.shape), np.float32)],
            [("y", None, np.float32)],
            {"scales": np.array(scales, np.float32)},
            opset=19,
        )
        [y] = ort_run(model, {"x": x})
        out_shape = _out_shape(x.shape, scales)
        assert y.shape == out_shape, (mode, coord, scales)
        assert_close(y, resize_ref(x, out_shape, scales, mode, coord, nearest), 1e-5)

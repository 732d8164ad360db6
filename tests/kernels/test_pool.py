"""Pooling kernels: against the naive references, then end to end vs onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from kernel_helpers import U32, assert_within, run_node  # noqa: E402
from onnx import helper
from reference import pool_reference  # noqa: E402
from vs_onnxruntime import run_both  # noqa: E402


def pool_out(size, k, s, d, pb, pe, ceil_mode):
    """Output length: floor or ceil, and a ceil window must start inside input or leading pad."""
    avail = size + pb + pe - ((k - 1) * d + 1)
    n = (-(-avail // s) if ceil_mode else avail // s) + 1
    if ceil_mode and (n - 1) * s >= size + pb:
        n -= 1
    return n


# (N, C, H, W, kernel, strides, pads (t, l, b, r), dilations, ceil_mode)
POOL_CASES = {
    "k3s2": (2, 3, 7, 7, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), False),
    "k3s2_p1_ceil": (1, 2, 7, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), True),
    "asym_ceil": (1, 2, 8, 7, (2, 3), (2, 1), (1, 0, 0, 2), (1, 1), True),
    "dil2_p2": (1, 2, 9, 9, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), False),
    "k2s2_ceil_even": (1, 2, 6, 6, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), True),
    "hanging_ceil_dil": (1, 2, 5, 8, (3, 2), (3, 3), (1, 1, 1, 1), (1, 2), True),
    "whole_plane": (2, 2, 4, 4, (4, 4), (1, 1), (0, 0, 0, 0), (1, 1), False),
    "resnet_stem": (1, 3, 10, 10, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), False),
    "k2s2_ceil_padend": (1, 1, 5, 5, (2, 2), (2, 2), (0, 0, 1, 1), (1, 1), True),
    "k3s1_p1": (2, 3, 6, 5, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),  # GoogLeNet's branch pool
    "k2x3s1_asym": (1, 2, 5, 7, (2, 3), (1, 1), (0, 2, 1, 0), (1, 1), True),
    "k3s3_ceil": (1, 2, 10, 11, (3, 3), (3, 3), (1, 2, 1, 0), (1, 1), True),  # generic phase copy
    # enough planes that a task holds several (the flat passes then run across plane borders)
    "planes_k3s1_p1": (2, 40, 7, 7, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    "planes_k3s1_p1_wide": (1, 24, 5, 9, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), False),
    "planes_k3s1_pad_end": (2, 20, 6, 6, (3, 3), (1, 1), (0, 0, 2, 2), (1, 1), False),
    "planes_k5s1_p2": (1, 30, 6, 7, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1), False),
    "planes_k3s1_dil2": (1, 30, 8, 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2), False),
    "planes_k3s2_ceil": (3, 20, 14, 14, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), True),
    "planes_k2s2": (2, 40, 10, 10, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),  # pool._pool2x2
    "k2s2_odd": (1, 3, 7, 9, (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), False),  # _pool2x2, last row/column unread
    "planes_k3s1_valid": (1, 30, 7, 9, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), False),
    "planes_k1s1": (1, 20, 4, 5, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), False),
}


def _setup(name, seed=0):
    n, c, h, w, kernel, strides, pads, dil, ceil = POOL_CASES[name]
    oh = pool_out(h, kernel[0], strides[0], dil[0], pads[0], pads[2], ceil)
    ow = pool_out(w, kernel[1], strides[1], dil[1], pads[1], pads[3], ceil)
    x = np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32)
    attrs = dict(kernel=kernel, strides=strides, pads=pads, dilations=dil)
    return x, attrs, (n, c, oh, ow)


@pytest.mark.parametrize("name", list(POOL_CASES))
@pytest.mark.parametrize("storage_order", [None, 0, 1], ids=["noidx", "idx0", "idx1"])
def test_max_pool_vs_reference(name, storage_order):
    x, attrs, oshape = _setup(name)
    want, want_idx = pool_reference(
        x,
        attrs["kernel"],
        attrs["strides"],
        attrs["pads"],
        attrs["dilations"],
        oshape[2:],
        "max",
        storage_order=storage_order or 0,
    )
    if storage_order is None:
        (got,) = run_node("MaxPool", [x], dict(attrs, storage_order=0), [oshape])
    else:
        got, idx = run_node(
            "MaxPool", [x], dict(attrs, storage_order=storage_order), [oshape, oshape], ["float32", "int64"]
        )
        np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(got, want.astype(np.float32))  # max is exact


@pytest.mark.parametrize("name", list(POOL_CASES))
@pytest.mark.parametrize("count_include_pad", [False, True])
def test_average_pool_vs_reference(name, count_include_pad):
    x, attrs, oshape = _setup(name, seed=1)
    (got,) = run_node("AveragePool", [x], dict(attrs, count_include_pad=count_include_pad), [oshape])
    want = pool_reference(
        x, attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"], oshape[2:], "avg", count_include_pad
    )
    mag = pool_reference(
        np.abs(x),
        attrs["kernel"],
        attrs["strides"],
        attrs["pads"],
        attrs["dilations"],
        oshape[2:],
        "avg",
        count_include_pad,
    )
    k = attrs["kernel"][0] * attrs["kernel"][1]
    assert_within(got, want, 2 * (k + 2) * U32 * mag + 1e-30, name)


@pytest.mark.parametrize("name", ["k3s2_p1_ceil", "planes_k3s1_p1", "planes_k3s2_ceil", "planes_k2s2"])
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool_nan_and_inf(name, mode):
    """MaxPool skips NaN (a window of only NaN gives -inf) and takes +-Inf as values; an average
    with a NaN or opposite infinities in its window is NaN, with one infinity +-Inf."""
    x, attrs, oshape = _setup(name, seed=8)
    rng = np.random.default_rng(9)
    for value in (np.nan, np.inf, -np.inf):
        x[rng.random(x.shape) < 0.05] = value
    x[0, 0] = np.nan  # a whole plane of NaN
    args = (attrs["kernel"], attrs["strides"], attrs["pads"], attrs["dilations"], oshape[2:])
    if mode == "max":
        (got,) = run_node("MaxPool", [x], attrs, [oshape])
        want, _ = pool_reference(np.where(np.isnan(x), -np.inf, x), *args, "max")
        np.testing.assert_array_equal(got, want.astype(np.float32))
    else:
        (got,) = run_node("AveragePool", [x], attrs, [oshape])
        with np.errstate(invalid="ignore"):
            want = pool_reference(x, *args, "avg")
        special = ~np.isfinite(want)
        np.testing.assert_array_equal(got[special], want[special].astype(np.float32))
        finite = np.where(np.isfinite(x), x, 0)
        mag = pool_reference(np.abs(finite), *args, "avg")
        k = attrs["kernel"][0] * attrs["kernel"][1]
        assert_within(got[~special], want[~special], (2 * (k + 2) * U32 * mag + 1e-30)[~special], name)


@pytest.mark.parametrize(
    "shape", [(2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4), (1, 4, 1, 1), (2, 5, 13, 13), (1, 3, 8, 8)]
)
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_vs_reference(shape, op):
    x = np.random.default_rng(2).standard_normal(shape).astype(np.float32)
    oshape = shape[:2] + (1,) * (len(shape) - 2)
    (got,) = run_node(op, [x], {}, [oshape])
    axes = tuple(range(2, len(shape)))
    if op == "GlobalMaxPool":
        np.testing.assert_array_equal(got, x.max(axis=axes, keepdims=True))
    else:
        want = x.astype(np.float64).mean(axis=axes, keepdims=True)
        # float64 accumulation: only the final rounding, plus slack for the division
        assert_within(got, want, 2 * U32 * np.abs(x).astype(np.float64).mean(axis=axes, keepdims=True) + 1e-30, op)


# ----------------------------------------------------------------------------- vs onnxruntime


def _model(op, xshape, attrs, n_out=1, opset=17):
    from helpers import make_model

    outs = [("y", None, np.float32)] + ([("idx", None, np.int64)] if n_out > 1 else [])
    node = helper.make_node(op, ["x"], [o[0] for o in outs], **attrs)
    return make_model([node], [("x", list(xshape), np.float32)], outs, opset=opset)


ORT_POOL = [
    ("k3s2_p1", (2, 3, 9, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("ceil_p1", (1, 2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    ("ceil_nopad", (1, 2, 7, 6), dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("k2s2_odd", (2, 3, 9, 10), dict(kernel_shape=[2, 2], strides=[2, 2])),  # pool._pool2x2
    ("ceil_asym", (1, 2, 9, 7), dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 0, 1], ceil_mode=1)),
    ("ceil_k3s3", (1, 2, 7, 8), dict(kernel_shape=[3, 3], strides=[3, 3], pads=[1, 1, 0, 1], ceil_mode=1)),
    ("dilated", (1, 2, 9, 8), dict(kernel_shape=[3, 2], dilations=[2, 3], pads=[2, 1, 1, 1])),
    ("dilated_ceil", (1, 2, 9, 8), dict(kernel_shape=[2, 2], dilations=[2, 2], strides=[2, 2], ceil_mode=1)),
    ("same_upper", (1, 2, 7, 8), dict(kernel_shape=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER")),
    ("same_lower", (1, 2, 7, 8), dict(kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER")),
    ("valid", (1, 2, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 1], auto_pad="VALID")),
]


@pytest.mark.parametrize("xshape,attrs", [c[1:] for c in ORT_POOL], ids=[c[0] for c in ORT_POOL])
def test_max_pool_vs_onnxruntime(xshape, attrs):
    x = np.random.default_rng(3).standard_normal(xshape).astype(np.float32)
    (got,), (want,) = run_both(_model("MaxPool", xshape, attrs), {"x": x})
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("xshape,attrs", [c[1:] for c in ORT_POOL[:4]], ids=[c[0] for c in ORT_POOL[:4]])
def test_max_pool_indices_vs_onnxruntime(xshape, attrs, storage_order, ties):
    """With ties (values from {0, 1, 2}) the index of the first maximum in window order wins."""
    rng = np.random.default_rng(4)
    x = (rng.integers(0, 3, xshape) if ties else rng.standard_normal(xshape)).astype(np.float32)
    (got, gi), (want, wi) = run_both(
        _model("MaxPool", xshape, dict(attrs, storage_order=storage_order), n_out=2), {"x": x}
    )
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(gi, wi)


# AveragePool takes dilations from opset 19 on: those cases run in the opset-19 test below
ORT_AVG = [c for c in ORT_POOL if "dilations" not in c[2]]
ORT_AVG_DILATED = [c for c in ORT_POOL if "dilations" in c[2]]


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("xshape,attrs", [c[1:] for c in ORT_AVG], ids=[c[0] for c in ORT_AVG])
def test_average_pool_vs_onnxruntime(xshape, attrs, count_include_pad):
    x = np.random.default_rng(5).standard_normal(xshape).astype(np.float32)
    (got,), (want,) = run_both(
        _model("AveragePool", xshape, dict(attrs, count_include_pad=count_include_pad)), {"x": x}
    )
    k = attrs["kernel_shape"][0] * attrs["kernel_shape"][1]
    (mag,), _ = run_both(
        _model("AveragePool", xshape, dict(attrs, count_include_pad=count_include_pad)), {"x": np.abs(x)}
    )
    assert_within(got, want.astype(np.float64), 4 * (k + 2) * U32 * mag + 1e-30, str(attrs))


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("xshape,attrs", [c[1:] for c in ORT_AVG_DILATED], ids=[c[0] for c in ORT_AVG_DILATED])
def test_average_pool_dilated_opset19_vs_onnxruntime(xshape, attrs, count_include_pad):
    x = np.random.default_rng(6).standard_normal(xshape).astype(np.float32)
    model = _model("AveragePool", xshape, dict(attrs, count_include_pad=count_include_pad), opset=19)
    (got,), (want,) = run_both(model, {"x": x})
    (mag,), _ = run_both(model, {"x": np.abs(x)})
    k = attrs["kernel_shape"][0] * attrs["kernel_shape"][1]
    assert_within(got, want.astype(np.float64), 4 * (k + 2) * U32 * mag + 1e-30, str(attrs))


@pytest.mark.parametrize("xshape", [(2, 3, 5, 4), (1, 4, 3, 2, 2), (2, 3, 7)])
@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
def test_global_pool_vs_onnxruntime(xshape, op):
    x = np.random.default_rng(7).standard_normal(xshape).astype(np.float32)
    (got,), (want,) = run_both(_model(op, xshape, {}), {"x": x})
    s = int(np.prod(xshape[2:]))
    mag = np.abs(x).astype(np.float64).mean(axis=tuple(range(2, len(xshape))), keepdims=True)
    assert_within(got, want.astype(np.float64), 2 * (s + 2) * U32 * mag + 1e-30, op)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "float32", "float64"])
@pytest.mark.parametrize("pads", [(0, 0, 0, 0), (1, 1, 1, 1)], ids=["valid", "p1"])
def test_stride2_max_pool_rows_of_many_vectors(dtype, pads):
    """The 3-wide stride-2 interior (vector_ir.max3_stride2_run): rows of several full vectors
    and a masked last one, 8-bit codes compared unsigned or signed."""
    rng = np.random.default_rng(12)
    xshape = (1, 3, 7, 301)
    if dtype in ("uint8", "int8"):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max + 1, xshape).astype(dtype)
    else:
        x = rng.standard_normal(xshape).astype(dtype)
    oshape = (1, 3, pool_out(7, 3, 2, 1, pads[0], pads[2], False), pool_out(301, 3, 2, 1, pads[1], pads[3], False))
    attrs = dict(kernel=(3, 3), strides=(2, 2), pads=pads, dilations=(1, 1))
    (got,) = run_node("MaxPool", [x], attrs, [oshape], [dtype])
    want, _ = pool_reference(x, (3, 3), (2, 2), pads, (1, 1), oshape[2:], "max")
    assert got.dtype == x.dtype
    np.testing.assert_array_equal(got, want.astype(dtype))

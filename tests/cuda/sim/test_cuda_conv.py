"""Conv / ConvTranspose CUDA kernels against float64 numpy references, every algorithm path."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cuda_sim_helpers import assert_close, conv_attrs, rand, run_op, tol_for
from reference import (
    activation_ref,
    conv2d_reference,
    conv_out,
    conv_transpose2d_reference,
)

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.conv_spec import ConvSpec
from cnnrt.kernels.cuda import config
from cnnrt.kernels.cuda.conv_algorithm import check, choose

ACTS = {
    "none": (0.0, 0.0),
    "Relu": (0.0, 0.0),
    "LeakyRelu": (0.1, 0.0),
    "Clip": (-0.3, 0.4),
    "HardSwish": (0.0, 0.0),
    "Sigmoid": (0.0, 0.0),
}

# (x shape, w shape, strides, pads, dilations, group, activation, bias, residual)
CONV_CASES = [
    ((1, 3, 6, 6), (4, 3, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "Relu", True, False),
    ((2, 4, 7, 6), (6, 4, 3, 3), (2, 2), (0, 1, 1, 0), (1, 1), 1, "none", False, False),
    ((1, 2, 7, 7), (5, 2, 3, 3), (1, 1), (2, 2, 2, 2), (2, 2), 1, "LeakyRelu", True, True),
    ((1, 4, 6, 8), (6, 2, 3, 2), (1, 2), (1, 0, 0, 1), (2, 1), 2, "Clip", True, False),
    ((2, 3, 6, 5), (6, 1, 3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 3, "HardSwish", True, True),  # depthwise x2
    ((1, 6, 4, 5), (10, 6, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "Relu", True, True),  # pointwise
    ((2, 4, 3, 3), (6, 2, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2, "Sigmoid", False, False),  # grouped 1x1
    ((1, 2, 8, 6), (3, 2, 5, 3), (3, 2), (2, 1, 1, 0), (1, 1), 1, "none", True, False),  # 5x3 kernel
    ((1, 3, 5, 5), (4, 3, 1, 1), (2, 2), (1, 1, 1, 1), (1, 1), 1, "none", True, False),  # strided, padded 1x1
]


def _conv_case(rng, case):
    xs, ws, strides, pads, dil, group, act, has_b, has_r = case
    x, w = rand(rng, *xs), rand(rng, *ws)
    b = rand(rng, ws[0]) if has_b else None
    oh = conv_out(xs[2], ws[2], strides[0], dil[0], pads[0], pads[2])
    ow = conv_out(xs[3], ws[3], strides[1], dil[1], pads[1], pads[3])
    out_shape = (xs[0], ws[0], oh, ow)
    r = rand(rng, *out_shape) if has_r else None
    alpha, beta = ACTS[act]
    attrs = conv_attrs(ws[2:], strides, pads, dil, group, act, alpha, beta)
    ref = conv2d_reference(x, w, b, strides, pads, dil, group)
    if r is not None:
        ref = ref + r
    return x, w, b, r, out_shape, attrs, activation_ref(ref, act, alpha, beta), ws[1] * ws[2] * ws[3]


def _paths(ws, strides, pads):
    paths = ["implicit_gemm", "direct"]
    if ws[2:] == (1, 1) and strides == (1, 1) and not any(pads):
        paths.append("pointwise")
    return paths


@pytest.mark.parametrize("index", range(len(CONV_CASES)), ids=[f"conv{i}" for i in range(len(CONV_CASES))])
def test_conv_every_path_matches_reference(index):
    case = CONV_CASES[index]
    rng = np.random.default_rng(index)
    x, w, b, r, out_shape, attrs, ref, k = _conv_case(rng, case)
    for path in _paths(case[1], case[2], case[3]):
        [y] = run_op("Conv", [x, w, b, r], [out_shape], {**attrs, "algorithm": path}, const=(1, 2))
        assert_close(y, ref, tol_for(k))


def _spec(m, k, s=1, group=1, pad=0):
    o = (5 + 2 * pad - k) // s + 1
    return ConvSpec(1, 8, 5, 5, m, o, o, k, k, s, s, pad, pad, pad, pad, 1, 1, group)


def test_conv_algorithm_choice():
    assert choose(_spec(8, 3, group=8))[0] == "direct"
    assert choose(_spec(4, 1))[0] == "pointwise"
    assert choose(_spec(4, 1, s=2))[0] == "implicit_gemm"
    assert choose(_spec(4, 3))[0] == "implicit_gemm"


def test_conv_algorithm_override_that_cannot_compute_names_the_node():
    with pytest.raises(UnsupportedOpError, match="'c1'.*pointwise path needs a 1x1 kernel"):
        check(_spec(4, 3, pad=1), "pointwise", "c1")
    with pytest.raises(UnsupportedOpError, match="'c1'.*unknown conv algorithm 'winograd'"):
        check(_spec(4, 3), "winograd", "c1")


GEOMETRIES = {
    "small": dict(tile_threads=2, micro=2, tile_k=4, max_tile_blocks=3),
    "odd": dict(tile_threads=3, micro=1, tile_k=5, max_tile_blocks=2),
    "one-block": dict(tile_threads=2, micro=3, tile_k=7, max_tile_blocks=1),
    "gpu-default": dataclasses.asdict(config.GPU_DEFAULT),  # 256-thread blocks, 64x64 tiles
}


# 256 simulated threads per block make the GPU geometry slow here: one case is enough.
GEOMETRY_CASES = [(g, i) for g in ("small", "odd", "one-block") for i in (1, 3, 5)] + [("gpu-default", 1)]


@pytest.mark.parametrize("geometry, index", GEOMETRY_CASES)
def test_conv_tiling_geometries_agree(geometry, index):
    """Other tilings (not powers of two, micro 1, one block looping over every tile, the
    real-GPU defaults) give the same answer on the implicit-GEMM and pointwise paths."""
    rng = np.random.default_rng(index)
    x, w, b, r, out_shape, attrs, ref, k = _conv_case(rng, CONV_CASES[index])
    paths = [p for p in _paths(CONV_CASES[index][1], CONV_CASES[index][2], CONV_CASES[index][3]) if p != "direct"]
    with config.override(**GEOMETRIES[geometry]):
        for path in paths:
            [y] = run_op("Conv", [x, w, b, r], [out_shape], {**attrs, "algorithm": path}, const=(1, 2))
            assert_close(y, ref, tol_for(k))


def test_conv_with_weights_fed_at_run_time():
    """Weights and bias as graph inputs (an overridden initializer) rather than constants."""
    rng = np.random.default_rng(3)
    x, w, b, r, out_shape, attrs, ref, k = _conv_case(rng, CONV_CASES[0])
    [y] = run_op("Conv", [x, w, b], [out_shape], attrs)
    assert_close(y, ref, tol_for(k))


# (x shape, w shape, strides, pads, dilations, group, output_padding, activation, bias)
CONVT_CASES = [
    ((1, 3, 4, 4), (3, 2, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1, (1, 1), "Relu", True),
    ((2, 4, 3, 5), (4, 3, 2, 3), (1, 2), (0, 1, 0, 0), (1, 1), 2, (0, 1), "none", False),
    ((1, 2, 3, 3), (2, 2, 3, 2), (3, 1), (0, 0, 1, 0), (2, 2), 1, (2, 0), "LeakyRelu", True),
    ((1, 4, 4, 4), (4, 1, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 4, (0, 0), "Sigmoid", True),
]


@pytest.mark.parametrize("case", CONVT_CASES, ids=[f"convT{i}" for i in range(len(CONVT_CASES))])
def test_conv_transpose_matches_reference(case):
    xs, ws, strides, pads, dil, group, opad, act, has_b = case
    rng = np.random.default_rng(len(xs) + sum(ws))
    x, w = rand(rng, *xs), rand(rng, *ws)
    b = rand(rng, ws[1] * group) if has_b else None
    alpha, beta = ACTS[act]
    ref = activation_ref(
        conv_transpose2d_reference(x, w, b, strides, pads, dil, group, output_padding=opad), act, alpha, beta
    )
    attrs = conv_attrs(ws[2:], strides, pads, dil, group, act, alpha, beta)
    [y] = run_op("ConvTranspose", [x, w, b], [ref.shape], attrs, const=(1, 2))
    assert_close(y, ref, tol_for(ws[0] * ws[2] * ws[3]))


def test_conv_transpose_reference_agrees_with_onnxruntime():
    from helpers import make_model, ort_run
    from onnx import helper

    for xs, ws, strides, pads, dil, group, opad, _, _ in CONVT_CASES:
        rng = np.random.default_rng(1)
        x, w = rand(rng, *xs), rand(rng, *ws)
        node = helper.make_node(
            "ConvTranspose",
            ["x", "w"],
            ["y"],
            strides=strides,
            pads=pads,
            dilations=dil,
            group=group,
            output_padding=opad,
        )
        [y] = ort_run(make_model([node], [("x", list(xs), np.float32)], [("y", None, np.float32)], {"w": w}), {"x": x})
        assert_close(y, conv_transpose2d_reference(x, w, None, strides, pads, dil, group, output_padding=opad), 1e-5)

"""The int8 conv tiles, VNNI or its AVX2 form (kernels/cpu/qconv_vnni.py, qconv_vnni_taps.py) and
AMX (kernels/cpu/qconv_amx.py), against the naive reference and onnxruntime, on shapes that leave
every edge of the tile partly filled: channels not a multiple of the tile's rows, pixels not a
multiple of its vectors, a reduction not a multiple of four, a fused ReLU range and int8
activations. Each test runs on both tiles where the CPU has them."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper
from quant.qdq_models import conv_params, model, onnxruntimes_accumulator, ort_optimized, random_q
from reference import qconv_accumulator_reference, requantize_reference

import cnnrt
from cnnrt.kernels.cpu import qconv_amx, qconv_vnni
from cnnrt.kernels.cpu.microkernel_int8 import MR, WORDS

needs_tile = pytest.mark.skipif(
    not qconv_vnni.tile_runs(), reason="the CPU has neither AVX-512 VNNI nor AVX2: the tile cannot run"
)


@pytest.fixture(params=["vnni", "amx"])
def tile(request, monkeypatch):
    """Which tile the QConvs build on: AMX where the CPU has it (asserted built), else VNNI."""
    if request.param == "vnni":
        monkeypatch.setattr(qconv_amx, "amx_int8_reason", lambda k_len=0: "VNNI asked for (test)")
        yield request.param
        return
    if qconv_amx.amx_int8_reason():
        pytest.skip("the CPU has no AMX-INT8")
    monkeypatch.setattr(qconv_amx, "MIN_REDUCTION", 1)  # the short reductions of these cases too
    built = []
    build = qconv_amx.build
    monkeypatch.setattr(qconv_amx, "build", lambda *a: built.append(1) or build(*a))
    yield request.param
    assert built, "no QConv ran on the AMX tile"


# (c, m, kernel, strides, pads, (h, w), dilations)
CASES = {
    "1x1-odd": (13, MR + 5, (1, 1), (1, 1), (0, 0, 0, 0), (7, 5), (1, 1)),
    "1x1-s2": (40, MR + 5, (1, 1), (2, 3), (0, 0, 0, 0), (9, 11), (1, 1)),  # subsampled, then packed
    "1x1-s2-rows": (20, MR + 1, (1, 1), (2, 2), (0, 0, 0, 0), (13, 37), (1, 1)),  # tiles over row stretches
    "3x3-s1": (13, MR + 5, (3, 3), (1, 1), (1, 1, 1, 1), (7, 5), (1, 1)),  # taps as offsets (qconv_vnni_taps)
    "3x3-s2": (7, 2 * MR + 1, (3, 3), (2, 2), (1, 0, 1, 2), (13, 11), (1, 1)),  # taps on stride phases
    "3x3-s2x1-dilated": (9, MR + 1, (3, 3), (2, 1), (1, 2, 2, 1), (15, 12), (2, 2)),
    "7x7-stem": (3, 9, (7, 7), (2, 2), (3, 3, 3, 3), (19, 17), (1, 1)),
    "3x5-s1-dilated": (10, MR + 3, (3, 5), (1, 1), (2, 1, 1, 3), (9, 6), (2, 1)),
}


@needs_tile
@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("case", CASES)
def test_int8_tile_matches_reference_and_onnxruntime(case, x_dtype, tile):
    c, m, k, strides, pads, hw, dil = CASES[case]
    rng = np.random.default_rng(5)
    xz, xs, w, ws, wz, bias, ys, yz = conv_params(rng, c, m, 1, k, x_dtype, "int8", True, True)
    assert qconv_vnni.eligible(x_dtype, w, wz, 1, x_dtype), "the case must run on the tile"
    inits = dict(xs=xs, xz=xz, w=w, ws=ws, wz=wz, ys=ys, yz=yz, b=bias)
    attrs = dict(kernel_shape=list(k), strides=list(strides), pads=list(pads), dilations=list(dil), group=1)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
    x = random_q(rng, (2, c, *hw), x_dtype)
    mdl = model([node], [("x", x_dtype, x.shape)], [("y", x_dtype, None)], inits)
    got = cnnrt.InferenceSession(mdl).run(None, {"x": x})[0]
    geo = dict(strides=strides, pads=pads, dilations=dil, group=1)
    acc = qconv_accumulator_reference(x, xz, w, wz, bias, **geo)
    np.testing.assert_array_equal(got, requantize_reference(acc, xs, ws, ys, int(yz), x_dtype))
    ort_acc = onnxruntimes_accumulator(x, xz, w, wz, bias, geo, acc)  # MLAS saturates u8 x s8 without VNNI
    np.testing.assert_array_equal(
        ort_optimized(mdl, {"x": x})[0], requantize_reference(ort_acc, xs, ws, ys, int(yz), x_dtype)
    )


def test_amx_weight_tiles_hold_64_reduction_bytes_of_16_channels():
    w = np.random.default_rng(1).integers(-128, 128, (2, 17, 70), dtype=np.int8)  # 2 taps, M 17, K 70
    tiles = qconv_amx.pack_amx_int8(w).reshape(2, 2, 2, 16, 64)  # (M/16, taps, K/64, 16, 64)
    assert tiles[1, 0, 1, 0, :6].tolist() == w[0, 16, 64:].tolist() and not tiles[1, 0, 1, 0, 6:].any()
    assert tiles[0, 1, 0, 3].tolist() == w[1, 3, :64].tolist()
    assert not tiles[1, :, :, 1:].any(), "channels past M are zero"


def test_packed_weights_hold_four_steps_of_one_channel_per_word():
    w = np.random.default_rng(0).integers(-128, 128, (MR + 1, 3, 1, 3), dtype=np.int8)  # K = 9: padded to 12
    words = qconv_vnni.pack_weights(w)  # four int8 per word, or (AVX2) int16 pairs of steps 0, 2 and 1, 3
    packed = (
        words.view(np.int8).reshape(2, 3, MR, 4)
        if WORDS == 1
        else words.view(np.int16).reshape(2, 3, MR, 4)[..., [0, 2, 1, 3]]
    )
    assert packed[1, 0, 0].tolist() == w[MR, 0, 0, :3].tolist() + [w[MR, 1, 0, 0]]
    assert packed[0, 2, MR - 1].tolist() == [w[MR - 1, 2, 0, 2], 0, 0, 0]
    assert not packed[1, :, 1:].any(), "rows past M are zero"


@needs_tile
@pytest.mark.parametrize("x_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("k", [(1, 1), (3, 3)])  # the im2col tile (qconv_vnni) and the taps' last tap
def test_int8_tile_rounds_ties_half_to_even(k, x_dtype, tile):
    """Multipliers 1/2, 1/4, 1/8 make many products exact halves: each must round to the even
    neighbour, as MLAS does, in the tile's own rounding."""
    rng = np.random.default_rng(7)
    c, m, pad = 8, 3 * (MR // 3 + 1), k[0] // 2  # rows past one tile, a multiple of the 3 multipliers
    xz = np.array(-3 if x_dtype == "int8" else 125, x_dtype)
    w = rng.integers(-2, 3, (m, c, *k)).astype(np.int8)
    ws = np.array([0.5, 0.25, 0.125] * (m // 3), np.float32)  # x_scale 1, y_scale 1: the multiplier is ws
    wz, bias = np.zeros(m, np.int8), rng.integers(-40, 41, m).astype(np.int32)
    xs, ys, yz = np.float32(1.0), np.float32(1.0), np.array(0 if x_dtype == "int8" else 128, x_dtype)
    inits = dict(xs=xs, xz=xz, w=w, ws=ws, wz=wz, ys=ys, yz=yz, b=bias)
    attrs = dict(kernel_shape=list(k), pads=[pad] * 4)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
    x = (int(xz) + rng.integers(-12, 13, (1, c, 9, 37))).astype(x_dtype)
    mdl = model([node], [("x", x_dtype, x.shape)], [("y", x_dtype, None)], inits)
    got = cnnrt.InferenceSession(mdl).run(None, {"x": x})[0]
    acc = qconv_accumulator_reference(x, xz, w, wz, bias, strides=(1, 1), pads=(pad,) * 4, dilations=(1, 1), group=1)
    f = acc * ws.reshape(1, -1, 1, 1)
    assert np.count_nonzero(f - np.floor(f) == 0.5) > 100, "the case must hold many ties"
    np.testing.assert_array_equal(got, requantize_reference(acc, xs, ws, ys, int(yz), x_dtype))
    np.testing.assert_array_equal(got, ort_optimized(mdl, {"x": x})[0])


def test_short_reductions_stay_on_the_vnni_tile():
    """Below MIN_REDUCTION bytes the AMX tile's scratch round trip costs more than it saves."""
    assert "VNNI tile is faster" in qconv_amx.amx_int8_reason(qconv_amx.MIN_REDUCTION - 1)

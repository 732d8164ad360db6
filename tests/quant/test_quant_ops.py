"""The integer ops against the naive references and onnxruntime: QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger, QuantizeLinear and DequantizeLinear, one node each.

cnnrt's integer results are the exact ones on every CPU. onnxruntime's are compared with the
arithmetic MLAS does on the host: exact, except uint8 x int8 GEMMs on CPUs without VNNI, whose
pairwise int16 sums saturate (reference.mlas_u8s8_matmul_reference)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from onnx import helper
from quant.qdq_models import conv_params, model, onnxruntimes_accumulator, ort_optimized, random_q
from reference import (
    dequantize_reference,
    mlas_u8s8_matmul_reference,
    qconv_accumulator_reference,
    quantize_reference,
    requantize_reference,
)

import cnnrt
from cnnrt.errors import UnsupportedOpError
from cnnrt.tools.bench_int8 import onnxruntime_u8s8_saturates

# (c, m, group, kernel, strides, pads, dilations)
GEOMETRIES = {
    "3x3": (8, 16, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "strided-asym-pad": (6, 8, 1, (3, 3), (2, 2), (0, 1, 2, 1), (1, 1)),
    "group-dilated": (8, 12, 2, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    "depthwise": (16, 16, 16, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    "depthwise-5x5-mixed": (12, 12, 12, (5, 5), (1, 2), (2, 1, 3, 2), (2, 1)),
    "pointwise": (72, 40, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    "pointwise-strided": (13, 20, 1, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1)),  # C, M past whole words, tiles
    "7x7-stem": (3, 16, 1, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1)),
    "deep-reduction": (144, 8, 1, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # K = 1296: float32 GEMMs in stretches
}
# (x dtype, W dtype, per-channel, symmetric)
QUANTS = {
    "u8s8-perchannel": ("uint8", "int8", True, True),
    "u8s8-pertensor-asym": ("uint8", "int8", False, False),
    "s8s8-perchannel-sym": ("int8", "int8", True, True),
    "s8s8-pertensor-asym": ("int8", "int8", False, False),
    "u8u8-pertensor": ("uint8", "uint8", False, False),
}


# depthwise planes wider than a vector and taller than a call's rows, borders on every side:
# microkernel_int8.depthwise_rows_rq's specialised forms ("-wide") and its generic one
WIDE_DEPTHWISE = {
    "3x3-s1-wide": (8, 8, 8, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    "3x3-s2-wide": (8, 8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    "5x5-s2-asym-wide": (8, 8, 8, (5, 5), (2, 2), (2, 1, 2, 3), (1, 1)),
    "3x3-dilated-generic": (8, 8, 8, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
}
WIDE_INPUT = (2, 8, 21, 37)


def _qlinear_conv(geometry: str, quant: str, seed: int = 0):
    c, m, group, k, strides, pads, dil = GEOMETRIES.get(geometry) or WIDE_DEPTHWISE[geometry]
    x_dtype, w_dtype, per_channel, sym = QUANTS[quant]
    rng = np.random.default_rng(seed)
    xz, xs, w, ws, wz, bias, ys, yz = conv_params(rng, c, m, group, k, x_dtype, w_dtype, per_channel, sym)
    inits = dict(xs=xs, xz=xz, w=w, ws=ws, wz=wz, ys=ys, yz=yz, b=bias)
    attrs = dict(kernel_shape=list(k), strides=list(strides), pads=list(pads), dilations=list(dil), group=group)
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"], **attrs)
    x = random_q(rng, WIDE_INPUT if geometry in WIDE_DEPTHWISE else (2, c, 11, 10), x_dtype)
    mdl = model([node], [("x", x_dtype, x.shape)], [("y", x_dtype, None)], inits)
    geo = dict(strides=strides, pads=pads, dilations=dil, group=group)
    return mdl, x, inits, geo


@pytest.mark.parametrize("quant", QUANTS)
@pytest.mark.parametrize("geometry", [*GEOMETRIES, *WIDE_DEPTHWISE])
def test_qlinear_conv_is_bit_exact_with_the_reference_and_onnxruntimes_arithmetic(geometry, quant):
    """cnnrt gives the exact accumulator, requantized as MLAS does, on every CPU. onnxruntime is
    compared byte for byte with the same requantization of the accumulator it forms: the exact
    one, or on CPUs without VNNI for u8 x s8 the one with MLAS's int16 pair saturation."""
    mdl, x, p, geo = _qlinear_conv(geometry, quant)
    got = cnnrt.InferenceSession(mdl).run(None, {"x": x})[0]
    want = ort_optimized(mdl, {"x": x})[0]
    acc = qconv_accumulator_reference(x, p["xz"], p["w"], p["wz"], p["b"], **geo)
    requant = dict(x_scale=p["xs"], w_scale=p["ws"], y_scale=p["ys"], y_zp=int(p["yz"]), dtype=str(p["yz"].dtype))
    ref = requantize_reference(acc, **requant)
    assert got.dtype == want.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)
    np.testing.assert_array_equal(
        want, requantize_reference(onnxruntimes_accumulator(x, p["xz"], p["w"], p["wz"], p["b"], geo, acc), **requant)
    )
    lo, hi = np.iinfo(got.dtype).min, np.iinfo(got.dtype).max
    assert (got == lo).mean() < 0.5 and (got == hi).mean() < 0.5, "the case saturates: it would test little"


@pytest.mark.parametrize("vnni", [False, True])
def test_a_cpu_without_vnni_says_int8_convs_run_no_faster_than_float32(monkeypatch, vnni):
    """Without VNNI an int8 model runs no faster than the float32 one (on AVX2's vpmaddwd, or
    the exact float32 path): a RuntimeWarning says so when a session is built; with VNNI
    nothing is said."""
    from cnnrt.kernels.cpu import qconv, qconv_vnni

    monkeypatch.setattr(qconv_vnni, "host_has_vnni", lambda: vnni)
    mdl, x, _, _ = _qlinear_conv("3x3", "u8s8-perchannel")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cnnrt.InferenceSession(mdl, tiered=False)
    said = [w for w in caught if w.category is RuntimeWarning and str(w.message) == qconv.NO_VNNI]
    assert len(said) == (0 if vnni else 1)


@pytest.mark.parametrize("geometry", ["3x3", "depthwise"])
def test_conv_integer_gives_onnxruntimes_accumulator(geometry):
    c, m, group, k, strides, pads, dil = GEOMETRIES[geometry]
    rng = np.random.default_rng(1)
    x, w = random_q(rng, (1, c, 9, 9), "uint8"), random_q(rng, (m, c // group, *k), "int8")
    attrs = dict(kernel_shape=list(k), strides=list(strides), pads=list(pads), dilations=list(dil), group=group)
    node = helper.make_node("ConvInteger", ["x", "w", "xz", "wz"], ["y"], **attrs)
    inits = dict(w=w, xz=np.array(7, np.uint8), wz=np.array(-2, np.int8))
    mdl = model([node], [("x", "uint8", x.shape)], [("y", "int32", None)], inits)
    got = cnnrt.InferenceSession(mdl).run(None, {"x": x})[0]
    geo = dict(strides=strides, pads=pads, dilations=dil, group=group)
    np.testing.assert_array_equal(got, qconv_accumulator_reference(x, 7, w, -2, None, **geo))
    np.testing.assert_array_equal(got, ort_optimized(mdl, {"x": x})[0])


@pytest.mark.parametrize("per_column", [False, True])
def test_qlinear_matmul_and_matmul_integer_are_exact_and_match_onnxruntimes_arithmetic(per_column):
    rng = np.random.default_rng(2)
    a, b = random_q(rng, (2, 5, 33), "uint8"), random_q(rng, (33, 7), "int8")
    bs = rng.uniform(0.01, 0.02, 7 if per_column else 1).astype(np.float32).reshape((7,) if per_column else ())
    bz = np.zeros(bs.shape, np.int8)
    inits = dict(b=b, as_=np.float32(0.03), az=np.array(120, np.uint8), bs=bs, bz=bz, ys=np.float32(0.4))
    inits["yz"] = np.array(100, np.uint8)
    q = helper.make_node("QLinearMatMul", ["a", "as_", "az", "b", "bs", "bz", "ys", "yz"], ["y"])
    i = helper.make_node("MatMulInteger", ["a", "b", "az", "bz"], ["acc"])
    outs = [("y", "uint8", None), ("acc", "int32", None)]
    mdl = model([q, i], [("a", "uint8", a.shape)], outs, inits)
    got = cnnrt.InferenceSession(mdl).run(None, {"a": a})
    want = ort_optimized(mdl, {"a": a})
    acc = (a.astype(np.int64) - 120) @ b.astype(np.int64)
    np.testing.assert_array_equal(got[1], acc.astype(np.int32))
    # onnxruntime's accumulator: exact, or with MLAS's int16 pair saturation on CPUs without VNNI
    ort_acc = mlas_u8s8_matmul_reference(a, 120, b, bz) if onnxruntime_u8s8_saturates() else acc
    np.testing.assert_array_equal(want[1], ort_acc.astype(np.int32))
    for accumulator, out in ((acc, got[0]), (ort_acc, want[0])):  # requantize_reference: columns on axis 1
        y = requantize_reference(np.moveaxis(accumulator, -1, 1), inits["as_"], bs, inits["ys"], 100, "uint8")
        np.testing.assert_array_equal(out, np.moveaxis(y, 1, -1))


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
@pytest.mark.parametrize("per_axis", [False, True])
def test_quantize_and_dequantize_linear_match_onnxruntime(dtype, per_axis):
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((2, 4, 5, 3)) * 3).astype(np.float32)
    x[0, 0, 0, :] = [0.5 * 0.25, 1.5 * 0.25, -2.5 * 0.25]  # ties round half to even
    scale = (np.array([0.25, 0.05, 0.1, 0.02], np.float32) if per_axis else np.float32(0.25)).astype(np.float32)
    zp = np.full(scale.shape, 3 if dtype == "int8" else 128, dtype)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=1),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=1),
    ]
    mdl = model(nodes, [("x", "float32", x.shape)], [("q", dtype, None), ("y", "float32", None)], dict(s=scale, z=zp))
    got = cnnrt.InferenceSession(mdl).run(None, {"x": x})
    want = ort_optimized(mdl, {"x": x})
    q_ref = quantize_reference(x, scale, zp, dtype, axis=1)
    np.testing.assert_array_equal(got[0], q_ref)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], dequantize_reference(q_ref, scale, zp, axis=1))
    np.testing.assert_array_equal(got[1], want[1])


def test_microsoft_domain_qlinear_ops_are_refused_by_name():
    node = helper.make_node("QLinearAdd", list("abcdefgh"), ["y"], domain="com.microsoft")
    mdl = model([node], [(n, "uint8", (1,)) for n in "abcdefgh"], [("y", "uint8", None)], {})
    mdl.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    with pytest.raises(UnsupportedOpError, match="QLinearAdd"):
        cnnrt.InferenceSession(mdl)


@pytest.mark.parametrize("dtype", ["uint8", "int8"])
def test_qdq_add_is_the_dequantized_sum_requantized(dtype):
    rng = np.random.default_rng(4)
    a, b = random_q(rng, (1, 3, 41, 37), dtype), random_q(rng, (1, 3, 41, 37), dtype)
    zs = (7, -3, 5) if dtype == "int8" else (120, 131, 128)
    inits = dict(sa=np.float32(0.07), za=np.array(zs[0], dtype), sb=np.float32(0.05), zb=np.array(zs[1], dtype))
    inits.update(sy=np.float32(0.09), zy=np.array(zs[2], dtype))
    nodes = [
        helper.make_node("DequantizeLinear", ["a", "sa", "za"], ["fa"]),
        helper.make_node("DequantizeLinear", ["b", "sb", "zb"], ["fb"]),
        helper.make_node("Add", ["fa", "fb"], ["f"]),
        helper.make_node("QuantizeLinear", ["f", "sy", "zy"], ["y"]),
    ]
    mdl = model(nodes, [("a", dtype, a.shape), ("b", dtype, b.shape)], [("y", dtype, None)], inits)
    sess = cnnrt.InferenceSession(mdl)
    assert [n.op for n in sess.graph.nodes] == ["QAdd"]
    got = sess.run(None, {"a": a, "b": b})[0]
    f = dequantize_reference(a, inits["sa"], inits["za"]) + dequantize_reference(b, inits["sb"], inits["zb"])
    np.testing.assert_array_equal(got, quantize_reference(f, inits["sy"], inits["zy"], dtype))
    lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    assert (got == lo).mean() < 0.2 and (got == hi).mean() < 0.2, "the case saturates: it would test little"
    want = ort_optimized(mdl, {"a": a, "b": b})[0]
    assert np.abs(got.astype(np.int32) - want).max() <= 1

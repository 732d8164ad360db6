"""Small quantized ONNX graphs (QLinear ops and QDQ groups) and onnxruntime's answer for them."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
from helpers import IR_VERSION
from onnx import helper, numpy_helper

RANGE = {"uint8": (0, 255), "int8": (-128, 127)}


def tensor_info(name: str, arr_or_dtype, shape=None):
    dtype = np.dtype(getattr(arr_or_dtype, "dtype", arr_or_dtype))
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(dtype), shape)


def model(nodes, inputs, outputs, inits: dict, opset: int = 21):
    """``inputs``/``outputs``: (name, dtype, shape) triples; ``inits``: name -> array."""
    graph = helper.make_graph(
        nodes,
        "q",
        [tensor_info(n, d, s) for n, d, s in inputs],
        [tensor_info(n, d, s) for n, d, s in outputs],
        initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = IR_VERSION
    return m


def ort_optimized(m, feeds: dict) -> list[np.ndarray]:
    """onnxruntime with its graph optimisations on: a QDQ group runs as its QLinear kernel."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def ort_unfused(m, feeds: dict) -> list[np.ndarray]:
    """onnxruntime with its graph optimisations off: every QuantizeLinear / DequantizeLinear and
    the float op between them run as written (the file's meaning, no int8 kernel)."""
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, feeds)


# why a comparison with onnxruntime's int8 kernels skips (cnnrt.tools.bench_int8.onnxruntime_u8s8_saturates)
MLAS_SATURATES_REASON = (
    "this CPU has no VNNI: onnxruntime's u8 x s8 kernels (MLAS, vpmaddubsw) saturate pairwise int16 sums, "
    "so its int8 output is not the exact one (tests/quant/test_quant_ops.py checks it against a model of that arithmetic)"
)


def random_q(rng, shape, dtype: str) -> np.ndarray:
    lo, hi = RANGE[dtype]
    return rng.integers(lo, hi + 1, size=shape).astype(dtype)


def conv_params(rng, c: int, m: int, group: int, k: tuple, x_dtype: str, w_dtype: str, per_channel: bool, sym: bool):
    """Random QLinearConv operands: (x zero point, x scale, W, w scales, w zero points, bias, y scale, y zp)."""
    xz = np.array(0 if sym and x_dtype == "int8" else (-5 if x_dtype == "int8" else 131), x_dtype)
    w = random_q(rng, (m, c // group, *k), w_dtype)
    n_scales = m if per_channel else 1
    ws = rng.uniform(0.002, 0.01, n_scales).astype(np.float32)
    if w_dtype == "uint8":
        wz = np.full(n_scales, 120, np.uint8)
    else:
        wz = np.zeros(n_scales, np.int8) if sym else rng.integers(-6, 7, n_scales).astype(np.int8)
    bias = rng.integers(-3000, 3000, m).astype(np.int32)
    # y's scale puts the accumulator's spread over roughly the whole output range
    ys = np.float32(0.05 * 0.006 * np.sqrt(w[0].size) * 40)
    yz = np.array(0 if x_dtype == "int8" and sym else (3 if x_dtype == "int8" else 128), x_dtype)
    if not per_channel:
        ws, wz = ws.reshape(()), wz.reshape(())
    return xz, np.float32(0.05), w, ws, wz, bias, ys, yz


def onnxruntimes_accumulator(x, x_zp, w, w_zp, bias, geo: dict, exact):
    """The accumulator onnxruntime's QLinearConv forms: the ``exact`` one, except uint8 x int8
    non-depthwise convs on CPUs where MLAS saturates pairwise int16 sums."""
    from reference import mlas_u8s8_conv_accumulator_reference

    from cnnrt.tools.bench_int8 import onnxruntime_u8s8_saturates

    depthwise = geo["group"] == w.shape[0] and w.shape[1] == 1
    if x.dtype == np.uint8 and w.dtype == np.int8 and not depthwise and onnxruntime_u8s8_saturates():
        return mlas_u8s8_conv_accumulator_reference(x, x_zp, w, w_zp, bias, **geo)
    return exact

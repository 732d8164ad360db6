"""The arithmetic of ONNX's linear quantization, once for every layer that needs it (constant
folding, the CPU kernels, the fusion pass).

``q = saturate(round_half_even(x / scale) + zero_point)`` and ``x = (q - zero_point) * scale``,
per tensor (scale of shape ``()``/``(1,)``) or per ``axis`` (scale of shape ``(C,)``).

Requantizing an int32 accumulator follows onnxruntime's MLAS (``MlasRequantizeOutput``), so the
same accumulator gives the same bytes as its QLinearConv: the float32 multiplier
``x_scale * w_scale / y_scale`` (in that order, in float32), the accumulator converted to
float32 and multiplied by it, clamped to ``[qmin - zp, qmax - zp]`` in float32, rounded half to
even, then ``zp`` added. (cnnrt's accumulators are exact; onnxruntime's uint8 x int8 ones are
not on x86 CPUs without VNNI, kernels/cpu/qconv.py says why.)
"""

from __future__ import annotations

import numpy as np

QRANGE = {"uint8": (0, 255), "int8": (-128, 127), "int32": (-(2**31), 2**31 - 1)}


def along(v: np.ndarray, axis: int, rank: int) -> np.ndarray:
    """A per-tensor or per-axis parameter shaped to broadcast against a rank-``rank`` tensor."""
    v = np.asarray(v)
    if v.size == 1 and v.ndim <= 1:
        return v.reshape(())
    shape = [1] * rank
    shape[axis % rank] = v.size
    return v.reshape(shape)


def quantize(x: np.ndarray, scale, zero_point, dtype: str, axis: int = 1) -> np.ndarray:
    """QuantizeLinear: float x to ``dtype`` (uint8/int8/int32)."""
    s = along(np.asarray(scale, np.float32), axis, x.ndim)
    z = along(np.asarray(0 if zero_point is None else zero_point), axis, x.ndim).astype(np.float32)
    lo, hi = QRANGE[dtype]
    q = np.rint(np.asarray(x, np.float32) / s) + z
    return np.clip(q, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, scale, zero_point, axis: int = 1) -> np.ndarray:
    """DequantizeLinear: integer q to float32 (the difference taken exactly, in int32)."""
    s = along(np.asarray(scale, np.float32), axis, q.ndim)
    z = along(np.asarray(0 if zero_point is None else zero_point), axis, q.ndim).astype(np.int32)
    return ((q.astype(np.int32) - z).astype(np.float32) * s).astype(np.float32)


def requant_multiplier(in_scale, w_scale, out_scale) -> np.ndarray:
    """Per-output-channel float32 multipliers ``in_scale * w_scale / out_scale`` as MLAS forms them."""
    a = np.float32(np.asarray(in_scale, np.float32).reshape(()))
    w = np.asarray(w_scale, np.float32).reshape(-1)
    return ((a * w).astype(np.float32) / np.float32(np.asarray(out_scale, np.float32).reshape(()))).astype(np.float32)


def requantize(acc, multiplier, zero_point: int, dtype: str, lo=None, hi=None, axis: int = 1) -> np.ndarray:
    """An int32 accumulator (output channels along ``axis``) to ``dtype`` as MLAS does;
    ``lo``/``hi`` narrow the output range (a fused ReLU or Clip)."""
    qlo, qhi = QRANGE[dtype]
    lo = qlo if lo is None else max(qlo, lo)
    hi = qhi if hi is None else min(qhi, hi)
    m = along(multiplier, axis, acc.ndim)
    f = acc.astype(np.float32) * m
    f = np.clip(f, np.float32(lo - zero_point), np.float32(hi - zero_point))
    return (np.rint(f).astype(np.int32) + zero_point).astype(dtype)


def clamp_range(activation: str, alpha: float, beta: float, scale: float, zero_point: int, dtype: str):
    """The quantized (lo, hi) a fused ReLU / Clip leaves of ``dtype``'s range."""
    lo, hi = QRANGE[dtype]
    if activation == "Relu":
        return max(lo, zero_point), hi
    if activation == "Clip":
        q = quantize(np.array([alpha, beta], np.float32), scale, zero_point, "int32")
        return max(lo, int(q[0])), min(hi, int(q[1]))
    return lo, hi

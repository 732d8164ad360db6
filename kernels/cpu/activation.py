"""Elementwise activations, standalone and as the fused epilogue other kernels call.

``act_scalar`` is the single definition of every activation's formula; fused kernels
(Conv, Gemm, ChannelAffine, ...) call it per element while the value is in a register.
"""

from __future__ import annotations

import math

import numpy as np
from cnnrt.kernels import register
from cnnrt.kernels._jit import njit, pjit
from numba import prange

from cnnrt.ops import ACTIVATIONS, activation_params

_CHUNK = 1 << 14


@njit(inline="always")
def act_scalar(v, kind, alpha, beta):
    """Apply activation ``kind`` (see cnnrt.ops.ACTIVATIONS) to one value."""
    if kind == 0:
        return v
    if kind == 1:  # Relu (NaN stays NaN, as onnxruntime's max(x, 0) keeps it)
        return v if not v < 0 else 0.0 * v
    if kind == 2:  # LeakyRelu
        return v if v >= 0 else v * alpha
    if kind == 3:  # Clip(min=alpha, max=beta); NaN propagates
        if v < alpha:
            return alpha
        if v > beta:
            return beta
        return v
    if kind == 4:  # Sigmoid, computed without overflow for large |v|
        if v >= 0:
            return 1.0 / (1.0 + math.exp(-v))
        e = math.exp(v)
        return e / (1.0 + e)
    if kind == 5:  # HardSigmoid
        return max(0.0, min(1.0, alpha * v + beta))
    if kind == 6:  # HardSwish: x * max(0, min(1, x/6 + 1/2))
        return v * max(0.0, min(1.0, v / 6.0 + 0.5))
    if kind == 7:
        return math.tanh(v)
    if kind == 8:  # Elu
        return v if v >= 0 else alpha * (math.exp(v) - 1.0)
    if kind == 9:  # SiLU = x * sigmoid(x)
        if v >= 0:
            return v / (1.0 + math.exp(-v))
        e = math.exp(v)
        return v * e / (1.0 + e)
    return v


@pjit
def activate_flat(x, out, kind, alpha, beta):
    """out[i] = act(x[i]) over flat arrays, split in chunks across threads."""
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        for i in range(lo, hi):
            out[i] = act_scalar(x[i], kind, alpha, beta)


@register("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu")
def build_activation(node, graph):
    kind = ACTIVATIONS[node.op]
    alpha, beta = activation_params(node.op, node.attrs)
    dtype = np.dtype(graph.values[node.inputs[0]].dtype)
    if dtype.kind != "f":
        # Relu/Clip on integer tensors (rare: shape arithmetic) go through numpy.
        if node.op == "Relu":
            return lambda ins, outs: np.maximum(ins[0], 0, out=outs[0])
        if node.op == "Clip":
            lo, hi = node.attrs["min"], node.attrs["max"]
            return lambda ins, outs: np.clip(ins[0], max(lo, np.iinfo(dtype).min), min(hi, np.iinfo(dtype).max), out=outs[0])
        raise TypeError(f"{node.op} needs a floating-point input, got {dtype}")
    a, b = dtype.type(alpha), dtype.type(beta)

    def run(ins, outs):
        activate_flat(ins[0].reshape(-1), outs[0].reshape(-1), kind, a, b)

    return run

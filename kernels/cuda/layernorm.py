"""LayerNormalization on CUDA: one thread per row of the normalised trailing axes (as the CPU
kernel: the mean, then the variance of the centred values, then the output)."""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.kernels.registry import register

from .common import F0, F1, launcher_1d, require_float, shape_of
from .device import placeholder


@cuda.jit
def _layer_norm(X, scale, bias, has_bias, eps, Y, mean_out, inv_out, stats, rows, n, nf):
    # nf: n in the tensor's float type, so the means are not computed in float64
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = r * n
        s = F0
        for k in range(n):
            s += X[base + k]
        m = s / nf
        v = F0
        for k in range(n):
            d = X[base + k] - m
            v += d * d
        inv = F1 / math.sqrt(v / nf + eps)
        for k in range(n):
            y = (X[base + k] - m) * inv * scale[k]
            Y[base + k] = y + bias[k] if has_bias else y
        if stats & 1:
            mean_out[r] = m
        if stats & 2:
            inv_out[r] = inv


@register("LayerNormalization", backend="cuda")
def build_layer_norm(node, graph):
    dtype = require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    axis = int(node.attrs["axis"])
    rows, n = int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))
    eps = dtype.type(node.attrs.get("epsilon", 1e-5))
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    wanted = [k for k in (1, 2) if len(node.outputs) > k and node.outputs[k]]
    stats = sum(wanted)  # bit 1: Mean, bit 2: InvStdDev
    no_bias, no_stat = placeholder(str(dtype)), placeholder("float32")
    launch = launcher_1d(_layer_norm, rows)

    def run(ins, outs):
        bias = ins[2] if has_bias else no_bias
        mean_out = outs[1] if 1 in wanted else no_stat
        inv_out = outs[2] if 2 in wanted else no_stat
        launch(ins[0], ins[1], bias, has_bias, eps, outs[0], mean_out, inv_out, stats, rows, n, dtype.type(n))

    return run

"""LayerNormalization: each row of the normalised trailing axes scaled to zero mean, unit variance.

X is seen as (rows, n) with n the product of the normalised axes. One task per row: the mean,
then the variance of the centred values (two passes, float64 sums: a one-pass E[x²] - E[x]²
cancels catastrophically when the mean is large against the spread), then the output.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.elementwise import dtype_of, require_float
from cnnrt.kernels.cpu.norm import row_mean_rstd
from cnnrt.kernels.registry import register


@pjit
def layer_norm_rows(x, scale, bias, eps, out, mean_out, inv_out):
    """out[r] = (x[r] - mean) * inv_std * scale + bias; mean_out/inv_out get the row statistics
    (arrays of length 0 when not wanted); bias of length 0 when absent."""
    rows, n = x.shape
    for r in prange(rows):
        m, inv = row_mean_rstd(x, r, eps)
        if bias.size:
            for k in range(n):
                out[r, k] = (x[r, k] - m) * inv * scale[k] + bias[k]
        else:
            for k in range(n):
                out[r, k] = (x[r, k] - m) * inv * scale[k]
        if mean_out.size:
            mean_out[r] = m
        if inv_out.size:
            inv_out[r] = inv


_layer_norm_rows_serial = serial_twin(layer_norm_rows)


@register("LayerNormalization")
def build_layer_norm(node, graph):
    shape = graph.values[node.inputs[0]].shape
    dtype = dtype_of(graph, node.inputs[0])
    require_float(node, dtype)
    axis = int(node.attrs["axis"])
    n = math.prod(shape[axis:])
    rows = math.prod(shape[:axis])
    eps = float(node.attrs.get("epsilon", 1e-5))
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    stats = [k for k in (1, 2) if len(node.outputs) > k and node.outputs[k]]
    empty = np.empty(0, dtype)
    empty_stat = np.empty(0, np.float32)
    work = 8 * rows * n

    def run(ins, outs):
        x = ins[0].reshape(rows, n)
        bias = ins[2].reshape(n) if has_bias else empty
        st = [outs[k].reshape(rows) if k in stats else empty_stat for k in (1, 2)]
        kern = pick(layer_norm_rows, _layer_norm_rows_serial, work, num_threads())
        kern(x, ins[1].reshape(n), bias, eps, outs[0].reshape(rows, n), st[0], st[1])

    return run

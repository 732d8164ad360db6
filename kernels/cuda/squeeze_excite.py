"""SqueezeExcite on CUDA: four launches in grid-stride loops, as the reductions are written.

One thread per (n, c) pools its plane into a small device buffer, one per (n, r) computes
the squeeze row (its dot product with the pooled vector, bias, activation), one per (n, c)
the gate, then one per element scales x. The matvecs are a few thousand MACs per image: a
thread per output row is enough. The blocked form is CPU-only (block_layout runs for CPU
sessions only).
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cnnrt.core.ops import ACTIVATIONS, op_attrs
from cnnrt.kernels.registry import register

from .common import F0, act, launcher_1d, require_float, shape_of
from .device import device_array, upload_flat


@cuda.jit
def _pool(x, pooled, planes, hw):
    for p in range(cuda.grid(1), planes, cuda.gridsize(1)):
        s = F0
        for i in range(hw):
            s += x[p * hw + i]
        pooled[p] = s / np.float32(hw)


@cuda.jit
def _matvec(v, w, b, out, rows, cols, total, kind, alpha, beta):
    """out[n, j] = act(b[j] + sum_k w[j, k] v[n, k]) for the ``total`` = N * rows outputs."""
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        n = i // rows
        j = i - n * rows
        s = b[j]
        for k in range(cols):
            s += w[j * cols + k] * v[n * cols + k]
        out[i] = act(s, kind, alpha, beta)


@cuda.jit
def _scale(x, gate, y, total, hw):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        y[i] = x[i] * gate[i // hw]


@register("SqueezeExcite", backend="cuda")
def build_squeeze_excite(node, graph):
    dtype = require_float(node, graph)
    n, c, h, w = shape_of(graph, node.inputs[0])
    consts = [graph.constants.get(i) for i in node.inputs[1:5]]
    if any(a is None for a in consts):
        raise ValueError(f"{node.op} {node.name!r}: W1, B1, W2, B2 must be constants")
    w1, b1, w2, b2 = (upload_flat(np.asarray(a, dtype)) for a in consts)
    r = int(np.asarray(consts[0]).shape[0])
    a = op_attrs(node)
    t = np.dtype(dtype).type
    squeeze = (ACTIVATIONS[a["squeeze"]], t(a["squeeze_alpha"]), t(a["squeeze_beta"]))
    gate_act = (ACTIVATIONS[a["gate"]], t(a["gate_alpha"]), t(a["gate_beta"]))
    pooled, hidden, gate = (device_array(k, dtype) for k in (n * c, n * r, n * c))
    hw, total = h * w, n * c * h * w
    pool, sq, ex = launcher_1d(_pool, n * c), launcher_1d(_matvec, n * r), launcher_1d(_matvec, n * c)
    scale = launcher_1d(_scale, total)

    def run(ins, outs):
        pool(ins[0], pooled, n * c, hw)
        sq(pooled, w1, b1, hidden, r, c, n * r, *squeeze)
        ex(hidden, w2, b2, gate, c, r, n * c, *gate_act)
        scale(ins[0], gate, outs[0], total, hw)

    return run

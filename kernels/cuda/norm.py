"""Normalisation on CUDA: BatchNormalization, ChannelAffine (BN after folding, + activation), LRN,
GroupNormalization (and InstanceNormalization, one group per channel).

One thread per output element in grid-stride loops. A per-channel parameter of a flat
index i is number ``(i // inner) % period`` (:func:`_channel_layout`): per channel of NCHW,
per activation (BN's spatial=0 form), or one for all. BatchNormalization with constant
parameters is prepacked to the affine kernel (``s = scale / sqrt(var + eps)``, ``t = B - mean * s``
in float64, then rounded). GroupNormalization takes two launches, as the reductions do: one
thread per (n, group) computes its mean and 1/std into a small device buffer, then one thread
per element normalises, scales, shifts and applies the fused activation.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.core.ops import op_attrs
from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import F0, F1, act, dmax, dmin, epilogue_params, launcher_1d, require_float, shape_of, size_of
from .device import device_array, upload_flat


@cuda.jit
def _affine(x, scale, shift, y, n, inner, period, kind, alpha, beta):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        c = (i // inner) % period
        y[i] = act(x[i] * scale[c] + shift[c], kind, alpha, beta)


@cuda.jit
def _batchnorm(x, scale, bias, mean, var, y, n, inner, period, eps):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        c = (i // inner) % period
        y[i] = (x[i] - mean[c]) / math.sqrt(var[c] + eps) * scale[c] + bias[c]


@cuda.jit
def _lrn(X, Y, total, C, inner, size, alpha_over_size, beta, bias):
    for i in range(cuda.grid(1), total, cuda.gridsize(1)):
        c = (i // inner) % C
        base = i - c * inner
        lo = dmax(0, c - (size - 1) // 2)
        hi = dmin(C - 1, c + size // 2)
        s = F0
        for j in range(lo, hi + 1):
            v = X[base + j * inner]
            s += v * v
        Y[i] = X[i] / (bias + alpha_over_size * s) ** beta


def _channel_layout(node, graph, param: str) -> tuple[int, int]:
    """(inner, period) so that a flat index i of X uses parameter (i // inner) % period."""
    xshape = shape_of(graph, node.inputs[0])
    psize = size_of(graph, param)
    inner_all = int(np.prod(xshape[2:], dtype=np.int64))
    if len(xshape) >= 2 and psize == xshape[1]:
        return inner_all, xshape[1]
    per_act = int(np.prod(xshape[1:], dtype=np.int64))
    if psize == per_act:
        return 1, per_act
    if psize == 1:
        return 1, 1
    raise UnsupportedOpError(
        f"node {node.name!r} ({node.op}): parameter {param!r} of size {psize} fits no axis of X{list(xshape)}"
    )


@register("ChannelAffine", backend="cuda")
def build_channel_affine(node, graph):
    dtype = require_float(node, graph, *node.inputs[:3])
    inner, period = _channel_layout(node, graph, node.inputs[1])
    kind, alpha, beta = epilogue_params(node, dtype)
    n = size_of(graph, node.outputs[0])
    launch = launcher_1d(_affine, n)
    return lambda ins, outs: launch(ins[0], ins[1], ins[2], outs[0], n, inner, period, kind, alpha, beta)


@register("BatchNormalization", backend="cuda")
def build_batchnorm(node, graph):
    dtype = require_float(node, graph, *node.inputs[:5])
    inner, period = _channel_layout(node, graph, node.inputs[1])
    eps = float(node.attrs.get("epsilon", 1e-5))
    n = size_of(graph, node.outputs[0])
    if all(graph.is_constant(p) for p in node.inputs[1:5]):
        # Prepack once: y = x * s + t with s = scale / sqrt(var + eps), t = B - mean * s.
        scale, bias, mean, var = (graph.constants[p].astype(np.float64).reshape(-1) for p in node.inputs[1:5])
        s = scale / np.sqrt(var + eps)
        s_dev, t_dev = upload_flat(s.astype(dtype)), upload_flat((bias - mean * s).astype(dtype))
        launch = launcher_1d(_affine, n)
        return lambda ins, outs: launch(ins[0], s_dev, t_dev, outs[0], n, inner, period, 0, F0, F0)
    launch = launcher_1d(_batchnorm, n)
    e = dtype.type(eps)
    return lambda ins, outs: launch(ins[0], ins[1], ins[2], ins[3], ins[4], outs[0], n, inner, period, e)


@register("LRN", backend="cuda")
def build_lrn(node, graph):
    dtype = require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    total = size_of(graph, node.inputs[0])
    inner = int(np.prod(shape[2:], dtype=np.int64))
    size = int(node.attrs["size"])
    t = dtype.type
    args = (
        shape[1],
        inner,
        size,
        t(float(node.attrs.get("alpha", 1e-4)) / size),
        t(node.attrs.get("beta", 0.75)),
        t(node.attrs.get("bias", 1.0)),
    )
    launch = launcher_1d(_lrn, total)
    return lambda ins, outs: launch(ins[0], outs[0], total, *args)


@cuda.jit
def _group_stats(X, stats, rows, size, eps):
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = r * size
        total = F0
        for i in range(size):
            total += X[base + i]
        mean = total / np.float32(size)
        sq = F0
        for i in range(size):
            d = X[base + i] - mean
            sq += d * d
        stats[2 * r] = mean
        stats[2 * r + 1] = F1 / math.sqrt(sq / np.float32(size) + eps)


@cuda.jit
def _group_apply(X, scale, bias, stats, Y, n, size, inner, channels, kind, alpha, beta):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        r = i // size
        c = (i // inner) % channels
        Y[i] = act((X[i] - stats[2 * r]) * stats[2 * r + 1] * scale[c] + bias[c], kind, alpha, beta)


@register("GroupNormalization", backend="cuda")
def build_group_norm(node, graph):
    dtype = require_float(node, graph, *node.inputs[:3])
    shape = shape_of(graph, node.inputs[0])
    groups = int(node.attrs["num_groups"])
    n = size_of(graph, node.inputs[0])
    rows = shape[0] * groups
    size = n // rows
    inner = int(np.prod(shape[2:], dtype=np.int64))
    eps = dtype.type(op_attrs(node)["epsilon"])
    epilogue = epilogue_params(node, dtype)
    stats = device_array((2 * rows,), dtype)
    stat_launch, apply_launch = launcher_1d(_group_stats, rows), launcher_1d(_group_apply, n)

    def run(ins, outs):
        stat_launch(ins[0], stats, rows, size, eps)
        apply_launch(ins[0], ins[1], ins[2], stats, outs[0], n, size, inner, shape[1], *epilogue)

    return run

"""Reductions on CUDA: Softmax / LogSoftmax, ReduceMean/Sum/Max/Min/L2, ArgMax/ArgMin and the
global pools, one thread per reduced row.

Softmax over ``axis`` sees X as [outer, length, inner] and reduces over ``length``;
with ``coerce_2d`` (opset < 13 semantics) X is [prod(shape[:axis]), prod(shape[axis:])].
The row maximum is subtracted before exponentiating, as onnxruntime does.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import F0, c_strides, int_array, launcher_1d, require_float, shape_of, size_of, strided_offset


@cuda.jit
def _softmax(X, Y, rows, length, inner, log):
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        o = r // inner
        base = o * length * inner + (r - o * inner)
        m = X[base]
        for j in range(1, length):
            v = X[base + j * inner]
            if v > m or v != v:
                m = v
        s = F0
        for j in range(length):
            s += math.exp(X[base + j * inner] - m)
        if log:
            ls = math.log(s)
            for j in range(length):
                Y[base + j * inner] = X[base + j * inner] - m - ls
        else:
            for j in range(length):
                Y[base + j * inner] = math.exp(X[base + j * inner] - m) / s


REDUCE_CODES = {"ReduceMean": 0, "ReduceSum": 1, "ReduceMax": 2, "ReduceMin": 3, "ReduceL2": 4}


@cuda.jit
def _reduce(X, Y, nout, nred, op, krank, kshape, kstr, rrank, rshape, rstr):
    for o in range(cuda.grid(1), nout, cuda.gridsize(1)):
        base = strided_offset(o, krank, kshape, kstr)
        if op == 2 or op == 3:  # max / min, NaN propagates
            acc = X[base]
            for r in range(1, nred):
                v = X[base + strided_offset(r, rrank, rshape, rstr)]
                if (v > acc if op == 2 else v < acc) or v != v:
                    acc = v
            Y[o] = acc
            continue
        acc = F0
        for r in range(nred):
            v = X[base + strided_offset(r, rrank, rshape, rstr)]
            acc += v * v if op == 4 else v
        if op == 0:
            Y[o] = acc / np.float32(nred)
        elif op == 4:
            Y[o] = math.sqrt(acc)
        else:
            Y[o] = acc


@cuda.jit
def _arg_reduce(X, Y, rows, length, inner, is_max, last):
    """Index of the first (``last``: the last) extreme of each (outer, inner) row; NaN is skipped."""
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        o = r // inner
        base = o * length * inner + (r - o * inner)
        best = 0
        m = X[base]
        for j in range(1, length):
            v = X[base + j * inner]
            better = v > m if is_max else v < m
            if better or (last and v == m) or m != m:
                m = v
                best = j
        Y[r] = best


@cuda.jit
def _global_pool(X, Y, rows, hw, is_max):
    for r in range(cuda.grid(1), rows, cuda.gridsize(1)):
        base = r * hw
        acc = X[base]
        for j in range(1, hw):
            v = X[base + j]
            if is_max:
                if v > acc or v != v:
                    acc = v
            else:
                acc += v
        Y[r] = acc if is_max else acc / np.float32(hw)


@register("Softmax", backend="cuda")
def build_softmax(node, graph):
    require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    rank = max(len(shape), 1)
    axis = int(node.attrs.get("axis", -1)) % rank
    if node.attrs.get("coerce_2d", False):
        outer, length, inner = (
            int(np.prod(shape[:axis], dtype=np.int64)),
            int(np.prod(shape[axis:], dtype=np.int64)),
            1,
        )
    else:
        outer, length, inner = (
            int(np.prod(shape[:axis], dtype=np.int64)),
            shape[axis] if shape else 1,
            int(np.prod(shape[axis + 1 :], dtype=np.int64)),
        )
    rows = outer * inner
    log = 1 if node.attrs.get("log", False) else 0
    launch = launcher_1d(_softmax, rows)
    return lambda ins, outs: launch(ins[0], outs[0], rows, length, inner, log)


@register(*REDUCE_CODES, backend="cuda")
def build_reduce(node, graph):
    require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    axes = node.attrs.get("axes")
    red = sorted({int(a) % len(shape) for a in axes}) if axes is not None and len(axes) else list(range(len(shape)))
    kept = [d for d in range(len(shape)) if d not in red]
    st = c_strides(shape)
    nout = size_of(graph, node.outputs[0])
    nred = int(np.prod([shape[d] for d in red], dtype=np.int64))
    tables = (
        len(kept),
        int_array([shape[d] for d in kept]),
        int_array([st[d] for d in kept]),
        len(red),
        int_array([shape[d] for d in red]),
        int_array([st[d] for d in red]),
    )
    launch = launcher_1d(_reduce, nout)
    op = REDUCE_CODES[node.op]
    return lambda ins, outs: launch(ins[0], outs[0], nout, nred, op, *tables)


@register("ArgMax", "ArgMin", backend="cuda")
def build_arg_reduce(node, graph):
    require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    axis = int(node.attrs["axis"])
    outer, length = int(np.prod(shape[:axis], dtype=np.int64)), shape[axis]
    inner = int(np.prod(shape[axis + 1 :], dtype=np.int64))
    rows = outer * inner
    is_max = 1 if node.op == "ArgMax" else 0
    last = 1 if node.attrs.get("select_last_index", False) else 0
    launch = launcher_1d(_arg_reduce, rows)
    return lambda ins, outs: launch(ins[0], outs[0], rows, length, inner, is_max, last)


@register("GlobalAveragePool", "GlobalMaxPool", backend="cuda")
def build_global_pool(node, graph):
    require_float(node, graph)
    shape = shape_of(graph, node.inputs[0])
    rows = shape[0] * shape[1]
    hw = int(np.prod(shape[2:], dtype=np.int64))
    if hw < 1:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}): empty spatial extent {list(shape)}")
    is_max = 1 if node.op == "GlobalMaxPool" else 0
    launch = launcher_1d(_global_pool, rows)
    return lambda ins, outs: launch(ins[0], outs[0], rows, hw, is_max)

"""Elementwise CUDA kernels: activations, broadcasting arithmetic, comparisons and Pow,
Sum/Max/Min, PRelu, Cast, the one-input math ops (Erf, Sqrt, ..., Not), Where and Expand.

Broadcasting is resolved at build time: each input gets strides in the output's index
space (0 along broadcast axes); an input shaped like the output skips the index
arithmetic. Variadic Sum/Max/Min run as a chain of binary launches into the output.
"""

from __future__ import annotations

import math

import numpy as np
from numba import cuda

from cnnrt.core.ops import ACTIVATIONS, BINARY_OPS, UNARY_ACTIVATION_OPS, VARIADIC_OPS, activation_params
from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import F1, act, c_strides, int_array, launcher_1d, shape_of, size_of, strided_offset

OP_CODES = {
    "Add": 0,
    "Sub": 1,
    "Mul": 2,
    "Div": 3,
    "Max": 4,
    "Min": 5,
    "PRelu": 6,
    "Sum": 0,
    "Pow": 7,
    "Equal": 8,
    "Less": 9,
    "LessOrEqual": 10,
    "Greater": 11,
    "GreaterOrEqual": 12,
}
MATH_CODES = {
    "Erf": 0,
    "Sqrt": 1,
    "Reciprocal": 2,
    "Exp": 3,
    "Log": 4,
    "Abs": 5,
    "Neg": 6,
    "Floor": 7,
    "Ceil": 8,
}
# From 2**52 on every float is an integer (float32's from 2**23, far below): Floor/Ceil
# return such values (and Inf, NaN) as they are.
_WHOLE = 4503599627370496.0


@cuda.jit
def _unary_act(x, y, n, kind, alpha, beta):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = act(x[i], kind, alpha, beta)


@cuda.jit
def _copy(x, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = x[i]


@cuda.jit
def _cast_to_bool(x, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = x[i] != 0


@cuda.jit
def _binary(a, b, y, n, op, rank, oshape, astr, bstr, a_direct, b_direct):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        ia = i
        ib = i
        if not (a_direct and b_direct):
            ia = 0
            ib = 0
            rem = i
            for d in range(rank - 1, -1, -1):
                dim = oshape[d]
                c = rem % dim
                rem = rem // dim
                ia += c * astr[d]
                ib += c * bstr[d]
            if a_direct:
                ia = i
            if b_direct:
                ib = i
        u = a[ia]
        w = b[ib]
        if op == 0:
            y[i] = u + w
        elif op == 1:
            y[i] = u - w
        elif op == 2:
            y[i] = u * w
        elif op == 3:
            y[i] = u / w
        elif op == 4:  # Max, NaN propagates (u != u is the NaN test)
            y[i] = u if (u >= w or u != u) else w
        elif op == 5:
            y[i] = u if (u <= w or u != u) else w
        elif op == 6:  # PRelu
            y[i] = u if u >= 0 else u * w
        elif op == 7:
            y[i] = u**w
        elif op == 8:
            y[i] = u == w
        elif op == 9:
            y[i] = u < w
        elif op == 10:
            y[i] = u <= w
        elif op == 11:
            y[i] = u > w
        else:
            y[i] = u >= w


def broadcast_plan(in_shape, out_shape) -> tuple[list[int], bool]:
    """Strides of ``in_shape`` in ``out_shape``'s index space, and whether it is the same shape."""
    in_shape, out_shape = tuple(in_shape), tuple(out_shape)
    if in_shape == out_shape:
        return c_strides(out_shape), True
    padded = (1,) * (len(out_shape) - len(in_shape)) + in_shape
    strides = c_strides(padded)
    return [0 if p == 1 and o != 1 else s for p, s, o in zip(padded, strides, out_shape)], False


@register(*UNARY_ACTIVATION_OPS, backend="cuda")
def build_activation(node, graph):
    kind = ACTIVATIONS[node.op]
    alpha, beta = activation_params(node.op, node.attrs)
    dtype = np.dtype(graph.values[node.inputs[0]].dtype)
    if dtype.kind != "f":
        if node.op not in ("Relu", "Clip") or dtype.kind not in "iu":
            raise UnsupportedOpError(f"node {node.name!r}: {node.op} on {dtype} has no CUDA kernel")
        if node.op == "Clip":  # bounds outside the integer range would wrap when cast
            info = np.iinfo(dtype)
            alpha, beta = max(alpha, info.min), min(beta, info.max)
    a, b = dtype.type(alpha), dtype.type(beta)
    n = size_of(graph, node.outputs[0])
    launch = launcher_1d(_unary_act, n)

    def run(ins, outs):
        launch(ins[0], outs[0], n, kind, a, b)

    return run


def _binary_steps(graph, inputs: list[str], out: str, op: int):
    """Launch closures computing out = op(op(x1, x2), x3)...; every later step reads ``out``."""
    oshape = shape_of(graph, out)
    n = size_of(graph, out)
    rank = max(len(oshape), 1)
    dshape = int_array(oshape)
    launch = launcher_1d(_binary, n)
    plans = []
    for name in inputs:
        s, direct = broadcast_plan(shape_of(graph, name), oshape)
        plans.append((int_array(s), direct))
    steps = [(0, 1, plans[0], plans[1])]
    full = (int_array(c_strides(oshape)), True)
    steps += [(-1, k, full, plans[k]) for k in range(2, len(inputs))]
    steps = [(ia, ib, pa[0], pb[0], pa[1], pb[1]) for ia, ib, pa, pb in steps]

    def run(ins, outs):
        y = outs[0]
        for ia, ib, sa, sb, da, db in steps:
            launch(y if ia < 0 else ins[ia], ins[ib], y, n, op, rank, dshape, sa, sb, da, db)

    return run


@register(*BINARY_OPS, "PRelu", backend="cuda")
def build_binary(node, graph):
    a, b = node.inputs[:2]
    if np.dtype(graph.values[a].dtype) != np.dtype(graph.values[b].dtype):
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}): inputs have different dtypes")
    return _binary_steps(graph, [a, b], node.outputs[0], OP_CODES[node.op])


@register(*VARIADIC_OPS, backend="cuda")
def build_variadic(node, graph):
    inputs = [i for i in node.inputs if i]
    out = node.outputs[0]
    if len({graph.values[i].dtype for i in inputs}) != 1:
        raise UnsupportedOpError(f"node {node.name!r} ({node.op}): inputs have different dtypes")
    if len(inputs) >= 2:
        return _binary_steps(graph, inputs, out, OP_CODES[node.op])
    n = size_of(graph, out)
    if shape_of(graph, inputs[0]) != shape_of(graph, out):
        raise UnsupportedOpError(f"node {node.name!r}: a one-input {node.op} must not broadcast")
    launch = launcher_1d(_copy, n)
    return lambda ins, outs: launch(ins[0], outs[0], n)


@register("Cast", backend="cuda")
def build_cast(node, graph):
    n = size_of(graph, node.outputs[0])
    to_bool = np.dtype(graph.values[node.outputs[0]].dtype) == np.bool_
    launch = launcher_1d(_cast_to_bool if to_bool else _copy, n)
    return lambda ins, outs: launch(ins[0], outs[0], n)


# ---------------------------------------------------------------------------- math, Where, Expand


@cuda.jit(device=True, inline=True)
def _floor_or_ceil(v, ceil):
    """floor(v) (ceil(v) when ``ceil``) in v's type: v - fmod(v, 1) is v truncated, exactly."""
    if not abs(v) < _WHOLE:
        return v
    r = math.fmod(v, F1)
    t = v - r
    if ceil:
        return t + F1 if r > 0 else t
    return t - F1 if r < 0 else t


@cuda.jit
def _unary_math(x, y, n, op):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        v = x[i]
        if op == 0:
            y[i] = math.erf(v)
        elif op == 1:
            y[i] = math.sqrt(v)
        elif op == 2:
            y[i] = F1 / v
        elif op == 3:
            y[i] = math.exp(v)
        elif op == 4:
            y[i] = math.log(v)
        elif op == 5:
            y[i] = abs(v)
        elif op == 6:
            y[i] = -v
        else:
            y[i] = _floor_or_ceil(v, op == 8)


@cuda.jit
def _not(x, y, n):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = not x[i]


@cuda.jit
def _where(c, a, b, y, n, rank, oshape, cstr, astr, bstr):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        if c[strided_offset(i, rank, oshape, cstr)]:
            y[i] = a[strided_offset(i, rank, oshape, astr)]
        else:
            y[i] = b[strided_offset(i, rank, oshape, bstr)]


@cuda.jit
def _expand(x, y, n, rank, oshape, xstr):
    for i in range(cuda.grid(1), n, cuda.gridsize(1)):
        y[i] = x[strided_offset(i, rank, oshape, xstr)]


@register(*MATH_CODES, "Not", backend="cuda")
def build_math(node, graph):
    dtype = np.dtype(graph.values[node.inputs[0]].dtype)
    n = size_of(graph, node.outputs[0])
    if node.op == "Not":
        launch_not = launcher_1d(_not, n)
        return lambda ins, outs: launch_not(ins[0], outs[0], n)
    if dtype.kind != "f" and not (node.op in ("Abs", "Neg") and dtype.kind in "iu"):
        raise UnsupportedOpError(f"node {node.name!r}: {node.op} on {dtype} has no CUDA kernel")
    launch = launcher_1d(_unary_math, n)
    code = MATH_CODES[node.op]
    return lambda ins, outs: launch(ins[0], outs[0], n, code)


def _strides_in(graph, names, out):
    """Each input's strides in the output's index space (uploaded), and the output's rank and shape."""
    oshape = shape_of(graph, out) or (1,)  # a 0-d output indexes as shape (1,)
    tables = [int_array(broadcast_plan(shape_of(graph, name), oshape)[0]) for name in names]
    return tables, len(oshape), int_array(oshape)


@register("Where", backend="cuda")
def build_where(node, graph):
    n = size_of(graph, node.outputs[0])
    (cs, xs, ys), rank, oshape = _strides_in(graph, node.inputs[:3], node.outputs[0])
    launch = launcher_1d(_where, n)
    return lambda ins, outs: launch(ins[0], ins[1], ins[2], outs[0], n, rank, oshape, cs, xs, ys)


@register("Expand", backend="cuda")
def build_expand(node, graph):
    n = size_of(graph, node.outputs[0])
    (xs,), rank, oshape = _strides_in(graph, node.inputs[:1], node.outputs[0])
    launch = launcher_1d(_expand, n)
    return lambda ins, outs: launch(ins[0], outs[0], n, rank, oshape, xs)

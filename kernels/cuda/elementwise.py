"""Elementwise CUDA kernels: activations, broadcasting arithmetic, Sum/Max/Min, PRelu, Cast.

Broadcasting is resolved at build time: each input gets strides in the output's index
space (0 along broadcast axes); an input shaped like the output skips the index
arithmetic. Variadic Sum/Max/Min run as a chain of binary launches into the output.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from cnnrt.core.ops import ACTIVATIONS, BINARY_OPS, UNARY_ACTIVATION_OPS, VARIADIC_OPS, activation_params
from cnnrt.errors import UnsupportedOpError
from cnnrt.kernels.registry import register

from .common import act, c_strides, int_array, launcher_1d, shape_of, size_of

OP_CODES = {"Add": 0, "Sub": 1, "Mul": 2, "Div": 3, "Max": 4, "Min": 5, "PRelu": 6, "Sum": 0}


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
        else:  # PRelu
            y[i] = u if u >= 0 else u * w


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

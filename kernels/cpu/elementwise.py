"""Elementwise ops: the activations, broadcasting arithmetic, Sum/Max/Min, Cast, PRelu.

Broadcasting arithmetic is numpy ufuncs writing into the output buffer (``out=``): it is
memory-bound data movement numpy already does well. The activations (their formulas are
kernels/activation.py's) and PRelu are Numba loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS, activation_params
from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.activation import act_inplace
from cnnrt.kernels.cpu.blas import split_index
from cnnrt.kernels.registry import register

_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
_VARIADIC = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum}
_CHUNK = 1 << 14


def dtype_of(graph, name: str) -> np.dtype:
    return np.dtype(graph.values[name].dtype)


def require_float(node, dtype: np.dtype) -> None:
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{node.op} kernel supports float32 and float64, got {dtype}")


@register("Add", "Sub", "Mul", "Div")
def build_binary(node, graph):
    if node.op == "Div" and dtype_of(graph, node.outputs[0]).kind in "iu":
        return _int_div
    f = _UFUNCS[node.op]

    def run(ins, outs):
        f(ins[0], ins[1], out=outs[0])

    return run


def _int_div(ins, outs):
    # ONNX integer Div truncates toward zero; numpy's // floors. a - fmod(a, b) is an exact
    # multiple of b, so flooring it gives the truncated quotient. Integer Div is shape
    # arithmetic in practice, so the temporary does not matter; it also keeps the result
    # right when the planner places the output over b.
    a, b = ins
    with np.errstate(divide="ignore", invalid="ignore"):
        np.floor_divide(a - np.fmod(a, b), b, out=outs[0])


@register("Sum", "Max", "Min")
def build_variadic(node, graph):
    f = _VARIADIC[node.op]

    def run(ins, outs):
        out = outs[0]
        if len(ins) == 1:
            np.copyto(out, ins[0])
            return
        f(ins[0], ins[1], out=out)
        for x in ins[2:]:
            f(out, x, out=out)

    return run


@register("Cast")
def build_cast(node, graph):
    def run(ins, outs):
        np.copyto(outs[0], ins[0], casting="unsafe")

    return run


# ---------------------------------------------------------------------------- PRelu


@pjit
def prelu_blocks(x, slope, out):
    """x, out: (outer, n, inner); slope: (n,). out = x if x >= 0 else x * slope[j]."""
    outer, n, inner = x.shape
    for t in prange(outer * n):
        o, j = split_index(t, n)
        s = slope[j]
        for k in range(inner):
            v = x[o, j, k]
            out[o, j, k] = v if v >= 0 else v * s


def _prelu_numpy(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x < 0, x * slope, x).astype(x.dtype)


def _slope_block(xshape: tuple[int, ...], sshape: tuple[int, ...]) -> tuple[int, int] | None:
    """The axis range [a, b) the slope varies along, if contiguous (else None)."""
    s = (1,) * (len(xshape) - len(sshape)) + tuple(sshape)
    varying = [i for i, (d, xd) in enumerate(zip(s, xshape)) if d != 1 and xd != 1]
    if not varying:
        return 0, 0
    a, b = varying[0], varying[-1] + 1
    if any(s[i] != xshape[i] for i in range(a, b)):
        return None
    return a, b


@register("PRelu")
def build_prelu(node, graph):
    xshape = graph.values[node.inputs[0]].shape
    sshape = graph.values[node.inputs[1]].shape
    require_float(node, dtype_of(graph, node.inputs[0]))
    block = _slope_block(xshape, sshape)
    if block is None:  # slope varies along non-adjacent axes: numpy, rare

        def run_numpy(ins, outs):
            np.copyto(outs[0], _prelu_numpy(ins[0], ins[1]))

        return run_numpy
    a, b = block
    shape3 = (math.prod(xshape[:a]), math.prod(xshape[a:b]), math.prod(xshape[b:]))

    def run(ins, outs):
        prelu_blocks(ins[0].reshape(shape3), ins[1].reshape(-1), outs[0].reshape(shape3))

    return run


# ---------------------------------------------------------------------------- activations


@pjit
def activate_flat(x, out, kind, alpha, beta):
    """out[i] = act(x[i]) over flat arrays, split in chunks across threads."""
    n = x.size
    nchunks = (n + _CHUNK - 1) // _CHUNK
    for c in prange(nchunks):
        lo = c * _CHUNK
        hi = min(n, lo + _CHUNK)
        out[lo:hi] = x[lo:hi]
        act_inplace(out[lo:hi], kind, alpha, beta)


_activate_flat_serial = serial_twin(activate_flat)


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
            return lambda ins, outs: np.clip(
                ins[0], max(lo, np.iinfo(dtype).min), min(hi, np.iinfo(dtype).max), out=outs[0]
            )
        raise TypeError(f"{node.op} needs a floating-point input, got {dtype}")
    a, b = dtype.type(alpha), dtype.type(beta)

    def run(ins, outs):
        x = ins[0].reshape(-1)
        pick(activate_flat, _activate_flat_serial, x.size, num_threads())(x, outs[0].reshape(-1), kind, a, b)

    return run

"""Broadcasting arithmetic, PRelu, Cast, Softmax/LogSoftmax and ReduceMean.

Broadcasting arithmetic is numpy ufuncs writing into the output buffer (``out=``): it is
memory-bound data movement numpy already does well. Softmax and PRelu are Numba loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.kernels import register
from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin

_UFUNCS = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
_VARIADIC = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum}
_CHUNK = 1 << 14


def _dtype(graph, name: str) -> np.dtype:
    return np.dtype(graph.values[name].dtype)


def _require_float(node, dtype: np.dtype) -> None:
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{node.op} kernel supports float32 and float64, got {dtype}")


@register("Add", "Sub", "Mul", "Div")
def build_binary(node, graph):
    if node.op == "Div" and _dtype(graph, node.outputs[0]).kind in "iu":
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
        o = t // n
        j = t - o * n
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
    _require_float(node, _dtype(graph, node.inputs[0]))
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


# ---------------------------------------------------------------------------- Softmax


@pjit
def softmax_3d(x, out, log):
    """Softmax along axis 1 of (outer, n, inner) arrays; one (outer, inner) pair per task."""
    outer, n, inner = x.shape
    for t in prange(outer * inner):
        o = t // inner
        j = t - o * inner
        m = -np.inf
        for k in range(n):
            v = x[o, k, j]
            if v > m:
                m = v
        s = 0.0
        if log:
            for k in range(n):
                s += math.exp(x[o, k, j] - m)
            c = m + math.log(s)
            for k in range(n):
                out[o, k, j] = x[o, k, j] - c
        else:
            # each exp once, kept in out (rounded once more: <= 1 ulp): exp is a libm call per
            # element and was most of the time (8x1000: 94 -> 52 us)
            for k in range(n):
                e = math.exp(x[o, k, j] - m)
                out[o, k, j] = e
                s += e
            r = 1.0 / s
            for k in range(n):
                out[o, k, j] = out[o, k, j] * r


_softmax_3d_serial = serial_twin(softmax_3d)


@register("Softmax")
def build_softmax(node, graph):
    shape = graph.values[node.inputs[0]].shape
    _require_float(node, _dtype(graph, node.inputs[0]))
    axis, log = node.attrs["axis"], bool(node.attrs["log"])
    if node.attrs["coerce_2d"]:
        shape3 = (math.prod(shape[:axis]), math.prod(shape[axis:]), 1)
    else:
        shape3 = (math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1 :]))

    # the serial twin below ~2^19 element-ops: a parallel region made a 1x1000 softmax 39 us
    # (now 8; onnxruntime's whole run 6, its exp is vectorised, math.exp here is not)
    work = 8 * math.prod(shape)

    def run(ins, outs):
        kern = pick(softmax_3d, _softmax_3d_serial, work, num_threads())
        kern(ins[0].reshape(shape3), outs[0].reshape(shape3), log)

    return run


# ---------------------------------------------------------------------------- ReduceMean


@register("ReduceMean")
def build_reduce_mean(node, graph):
    shape = graph.values[node.inputs[0]].shape
    axes = tuple(node.attrs["axes"])
    kept = tuple(1 if i in axes else d for i, d in enumerate(shape))

    def run(ins, outs):
        np.mean(ins[0], axis=axes, keepdims=True, out=outs[0].reshape(kept))

    return run

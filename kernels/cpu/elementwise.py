"""Elementwise ops: the activations, broadcasting arithmetic, Sum/Max/Min, Cast, PRelu, and
the math, comparison and selection ops (Sqrt ... Ceil, Pow, Equal/Less/Greater, Not, Where, Expand).

Broadcasting arithmetic, the one-input math ops and comparisons are numpy ufuncs writing
into the output buffer (``out=``): memory-bound data movement numpy already does well, but for
an NCHW tensor scaled or shifted per channel, a Numba loop of one scalar per row (numpy's
broadcast steps through the stride-0 operand element by element). The activations
(their formulas are kernels/activation.py's), Erf (no numpy ufunc; the activations' rational
erf) and PRelu are Numba loops.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from cnnrt.core.ops import ACTIVATIONS, activation_params
from cnnrt.kernels._jit import num_threads, pick, pjit, serial_twin
from cnnrt.kernels.cpu.activation import act_inplace, erf_rational
from cnnrt.kernels.cpu.blas import split_index
from cnnrt.kernels.registry import register

_UFUNCS = {
    "Add": np.add,
    "Sub": np.subtract,
    "Mul": np.multiply,
    "Div": np.divide,
    "Pow": np.power,
    "Equal": np.equal,
    "Less": np.less,
    "LessOrEqual": np.less_equal,
    "Greater": np.greater,
    "GreaterOrEqual": np.greater_equal,
}
_VARIADIC = {"Sum": np.add, "Max": np.maximum, "Min": np.minimum}
_CHUNK = 1 << 14


def dtype_of(graph, name: str) -> np.dtype:
    return np.dtype(graph.values[name].dtype)


def require_float(node, dtype: np.dtype) -> None:
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"{node.op} kernel supports float32 and float64, got {dtype}")


@pjit
def _per_channel(x, s, out, add):
    """out[o, j] = x[o, j] * s[o or 0, j] (``add``: + s) over (outer, C, inner) rows: a
    (N, C, H, W) tensor and a (N or 1, C, 1, 1) one, each row one scalar, a vector loop."""
    outer, n, inner = x.shape
    for t in prange(outer * n):
        o, j = split_index(t, n)
        v = s[o if s.shape[0] > 1 else 0, j]
        row, dst = x[o, j], out[o, j]
        if add:
            for k in range(inner):
                dst[k] = row[k] + v
        else:
            for k in range(inner):
                dst[k] = row[k] * v


_per_channel_serial = serial_twin(_per_channel)


def _channel_operand(graph, node) -> int | None:
    """Which input of a float Add/Mul is one value per (image, channel) of the other, an NCHW
    tensor the shape of the output (a squeeze-excitation scale left unfused): its index, else None."""
    if node.op not in ("Add", "Mul") or dtype_of(graph, node.outputs[0]) not in (np.float32, np.float64):
        return None
    out = tuple(graph.values[node.outputs[0]].shape)
    if len(out) != 4 or out[2] * out[3] < 16:
        return None
    for i in (0, 1):
        big, small = (tuple(graph.values[node.inputs[k]].shape) for k in (1 - i, i))
        if big == out and small in ((out[0], out[1], 1, 1), (1, out[1], 1, 1)):
            return i
    return None


@register(*_UFUNCS)
def build_binary(node, graph):
    if node.op == "Div" and dtype_of(graph, node.outputs[0]).kind in "iu":
        return _int_div
    f = _UFUNCS[node.op]
    ch = _channel_operand(graph, node)

    def run(ins, outs):
        out = outs[0]
        if ch is None or not (out.flags.c_contiguous and ins[1 - ch].flags.c_contiguous):
            f(ins[0], ins[1], out=out)
            return
        n, c, h, w = out.shape
        x, s = ins[1 - ch].reshape(n, c, h * w), np.ascontiguousarray(ins[ch]).reshape(-1, c)
        kernel = pick(_per_channel, _per_channel_serial, out.size, num_threads())
        kernel(x, s, out.reshape(n, c, h * w), node.op == "Add")

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
        o = out[lo:hi]
        o[:] = x[lo:hi]
        act_inplace(o, kind, alpha, beta)  # the kind dispatched once per chunk, as in the fused epilogues


_activate_flat_serial = serial_twin(activate_flat)


@register("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Gelu")
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


# ---------------------------------------------------------------------------- math, comparisons, selection

_MATH = {
    "Sqrt": np.sqrt,
    "Reciprocal": np.reciprocal,
    "Exp": np.exp,
    "Log": np.log,
    "Abs": np.abs,
    "Neg": np.negative,
    "Floor": np.floor,
    "Ceil": np.ceil,
    "Not": np.logical_not,
}


@register(*_MATH)
def build_math(node, graph):
    f = _MATH[node.op]

    def run(ins, outs):
        with np.errstate(all="ignore"):  # sqrt/log of negatives and 1/0 give NaN/Inf, as ONNX says
            f(ins[0], out=outs[0])

    return run


@pjit
def erf_flat(x, out):
    n = x.size
    for c in prange((n + _CHUNK - 1) // _CHUNK):
        for i in range(c * _CHUNK, min(n, c * _CHUNK + _CHUNK)):
            out[i] = erf_rational(x[i])


_erf_flat_serial = serial_twin(erf_flat)


@register("Erf")
def build_erf(node, graph):
    require_float(node, dtype_of(graph, node.inputs[0]))

    def run(ins, outs):
        x = ins[0].reshape(-1)
        pick(erf_flat, _erf_flat_serial, 8 * x.size, num_threads())(x, outs[0].reshape(-1))

    return run


@register("Where")
def build_where(node, graph):
    def run(ins, outs):
        np.copyto(outs[0], np.where(ins[0], ins[1], ins[2]))

    return run


@register("Expand")
def build_expand(node, graph):
    def run(ins, outs):
        np.copyto(outs[0], ins[0])  # copyto broadcasts the input to the output's shape

    return run

"""Converters for the quantization ops: QuantizeLinear, DequantizeLinear, QLinearConv,
ConvInteger, QLinearMatMul, MatMulInteger.

The integer convs and matmuls import as the IR ops QConv and QMatMul, whose optional ports
hold QLinear*'s scales and zero points (absent for *Integer, which yields the int32 accumulator).
Their geometry (auto_pad, pads, strides, output size) is the float Conv converter's, run on the
float operand order. Scales and zero points must be constants, per tensor, except the weight's
(per output channel) and QuantizeLinear/DequantizeLinear's (along ``axis``).
"""

from __future__ import annotations

import copy

import numpy as np

from .context import ConvertContext
from .loader import ONNX_DTYPES
from .registry import converter_for, onnx_op

INT8 = ("uint8", "int8")


def _param(ctx: ConvertContext, i: int, what: str, size: int | tuple[int, ...] = 1) -> str:
    """Input ``i`` (a scale or zero point) checked to be a constant of ``size`` elements (any of a tuple)."""
    v = ctx.require_known(i, what)
    sizes = size if isinstance(size, tuple) else (size,)
    if v.size not in sizes or v.ndim > 1:
        raise ctx.unsupported(f"{what} has shape {list(v.shape)}; expected {' or '.join(map(str, sizes))} value(s)")
    return ctx.inputs[i]


def _linear(ctx: ConvertContext, op: str, out_dtype: str) -> None:
    """A QuantizeLinear/DequantizeLinear node; ``axis`` matters (and is checked) only per axis."""
    if ctx.attr("block_size", 0):
        raise ctx.unsupported("blocked quantization (block_size) is not supported")
    rank, axis = len(ctx.shape(0)), int(ctx.attr("axis", 1))
    per_axis = ctx.require_known(1, "scale").size > 1
    if per_axis and not -rank <= axis < rank:
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    axis = axis % rank if per_axis else 0
    n = ctx.shape(0)[axis] if per_axis else 1
    ins = [ctx.inputs[0], _param(ctx, 1, "scale", n)]
    if ctx.has_input(2):
        ins.append(_param(ctx, 2, "zero point", n))
    ctx.emit(op, ins, [ctx.out(0, ctx.shape(0), out_dtype)], dict(axis=axis))


@onnx_op("QuantizeLinear", since=10)
def quantize_linear(ctx: ConvertContext) -> None:
    dtype = str(ctx.known(2).dtype) if ctx.has_input(2) and ctx.known(2) is not None else "uint8"
    if ctx.attr("output_dtype"):
        dtype = ONNX_DTYPES.get(int(ctx.attr("output_dtype")), str(ctx.attr("output_dtype")))
    if dtype not in INT8:
        raise ctx.unsupported(f"quantizing to {dtype}; supported: {', '.join(INT8)}")
    _linear(ctx, "QuantizeLinear", dtype)


@onnx_op("DequantizeLinear", since=10)
def dequantize_linear(ctx: ConvertContext) -> None:
    if ctx.value(0).dtype not in (*INT8, "int32"):
        raise ctx.unsupported(f"dequantizing {ctx.value(0).dtype}; supported: uint8, int8, int32")
    _linear(ctx, "DequantizeLinear", "float32")


def _float_geometry(ctx: ConvertContext, x: int, w: int, b: int | None, float_op: str) -> tuple[dict, tuple]:
    """The attributes and output shape the float ``float_op`` converter gives these operands."""
    proxy = copy.copy(ctx)
    proxy.inputs = [ctx.inputs[x], ctx.inputs[w]] + ([ctx.inputs[b]] if b is not None and ctx.has_input(b) else [])
    seen = []
    proxy.emit = lambda op, ins, outs, attrs=None, suffix="": seen.append((op, ins, outs, attrs or {}))
    converter_for(float_op, 13)(proxy)
    if len(seen) != 1 or seen[0][0] != float_op:
        raise ctx.unsupported(f"only the plain 2-D {float_op} form is supported for integer inputs")
    return seen[0][3], seen[0][2][0][1]


def _check_ints(ctx: ConvertContext, *ports: int) -> None:
    for i in ports:
        if ctx.value(i).dtype not in INT8:
            raise ctx.unsupported(f"input {i} is {ctx.value(i).dtype}; supported: uint8, int8")


def _qconv(ctx: ConvertContext, ports: list[int | None], bias: int | None, out_dtype: str | None) -> None:
    """A QConv over ``ports`` (X, x_scale, x_zp, W, w_scale, w_zp, y_scale, y_zp; None: absent)."""
    x, w = ports[0], ports[3]
    _check_ints(ctx, x, w)
    if len(ctx.shape(x)) != 4:
        raise ctx.unsupported("only 2-D integer convolutions are supported")
    ctx.require_known(w, "the weight (packed when the session is built)")
    if bias is not None and ctx.has_input(bias):
        ctx.require_known(bias, "the bias")
    attrs, shape = _float_geometry(ctx, x, w, bias, "Conv")
    m = ctx.shape(w)[0]
    names = ("x scale", "x zero point", "", "w scale", "w zero point", "y scale", "y zero point")
    ins = [ctx.inputs[x]]
    for k, p in enumerate(ports[1:], start=1):
        if k == 3:
            ins.append(ctx.inputs[w])
        elif p is None or not ctx.has_input(p):
            ins.append("")
        else:
            ins.append(_param(ctx, p, names[k - 1], (1, m) if k in (4, 5) else 1))
    if bias is not None and ctx.has_input(bias):
        if ctx.value(bias).dtype != "int32":
            raise ctx.fail(f"bias must be int32, got {ctx.value(bias).dtype}")
        ins.append(ctx.inputs[bias])
    dtype = out_dtype or (str(ctx.known(7).dtype) if ctx.has_input(7) else "uint8")
    ctx.emit("QConv", ins, [ctx.out(0, shape, dtype)], dict(attrs, precision="int8"))


@onnx_op("QLinearConv", since=10)
def qlinear_conv(ctx: ConvertContext) -> None:
    _qconv(ctx, [0, 1, 2, 3, 4, 5, 6, 7], 8, None)


@onnx_op("ConvInteger", since=10)
def conv_integer(ctx: ConvertContext) -> None:
    _qconv(ctx, [0, None, 2, 1, None, 3, None, None], None, "int32")


def _qmatmul(ctx: ConvertContext, ports: list[int | None], out_dtype: str | None) -> None:
    a, b = ports[0], ports[3]
    _check_ints(ctx, a, b)
    _, shape = _float_geometry(ctx, a, b, None, "MatMul")
    n = ctx.shape(b)[-1]
    ins = []
    for k, p in enumerate(ports):
        if k in (0, 3):
            ins.append(ctx.inputs[p])
        elif p is None or not ctx.has_input(p):
            ins.append("")
        else:
            ins.append(_param(ctx, p, "scale or zero point", (1, n) if k in (4, 5) else 1))
    dtype = out_dtype or (str(ctx.known(7).dtype) if ctx.has_input(7) else "uint8")
    ctx.emit("QMatMul", ins, [ctx.out(0, shape, dtype)], dict(precision="int8"))


@onnx_op("QLinearMatMul", since=10)
def qlinear_matmul(ctx: ConvertContext) -> None:
    _qmatmul(ctx, [0, 1, 2, 3, 4, 5, 6, 7], None)


@onnx_op("MatMulInteger", since=10)
def matmul_integer(ctx: ConvertContext) -> None:
    if ctx.has_input(2) and np.asarray(ctx.require_known(2, "A zero point")).size != 1:
        raise ctx.unsupported("a per-row A zero point is not supported")
    _qmatmul(ctx, [0, None, 2, 1, None, 3, None, None], "int32")

"""Converters for elementwise ops: activations, arithmetic, the math ops (Erf, Sqrt, Pow, ...),
comparisons, Not, Where, Expand, Softmax, Cast, Identity/Dropout.

Every converter produces exactly the IR form in :mod:`cnnrt.core.ops`: attributes given as inputs
(Clip bounds, Dropout's training_mode) are resolved at import and must be known then.
"""

from __future__ import annotations

import functools

import numpy as np
import onnx

from .context import ConvertContext
from .convert_helpers import FLOAT_DTYPES, float_input, known_ints, known_scalar, require_all_inputs, reshape_input
from .loader import ONNX_DTYPES, SUPPORTED_DTYPES
from .registry import onnx_op

# Clip before opset 11 defaults its attributes to +-FLT_MAX (the schema's defaults).
_FLT_MAX = float(np.finfo(np.float32).max)


def _unary(ctx: ConvertContext, op: str, attrs: dict | None = None, ints_ok: bool = False) -> None:
    v = ctx.value(0)
    if not ints_ok or v.dtype == "bool":
        float_input(ctx)
    ctx.emit(op, [ctx.inputs[0]], [ctx.out(0, v.shape, v.dtype)], attrs)


# ---------------------------------------------------------------------------- activations


onnx_op("Relu", since=1)(functools.partial(_unary, op="Relu", ints_ok=True))  # opset 14 allows integer tensors
onnx_op("Sigmoid", since=1)(functools.partial(_unary, op="Sigmoid"))
onnx_op("Tanh", since=1)(functools.partial(_unary, op="Tanh"))
onnx_op("HardSwish", since=14)(functools.partial(_unary, op="HardSwish"))


@onnx_op("LeakyRelu", since=1)
def leaky_relu(ctx: ConvertContext) -> None:
    _unary(ctx, "LeakyRelu", dict(alpha=float(ctx.attr("alpha", 0.01))))


@onnx_op("Elu", since=1)
def elu(ctx: ConvertContext) -> None:
    _unary(ctx, "Elu", dict(alpha=float(ctx.attr("alpha", 1.0))))


@onnx_op("HardSigmoid", since=1)
def hard_sigmoid(ctx: ConvertContext) -> None:
    _unary(ctx, "HardSigmoid", dict(alpha=float(ctx.attr("alpha", 0.2)), beta=float(ctx.attr("beta", 0.5))))


def _emit_clip(ctx: ConvertContext, lo, hi) -> None:
    v = ctx.value(0)
    if v.dtype == "bool":
        raise ctx.unsupported("Clip of a bool tensor")
    if v.dtype in FLOAT_DTYPES:
        # ONNX: a missing bound is the dtype's lowest/highest finite value (not ±inf), so
        # Clip(-inf) gives -max, as onnxruntime does.
        info = np.finfo(v.dtype)
        lo = float(info.min) if lo is None else float(lo)
        hi = float(info.max) if hi is None else float(hi)
    else:
        info = np.iinfo(v.dtype)
        lo = int(info.min) if lo is None else int(lo)
        hi = int(info.max) if hi is None else int(hi)
    # ONNX: when min > max every element becomes max; the kernels clamp to min first, so
    # lowering min to max gives exactly that.
    lo = min(lo, hi)
    ctx.emit("Clip", [ctx.inputs[0]], [ctx.out(0, v.shape, v.dtype)], dict(min=lo, max=hi))


@onnx_op("Clip", since=1)
def clip_attrs(ctx: ConvertContext) -> None:
    _emit_clip(ctx, ctx.attr("min", -_FLT_MAX), ctx.attr("max", _FLT_MAX))


@onnx_op("Clip", since=11)
def clip_inputs(ctx: ConvertContext) -> None:
    bounds = []
    for i, what in ((1, "min"), (2, "max")):
        if not ctx.has_input(i):
            bounds.append(None)
            continue
        bounds.append(known_scalar(ctx, i, what, f"Clip's {what}").item())
    _emit_clip(ctx, *bounds)


@onnx_op("PRelu", since=1)
def prelu(ctx: ConvertContext) -> None:
    dtype = float_input(ctx)
    x, slope = ctx.shape(0), ctx.shape(1)
    if ctx.value(1).dtype != dtype:
        raise ctx.fail(f"slope dtype {ctx.value(1).dtype} differs from the input's {dtype}")
    # Before opset 7 a 1-D slope of length C is per channel (axis 1), not numpy-aligned.
    if ctx.opset < 7 and len(slope) == 1 and len(x) >= 2 and slope[0] == x[1] != x[-1]:
        slope = (slope[0],) + (1,) * (len(x) - 2)
    try:
        ok = np.broadcast_shapes(x, slope) == tuple(x)
    except ValueError:
        ok = False
    if not ok:
        raise ctx.fail(f"slope {list(ctx.shape(1))} does not broadcast to the input {list(x)}")
    s = reshape_input(ctx, 1, slope, "slope")
    ctx.emit("PRelu", [ctx.inputs[0], s], [ctx.out(0, x, dtype)])


# ---------------------------------------------------------------------------- math


for _op in ("Erf", "Sqrt", "Reciprocal", "Exp", "Log", "Floor", "Ceil"):
    onnx_op(_op, since=1)(functools.partial(_unary, op=_op))
for _op in ("Abs", "Neg"):  # integer tensors too
    onnx_op(_op, since=1)(functools.partial(_unary, op=_op, ints_ok=True))


@onnx_op("Gelu", since=20)
def gelu(ctx: ConvertContext) -> None:
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    _unary(ctx, "Gelu", dict(tanh_approx=float(approximate == "tanh")))


@onnx_op("Pow", since=1)
def pow_(ctx: ConvertContext) -> None:
    """The exponent is cast to the base's dtype (ONNX allows another numeric type from opset 12)."""
    base, exp = ctx.value(0), ctx.value(1)
    exponent = ctx.inputs[1]
    if exp.dtype != base.dtype:
        exponent = ctx.fresh("exponent")
        ctx.emit("Cast", [ctx.inputs[1]], [(exponent, exp.shape, base.dtype)], dict(to=base.dtype), suffix="/cast")
    shape = _broadcast(ctx, (base.shape, exp.shape), f"{list(base.shape)} and {list(exp.shape)}")
    ctx.emit("Pow", [ctx.inputs[0], exponent], [ctx.out(0, shape, base.dtype)])


# ---------------------------------------------------------------------------- comparisons, Not, Where, Expand
# (the schema checks have made sure of the dtypes: bool conditions, equal operand types)


def _compare(ctx: ConvertContext, op: str) -> None:
    a, b = ctx.value(0), ctx.value(1)
    shape = _broadcast(ctx, (a.shape, b.shape), f"{list(a.shape)} and {list(b.shape)}")
    ctx.emit(op, [ctx.inputs[0], ctx.inputs[1]], [ctx.out(0, shape, "bool")])


for _op in ("Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"):
    onnx_op(_op, since=1)(functools.partial(_compare, op=_op))


@onnx_op("Not", since=1)
def not_(ctx: ConvertContext) -> None:
    v = ctx.value(0)
    ctx.emit("Not", [ctx.inputs[0]], [ctx.out(0, v.shape, "bool")])


@onnx_op("Where", since=9)
def where(ctx: ConvertContext) -> None:
    c, x, y = (ctx.value(i) for i in range(3))
    shape = _broadcast(ctx, (c.shape, x.shape, y.shape), f"{[list(c.shape), list(x.shape), list(y.shape)]}")
    ctx.emit("Where", list(ctx.inputs[:3]), [ctx.out(0, shape, x.dtype)])


@onnx_op("Expand", since=8)
def expand(ctx: ConvertContext) -> None:
    v = ctx.value(0)
    target = known_ints(ctx, 1, "shape")
    shape = _broadcast(ctx, (v.shape, tuple(target)), f"{list(v.shape)} and {target}")
    ctx.emit("Expand", [ctx.inputs[0]], [ctx.out(0, shape, v.dtype)], dict(shape=tuple(int(d) for d in shape)))


# ---------------------------------------------------------------------------- Softmax


def _softmax(ctx: ConvertContext, log: bool) -> None:
    dtype = float_input(ctx)
    shape = ctx.shape(0)
    rank = len(shape)
    coerce_2d = ctx.opset < 13
    axis = int(ctx.attr("axis", 1 if coerce_2d else -1))
    if rank == 0 or not -rank <= axis < rank:
        raise ctx.fail(f"axis {axis} is out of range for an input of shape {list(shape)}")
    axis %= rank
    ctx.emit("Softmax", [ctx.inputs[0]], [ctx.out(0, shape, dtype)], dict(axis=axis, coerce_2d=coerce_2d, log=log))


@onnx_op("Softmax", since=1)
def softmax(ctx: ConvertContext) -> None:
    _softmax(ctx, log=False)


@onnx_op("LogSoftmax", since=1)
def log_softmax(ctx: ConvertContext) -> None:
    _softmax(ctx, log=True)


# ---------------------------------------------------------------------------- arithmetic


def _check_same_dtype(ctx: ConvertContext, n: int) -> str:
    dtypes = [ctx.value(i).dtype for i in range(n)]
    if len(set(dtypes)) != 1:
        raise ctx.fail(f"inputs must share one dtype, got {dtypes}")
    if dtypes[0] == "bool":
        raise ctx.unsupported("arithmetic on bool tensors is not defined")
    return dtypes[0]


def _binary(ctx: ConvertContext, op: str) -> None:
    if len(ctx.inputs) != 2 or not ctx.has_input(0) or not ctx.has_input(1):
        raise ctx.fail(f"expects 2 inputs, got {ctx.inputs}")
    dtype = _check_same_dtype(ctx, 2)
    a, b = ctx.shape(0), ctx.shape(1)
    b_name = ctx.inputs[1]
    if ctx.opset < 7:
        # Legacy broadcasting: B's shape matches A's dims starting at `axis` (default:
        # the trailing dims). Appending 1s to B makes it numpy-broadcastable.
        if int(ctx.attr("broadcast", 0)):
            axis = int(ctx.attr("axis", len(a) - len(b)))
            if axis < 0:
                axis += len(a)
            if not 0 <= axis <= len(a) - len(b):
                raise ctx.fail(f"legacy broadcast axis {ctx.attr('axis')} does not fit B {list(b)} into A {list(a)}")
            b = tuple(b) + (1,) * (len(a) - axis - len(b))
            b_name = reshape_input(ctx, 1, b, "legacy_broadcast")
        elif tuple(a) != tuple(b):
            raise ctx.fail(
                f"shapes {list(a)} and {list(b)} differ and broadcast=0 (opset {ctx.opset} needs broadcast=1)"
            )
    shape = _broadcast(ctx, (a, b), f"{list(a)} and {list(b)}")
    ctx.emit(op, [ctx.inputs[0], b_name], [ctx.out(0, shape, dtype)])


def _variadic(ctx: ConvertContext, op: str) -> None:
    n = require_all_inputs(ctx)
    dtype = _check_same_dtype(ctx, n)
    shapes = [ctx.shape(i) for i in range(n)]
    shape = _broadcast(ctx, shapes, f"{[list(s) for s in shapes]}")
    ctx.emit(op, list(ctx.inputs), [ctx.out(0, shape, dtype)])


def _broadcast(ctx: ConvertContext, shapes, described: str) -> tuple[int, ...]:
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ctx.fail(f"shapes {described} do not broadcast") from None


for _op in ("Add", "Sub", "Mul", "Div"):
    onnx_op(_op, since=1)(functools.partial(_binary, op=_op))
for _op in ("Sum", "Max", "Min"):
    onnx_op(_op, since=1)(functools.partial(_variadic, op=_op))


# ---------------------------------------------------------------------------- Cast, views


def onnx_dtype_name(ctx: ConvertContext, code, what: str) -> str:
    """numpy dtype name for an ONNX element type (int code, or a name as Cast-1 gives it)."""
    if isinstance(code, str):
        try:
            code = onnx.TensorProto.DataType.Value(code.upper())
        except ValueError:
            raise ctx.fail(f"{what} names an unknown element type {code!r}") from None
    name = ONNX_DTYPES.get(int(code))
    if name is None:
        label = onnx.TensorProto.DataType.Name(code) if code in onnx.TensorProto.DataType.values() else code
        raise ctx.unsupported(f"{what} is {label}; supported: {SUPPORTED_DTYPES}")
    return name


@onnx_op("Cast", since=1)
def cast(ctx: ConvertContext) -> None:
    if ctx.attr("to") is None:
        raise ctx.fail("attribute 'to' is required")
    to = onnx_dtype_name(ctx, ctx.attr("to"), "target type 'to'")
    ctx.emit("Cast", [ctx.inputs[0]], [ctx.out(0, ctx.shape(0), to)], dict(to=to))


@onnx_op("Identity", since=1)
def identity(ctx: ConvertContext) -> None:
    v = ctx.value(0)
    ctx.emit("Identity", [ctx.inputs[0]], [ctx.out(0, v.shape, v.dtype)])


def _dropout(ctx: ConvertContext, mask_dtype: str) -> None:
    v = ctx.value(0)
    ctx.emit("Dropout", [ctx.inputs[0]], [ctx.out(0, v.shape, v.dtype)])
    if len(ctx.outputs) > 1 and ctx.outputs[1]:
        # Inference keeps every element: the mask is all ones / all True.
        ctx.emit(
            "ConstantOfShape",
            [],
            [ctx.out(1, v.shape, mask_dtype)],
            dict(value=np.array(1, dtype=mask_dtype)),
            suffix="/mask",
        )


@onnx_op("Dropout", since=1)
def dropout_v1(ctx: ConvertContext) -> None:
    if ctx.opset < 7 and not int(ctx.attr("is_test", 0)) and len([o for o in ctx.outputs if o]) > 1:
        raise ctx.unsupported("Dropout in training mode (is_test=0 with a mask output) is not supported")
    _dropout(ctx, ctx.value(0).dtype)  # the mask had the input's type before opset 10


@onnx_op("Dropout", since=10)
def dropout_v10(ctx: ConvertContext) -> None:
    _dropout(ctx, "bool")


@onnx_op("Dropout", since=12)
def dropout_v12(ctx: ConvertContext) -> None:
    if ctx.has_input(2):
        if bool(known_scalar(ctx, 2, "training_mode")):
            raise ctx.unsupported("training_mode=true is not supported (inference only)")
    _dropout(ctx, "bool")

"""Argument handling that several converter modules share: axes, values that must be known
at import time, dtype checks, and the IR Reshape a converter emits to change a shape."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from .context import ConvertContext

FLOAT_DTYPES = ("float16", "float32", "float64")


def normalize_axis(ctx: ConvertContext, value, rank: int, what: str = "axis") -> int:
    """``value`` as an axis in [0, rank) (negative counts from the back)."""
    value = int(value)
    if not -rank <= value < rank:
        raise ctx.fail(f"{what} {value} is out of range for rank {rank}")
    return value % rank


def normalize_axes(ctx: ConvertContext, values, rank: int, what: str = "axes") -> list[int]:
    """Each of ``values`` as an axis in [0, rank); none may repeat."""
    out = [normalize_axis(ctx, a, rank, what) for a in values]
    if len(set(out)) != len(out):
        raise ctx.fail(f"{what} {list(values)} repeat an axis")
    return out


def known_ints(ctx: ConvertContext, i: int, what: str) -> list[int]:
    """Input ``i`` as a list of ints; it must be a known 1-D (or 0-d) integer tensor."""
    v = ctx.require_known(i, what)
    if v.dtype.kind not in "iu" or v.ndim > 1:
        raise ctx.fail(f"{what} must be a 1-D integer tensor, got {v.dtype}{list(v.shape)}")
    return [int(x) for x in v.reshape(-1)]


def known_floats(ctx: ConvertContext, i: int, what: str) -> list[float] | None:
    """Input ``i`` as a list of floats, None when it is empty; it must be known."""
    v = ctx.require_known(i, what)
    return None if v.size == 0 else [float(x) for x in v.reshape(-1)]


def known_scalar(ctx: ConvertContext, i: int, what: str, known_what: str | None = None) -> np.ndarray:
    """Input ``i`` as a 0-d array; it must be known and hold one element."""
    v = ctx.require_known(i, known_what or what)
    if v.size != 1:
        raise ctx.fail(f"{what} must be a scalar, got shape {list(v.shape)}")
    return v.reshape(())


def attr_or_input(
    ctx: ConvertContext, name: str, since: int, i: int, read: Callable[[ConvertContext, int, str], Any]
) -> Any:
    """An argument that is attribute ``name`` before opset ``since`` and input ``i`` from it
    on (read with ``read``); None when absent."""
    if ctx.opset < since:
        return ctx.attr(name)
    return read(ctx, i, name) if ctx.has_input(i) else None


def float_input(ctx: ConvertContext, i: int = 0) -> str:
    """The dtype of input ``i``, which must be floating point."""
    dtype = ctx.value(i).dtype
    if dtype not in FLOAT_DTYPES:
        raise ctx.unsupported(f"input {ctx.inputs[i]!r} has dtype {dtype}; expected one of {', '.join(FLOAT_DTYPES)}")
    return dtype


def reshape_input(ctx: ConvertContext, i: int, shape: tuple[int, ...], what: str) -> str:
    """Name of input ``i`` seen with ``shape`` (an extra IR Reshape when the shape differs)."""
    v = ctx.value(i)
    if tuple(shape) == v.shape:
        return ctx.inputs[i]
    out = ctx.fresh(what)
    ctx.emit("Reshape", [ctx.inputs[i]], [(out, tuple(shape), v.dtype)], dict(shape=tuple(shape)), suffix=f"/{what}")
    return out


def emit_reshape(ctx: ConvertContext, shape) -> None:
    """Output 0 is input 0 reshaped to ``shape`` (same element count)."""
    v = ctx.value(0)
    shape = tuple(int(d) for d in shape)
    if math.prod(shape) != v.size:
        raise ctx.fail(f"cannot reshape {list(v.shape)} ({v.size} elements) to {list(shape)}")
    ctx.emit("Reshape", [ctx.inputs[0]], [ctx.out(0, shape, v.dtype)], dict(shape=shape))


def require_all_inputs(ctx: ConvertContext) -> int:
    """The input count of a variadic op, none of them omitted."""
    n = len(ctx.inputs)
    if n == 0 or not all(ctx.has_input(i) for i in range(n)):
        raise ctx.fail(f"expects one or more inputs, got {ctx.inputs}")
    return n

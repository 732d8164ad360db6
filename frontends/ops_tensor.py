"""Converters for tensor ops: data movement, shape arithmetic, Pad.

Everything an op takes as an input tensor in newer opsets (Reshape's shape, Slice bounds,
Pad amounts, Split sizes, axes) must be known at import time and is turned into concrete
IR attributes (see :mod:`cnnrt.core.ops`). Flatten, Squeeze and Unsqueeze become IR
``Reshape``; Shape and Constant become graph constants, since shapes are concrete for
every import. Resize and Upsample live in :mod:`ops_resize`, the reductions in :mod:`ops_reduce`.
"""

from __future__ import annotations

import math

import numpy as np

from .context import ConvertContext
from .convert_helpers import (
    FLOAT_DTYPES,
    attr_or_input,
    emit_reshape,
    known_ints,
    known_scalar,
    normalize_axes,
    normalize_axis,
    require_all_inputs,
)
from .registry import onnx_op

# ---------------------------------------------------------------------------- constants, shapes


@onnx_op("Constant", since=1)
def constant(ctx: ConvertContext) -> None:
    a = ctx.attrs
    if "value" in a:
        arr = a["value"]
    elif "value_float" in a:
        arr = np.array(a["value_float"], dtype=np.float32)
    elif "value_floats" in a:
        arr = np.array(a["value_floats"], dtype=np.float32)
    elif "value_int" in a:
        arr = np.array(a["value_int"], dtype=np.int64)
    elif "value_ints" in a:
        arr = np.array(a["value_ints"], dtype=np.int64)
    elif a:
        raise ctx.unsupported(f"Constant attribute {sorted(a)[0]!r} (sparse or string values) is not supported")
    else:
        raise ctx.fail("has no value attribute")
    ctx.define_constant(0, np.asarray(arr, order="C"))


@onnx_op("ConstantOfShape", since=9)
def constant_of_shape(ctx: ConvertContext) -> None:
    shape = known_ints(ctx, 0, "the shape")
    if any(d < 0 for d in shape):
        raise ctx.fail(f"shape {shape} has a negative dimension")
    value = ctx.attr("value")
    if value is None:
        value = np.zeros((), dtype=np.float32)
    elif value.size != 1:
        raise ctx.fail(f"value must hold one element, got shape {list(value.shape)}")
    value = value.reshape(())
    dtype = str(value.dtype)
    ctx.emit("ConstantOfShape", [], [ctx.out(0, tuple(shape), dtype)], dict(value=value))


@onnx_op("Shape", since=1)
def shape_(ctx: ConvertContext) -> None:
    shape = ctx.shape(0)
    rank = len(shape)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    end = rank if end is None else int(end)
    # opset 15: negative values count from the back; out-of-range values are clamped.
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = min(max(end + rank if end < 0 else end, 0), rank)
    ctx.define_constant(0, np.array(shape[start:end], dtype=np.int64))


# ---------------------------------------------------------------------------- reshapes


@onnx_op("Reshape", since=1)
def reshape(ctx: ConvertContext) -> None:
    if ctx.opset < 5:
        target = [int(d) for d in ctx.attr("shape", [])]
    else:
        target = known_ints(ctx, 1, "the target shape")
    src = ctx.shape(0)
    allowzero = int(ctx.attr("allowzero", 0))
    if allowzero and 0 in target and -1 in target:
        raise ctx.fail(f"shape {target} has both 0 and -1 with allowzero=1")
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(src):
                raise ctx.fail(f"shape {target}: 0 at position {i} copies a dimension the input {list(src)} lacks")
            d = src[i]
        elif d < -1:
            raise ctx.fail(f"shape {target} has an invalid dimension {d}")
        out.append(d)
    if out.count(-1) > 1:
        raise ctx.fail(f"shape {target} has more than one -1")
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        total = math.prod(src)
        if known == 0 or total % known:
            raise ctx.fail(f"cannot infer the -1 in {target} for an input of shape {list(src)}")
        out[out.index(-1)] = total // known
    emit_reshape(ctx, out)


@onnx_op("Flatten", since=1)
def flatten(ctx: ConvertContext) -> None:
    shape = ctx.shape(0)
    rank = len(shape)
    axis = int(ctx.attr("axis", 1))
    if not -rank <= axis <= rank:
        raise ctx.fail(f"axis {axis} is out of range for rank {rank}")
    if axis < 0:
        axis += rank
    emit_reshape(ctx, (math.prod(shape[:axis]), math.prod(shape[axis:])))


@onnx_op("Squeeze", since=1)
def squeeze(ctx: ConvertContext) -> None:
    shape = ctx.shape(0)
    axes = attr_or_input(ctx, "axes", 13, 1, known_ints)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = normalize_axes(ctx, axes, len(shape))
    bad = [a for a in axes if shape[a] != 1]
    if bad:
        raise ctx.fail(f"cannot squeeze axes {bad} of shape {list(shape)}: their size is not 1")
    emit_reshape(ctx, [d for i, d in enumerate(shape) if i not in axes])


@onnx_op("Unsqueeze", since=1)
def unsqueeze(ctx: ConvertContext) -> None:
    axes = attr_or_input(ctx, "axes", 13, 1, known_ints)
    if axes is None:
        raise ctx.fail("axes are required")
    shape = list(ctx.shape(0))
    rank = len(shape) + len(axes)
    axes = sorted(normalize_axes(ctx, axes, rank))
    for a in axes:
        shape.insert(a, 1)
    emit_reshape(ctx, shape)


@onnx_op("Transpose", since=1)
def transpose(ctx: ConvertContext) -> None:
    v = ctx.value(0)
    rank = len(v.shape)
    perm = ctx.attr("perm")
    perm = tuple(range(rank - 1, -1, -1)) if perm is None else tuple(int(p) for p in perm)
    if sorted(perm) != list(range(rank)):
        raise ctx.fail(f"perm {list(perm)} is not a permutation of the {rank} axes")
    ctx.emit("Transpose", [ctx.inputs[0]], [ctx.out(0, tuple(v.shape[p] for p in perm), v.dtype)], dict(perm=perm))


# ---------------------------------------------------------------------------- Concat, Split, Slice, Gather


@onnx_op("Concat", since=1)
def concat(ctx: ConvertContext) -> None:
    n = require_all_inputs(ctx)
    shapes = [ctx.shape(i) for i in range(n)]
    dtypes = {ctx.value(i).dtype for i in range(n)}
    if len(dtypes) != 1:
        raise ctx.fail(f"inputs must share one dtype, got {sorted(dtypes)}")
    rank = len(shapes[0])
    if ctx.attr("axis") is None and ctx.opset >= 4:
        raise ctx.fail("attribute 'axis' is required")
    axis = normalize_axis(ctx, ctx.attr("axis", 1), rank)
    for s in shapes:
        if len(s) != rank or any(a != b for i, (a, b) in enumerate(zip(s, shapes[0])) if i != axis):
            raise ctx.fail(f"input shapes {[list(s) for s in shapes]} differ outside axis {axis}")
    out = list(shapes[0])
    out[axis] = sum(s[axis] for s in shapes)
    ctx.emit("Concat", list(ctx.inputs), [ctx.out(0, out, dtypes.pop())], dict(axis=axis))


def _split(ctx: ConvertContext, sizes, num_outputs=None) -> None:
    v = ctx.value(0)
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(v.shape))
    dim = v.shape[axis]
    n = len(ctx.outputs)
    if not all(ctx.outputs):
        raise ctx.unsupported("omitted Split outputs are not supported")
    if sizes is not None:
        sizes = [int(s) for s in sizes]
        if len(sizes) != n or sum(sizes) != dim or min(sizes) < 0:
            raise ctx.fail(f"split {sizes} must have {n} non-negative entries summing to dim {dim} of axis {axis}")
    elif num_outputs is not None:
        if int(num_outputs) != n:
            raise ctx.fail(f"num_outputs={num_outputs} but the node has {n} outputs")
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        if sizes[-1] < 0:
            raise ctx.fail(f"dim {dim} cannot be split into {n} chunks of {chunk}")
    else:
        if dim % n:
            raise ctx.fail(f"dim {dim} of axis {axis} does not split into {n} equal parts")
        sizes = [dim // n] * n
    outs = []
    for i, s in enumerate(sizes):
        shape = list(v.shape)
        shape[axis] = s
        outs.append(ctx.out(i, shape, v.dtype))
    ctx.emit("Split", [ctx.inputs[0]], outs, dict(axis=axis, sizes=tuple(sizes)))


@onnx_op("Split", since=1)
def split_v1(ctx: ConvertContext) -> None:
    if ctx.has_input(1):  # Split-1 took the sizes as an optional input
        _split(ctx, known_ints(ctx, 1, "split"))
    else:
        _split(ctx, ctx.attr("split"))


@onnx_op("Split", since=2)
def split_v2(ctx: ConvertContext) -> None:
    _split(ctx, ctx.attr("split"))


@onnx_op("Split", since=13)
def split_v13(ctx: ConvertContext) -> None:
    sizes = known_ints(ctx, 1, "split") if ctx.has_input(1) else None
    num = ctx.attr("num_outputs") if ctx.opset >= 18 else None
    if sizes is not None and num is not None:
        raise ctx.fail("give either the split input or num_outputs, not both")
    _split(ctx, sizes, num)


def normalize_slice(dim: int, start: int, end: int, step: int) -> tuple[int, int, int, int]:
    """ONNX/numpy clamping of one axis' slice: (start, end, step, length).

    A negative step that runs through index 0 gets ``end == -1`` (numpy would read -1 as
    the last element: kernels must turn it into ``None``). Empty results become (0, 0, 1).
    """
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
        length = max(0, -(-(end - start) // step))
    else:
        start, end = min(max(start, -1), dim - 1), min(max(end, -1), dim - 1)
        length = max(0, -(-(start - end) // -step))
    if length == 0:
        return 0, 0, 1, 0
    return start, end, step, length


def _slice(ctx: ConvertContext, starts, ends, axes, steps) -> None:
    v = ctx.value(0)
    rank = len(v.shape)
    if len(starts) != len(ends):
        raise ctx.fail(f"starts {starts} and ends {ends} differ in length")
    axes = list(range(len(starts))) if axes is None else normalize_axes(ctx, axes, rank)
    steps = [1] * len(starts) if steps is None else list(steps)
    if not len(axes) == len(steps) == len(starts):
        raise ctx.fail(f"starts, ends, axes {axes} and steps {steps} must have one entry each per sliced axis")
    if 0 in steps:
        raise ctx.fail(f"steps {steps} contain 0")
    st, en, sp = [0] * rank, list(v.shape), [1] * rank
    shape = list(v.shape)
    for a, s, e, p in zip(axes, starts, ends, steps):
        st[a], en[a], sp[a], shape[a] = normalize_slice(v.shape[a], int(s), int(e), int(p))
    attrs = dict(starts=tuple(st), ends=tuple(en), steps=tuple(sp))
    ctx.emit("Slice", [ctx.inputs[0]], [ctx.out(0, shape, v.dtype)], attrs)


@onnx_op("Slice", since=1)
def slice_v1(ctx: ConvertContext) -> None:
    if ctx.attr("starts") is None or ctx.attr("ends") is None:
        raise ctx.fail("attributes 'starts' and 'ends' are required")
    _slice(ctx, ctx.attr("starts"), ctx.attr("ends"), ctx.attr("axes"), None)


@onnx_op("Slice", since=10)
def slice_v10(ctx: ConvertContext) -> None:
    starts = known_ints(ctx, 1, "starts")
    ends = known_ints(ctx, 2, "ends")
    axes = known_ints(ctx, 3, "axes") if ctx.has_input(3) else None
    steps = known_ints(ctx, 4, "steps") if ctx.has_input(4) else None
    _slice(ctx, starts, ends, axes, steps)


@onnx_op("Gather", since=1)
def gather(ctx: ConvertContext) -> None:
    data, idx = ctx.value(0), ctx.value(1)
    if idx.dtype not in ("int32", "int64"):
        raise ctx.fail(f"indices must be int32 or int64, got {idx.dtype}")
    axis = normalize_axis(ctx, ctx.attr("axis", 0), len(data.shape))
    dim = data.shape[axis]
    known = ctx.known(1)
    if known is not None and known.size and (known.min() < -dim or known.max() >= dim):
        raise ctx.fail(f"indices {known.reshape(-1).tolist()} are out of range for axis {axis} of size {dim}")
    shape = data.shape[:axis] + idx.shape + data.shape[axis + 1 :]
    ctx.emit("Gather", ctx.inputs[:2], [ctx.out(0, shape, data.dtype)], dict(axis=axis))


# ---------------------------------------------------------------------------- Pad


def _emit_pad(ctx: ConvertContext, pads, mode: str, value, axes=None) -> None:
    v = ctx.value(0)
    rank = len(v.shape)
    if mode not in ("constant", "reflect", "edge"):
        raise ctx.unsupported(f"pad mode {mode!r} is not supported (constant, reflect, edge)")
    pads = [int(p) for p in pads]
    axes = list(range(rank)) if axes is None else normalize_axes(ctx, axes, rank)
    if len(pads) != 2 * len(axes):
        raise ctx.fail(f"pads {pads} must have 2 entries per padded axis ({len(axes)} axes)")
    begin, end = [0] * rank, [0] * rank
    for i, a in enumerate(axes):
        begin[a], end[a] = pads[i], pads[i + len(axes)]
    src, shape = ctx.inputs[0], list(v.shape)
    if min(begin + end) < 0:
        # Negative pads crop: an IR Slice first, then pad what remains.
        starts = [max(-b, 0) for b in begin]
        stops = [d - max(-e, 0) for d, e in zip(shape, end)]
        if any(s > e for s, e in zip(starts, stops)):
            raise ctx.fail(f"negative pads {pads} crop more than the input {list(v.shape)} holds")
        shape = [e - s for s, e in zip(starts, stops)]
        src = ctx.fresh("crop")
        attrs = dict(starts=tuple(starts), ends=tuple(stops), steps=(1,) * rank)
        ctx.emit("Slice", [ctx.inputs[0]], [(src, tuple(shape), v.dtype)], attrs, suffix="/crop")
        begin, end = [max(b, 0) for b in begin], [max(e, 0) for e in end]
    for a, (b, e) in enumerate(zip(begin, end)):
        if mode == "reflect" and max(b, e) > shape[a] - 1:
            raise ctx.fail(f"reflect pads ({b}, {e}) on axis {a} must be smaller than its size {shape[a]}")
        if mode == "edge" and (b or e) and shape[a] == 0:
            raise ctx.fail(f"edge padding an empty axis {a}")
    if v.dtype in FLOAT_DTYPES:
        value = float(value)
    elif v.dtype == "bool":
        value = bool(value)
    else:
        value = int(value)
    out = [d + b + e for d, b, e in zip(shape, begin, end)]
    ctx.emit("Pad", [src], [ctx.out(0, out, v.dtype)], dict(mode=mode, pads=tuple(begin + end), value=value))


@onnx_op("Pad", since=1)
def pad_v1(ctx: ConvertContext) -> None:
    pads = ctx.attr("pads", ctx.attr("paddings"))  # Pad-1 called them "paddings"
    if pads is None:
        raise ctx.fail("attribute 'pads' is required")
    _emit_pad(ctx, pads, ctx.attr("mode", "constant"), ctx.attr("value", 0.0))


@onnx_op("Pad", since=11)
def pad_v11(ctx: ConvertContext) -> None:
    pads = known_ints(ctx, 1, "pads")
    value = 0
    if ctx.has_input(2):
        value = known_scalar(ctx, 2, "constant_value").item()
    axes = known_ints(ctx, 3, "axes") if ctx.opset >= 18 and ctx.has_input(3) else None
    _emit_pad(ctx, pads, ctx.attr("mode", "constant"), value, axes)

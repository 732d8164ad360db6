"""Converters for the reductions (ReduceMean/Sum/Max/Min/L2, ArgMax/ArgMin) and LayerNormalization.

Reduction axes are an attribute before opset 18 (ReduceSum: 13) and an input from then on,
which must be known at import; the IR carries them sorted and non-negative. The schema
checks have made sure of the dtypes.
"""

from __future__ import annotations

import functools

import numpy as np

from .context import ConvertContext
from .convert_helpers import FLOAT_DTYPES, attr_or_input, float_input, known_ints, normalize_axes, normalize_axis
from .registry import onnx_op


def _reduce(ctx: ConvertContext, op: str, axes_input_since: int) -> None:
    v = ctx.value(0)
    if op in ("ReduceMean", "ReduceL2") and v.dtype not in FLOAT_DTYPES:
        raise ctx.unsupported(f"{op} of {v.dtype} tensors is not supported (floating point only)")
    axes = attr_or_input(ctx, "axes", axes_input_since, 1, known_ints)
    rank = len(v.shape)
    keepdims = bool(int(ctx.attr("keepdims", 1)))
    if not axes:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            ctx.emit("Identity", [ctx.inputs[0]], [ctx.out(0, v.shape, v.dtype)])
            return
        axes = range(rank)
    axes = tuple(sorted(normalize_axes(ctx, axes, rank)))
    if any(v.shape[a] == 0 for a in axes):
        raise ctx.unsupported(f"{op} over an empty axis of {list(v.shape)}")
    shape = [1 if i in axes else d for i, d in enumerate(v.shape) if keepdims or i not in axes]
    ctx.emit(op, [ctx.inputs[0]], [ctx.out(0, shape, v.dtype)], dict(axes=axes, keepdims=keepdims))


onnx_op("ReduceSum", since=1)(functools.partial(_reduce, op="ReduceSum", axes_input_since=13))
for _op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceL2"):
    onnx_op(_op, since=1)(functools.partial(_reduce, op=_op, axes_input_since=18))


def _arg_reduce(ctx: ConvertContext, op: str) -> None:
    v = ctx.value(0)
    rank = len(v.shape)
    axis = normalize_axis(ctx, ctx.attr("axis", 0), rank)
    keepdims = bool(int(ctx.attr("keepdims", 1)))
    last = bool(int(ctx.attr("select_last_index", 0)))
    shape = [1 if i == axis else d for i, d in enumerate(v.shape) if keepdims or i != axis]
    attrs = dict(axis=axis, keepdims=keepdims, select_last_index=last)
    ctx.emit(op, [ctx.inputs[0]], [ctx.out(0, shape, "int64")], attrs)


for _op in ("ArgMax", "ArgMin"):
    onnx_op(_op, since=1)(functools.partial(_arg_reduce, op=_op))


@onnx_op("LayerNormalization", since=17)
def layer_normalization(ctx: ConvertContext) -> None:
    """Scale and B that broadcast to the normalised shape are expanded to it (an Expand a
    constant folds); Mean and InvStdDev are float32 (stash_type 1, the only one defined)."""
    dtype = float_input(ctx)
    if int(ctx.attr("stash_type", 1)) != 1:
        raise ctx.unsupported(f"stash_type {ctx.attr('stash_type')} (only 1, float32 statistics, is defined)")
    x = ctx.shape(0)
    axis = normalize_axis(ctx, ctx.attr("axis", -1), len(x))
    norm = tuple(x[axis:])
    params = [ctx.inputs[0]]
    for i, what in ((1, "Scale"), (2, "B")):
        if not ctx.has_input(i):
            continue
        p = ctx.value(i)
        try:
            fits = np.broadcast_shapes(p.shape, norm) == norm
        except ValueError:
            fits = False
        if not fits:
            raise ctx.fail(f"{what} {list(p.shape)} does not broadcast to the normalised shape {list(norm)}")
        name = ctx.inputs[i]
        if p.shape != norm:
            name = ctx.fresh(what)
            ctx.emit("Expand", [ctx.inputs[i]], [(name, norm, dtype)], dict(shape=norm), suffix=f"/{what}")
        params.append(name)
    if not ctx.has_input(1):
        raise ctx.fail("Scale (input 1) is required")
    stats = tuple(x[:axis]) + (1,) * len(norm)
    outs = [ctx.out(0, x, dtype)]
    wanted = [k for k in (1, 2) if k < len(ctx.outputs) and ctx.outputs[k]]
    for k in range(1, max(wanted, default=0) + 1):  # an omitted Mean before a wanted InvStdDev gets a name
        outs.append(ctx.out(k, stats, "float32") if k in wanted else (ctx.fresh("mean"), stats, "float32"))
    ctx.emit("LayerNormalization", params, outs, dict(axis=axis, epsilon=float(ctx.attr("epsilon", 1e-5))))

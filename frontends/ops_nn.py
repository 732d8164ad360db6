"""Converters for the neural-network ops: convolutions, normalisation, pooling, Gemm/MatMul.

1-D convolutions and pools (input (N, C, L)) import as their 2-D forms on (N, C, 1, L): a
Reshape view in, the 2-D node with height-1 kernels, strides and pads, a Reshape view out.
The kernels, passes and memory plan then see only 2-D ops, and the views cost nothing.
"""

from __future__ import annotations

import copy
import functools

import numpy as np

from cnnrt.errors import CnnrtError

from .context import ConvertContext
from .convert_helpers import reshape_input
from .registry import onnx_op


def _ints(v, n: int, default: int) -> tuple[int, ...]:
    return tuple(int(x) for x in v) if v is not None else (default,) * n


def _require_4d(ctx: ConvertContext, what: str = "input") -> tuple[int, int, int, int]:
    shape = ctx.shape(0)
    if len(shape) != 4:
        raise ctx.unsupported(f"only 2-D spatial (NCHW, rank 4) {what} is supported, got shape {list(shape)}")
    return shape  # type: ignore[return-value]


def resolve_pads(
    ctx: ConvertContext, in_hw: tuple[int, int], kernel: tuple[int, int], strides, dilations, ceil_mode: bool = False
) -> tuple[int, int, int, int]:
    """Explicit (top, left, bottom, right) padding from ``auto_pad`` / ``pads``."""
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = _ints(ctx.attr("pads"), 4, 0)
        if len(pads) != 4:
            raise ctx.fail(f"pads must have 4 entries for a 2-D op, got {list(pads)}")
        if any(p < 0 for p in pads):
            raise ctx.fail(f"pads must be non-negative, got {list(pads)}")
        return pads[0], pads[1], pads[2], pads[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"unknown auto_pad {auto!r}")
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        if auto == "SAME_UPPER":
            begin.append(small), end.append(total - small)
        else:
            begin.append(total - small), end.append(small)
    return begin[0], begin[1], end[0], end[1]


def out_size(ctx: ConvertContext, size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: bool = False) -> int:
    span = (k - 1) * d + 1
    avail = size + pb + pe - span
    if avail < 0:
        raise ctx.fail(f"kernel extent {span} is larger than the padded input ({size}+{pb}+{pe})")
    n = (-(-avail // s) if ceil_mode else avail // s) + 1
    if ceil_mode and (n - 1) * s >= size + pb:
        n -= 1  # the last window must start inside the input or its leading padding
    return n


# 1-D attribute forms and their height-1 2-D equivalents: per-axis lists gain a leading 1
# (kernel, stride, dilation) or 0 (output padding); pads (begin, end) become (0, begin, 0, end).
_LEAD_ONE = ("kernel_shape", "strides", "dilations", "output_shape")
_LEAD_ZERO = ("output_padding",)


def _height_one_attrs(ctx: ConvertContext) -> dict:
    """The attributes of a 1-D conv or pool as the 2-D op's with height 1."""
    out = dict(ctx.attrs)
    for k, lead in [(k, 1) for k in _LEAD_ONE] + [(k, 0) for k in _LEAD_ZERO] + [("pads", None)]:
        if k not in out:
            continue
        v = list(out[k])
        if len(v) != (2 if k == "pads" else 1):
            raise ctx.fail(f"{k} {v} must have {2 if k == 'pads' else 1} entries for a 1-D input")
        out[k] = [0, v[0], 0, v[1]] if k == "pads" else [lead, *v]
    return out


def _one_d_as_2d(convert):
    """``convert`` (a 2-D conv or pool converter) also for rank-3 inputs, as height 1."""

    @functools.wraps(convert)
    def run(ctx: ConvertContext) -> None:
        shape = ctx.shape(0)
        if len(shape) != 3:
            return convert(ctx)
        ins = [reshape_input(ctx, 0, (shape[0], shape[1], 1, shape[2]), "as2d")]
        if ctx.has_input(1) and len(ctx.shape(1)) == 3:  # a weight (M, C/group, k) or (C, M/group, k)
            w = ctx.shape(1)
            w2d = (w[0], w[1], 1, w[2])
            known = ctx.known(1)  # a constant weight becomes a 4-D constant, not a node
            ins.append(
                reshape_input(ctx, 1, w2d, "w2d") if known is None else ctx.add_constant("w2d", known.reshape(w2d))
            )
        lifted = copy.copy(ctx)
        lifted.inputs = ins + ctx.inputs[len(ins) :]
        lifted.outputs = [ctx.fresh("out2d") if o else "" for o in ctx.outputs]
        lifted.attrs = _height_one_attrs(ctx)
        try:
            convert(lifted)
        except CnnrtError as e:  # its message names the 2-D forms: say where they come from
            raise type(e)(f"{e} (the 1-D node is imported as its 2-D form with height 1)") from None
        # the 2-D outputs, seen as the inputs of their reshapes back to 1-D
        back = copy.copy(ctx)
        back.inputs = lifted.outputs
        for k, out in enumerate(ctx.outputs):
            if out:
                v = back.value(k)
                one_d = v.shape[:2] + v.shape[3:]
                ctx.emit("Reshape", [lifted.outputs[k]], [ctx.out(k, one_d, v.dtype)], dict(shape=one_d), "/as1d")

    return run


def _reject_pads_beside_auto_pad(ctx: ConvertContext) -> None:
    """Conv and ConvTranspose refuse ``pads`` (even all zeros) beside an ``auto_pad`` other than
    NOTSET, as onnxruntime does; pools keep auto_pad and ignore pads, as onnxruntime does too."""
    auto = ctx.attr("auto_pad", "NOTSET")
    if auto not in ("NOTSET", "") and ctx.attr("pads") is not None:
        raise ctx.fail(f"attributes auto_pad={auto!r} and pads={list(ctx.attr('pads'))} cannot both be set")


def _check_kernel_shape(ctx: ConvertContext, wshape) -> tuple[int, ...]:
    """The kernel from the weight; an explicit ``kernel_shape`` (even ``[]``) must agree with it."""
    kernel = tuple(wshape[2:])
    given = ctx.attr("kernel_shape")
    if given is not None and tuple(int(k) for k in given) != kernel:
        raise ctx.fail(f"kernel_shape {list(given)} does not match weight shape {list(wshape)}")
    return kernel


def _spatial_attrs(ctx: ConvertContext, kernel, ceil_mode=False):
    strides = _ints(ctx.attr("strides"), 2, 1)
    dilations = _ints(ctx.attr("dilations"), 2, 1)
    if len(strides) != 2 or len(dilations) != 2 or len(kernel) != 2:
        raise ctx.unsupported("only 2-D kernels/strides/dilations are supported")
    if min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1:
        raise ctx.fail(f"strides {strides}, dilations {dilations} and kernel {kernel} must be positive")
    n, c, h, w = _require_4d(ctx)
    pads = resolve_pads(ctx, (h, w), kernel, strides, dilations, ceil_mode)
    oh = out_size(ctx, h, kernel[0], strides[0], dilations[0], pads[0], pads[2], ceil_mode)
    ow = out_size(ctx, w, kernel[1], strides[1], dilations[1], pads[1], pads[3], ceil_mode)
    return strides, dilations, pads, (oh, ow)


def _conv_operands(ctx: ConvertContext, weight: str, layout: str):
    """The NCHW input shape, the weight's shape (rank 4, ``layout``) and ``group``."""
    shape = _require_4d(ctx)
    wshape = ctx.shape(1)
    if len(wshape) != 4:
        raise ctx.fail(f"{weight} must have rank 4 ({layout}), got {list(wshape)}")
    return shape, wshape, int(ctx.attr("group", 1))


@onnx_op("Conv", since=1)
@_one_d_as_2d
def conv(ctx: ConvertContext) -> None:
    (n, c, h, w), wshape, group = _conv_operands(ctx, f"weight {ctx.inputs[1]!r}", "M, C/group, kH, kW")
    m = wshape[0]
    if group < 1 or c % group or m % group:
        raise ctx.fail(f"group={group} must divide input channels {c} and output channels {m}")
    if wshape[1] * group != c:
        raise ctx.fail(
            f"weight {list(wshape)} expects {wshape[1] * group} input channels with group={group}, input has {c}"
        )
    kernel = _check_kernel_shape(ctx, wshape)
    _reject_pads_beside_auto_pad(ctx)
    strides, dilations, pads, (oh, ow) = _spatial_attrs(ctx, kernel)
    bias = f"bias {ctx.inputs[2]!r}" if ctx.has_input(2) else ""
    _emit_conv(ctx, "Conv", (n, m, oh, ow), bias, dict(strides=strides, pads=pads, dilations=dilations), group, kernel)


def _emit_conv(ctx: ConvertContext, op: str, out_shape, bias: str, geometry: dict, group: int, kernel) -> None:
    """A Conv or ConvTranspose IR node (no fused activation); ``bias`` names the optional
    bias input in errors, which must hold one value per output channel."""
    m = out_shape[1]
    ins = [ctx.inputs[0], ctx.inputs[1]]
    if ctx.has_input(2):
        if ctx.shape(2) != (m,):
            raise ctx.fail(f"{bias} must have shape [{m}], got {list(ctx.shape(2))}")
        ins.append(ctx.inputs[2])
    attrs = dict(geometry, group=group, kernel=kernel, activation="none", act_alpha=0.0, act_beta=0.0)
    ctx.emit(op, ins, [ctx.out(0, out_shape, ctx.value(0).dtype)], attrs)


@onnx_op("ConvTranspose", since=1)
@_one_d_as_2d
def conv_transpose(ctx: ConvertContext) -> None:
    (n, c, h, w), wshape, group = _conv_operands(ctx, "weight", "C, M/group, kH, kW")
    if group < 1 or c % group or wshape[0] != c:
        raise ctx.fail(f"weight {list(wshape)} does not fit {c} input channels with group={group}")
    m = wshape[1] * group
    kernel = _check_kernel_shape(ctx, wshape)
    _reject_pads_beside_auto_pad(ctx)
    strides = _ints(ctx.attr("strides"), 2, 1)
    dilations = _ints(ctx.attr("dilations"), 2, 1)
    out_pad = _ints(ctx.attr("output_padding"), 2, 0)
    if len(strides) != 2 or len(dilations) != 2 or len(out_pad) != 2:
        raise ctx.unsupported("only 2-D ConvTranspose is supported")
    full = [s * (i - 1) + op + (k - 1) * d + 1 for s, i, op, k, d in zip(strides, (h, w), out_pad, kernel, dilations)]
    auto = ctx.attr("auto_pad", "NOTSET")
    out_shape = ctx.attr("output_shape")
    if out_shape is not None:
        out_shape = [int(x) for x in out_shape][-2:]
    elif auto in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [i * s for i, s in zip((h, w), strides)]
    if out_shape is not None:
        begin, end = [], []
        for f, o in zip(full, out_shape):
            # A negative total (output_shape beyond the full output) is implicit output
            # padding: a negative end pad, rows that only receive the bias.
            total = f - o
            t = max(total, 0)
            if auto == "SAME_UPPER":
                begin.append(t // 2), end.append(t - t // 2 + min(total, 0))
            else:
                begin.append(t - t // 2), end.append(t // 2 + min(total, 0))
        pads = (begin[0], begin[1], end[0], end[1])
    elif auto == "VALID":
        pads = (0, 0, 0, 0)
    else:
        pads = _ints(ctx.attr("pads"), 4, 0)
        if any(p < 0 for p in pads):
            raise ctx.fail(f"pads must be non-negative, got {list(pads)}")
    oh, ow = full[0] - pads[0] - pads[2], full[1] - pads[1] - pads[3]
    if oh < 1 or ow < 1:
        raise ctx.fail(f"pads {list(pads)} leave an empty output")
    geometry = dict(strides=strides, pads=tuple(pads), dilations=dilations)
    _emit_conv(ctx, "ConvTranspose", (n, m, oh, ow), "bias", geometry, group, kernel)


@onnx_op("BatchNormalization", since=1)
def batch_norm(ctx: ConvertContext) -> None:
    # Old versions carry is_test / spatial / consumed_inputs; inference only needs Y, and a
    # per-activation (spatial=0) BN shows up as parameters shaped like x.shape[1:].
    if int(ctx.attr("training_mode", 0)) or len([o for o in ctx.outputs if o]) > 1:
        raise ctx.unsupported("BatchNormalization's mean/var/saved outputs (training mode) are not supported")
    shape = ctx.shape(0)
    if len(shape) < 2:
        raise ctx.fail(f"input must have rank >= 2, got {list(shape)}")
    c = shape[1]
    for i, what in zip(range(1, 5), ("scale", "B", "mean", "var")):
        ps = ctx.shape(i)
        if ps != (c,) and ps != tuple(shape[1:]):
            raise ctx.fail(
                f"{what} {ctx.inputs[i]!r} must have shape [{c}] (or per-activation {list(shape[1:])}), got {list(ps)}"
            )
    ctx.emit(
        "BatchNormalization",
        ctx.inputs[:5],
        [ctx.out(0, shape, ctx.value(0).dtype)],
        dict(epsilon=float(ctx.attr("epsilon", 1e-5))),
    )


@onnx_op("LRN", since=1)
def lrn(ctx: ConvertContext) -> None:
    shape = ctx.shape(0)
    if len(shape) < 3:
        raise ctx.fail(f"LRN input must have rank >= 3, got {list(shape)}")
    size = ctx.attr("size")
    if size is None or int(size) < 1:
        raise ctx.fail("attribute 'size' is required and must be positive")
    ctx.emit(
        "LRN",
        [ctx.inputs[0]],
        [ctx.out(0, shape)],
        dict(
            size=int(size),
            alpha=float(ctx.attr("alpha", 1e-4)),
            beta=float(ctx.attr("beta", 0.75)),
            bias=float(ctx.attr("bias", 1.0)),
        ),
    )


def _pool(ctx: ConvertContext, op: str) -> None:
    n, c, h, w = _require_4d(ctx)
    kernel = ctx.attr("kernel_shape")
    if kernel is None:
        raise ctx.fail("attribute 'kernel_shape' is required")
    kernel = tuple(int(k) for k in kernel)
    ceil_mode = bool(int(ctx.attr("ceil_mode", 0)))
    strides, dilations, pads, (oh, ow) = _spatial_attrs(ctx, kernel, ceil_mode)
    for k, p0, p1 in ((kernel[0], pads[0], pads[2]), (kernel[1], pads[1], pads[3])):
        if p0 >= k or p1 >= k:
            raise ctx.fail(f"pads {list(pads)} must be smaller than the kernel {list(kernel)}")
    attrs = dict(kernel=kernel, strides=strides, pads=pads, dilations=dilations)
    outs = [ctx.out(0, (n, c, oh, ow), ctx.value(0).dtype)]
    if op == "AveragePool":
        attrs["count_include_pad"] = bool(int(ctx.attr("count_include_pad", 0)))
    else:
        attrs["storage_order"] = int(ctx.attr("storage_order", 0))
        if len(ctx.outputs) > 1 and ctx.outputs[1]:
            outs.append(ctx.out(1, (n, c, oh, ow), "int64"))
    ctx.emit(op, [ctx.inputs[0]], outs, attrs)


def _global_pool(ctx: ConvertContext, op: str) -> None:
    shape = ctx.shape(0)
    if len(shape) < 3:
        raise ctx.fail(f"input must have rank >= 3, got {list(shape)}")
    ctx.emit(op, [ctx.inputs[0]], [ctx.out(0, shape[:2] + (1,) * (len(shape) - 2), ctx.value(0).dtype)])


for _op in ("MaxPool", "AveragePool"):
    onnx_op(_op, since=1)(_one_d_as_2d(functools.partial(_pool, op=_op)))
for _op in ("GlobalAveragePool", "GlobalMaxPool"):
    onnx_op(_op, since=1)(functools.partial(_global_pool, op=_op))


@onnx_op("Gemm", since=1)
def gemm(ctx: ConvertContext) -> None:
    a, b = ctx.shape(0), ctx.shape(1)
    if len(a) != 2 or len(b) != 2:
        raise ctx.fail(f"Gemm needs 2-D A and B, got {list(a)} and {list(b)}")
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    m, k = (a[1], a[0]) if ta else a
    k2, nn = (b[1], b[0]) if tb else b
    if k != k2:
        raise ctx.fail(f"inner dimensions differ: A{list(a)} (transA={ta}) and B{list(b)} (transB={tb})")
    ins = [ctx.inputs[0], ctx.inputs[1]]
    if ctx.has_input(2):
        cshape = ctx.shape(2)
        try:
            if np.broadcast_shapes(cshape, (m, nn)) != (m, nn):
                raise ValueError
        except ValueError:
            raise ctx.fail(f"C {list(cshape)} does not broadcast to the output [{m}, {nn}]") from None
        ins.append(ctx.inputs[2])
    ctx.emit(
        "Gemm",
        ins,
        [ctx.out(0, (m, nn), ctx.value(0).dtype)],
        dict(
            alpha=float(ctx.attr("alpha", 1.0)),
            beta=float(ctx.attr("beta", 1.0)),
            trans_a=ta,
            trans_b=tb,
            activation="none",
            act_alpha=0.0,
            act_beta=0.0,
        ),
    )


@onnx_op("MatMul", since=1)
def matmul(ctx: ConvertContext) -> None:
    a, b = ctx.shape(0), ctx.shape(1)
    try:
        shape = _matmul_shape(a, b)
    except ValueError:
        raise ctx.fail(f"shapes {list(a)} and {list(b)} cannot be multiplied") from None
    ctx.emit("MatMul", ctx.inputs[:2], [ctx.out(0, shape, ctx.value(0).dtype)])


def _matmul_shape(a, b):
    if len(a) == 0 or len(b) == 0:
        raise ValueError
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise ValueError
    batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    shape = batch + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape

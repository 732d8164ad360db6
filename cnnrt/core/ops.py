"""The IR op set: one :class:`OpDef` per op in :data:`OPS`, the one place that says what an op is.

The frontend normalises every ONNX op into one of these forms with *concrete* attributes
(auto_pad, ceil_mode, output_shape, Clip bounds, Slice/Pad/Resize parameters given as inputs
are resolved at import), so kernels and passes never see ONNX versions.

Spatial ops work on NCHW; ``pads`` are ``(top, left, bottom, right)`` for convolutions and
pools, ``(begin.., end..)`` for Pad. Channel-blocked ops are made by passes/block_layout.py
(CPU only): a blocked value stores logical NCHW with C a multiple of B as (N, C/B, H, W, B).

Per op the table gives its ports (``?`` optional, ``*`` one or more), attribute defaults
(:data:`REQUIRED` when the IR always carries one; read through :func:`op_attrs` / :func:`attr`),
shape inference (op_shapes, checked by ``Graph.verify``), in-place, view, strided-output and strided-input
facts (the planner, concat_in_place), numerics (MACs, accumulation length, transcendental: op_costs; no default, so a new
op says what it costs), blocked-layout and epilogue facts (passes),
its constant evaluator (const_eval), its origin, and why a backend needs no kernel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnnrt.core import const_eval as ev
from cnnrt.core import op_costs as cost
from cnnrt.core import op_shapes as shp
from cnnrt.core import quantization as qnt
from cnnrt.core.op_schema import (
    AVERAGE_POOL_ATTRS,
    CONV_ATTRS,
    EPILOGUE,
    MAX_POOL_ATTRS,
    NO_CUDA_BLOCKED,
    REQUIRED,
    OpDef,
    activation_op,
    binary_op,
    blocked_channel_copy,
    blocked_op,
    data_op,
    variadic_op,
    view_op,
)
from cnnrt.errors import GraphError, UnsupportedOpError

# Activation kinds fused into Conv/ConvTranspose/Gemm/ChannelAffine, as small integers so
# Numba kernels can branch on them cheaply. Order is part of the kernel ABI.
ACTIVATIONS = {
    "none": 0,
    "Relu": 1,
    "LeakyRelu": 2,
    "Clip": 3,
    "Sigmoid": 4,
    "HardSigmoid": 5,
    "HardSwish": 6,
    "Tanh": 7,
    "Elu": 8,
    "SiLU": 9,
    "Gelu": 10,
}


_CONV = OpDef(
    ("X", "W", "B?", "R?"),
    ("Y",),
    shp.conv,
    "conv",
    "W (M, C/group, kh, kw); R (residual, fused by fuse_epilogue) is added before the activation",
    CONV_ATTRS,
    numerics=cost.CONV,
    epilogue=True,
    onnx=("Conv",),
)
_MAX_POOL = OpDef(
    ("X",),
    ("Y", "Indices?"),
    shp.pool,
    "pool",
    attrs=MAX_POOL_ATTRS,
    blocked_form="BlockedMaxPool",
    onnx=("MaxPool",),
    numerics=cost.NO_SUMS,
)
_AVERAGE_POOL = OpDef(
    ("X",),
    ("Y",),
    shp.pool,
    "pool",
    attrs=AVERAGE_POOL_ATTRS,
    numerics=cost.AVERAGE_POOL,
    blocked_form="BlockedAveragePool",
    onnx=("AveragePool",),
)
_LRN = OpDef(
    ("X",),
    ("Y",),
    shp.same,
    "norm",
    attrs={"size": REQUIRED, "alpha": 1e-4, "beta": 0.75, "bias": 1.0},
    numerics=cost.LRN,
    blocked_form="BlockedLRN",
    onnx=("LRN",),
)
_GLOBAL_AVERAGE_POOL = OpDef(
    ("X",),
    ("Y",),
    shp.global_pool,
    "pool",
    numerics=cost.GLOBAL_AVERAGE_POOL,
    blocked_form="BlockedGlobalAveragePool",
    onnx=("GlobalAveragePool",),
)
_GLOBAL_MAX_POOL = OpDef(
    ("X",),
    ("Y",),
    shp.global_pool,
    "pool",
    blocked_form="BlockedGlobalMaxPool",
    onnx=("GlobalMaxPool",),
    numerics=cost.NO_SUMS,
)
_SQUEEZE_EXCITE = OpDef(
    ("X", "W1", "B1", "W2", "B2"),
    ("Y",),
    shp.same,
    "norm",
    "y = x * gate(W2 squeeze(W1 mean_hw(x) + B1) + B2) per (n, c); W1 (R, C), B1 (R,), W2 (C, R), B2 (C,); "
    "squeeze and gate name activation kinds, their alpha/beta as a fused epilogue's",
    {
        "squeeze": REQUIRED,
        "squeeze_alpha": 0.0,
        "squeeze_beta": 0.0,
        "gate": REQUIRED,
        "gate_alpha": 0.0,
        "gate_beta": 0.0,
    },
    in_place=True,  # the kernel pools x before it scales it
    numerics=cost.SQUEEZE_EXCITE,
    blocked_form="BlockedSqueezeExcite",
    made_by="fuse_se",
)
_CHANNEL_AFFINE = OpDef(
    ("X", "scale", "shift"),
    ("Y",),
    shp.same,
    "norm",
    "y = act(x * scale + shift); scale/shift per channel (C,) or per activation (C, H, W)",
    EPILOGUE,
    in_place=True,
    numerics=cost.AFFINE,
    blocked_form="BlockedChannelAffine",
    epilogue=True,
    made_by="fold_batchnorm",
)

# -- the math, comparison and reduction ops of modern CNNs (ConvNeXt, attention blocks)


def _unary(onnx: str, evaluate=None, numerics=cost.NO_SUMS) -> OpDef:
    """An elementwise one-input op that is no fused activation kind (float tensors only)."""
    return activation_op(onnx, numerics=numerics, evaluate=None if evaluate is None else ev.unary(evaluate))


def _compare(onnx: str, evaluate) -> OpDef:
    """A broadcasting comparison: a bool output (so never in place over its float inputs, nor blocked)."""
    return OpDef(
        ("A", "B"),
        ("C",),
        shp.broadcast,
        "binary",
        broadcasts=True,
        evaluate=ev.binary(evaluate),
        output_dtype="bool",
        onnx=(onnx,),
        numerics=cost.NO_SUMS,
    )


def _reduce(onnx: str, evaluate, numerics=cost.NO_SUMS) -> OpDef:
    return OpDef(
        ("X",),
        ("Y",),
        shp.reduce_mean,
        "norm",
        "axes sorted and non-negative",
        {"axes": REQUIRED, "keepdims": True},
        numerics=numerics,
        evaluate=evaluate,
        onnx=(onnx,),
    )


def _arg_reduce(onnx: str, f) -> OpDef:
    return OpDef(
        ("X",),
        ("Y",),
        shp.arg_reduce,
        "norm",
        "the first extreme index unless select_last_index",
        {"axis": REQUIRED, "keepdims": True, "select_last_index": False},
        numerics=cost.NO_SUMS,
        output_dtype="int64",
        evaluate=ev.arg_reduce(f),
        onnx=(onnx,),
    )


MODERN_OPS: dict[str, OpDef] = {
    "Gelu": activation_op("Gelu", ("tanh_approx",), {"tanh_approx": 0.0}, numerics=cost.TRANSCENDENTAL),
    "Erf": _unary("Erf", numerics=cost.TRANSCENDENTAL),
    "Sqrt": _unary("Sqrt", np.sqrt, cost.TRANSCENDENTAL),
    "Reciprocal": _unary("Reciprocal", np.reciprocal),
    "Exp": _unary("Exp", np.exp, cost.TRANSCENDENTAL),
    "Log": _unary("Log", np.log, cost.TRANSCENDENTAL),
    "Abs": _unary("Abs", np.abs),
    "Neg": _unary("Neg", np.negative),
    "Floor": _unary("Floor", np.floor),
    "Ceil": _unary("Ceil", np.ceil),
    "Not": OpDef(
        ("X",),
        ("Y",),
        shp.same,
        "tensor",
        in_place=True,
        evaluate=ev.unary(np.logical_not),
        output_dtype="bool",
        onnx=("Not",),
        numerics=cost.NO_SUMS,
    ),
    "Pow": OpDef(
        ("A", "B"),
        ("C",),
        shp.broadcast,
        "binary",
        "B has A's dtype (the importer casts it)",
        in_place=True,
        broadcasts=True,
        evaluate=ev.binary(np.power),
        onnx=("Pow",),
        numerics=cost.TRANSCENDENTAL,
    ),
    "Equal": _compare("Equal", np.equal),
    "Less": _compare("Less", np.less),
    "LessOrEqual": _compare("LessOrEqual", np.less_equal),
    "Greater": _compare("Greater", np.greater),
    "GreaterOrEqual": _compare("GreaterOrEqual", np.greater_equal),
    "Where": OpDef(
        ("condition", "X", "Y"),
        ("Z",),
        shp.broadcast,
        "tensor",
        "condition bool; X and Y share the output's dtype",
        broadcasts=True,
        evaluate=ev.where,
        onnx=("Where",),
        numerics=cost.NO_SUMS,
    ),
    "Expand": data_op(shp.reshape, "shape: the broadcast output shape", {"shape": REQUIRED}, ev.expand, ("Expand",)),
    "ReduceSum": _reduce("ReduceSum", ev.reduction(np.sum), cost.REDUCE_MEAN),
    "ReduceMax": _reduce("ReduceMax", ev.reduction(np.max)),
    "ReduceMin": _reduce("ReduceMin", ev.reduction(np.min)),
    "ReduceL2": _reduce("ReduceL2", ev.reduce_l2, cost.REDUCE_L2),
    "ArgMax": _arg_reduce("ArgMax", np.argmax),
    "ArgMin": _arg_reduce("ArgMin", np.argmin),
    "LayerNormalization": OpDef(
        ("X", "Scale", "B?"),
        ("Y", "Mean?", "InvStdDev?"),
        shp.layer_norm,
        "norm",
        "normalises over axes axis.. (non-negative); Scale and B have exactly those axes' shape; "
        "Mean and InvStdDev float32, the normalised axes kept as 1",
        {"axis": REQUIRED, "epsilon": 1e-5},
        numerics=cost.LAYER_NORM,
        onnx=("LayerNormalization",),
    ),
}

# ONNX op types the importer turns into graph constants rather than nodes: no IR op stands for them.
IMPORTED_AS_CONSTANTS = ("Constant",)

# -- int8 (QDQ and QLinear models): the arithmetic is cnnrt.core.quantization's; CPU kernels only
NO_CUDA_INT8 = "the integer kernels are CPU-only; a quantized model runs on the CPU backend"
QCONV_PORTS = ("X", "x_scale?", "x_zero_point?", "W", "w_scale?", "w_zero_point?", "y_scale?", "y_zero_point?", "B?")
QMATMUL_PORTS = ("A", "a_scale?", "a_zero_point?", "B", "b_scale?", "b_zero_point?", "y_scale?", "y_zero_point?")


def _quant_eval(fn):
    return lambda a, x, outs: [fn(a, x, outs[0].dtype)]


def _ports(*index: int):
    """Shape inference / costs of the float op on the inputs at ``index`` (X and W, A and B)."""
    return lambda f: lambda a, x, *rest: f(a, [x[i] for i in index], *rest)


QUANT_OPS: dict[str, OpDef] = {
    "QuantizeLinear": OpDef(
        ("X", "y_scale", "y_zero_point?"),
        ("Y",),
        shp.same,
        "tensor",
        "float -> uint8/int8 (the zero point's dtype); scale/zero point per tensor or along axis",
        {"axis": 1},
        evaluate=_quant_eval(lambda a, x, dt: qnt.quantize(x[0], x[1], x[2] if len(x) > 2 else None, dt, a["axis"])),
        onnx=("QuantizeLinear",),
        no_cuda_kernel=NO_CUDA_INT8,
        numerics=cost.NO_SUMS,
    ),
    "DequantizeLinear": OpDef(
        ("X", "x_scale", "x_zero_point?"),
        ("Y",),
        shp.same,
        "tensor",
        "uint8/int8/int32 -> float32; scale/zero point per tensor or along axis",
        {"axis": 1},
        evaluate=_quant_eval(lambda a, x, dt: qnt.dequantize(x[0], x[1], x[2] if len(x) > 2 else None, a["axis"])),
        onnx=("DequantizeLinear",),
        no_cuda_kernel=NO_CUDA_INT8,
        numerics=cost.NO_SUMS,
    ),
    "QConv": OpDef(
        QCONV_PORTS,
        ("Y",),
        _ports(0, 3)(shp.conv),
        "conv",
        "integer conv (QLinearConv; ConvInteger without y_scale gives the int32 accumulator); W (M, C/group, "
        "kh, kw) int8/uint8, B int32; requantized as cnnrt.core.quantization.requantize, clamped to [out_lo, out_hi]",
        {**CONV_ATTRS, "out_lo": None, "out_hi": None},
        numerics=cost.Numerics(_ports(0, 3)(cost.conv_macs), _ports(0, 3)(cost.conv_accumulation)),
        onnx=("QLinearConv", "ConvInteger"),
        no_cuda_kernel=NO_CUDA_INT8,
    ),
    "QMatMul": OpDef(
        QMATMUL_PORTS,
        ("Y",),
        _ports(0, 3)(shp.matmul),
        "linear",
        "integer MatMul (QLinearMatMul; MatMulInteger without y_scale gives the int32 accumulator)",
        numerics=cost.Numerics(_ports(0, 3)(cost.matmul_macs), _ports(0, 3)(cost.matmul_accumulation)),
        onnx=("QLinearMatMul", "MatMulInteger"),
        no_cuda_kernel=NO_CUDA_INT8,
    ),
    "QAdd": OpDef(
        ("A", "a_scale", "a_zero_point?", "B", "b_scale", "b_zero_point?", "y_scale", "y_zero_point?"),
        ("C",),
        _ports(0, 3)(shp.broadcast),
        "tensor",
        "DequantizeLinear(A) + DequantizeLinear(B) -> QuantizeLinear, per-tensor parameters, same shapes; "
        "clamped to [out_lo, out_hi] (a fused Relu)",
        {"out_lo": None, "out_hi": None},
        made_by="fuse_qdq",
        no_cuda_kernel=NO_CUDA_INT8,
        numerics=cost.NO_SUMS,
    ),
    "QMul": OpDef(
        ("A", "a_scale", "a_zero_point?", "B", "b_scale", "b_zero_point?", "y_scale", "y_zero_point?"),
        ("C",),
        _ports(0, 3)(shp.broadcast),
        "tensor",
        "DequantizeLinear(A) * DequantizeLinear(B) -> QuantizeLinear in the QDQ graph's float32 steps, "
        "per-tensor parameters, B one value per (image, channel) of A (a squeeze-excitation gate)",
        made_by="fuse_qdq",
        no_cuda_kernel=NO_CUDA_INT8,
        numerics=cost.NO_SUMS,
    ),
    "QGlobalAveragePool": OpDef(
        ("X", "x_scale", "x_zero_point?", "y_scale", "y_zero_point?"),
        ("Y",),
        _ports(0)(shp.global_pool),
        "pool",
        "DequantizeLinear -> GlobalAveragePool -> QuantizeLinear on the codes, per-tensor parameters: "
        "each plane's exact integer sum requantized as onnxruntime's QLinearGlobalAveragePool (MLAS)",
        made_by="fuse_qdq",
        no_cuda_kernel=NO_CUDA_INT8,
        numerics=cost.NO_SUMS,
    ),
}


OPS: dict[str, OpDef] = {
    "Conv": _CONV,
    "ConvTranspose": OpDef(
        ("X", "W", "B?", "R?"),
        ("Y",),
        shp.conv_transpose,
        "conv",
        "W (C, M/group, kh, kw); R as Conv's; output_padding is what the output shape adds past the pads",
        CONV_ATTRS,
        numerics=cost.CONV_TRANSPOSE,
        epilogue=True,
        onnx=("ConvTranspose",),
    ),
    "BatchNormalization": OpDef(
        ("X", "scale", "B", "mean", "var"),
        ("Y",),
        shp.same,
        "norm",
        "mean/var shaped (C,) or per activation; folded into ChannelAffine or a Conv by fold_batchnorm",
        {"epsilon": 1e-5},
        numerics=cost.AFFINE,
        onnx=("BatchNormalization",),
    ),
    "ChannelAffine": _CHANNEL_AFFINE,
    "LRN": _LRN,
    "MaxPool": _MAX_POOL,
    "AveragePool": _AVERAGE_POOL,
    "GlobalAveragePool": _GLOBAL_AVERAGE_POOL,
    "GlobalMaxPool": _GLOBAL_MAX_POOL,
    "Gemm": OpDef(
        ("A", "B", "C?"),
        ("Y",),
        shp.gemm,
        "linear",
        "y = act(alpha * A' B' + beta * C); MatMul + Add(constant) becomes Gemm in fuse_epilogue",
        {"alpha": 1.0, "beta": 1.0, "trans_a": 0, "trans_b": 0, **EPILOGUE},
        numerics=cost.GEMM,
        epilogue=True,
        onnx=("Gemm",),
    ),
    "MatMul": OpDef(
        ("A", "B"),
        ("Y",),
        shp.matmul,
        "linear",
        "numpy matmul (batched, 1-D operands promoted)",
        numerics=cost.MATMUL,
        onnx=("MatMul",),
    ),
    "Relu": activation_op("Relu", evaluate=ev.relu),
    "LeakyRelu": activation_op("LeakyRelu", ("alpha",), {"alpha": 0.01}),
    "Clip": activation_op("Clip", ("min", "max"), {"min": REQUIRED, "max": REQUIRED}, evaluate=ev.clip),
    "Sigmoid": activation_op("Sigmoid", numerics=cost.TRANSCENDENTAL, evaluate=ev.sigmoid),
    "HardSigmoid": activation_op("HardSigmoid", ("alpha", "beta"), {"alpha": 0.2, "beta": 0.5}),
    "HardSwish": activation_op("HardSwish"),
    "Tanh": activation_op("Tanh", numerics=cost.TRANSCENDENTAL),
    "Elu": activation_op("Elu", ("alpha",), {"alpha": 1.0}, numerics=cost.TRANSCENDENTAL),
    "PRelu": OpDef(
        ("X", "slope"), ("Y",), shp.same, "activation", "slope broadcasts to X", onnx=("PRelu",), numerics=cost.NO_SUMS
    ),
    "Add": binary_op("Add", ev.add),
    "Sub": binary_op("Sub", ev.sub),
    "Mul": binary_op("Mul", ev.mul),
    "Div": binary_op("Div", ev.div),
    "Sum": variadic_op("Sum", ev.sum_),
    "Max": variadic_op("Max", ev.maximum),
    "Min": variadic_op("Min", ev.minimum),
    "Softmax": OpDef(
        ("X",),
        ("Y",),
        shp.same,
        "norm",
        "coerce_2d: pre-13 semantics (flatten from axis on); log: LogSoftmax",
        {"axis": -1, "coerce_2d": False, "log": False},
        numerics=cost.SOFTMAX,
        onnx=("Softmax", "LogSoftmax"),
    ),
    "Concat": OpDef(
        ("X*",),
        ("Y",),
        shp.concat,
        "tensor",
        "in_place (set by concat_in_place): the inputs are written inside the output, the step does nothing",
        {"axis": REQUIRED, "in_place": False},
        strided_output=True,  # numpy copies into and out of any view
        strided_input=True,
        blocked="channel_concat",
        evaluate=ev.concat,
        onnx=("Concat",),
        numerics=cost.NO_SUMS,
    ),
    "Split": data_op(shp.split, "", {"axis": REQUIRED, "sizes": REQUIRED}, ev.split, ("Split",), outputs=("Y*",)),
    "Slice": data_op(
        shp.slice_,
        "one start/end/step per axis, normalised; with a negative step, end == -1 means through index 0",
        {"starts": REQUIRED, "ends": REQUIRED, "steps": REQUIRED},
        ev.slice_,
        ("Slice",),
    ),
    "Reshape": view_op(
        ("Reshape", "Flatten", "Squeeze", "Unsqueeze"),
        "shape is concrete; block_layout also unblocks (N, C/B, 1, 1, B) values with it",
        attrs={"shape": REQUIRED},
        infer=shp.reshape,
    ),
    "Identity": view_op(("Identity",), "ReduceMean with noop_with_empty_axes imports as Identity too"),
    "Dropout": view_op(("Dropout",), "inference: the identity; a mask output is all ones", outputs=("Y", "mask?")),
    "Transpose": data_op(shp.transpose, "", {"perm": REQUIRED}, ev.transpose, ("Transpose",)),
    "Pad": data_op(
        shp.pad,
        "mode constant|reflect|edge; negative ONNX pads import as a Slice first",
        {"mode": "constant", "pads": REQUIRED, "value": 0.0},
        ev.pad,
        ("Pad",),
    ),
    "Resize": OpDef(
        ("X",),
        ("Y",),
        shp.resize,
        "tensor",
        "mode nearest|linear|cubic; nearest_mode includes 'simple' (opset 10's rule); scales per axis",
        {
            "mode": REQUIRED,
            "coord_mode": REQUIRED,
            "nearest_mode": "round_prefer_floor",
            "scales": REQUIRED,
            "cubic_coeff_a": -0.75,
            "exclude_outside": False,
        },
        numerics=cost.TRANSCENDENTAL,
        onnx=("Resize", "Upsample"),
    ),
    "GroupNormalization": OpDef(
        ("X", "scale", "B"),
        ("Y",),
        shp.same,
        "norm",
        "mean and variance per (n, group of C/num_groups channels); scale/B per channel (C,); "
        "InstanceNormalization is num_groups = C; + fused activation (style-transfer nets' Relu)",
        {"num_groups": REQUIRED, "epsilon": 1e-5, **EPILOGUE},
        numerics=cost.GROUP_NORM,
        epilogue=True,
        onnx=("GroupNormalization", "InstanceNormalization"),
    ),
    "DepthToSpace": data_op(
        shp.depth_to_space,
        "mode DCR|CRD; op_shapes.block_rearrangement gives the element order",
        {"blocksize": REQUIRED, "mode": "DCR"},
        None,
        ("DepthToSpace",),
    ),
    "SpaceToDepth": data_op(
        shp.space_to_depth,
        "mode DCR|CRD; op_shapes.block_rearrangement gives the element order",
        {"blocksize": REQUIRED, "mode": "DCR"},
        None,
        ("SpaceToDepth",),
    ),
    "Shape": data_op(shp.shape, "int64 dims [start:end]", {"start": 0, "end": None}, ev.shape, ("Shape",)),
    "ConstantOfShape": data_op(
        shp.unknown,
        "value is a 0-d array; the output shape is the Value's (also Dropout's mask)",
        {"value": REQUIRED},
        ev.constant_of_shape,
        ("ConstantOfShape", "Dropout"),
        inputs=("shape?",),
    ),
    "Gather": data_op(shp.gather, "", {"axis": REQUIRED}, ev.gather, ("Gather",), inputs=("data", "indices")),
    "Cast": data_op(shp.same, "to: a numpy dtype name", {"to": REQUIRED}, ev.cast, ("Cast",)),
    "ReduceMean": _reduce("ReduceMean", ev.reduce_mean, cost.REDUCE_MEAN),
    # -- channel-blocked (CPU): made by passes/block_layout.py, never imported
    "ReorderToBlocked": OpDef(
        ("X",),
        ("Y",),
        shp.reorder_to_blocked,
        "blocked",
        "NCHW -> (N, C/block, H, W, block)",
        {"block": REQUIRED},
        blocked="native",
        made_by="block_layout",
        no_cuda_kernel=NO_CUDA_BLOCKED,
        numerics=cost.NO_SUMS,
    ),
    "ReorderFromBlocked": OpDef(
        ("X",),
        ("Y",),
        shp.reorder_from_blocked,
        "blocked",
        "blocked -> NCHW, cropped to the output's channels",
        blocked="native",
        made_by="block_layout",
        no_cuda_kernel=NO_CUDA_BLOCKED,
        numerics=cost.NO_SUMS,
    ),
    "BlockedSplit": blocked_channel_copy(
        ("X",),
        ("Y*",),
        shp.blocked_split,
        "as Split along the channels (axis 1 of the logical NCHW, sizes in channels); every piece blocked, "
        "its lanes past its channels zero",
    ),
    "BlockedConcat": blocked_channel_copy(
        ("X*",),
        ("Y",),
        shp.blocked_concat,
        "as Concat along the channels of blocked inputs that are not whole blocks (sizes: each input's "
        "channels); the output's lanes past its channels zero",
    ),
    "BlockedChannelShuffle": blocked_channel_copy(
        ("X*",),
        ("Y*",),
        shp.blocked_channel_shuffle,
        "Concat of the blocked inputs (sizes: each input's channels), then ShuffleNet's channel shuffle "
        "in ``groups`` (Reshape (N, G, C/G, H, W) -> Transpose (0, 2, 1, 3, 4) -> Reshape: channel i*G + g "
        "is input channel g*C/G + i), then Split into pieces of ``splits`` channels; every piece blocked, "
        "its lanes past its channels zero",
        {"sizes": REQUIRED, "groups": REQUIRED, "splits": REQUIRED},
    ),
    "BlockedConv": dataclasses.replace(
        blocked_op(
            _CONV,
            shp.blocked_conv,
            "as Conv; X blocked (or NCHW when C is not whole blocks), R blocked; output blocked",
        ),
        strided_output=True,
    ),
    "BlockedMaxPool": blocked_op(_MAX_POOL, shp.blocked_pool, "as MaxPool"),
    "BlockedAveragePool": blocked_op(_AVERAGE_POOL, shp.blocked_pool, "as AveragePool"),
    "BlockedGlobalAveragePool": blocked_op(_GLOBAL_AVERAGE_POOL, shp.blocked_global_pool, "output (N, C/B, 1, 1, B)"),
    "BlockedGlobalMaxPool": blocked_op(_GLOBAL_MAX_POOL, shp.blocked_global_pool, "output (N, C/B, 1, 1, B)"),
    "BlockedChannelAffine": dataclasses.replace(
        blocked_op(_CHANNEL_AFFINE, shp.same, "as ChannelAffine; scale/shift per channel (C,)"), strided_input=True
    ),
    "BlockedLRN": blocked_op(_LRN, shp.same, "as LRN, float32, size <= 5; lanes past C zero in and out"),
    "SqueezeExcite": _SQUEEZE_EXCITE,
    "BlockedSqueezeExcite": dataclasses.replace(
        blocked_op(
            _SQUEEZE_EXCITE, shp.same, "as SqueezeExcite; C from W1, lanes past C in the last block zero in and out"
        ),
        in_place=True,
    ),
    **MODERN_OPS,
    **QUANT_OPS,
}


UNARY_ACTIVATION_OPS = tuple(k for k in ACTIVATIONS if k in OPS)  # in kernel-ABI order
BINARY_OPS = tuple(op for op, d in OPS.items() if d.category == "binary")
VARIADIC_OPS = tuple(op for op, d in OPS.items() if d.category == "variadic")
VIEW_OPS = tuple(op for op, d in OPS.items() if d.view)
# Fused activation kinds that evaluate exp/tanh: the transcendental activation ops, and SiLU
# (x * Sigmoid(x), a kind that is no op of its own).
TRANSCENDENTAL_ACTIVATIONS = frozenset((*(k for k in UNARY_ACTIVATION_OPS if OPS[k].numerics.transcendental), "SiLU"))


def op_def(op: str) -> OpDef:
    """The definition of IR op ``op``; UnsupportedOpError for a name that is not one."""
    d = OPS.get(op)
    if d is None:
        raise UnsupportedOpError(f"{op!r} is not an IR op (cnnrt.core.ops.OPS)")
    return d


def op_attrs(node) -> dict[str, Any]:
    """``node``'s attributes with the table's defaults filled in; GraphError for a missing required one."""
    return op_def(node.op).filled_attrs(node)


def attr(node, name: str) -> Any:
    """One attribute of ``node``, its default when absent (see :func:`op_attrs`)."""
    if name in node.attrs:
        return node.attrs[name]
    a = op_attrs(node)
    if name not in a:
        raise GraphError(f"node {node.name!r} ({node.op}) has no attribute {name!r}, nor a default for it")
    return a[name]


def activation_params(op: str, attrs) -> tuple[float, float]:
    """(alpha, beta) for an activation op as the fused kernels take them (0 for the kinds
    that are not ops, SiLU and none)."""
    d = OPS.get(op)
    names = d.fused_params if d is not None else ()
    values = [float(attrs.get(k, d.attrs.get(k))) for k in names]
    alpha, beta = (*values, 0.0, 0.0)[:2]
    return alpha, beta


def infer(node, in_values) -> list:
    """Output shapes of ``node`` from its input Values (None for an omitted optional input);
    a shape or dimension the IR does not determine is None. GraphError when the node has the
    wrong number of inputs or outputs or lacks a required attribute."""
    d = op_def(node.op)
    d.check_ports(node)
    shapes = [None if v is None else v.shape for v in in_values]
    return d.infer(d.filled_attrs(node), shapes, len(node.outputs))


def can_evaluate(op: str) -> bool:
    """Whether the table gives ``op`` a numpy evaluator (constant folding, import-time shape arithmetic)."""
    return op in OPS and OPS[op].evaluate is not None


def evaluate_node(node, inputs: Sequence[np.ndarray | None], outs: Sequence) -> list[np.ndarray] | None:
    """Outputs of ``node`` for these input values, or None when not evaluable here."""
    d = OPS.get(node.op)
    if d is None or d.evaluate is None:
        return None
    with np.errstate(all="ignore"):
        res = d.evaluate(op_attrs(node), list(inputs), list(outs))
    # np.asarray(order="C"), not ascontiguousarray: the latter turns 0-d results into shape (1,)
    return [
        np.asarray(np.asarray(r).astype(v.dtype, copy=False).reshape(v.shape), order="C") for r, v in zip(res, outs)
    ]

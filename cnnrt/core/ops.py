"""The IR op set: what each op's inputs and attributes mean once imported.

The frontend normalises every ONNX op into one of these forms with *concrete* attributes
(auto_pad, ceil_mode, output_shape, Clip bounds, Slice/Pad/Resize parameters given as
inputs are all resolved at import), so kernels and passes never see ONNX versions. ONNX Constant and Shape nodes become graph
constants under their output names (shapes are concrete), so no node is emitted for them.

Spatial ops work on NCHW. ``pads`` are ``(top, left, bottom, right)``.

=================  ===============================  ==================================================
op                 inputs                           attributes
=================  ===============================  ==================================================
Conv               X, W, [B], [R]                   strides, pads, dilations, group, activation,
                                                    act_alpha, act_beta; R (residual) is added before
                                                    the activation
ConvTranspose      X, W, [B]                        strides, pads, dilations, group, activation...
BatchNormalization X, scale, B, mean, var           epsilon (mean/var shaped (C,) or per-activation)
ChannelAffine      X, scale, shift                  activation, act_alpha, act_beta: y = act(x*s + t)
LRN                X                                size, alpha, beta, bias
MaxPool            X                                kernel, strides, pads, dilations
AveragePool        X                                kernel, strides, pads, dilations, count_include_pad
GlobalAveragePool  X                                -
GlobalMaxPool      X                                -
Gemm               A, B, [C]                        alpha, beta, trans_a, trans_b, activation...
MatMul             A, B                             -
<activation>       X                                Relu, LeakyRelu(alpha), Elu(alpha), Sigmoid, Tanh,
                                                    HardSigmoid(alpha, beta), HardSwish, Clip(min, max)
PRelu              X, slope                         -
Add Sub Mul Div    A, B                             numpy broadcasting
Sum Max Min        X1..Xn                           numpy broadcasting
Softmax            X                                axis, coerce_2d (pre-13 semantics), log
Concat             X1..Xn                           axis
Split              X                                axis, sizes
Slice              X                                starts, ends, steps (one per axis, normalised; with a
                                                    negative step, end == -1 means "through index 0")
Reshape            X                                shape (concrete; Flatten/Squeeze/Unsqueeze too)
Transpose          X                                perm
Pad                X                                mode (constant|reflect|edge), pads (begin.., end..),
                                                    value
Resize             X                                mode (nearest|linear), coord_mode, nearest_mode
                                                    (incl. "simple", opset 10's rule), scales (per axis)
Identity/Dropout   X                                -  (views)
Shape              X                                start, end -> int64
ConstantOfShape    [shape]                          value (0-d array); output shape is the Value's
Gather             data, indices                    axis
Cast               X                                to (numpy dtype name)
ReduceMean         X                                axes, keepdims
=================  ===============================  ==================================================

Channel-blocked ops (CPU; made by passes/block_layout.py, never imported from ONNX). A blocked
value stores logical NCHW with C a multiple of B as (N, C/B, H, W, B); elementwise ops and
Concat(axis=1) also run on blocked values unchanged.

========================  ==========================  ===========================================
op                        inputs                      attributes
========================  ==========================  ===========================================
ReorderToBlocked          X (NCHW)                    block
ReorderFromBlocked        X (blocked)                 -
BlockedConv               X (blocked, or NCHW when C  as Conv; output blocked
                          is not whole blocks), W,
                          [B], [R (blocked)]
BlockedMaxPool            X                           as MaxPool
BlockedAveragePool        X                           as AveragePool
BlockedGlobalAveragePool  X                           - (output (N, C/B, 1, 1, B))
BlockedGlobalMaxPool      X                           -
BlockedChannelAffine      X, scale (C,), shift (C,)   as ChannelAffine
========================  ==========================  ===========================================
"""

from __future__ import annotations

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
}

UNARY_ACTIVATION_OPS = ("Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu")

BINARY_OPS = ("Add", "Sub", "Mul", "Div")
VARIADIC_OPS = ("Sum", "Max", "Min")

# Ops whose output is the input's bytes reinterpreted: the planner aliases them.
VIEW_OPS = ("Reshape", "Identity", "Dropout")


def activation_params(op: str, attrs) -> tuple[float, float]:
    """(alpha, beta) for an activation op as the fused kernels take them."""
    if op == "LeakyRelu":
        return float(attrs.get("alpha", 0.01)), 0.0
    if op == "Elu":
        return float(attrs.get("alpha", 1.0)), 0.0
    if op == "HardSigmoid":
        return float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    if op == "Clip":
        return float(attrs["min"]), float(attrs["max"])
    return 0.0, 0.0

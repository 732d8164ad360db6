"""The activation formulas, once for both backends, keyed by ``cnnrt.core.ops.ACTIVATIONS``.

:func:`activation_formula` returns a Numba function ``act(v, kind, alpha, beta)``; the CPU
kernels (kernels/cpu/activation.py's ``act_scalar``) and the CUDA kernels
(kernels/cuda/common.py's ``act``) are two instances of it. numba's CUDA target compiles a
``@njit`` function it is called with, so the same Python source runs on both. What differs is
passed in: the constants' type (the CPU evaluates float32 tensors' Sigmoid/Elu in float64
with Python floats; the CUDA kernels keep float32 arithmetic with numpy float32 constants,
a GPU's float64 unit being many times slower), tanh and erf (the CPU's rational
approximations, the GPU's ``math.tanh`` and ``math.erf``). Min/max are written as selects: the CUDA target cannot compile the
builtin ``min``/``max``, and a select states what happens to NaN.
"""

from __future__ import annotations

import math

from cnnrt.core.ops import ACTIVATIONS
from cnnrt.kernels._jit import njit

NONE, RELU, LEAKY_RELU, CLIP, SIGMOID, HARD_SIGMOID, HARD_SWISH, TANH, ELU, SILU, GELU = (
    ACTIVATIONS[k]
    for k in ("none", "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "SiLU", "Gelu")
)
# tanh-approximated Gelu: sqrt(2/pi) and the cubic's coefficient
GELU_TANH_K = 0.7978845608028654
GELU_TANH_C = 0.044715


def activation_formula(zero, one, six, half, tanh, erf=math.erf):
    """``act(v, kind, alpha, beta)`` with these constants (their type sets the arithmetic's), tanh and erf."""
    real = type(one)  # every constant in the formulas has the type of the ones passed in
    gelu_k, gelu_c, sqrt_half = real(GELU_TANH_K), real(GELU_TANH_C), real(math.sqrt(0.5))

    @njit(inline="always", cache=False)  # a closure: its constants live in the cells, not the source
    def act(v, kind, alpha, beta):
        if kind == NONE:
            return v
        if kind == RELU:  # NaN stays NaN (as onnxruntime's max(x, 0) keeps it); -Inf gives 0
            return v if not v < zero else zero
        if kind == LEAKY_RELU:
            return v if v >= zero else v * alpha
        if kind == CLIP:  # Clip(min=alpha, max=beta); NaN propagates
            if v < alpha:
                return alpha
            if v > beta:
                return beta
            return v
        if kind == SIGMOID:  # computed without overflow for large |v|
            if v >= zero:
                return one / (one + math.exp(-v))
            e = math.exp(v)
            return e / (one + e)
        if kind == HARD_SIGMOID:  # NaN stays NaN (a clamp by min/max would turn it into a bound)
            if v != v:
                return v
            y = alpha * v + beta
            y = one if y > one else y
            return zero if y < zero else y
        if kind == HARD_SWISH:  # x * max(0, min(1, x/6 + 1/2))
            y = v / six + half
            y = one if y > one else y
            return v * (zero if y < zero else y)
        if kind == TANH:
            return tanh(v)
        if kind == ELU:
            return v if v >= zero else alpha * (math.exp(v) - one)
        if kind == SILU:  # x * sigmoid(x)
            if v >= zero:
                return v / (one + math.exp(-v))
            e = math.exp(v)
            return v * e / (one + e)
        if kind == GELU:
            # ½v(1 + erf(v/√2)); for negative v, 1 + erf cancels to an absolute error of about
            # |v| times erf's (as in onnxruntime's float32 Gelu). alpha = 1 selects the tanh
            # approximation ½v(1 + tanh(z)), as v·sigmoid(2z).
            if alpha != zero:
                z = gelu_k * (v + gelu_c * v * v * v)
                return v / (one + math.exp(-(z + z)))
            return half * v * (one + erf(v * sqrt_half))
        return v

    return act
